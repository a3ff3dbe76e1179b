"""Event loops and threads: running work on the loop a session lives on, from any thread.

A session lives on the event loop that opened it (see docs/architecture.md, "Threads
and event loops"). Code outside that loop reaches it through this module, never by touching
session state directly:

* `submit(loop, coro)` / `call_soon(loop, fn, ...)` / `cancel(loop, handle)`: fire and
  forget from any thread (widget callbacks, which JupyterLab may run on a kernel subshell
  with a loop of its own): `loop.create_task` when already on that loop, else
  `asyncio.run_coroutine_threadsafe` / `loop.call_soon_threadsafe`;
* `run_sync(target, coro, timeout)`: run a coroutine there and block until it finishes
  (the sync facade, `RawSession.send_sync` and friends). On the loop's own thread that
  would stop the loop it waits for, so it raises `SyncOnLoopError` unless the process
  opted in with `enable_nested()` (nest-asyncio2; never applied at import);
* `background_loop()`: a shared loop in a daemon thread for code that has no loop.

This module knows about no session, client or server: anything with a `loop` attribute
(an `asyncio.AbstractEventLoop`) will do as a `target`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, TypeAlias, TypeVar, cast

from .errors import RawWsError

__all__ = [
    "Handle",
    "as_transport",
    "LoopOwner",
    "SyncOnLoopError",
    "background_loop",
    "call_soon",
    "cancel",
    "enable_nested",
    "nested_enabled",
    "run_sync",
    "running_loop",
    "stop_background_loop",
    "submit",
]

T = TypeVar("T")

# What `submit` returns: a task (called on the loop's thread) or a concurrent future.
Handle: TypeAlias = asyncio.Task[Any] | concurrent.futures.Future[Any]


class SyncOnLoopError(RawWsError, RuntimeError):
    """A blocking call was made on the thread that runs the session's event loop."""


class LoopOwner(Protocol):
    """Something that lives on an event loop (a `RawSession`)."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop running in this thread, or None."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


# -- fire and forget, from any thread -----------------------------------------------------


def submit(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any]) -> Handle:
    """Run `coro` on `loop` from any thread; returns the task (same loop) or a
    `concurrent.futures.Future` (other thread). Raises RuntimeError if `loop` is closed
    (and closes `coro`, so no "never awaited" warning follows)."""
    if loop.is_closed():
        coro.close()
        raise RuntimeError("the session's event loop is closed")
    if running_loop() is loop:
        return loop.create_task(coro)
    return asyncio.run_coroutine_threadsafe(coro, loop)


def call_soon(loop: asyncio.AbstractEventLoop, fn: Callable[..., object], *args: object) -> None:
    """Call `fn(*args)` on `loop`'s thread: now when already there, else soon (nothing
    when `loop` is closed)."""
    if running_loop() is loop:
        fn(*args)
    elif not loop.is_closed():
        loop.call_soon_threadsafe(fn, *args)


def cancel(loop: asyncio.AbstractEventLoop, handle: Handle | None) -> None:
    """Cancel what `submit` returned, from any thread (`Task.cancel` is not thread-safe)."""
    if handle is None or handle.done():
        return
    if isinstance(handle, concurrent.futures.Future):
        handle.cancel()  # run_coroutine_threadsafe forwards this to the loop thread-safely
    else:
        call_soon(loop, handle.cancel)


# -- nested loops (opt-in) ------------------------------------------------------------------

_nested = False


def enable_nested(loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Opt in to blocking calls on the loop's own thread (a notebook cell that calls
    `send_sync`): applies `nest_asyncio2` to `loop` (default: the running loop).

    This changes asyncio for the whole process (pure-Python Task and Future classes,
    re-entrant `run_until_complete`); prefer `await` when you can."""
    global _nested
    import nest_asyncio2

    if loop is None:
        loop = running_loop()
    nest_asyncio2.apply(loop)
    _nested = True


