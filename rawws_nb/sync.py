"""Blocking calls for code that does not `await`: plain scripts, callbacks, other threads.

```python
from rawws_nb import sync

server = sync.serve_sync()                                 # a script: both live on a
session = sync.connect_sync(server.url + "/echo")          # background event-loop thread
sync.send_sync(session, "hello")
frame = sync.receive_sync(session, timeout=5)
rtt = sync.ping_sync(session, b"id-1", timeout=5)
sync.close_sync(session)
```

Every call runs the coroutine on the session's own loop (a session lives on the loop
that opened it): from any other thread through `asyncio.run_coroutine_threadsafe`, and
blocks until it finishes (or `timeout`). A call made *on the thread that runs that loop*
(a notebook cell, a widget callback on the kernel's main thread) cannot block there
without stopping the loop it waits for; it raises `SyncOnLoopError` telling you to
`await`, unless you opted in with `enable_nested()`, which applies nest-asyncio2 (it
swaps asyncio's Task and Future classes for the whole process: never done at import).

Where a new session goes (`connect_sync`, `serve_sync`): `loop=` if given; else the loop
running in this thread (a notebook: the kernel's, so nested mode is needed); else a
shared background loop thread (`background_loop()`), which is what plain scripts get.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from .frames import CloseReason, Frame

if TYPE_CHECKING:
    import ssl

    from .server import EmbeddedServer
    from .session import RawSession

__all__ = [
    "SyncOnLoopError",
    "background_loop",
    "close_sync",
    "connect_sync",
    "enable_nested",
    "nested_enabled",
    "ping_sync",
    "receive_sync",
    "run_sync",
    "send_raw_sync",
    "send_sync",
    "serve_sync",
    "stop_background_loop",
]


class SyncOnLoopError(RuntimeError):
    """A blocking call was made on the thread that runs the session's event loop."""


_nested = False
_bg_lock = threading.Lock()
_bg_loop: asyncio.AbstractEventLoop | None = None
_bg_thread: threading.Thread | None = None


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def enable_nested(loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Opt in to blocking calls on the loop's own thread (a notebook cell that calls
    `send_sync`): applies `nest_asyncio2` to `loop` (default: the running loop).

    This changes asyncio for the whole process (pure-Python Task and Future classes,
    re-entrant `run_until_complete`); prefer `await` when you can."""
    global _nested
    import nest_asyncio2

    if loop is None:
        loop = _running_loop()
    nest_asyncio2.apply(loop)
    _nested = True


def nested_enabled(loop: asyncio.AbstractEventLoop | None = None) -> bool:
    """True once `enable_nested()` was called (and `loop`, if given, is patched)."""
    if not _nested:
        return False
    return loop is None or bool(getattr(loop, "_nest_patched", False))


def background_loop() -> asyncio.AbstractEventLoop:
    """A shared event loop running forever in a daemon thread ("rawws-nb-sync"),
    started on first use: where `connect_sync` puts sessions when this thread has no loop."""
    global _bg_loop, _bg_thread
    with _bg_lock:
        if _bg_loop is None or _bg_loop.is_closed() or _bg_thread is None or not _bg_thread.is_alive():
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()

            thread = threading.Thread(target=run, name="rawws-nb-sync", daemon=True)
            thread.start()
            ready.wait(5)
            _bg_loop, _bg_thread = loop, thread
        return _bg_loop


def stop_background_loop(timeout: float = 5.0) -> None:
    """Stop and close the background loop (cancelling what still runs there)."""
    global _bg_loop, _bg_thread
    with _bg_lock:
        loop, thread = _bg_loop, _bg_thread
        _bg_loop = _bg_thread = None
    if loop is None or loop.is_closed():
        return

    async def cancel_all() -> None:
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    try:
        asyncio.run_coroutine_threadsafe(cancel_all(), loop).result(timeout)
    except Exception:
        pass
    loop.call_soon_threadsafe(loop.stop)
    if thread is not None:
        thread.join(timeout)
    if not loop.is_running():
        loop.close()


def _loop_of(target: Any) -> asyncio.AbstractEventLoop:
    if isinstance(target, asyncio.AbstractEventLoop):
        return target
    loop = getattr(target, "loop", None)
    if isinstance(loop, asyncio.AbstractEventLoop):
        return loop
    raise TypeError(f"expected an event loop or a session (something with .loop), got {type(target).__name__}")


async def _bounded(coro: Coroutine[Any, Any, Any], timeout: float | None) -> Any:
    if timeout is None:
        return await coro
    return await asyncio.wait_for(coro, timeout)


def run_sync(target: Any, coro: Coroutine[Any, Any, Any], timeout: float | None = None, *, what: str = "") -> Any:
    """Run `coro` on `target`'s loop (`target`: a session or a loop) and return its
    result, blocking this thread. Raises what the coroutine raises, `TimeoutError`
    after `timeout` seconds (the coroutine is cancelled), and `SyncOnLoopError` on the
    loop's own thread without `enable_nested()`."""
    name = what or getattr(coro, "__qualname__", "this call")
    try:
        loop = _loop_of(target)
    except TypeError:
        coro.close()
        raise
    running = _running_loop()
    if loop.is_closed():
        coro.close()
        raise RuntimeError(f"{name}: the session's event loop is closed")
    if running is loop:
        if not nested_enabled(loop):
            coro.close()
            raise SyncOnLoopError(
                f"{name} was called on the thread that runs the session's event loop (a notebook cell or a "
                "callback on the kernel's main thread): blocking here would stop the loop it waits for. "
                "Use `await` instead (e.g. `await session.send(frame)`), or opt in to nested loops with "
                "`rawws_nb.sync.enable_nested()` (applies nest-asyncio2 to the whole process)."
            )
        return loop.run_until_complete(_bounded(coro, timeout))
    if not loop.is_running():
        if running is not None:
            coro.close()
            raise RuntimeError(
                f"{name}: the session's event loop is not running, and this thread runs another loop; "
                "run the session's loop (or use `await` on it)"
            )
        return loop.run_until_complete(_bounded(coro, timeout))
    future = asyncio.run_coroutine_threadsafe(coro, loop)
    try:
        return future.result(timeout)
    except concurrent.futures.TimeoutError:
        future.cancel()
        raise TimeoutError(f"{name} did not finish within {timeout:g} s") from None
    except concurrent.futures.CancelledError:
        raise asyncio.CancelledError(f"{name} was cancelled on the session's loop") from None


