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

The loop machinery (`run_sync`, `SyncOnLoopError`, `enable_nested`, `nested_enabled`,
`background_loop`, `stop_background_loop`) lives in `rawws_nb.loops`, which knows no
session, client or server; it is re-exported here. This module adds the calls that open
sessions and servers, and the blocking forms of a session's methods.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from .frames import CloseReason, Frame
from .loops import (
    SyncOnLoopError,
    background_loop,
    enable_nested,
    nested_enabled,
    run_sync,
    running_loop,
    stop_background_loop,
)

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


def _home_loop(loop: asyncio.AbstractEventLoop | None) -> asyncio.AbstractEventLoop:
    if loop is not None:
        return loop
    running = running_loop()
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
        server: EmbeddedServer = await serve(host, port, tls, **options)  # `_Serve.__await__` is typed Any
        return server

    return run_sync(_home_loop(loop), start(), timeout, what="serve_sync()")