def nested_enabled(loop: asyncio.AbstractEventLoop | None = None) -> bool:
    """True once `enable_nested()` was called (and `loop`, if given, is patched)."""
    if not _nested:
        return False
    # nest_asyncio2 marks the loops it patched with this attribute: its only public trace.
    return loop is None or bool(getattr(loop, "_nest_patched", False))


# -- the shared background loop -------------------------------------------------------------

_bg_lock = threading.Lock()
_bg_loop: asyncio.AbstractEventLoop | None = None
_bg_thread: threading.Thread | None = None


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
    except Exception:  # a loop that does not answer in time is stopped all the same
        pass
    loop.call_soon_threadsafe(loop.stop)
    if thread is not None:
        thread.join(timeout)
    if not loop.is_running():
        loop.close()


# -- blocking calls ---------------------------------------------------------------------------


def _loop_of(target: object) -> asyncio.AbstractEventLoop:
    if isinstance(target, asyncio.AbstractEventLoop):
        return target
    loop = getattr(target, "loop", None)
    if isinstance(loop, asyncio.AbstractEventLoop):
        return loop
    raise TypeError(f"expected an event loop or a session (something with .loop), got {type(target).__name__}")


def _too_slow(name: str, timeout: float) -> TimeoutError:
    return TimeoutError(f"{name} did not finish within {timeout:g} s")


async def _bounded(coro: Coroutine[Any, Any, T], timeout: float | None, name: str) -> T:
    """`await coro`, cancelled after `timeout` seconds. Only that time-out becomes the
    "did not finish within" error: a `TimeoutError` the coroutine raises itself (a
    connection's `open_timeout`, a ping's) propagates unchanged."""
    if timeout is None:
        return await coro
    deadline = asyncio.timeout(timeout)
    try:
        async with deadline:
            return await coro
    except TimeoutError:
        if deadline.expired():
            raise _too_slow(name, timeout) from None
        raise


def run_sync(
    target: asyncio.AbstractEventLoop | LoopOwner,
    coro: Coroutine[Any, Any, T],
    timeout: float | None = None,
    *,
    what: str = "",
) -> T:
    """Run `coro` on `target`'s loop (`target`: a session or a loop) and return its
    result, blocking this thread. Raises what the coroutine raises (its own
    `TimeoutError` included, unchanged), `TimeoutError` "... did not finish within"
    after `timeout` seconds (the coroutine is cancelled), and `SyncOnLoopError` on the
    loop's own thread without `enable_nested()`. `what` names the call in messages."""
    name = what or getattr(coro, "__qualname__", "this call")
    try:
        loop = _loop_of(target)
    except TypeError:
        coro.close()
        raise
    running = running_loop()
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
        return loop.run_until_complete(_bounded(coro, timeout, name))
    if not loop.is_running():
        if running is not None:
            coro.close()
            raise RuntimeError(
                f"{name}: the session's event loop is not running, and this thread runs another loop; "
                "run the session's loop (or use `await` on it)"
            )
        return loop.run_until_complete(_bounded(coro, timeout, name))
    future = asyncio.run_coroutine_threadsafe(coro, loop)
    # Wait without `future.result(timeout)`: since Python 3.11 its time-out is the same
    # class as a TimeoutError the coroutine raises, so the two could not be told apart.
    try:
        concurrent.futures.wait((future,), timeout)
    except BaseException:  # Ctrl-C while waiting: do not leave the coroutine running there
        future.cancel()
        raise
    if timeout is not None and not future.done() and future.cancel():
        raise _too_slow(name, timeout)
    # Done, possibly just now (then `cancel()` failed and the result still counts).
    try:
        return future.result()
    except concurrent.futures.CancelledError:
        raise asyncio.CancelledError(f"{name} was cancelled on the session's loop") from None


def as_transport(transport: asyncio.BaseTransport) -> asyncio.Transport:
    """`transport` typed as the read-write `asyncio.Transport` it is. Not checked with
    `isinstance`: other event loops' transports (uvloop's) have the same methods without
    deriving from asyncio's classes."""
    return cast("asyncio.Transport", transport)