def _home_loop(loop: asyncio.AbstractEventLoop | None) -> asyncio.AbstractEventLoop:
    if loop is not None:
        return loop
    running = _running_loop()
    return running if running is not None else background_loop()


# -- sessions ---------------------------------------------------------------------------


def connect_sync(
    url: str | None = None,
    *,
    loop: asyncio.AbstractEventLoop | None = None,
    timeout: float | None = None,
    **options: Any,
) -> RawSession:
    """`web_socket_raw_session(url, **options)`, blocking; the session lives on `loop`
    (default: this thread's running loop, else the background loop; see the module doc)."""
    from .connect import web_socket_raw_session

    return run_sync(_home_loop(loop), web_socket_raw_session(url, **options), timeout, what="connect_sync()")


def send_sync(session: RawSession, frame: Frame | str | bytes, timeout: float | None = None) -> None:
    """`await session.send(frame)`, blocking (any thread)."""
    return run_sync(session, session.send(frame), timeout, what="send_sync()")


def send_raw_sync(session: RawSession, data: bytes, timeout: float | None = None) -> None:
    """`await session.send_raw(data)`, blocking (any thread)."""
    return run_sync(session, session.send_raw(data), timeout, what="send_raw_sync()")


def receive_sync(session: RawSession, timeout: float | None = None) -> Frame:
    """`await session.incoming.receive()`, blocking: the next frame (`TimeoutError`
    after `timeout`; `SessionClosed` once the session has ended)."""
    return run_sync(session, session.incoming.receive(), timeout, what="receive_sync()")


def ping_sync(session: RawSession, payload: bytes | str | None = None, timeout: float | None = 5.0) -> float:
    """`await session.ping(payload, timeout)`, blocking: the round trip in seconds."""
    margin = None if timeout is None else timeout + 1.0
    return run_sync(session, session.ping(payload, timeout), margin, what="ping_sync()")


def close_sync(session: RawSession, reason: CloseReason | None = None, timeout: float | None = None) -> None:
    """`await session.close(reason)`, blocking."""
    return run_sync(session, session.close(reason), timeout, what="close_sync()")


def serve_sync(
    host: str = "127.0.0.1",
    port: int = 0,
    tls: ssl.SSLContext | None = None,
    *,
    loop: asyncio.AbstractEventLoop | None = None,
    timeout: float | None = 10.0,
    **options: Any,
) -> EmbeddedServer:
    """Start the embedded server, blocking (default home: as `connect_sync`). Stop it
    with `run_sync(loop, server.close())` or `stop_background_loop()`."""
    from .server import serve

    async def start() -> EmbeddedServer:
        return await serve(host, port, tls, **options)

    return run_sync(_home_loop(loop), start(), timeout, what="serve_sync()")
