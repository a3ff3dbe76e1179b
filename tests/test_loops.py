"""rawws_nb.loops (and the sync facade on top of it): blocking calls keep a coroutine's own
TimeoutError apart from the wait's own time-out; the loop machinery knows no session,
client or server; one error root."""

from __future__ import annotations

import ast
import asyncio
import threading
from pathlib import Path

import pytest

from rawws_nb import RawWsError, loops, sync

PACKAGE = Path(loops.__file__).parent


@pytest.fixture
def fresh_background_loop():
    """Whatever a test puts on the shared background loop goes away with it."""
    yield
    loops.stop_background_loop()


@pytest.fixture
async def silent_server():
    """A plain TCP server on 127.0.0.1 that accepts connections and never answers."""
    writers: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"ws://127.0.0.1:{port}/echo"
    finally:
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()


# -- the coroutine's own TimeoutError ---------------------------------------------------


async def test_connect_sync_open_timeout_from_a_thread_keeps_its_message(silent_server, fresh_background_loop):
    """The handshake's own time-out (open_timeout) reaches the caller as connect raised it,
    with connect_sync's default timeout=None (it used to fail formatting None)."""
    with pytest.raises(TimeoutError) as err:
        await asyncio.to_thread(sync.connect_sync, silent_server, open_timeout=0.3)
    assert type(err.value) is TimeoutError
    assert "open_timeout=0.3" in str(err.value) and silent_server in str(err.value)


async def test_connect_sync_open_timeout_within_a_longer_wait(silent_server, fresh_background_loop):
    with pytest.raises(TimeoutError) as err:
        await asyncio.to_thread(sync.connect_sync, silent_server, open_timeout=0.3, timeout=10)
    assert "open_timeout=0.3" in str(err.value) and "did not finish" not in str(err.value)


async def test_connect_sync_wait_shorter_than_open_timeout(silent_server, fresh_background_loop):
    with pytest.raises(TimeoutError, match=r"connect_sync\(\) did not finish within 0.3 s"):
        await asyncio.to_thread(sync.connect_sync, silent_server, open_timeout=10, timeout=0.3)


async def _raise_mine() -> None:
    await asyncio.sleep(0.01)
    raise TimeoutError("mine")


def _in_a_loop_thread(fn):
    """Call `fn(loop)` with a loop running in another thread; stop that loop after."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        return fn(loop)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


@pytest.mark.parametrize("timeout", [None, 5.0])
def test_own_timeout_propagates_from_a_loop_in_another_thread(timeout):
    def call(loop):
        with pytest.raises(TimeoutError) as err:
            loops.run_sync(loop, _raise_mine(), timeout, what="mine()")
        return err.value

    exc = _in_a_loop_thread(call)
    assert type(exc) is TimeoutError and str(exc) == "mine"


@pytest.mark.parametrize("timeout", [None, 5.0])
def test_own_timeout_propagates_on_a_loop_that_is_not_running(timeout):
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(TimeoutError) as err:
            loops.run_sync(loop, _raise_mine(), timeout, what="mine()")
    finally:
        loop.close()
    assert type(err.value) is TimeoutError and str(err.value) == "mine"


# -- the wait's own time-out ------------------------------------------------------------


async def _slow(cancelled: threading.Event) -> str:
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        cancelled.set()
        raise
    return "late"


def test_wait_timeout_from_another_thread_says_so_and_cancels():
    cancelled = threading.Event()

    def call(loop):
        with pytest.raises(TimeoutError, match=r"^slow\(\) did not finish within 0.1 s$"):
            loops.run_sync(loop, _slow(cancelled), 0.1, what="slow()")
        assert cancelled.wait(5)

    _in_a_loop_thread(call)


def test_wait_timeout_on_a_loop_that_is_not_running_says_so_and_cancels():
    cancelled = threading.Event()
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(TimeoutError, match=r"^slow\(\) did not finish within 0.1 s$"):
            loops.run_sync(loop, _slow(cancelled), 0.1, what="slow()")
    finally:
        loop.close()
    assert cancelled.is_set()


def test_results_and_other_errors_pass_through():
    async def answer() -> int:
        return 42

    async def fail() -> None:
        raise KeyError("k")

    def call(loop):
        assert loops.run_sync(loop, answer(), None) == 42
        assert loops.run_sync(loop, answer(), 5) == 42
        with pytest.raises(KeyError):
            loops.run_sync(loop, fail(), 5)

    _in_a_loop_thread(call)


# -- layers and errors ------------------------------------------------------------------


def _imports(path: Path) -> set[str]:
    """Modules a file imports, relative ones written as ".name" ("." for `from . import`)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            found.add(base)
    return found


def test_loops_imports_no_front_end_and_not_the_package_root():
    imported = _imports(PACKAGE / "loops.py")
    assert not imported & {".session", ".connect", ".server", ".", "rawws_nb", ".sync"}
    assert not any(name.startswith("rawws_nb") for name in imported)


def test_sync_does_not_import_the_package_root():
    imported = _imports(PACKAGE / "sync.py")
    assert "." not in imported and not any(name.startswith("rawws_nb") for name in imported)
    assert ".loops" in imported


def test_sync_re_exports_the_loop_machinery():
    for name in (
        "run_sync",
        "SyncOnLoopError",
        "enable_nested",
        "nested_enabled",
        "background_loop",
        "stop_background_loop",
    ):
        assert getattr(sync, name) is getattr(loops, name)


def test_sync_on_loop_error_bases():
    assert issubclass(loops.SyncOnLoopError, RawWsError)
    assert issubclass(loops.SyncOnLoopError, RuntimeError)


async def test_sync_on_loop_error_is_a_raw_ws_error_on_the_loop_thread():
    here = asyncio.get_running_loop()
    with pytest.raises(RawWsError, match="await"):
        loops.run_sync(here, asyncio.sleep(0), what="sleep()")


# -- handing work over (widgets use these) ------------------------------------------------


async def test_submit_and_call_soon_on_the_same_loop():
    here = asyncio.get_running_loop()
    handle = loops.submit(here, asyncio.sleep(0, "same"))
    assert isinstance(handle, asyncio.Task) and await handle == "same"
    seen: list[int] = []
    loops.call_soon(here, seen.append, 1)
    assert seen == [1]  # called now: already on the loop's thread


def test_submit_cancel_and_call_soon_from_another_thread():
    cancelled = threading.Event()

    def call(loop):
        future = loops.submit(loop, _slow(cancelled))
        loops.cancel(loop, future)
        assert cancelled.wait(5)
        done = threading.Event()
        loops.call_soon(loop, done.set)
        assert done.wait(5)

    _in_a_loop_thread(call)


def test_submit_to_a_closed_loop_raises_without_a_warning(recwarn):
    loop = asyncio.new_event_loop()
    loop.close()
    with pytest.raises(RuntimeError, match="closed"):
        loops.submit(loop, asyncio.sleep(0))
    loops.call_soon(loop, print, "never")  # nothing happens
    assert not [w for w in recwarn if "never awaited" in str(w.message)]
