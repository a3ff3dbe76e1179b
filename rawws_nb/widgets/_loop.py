"""Handing work to a session's event loop, from whatever thread a callback runs on.

JupyterLab may deliver widget messages on a kernel subshell thread that runs its own
event loop (ipykernel 7.0-7.3 always, 7.4 sometimes; see DESIGN.md, "Event loops and
threads"). A session lives on the loop that opened it, so every callback goes through
`submit`: `loop.create_task` when already on that loop, else
`asyncio.run_coroutine_threadsafe`. `asyncio.ensure_future` in a callback would schedule
on the subshell's loop: wrong.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["Handle", "cancel", "call_soon", "running_loop", "submit"]

Handle = asyncio.Task[Any] | concurrent.futures.Future[Any]


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop running in this thread, or None."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


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


def call_soon(loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], *args: Any) -> None:
    """Call `fn(*args)` on `loop`'s thread: now when already there, else soon."""
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
