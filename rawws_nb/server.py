"""The embedded test server: a raw WebSocket server on the same frame layer.

`server = await serve()` runs in the current event loop (a notebook's, a test's) and
binds 127.0.0.1 unless told otherwise. Paths:

| path | behaviour |
|---|---|
| `/echo` | echoes each data frame as it came (type, fin), answers Ping with Pong (same payload) and Close with Close |
| `/sink` | reads everything, answers nothing until the client's Close (for heartbeat time-outs) |
| `/ping?n=3&interval=0.2&timeout=1` | sends pings, reports each (as a Text frame) as answered or not |
| `/fragments` | sends fragmented text and binary messages (a Ping between fragments), then `done` |
| `/close?code=1000&reason=bye` | closes at once with that code and reason |
| `/flood?n=1000&size=16&type=text` | sends n frames as fast as the client reads, then `flood done`, then echoes |
| `/bad/<kind>` | one protocol violation (kinds: `BAD_KINDS`, and `drop`: TCP closed mid-frame) |
| `/status/<code>` | refuses the upgrade with that HTTP status (`/status/302` redirects to /echo) |
| `/proto/<name>` | speaks `protocols.<name>` (codec messages, with version negotiation) |

Every path accepts a client's permessage-deflate offer (`?deflate=no` declines it,
`?deflate=no_context_takeover,server_max_window_bits:10` picks the server's parameters).

Everything the server does is on purpose: it is raw too (no automatic pongs except
where a path says so).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import protocols

from .deflate import Deflate, PerMessageDeflate
from .errors import HandshakeError, InvalidSend, SessionClosed
from .frames import Binary, Close, CloseReason, Ping, Pong, Text
from .handshake import ServerHandshake, ServerRequest, format_host
from .loops import as_transport
from .session import DEFAULT_MAX_QUEUE, RawSession, SessionState
from .wire import encode_frame

__all__ = ["EmbeddedServer", "serve"]

log = logging.getLogger("rawws_nb.server")

ServerHandler = Callable[[RawSession, ServerRequest], Awaitable[None]]

MAX_SERVER_MESSAGE = 64 << 20
DEFAULT_COMPRESSION = Deflate()  # the embedded server accepts permessage-deflate when offered


# -- path handlers ---------------------------------------------------------------------


async def echo(session: RawSession, request: ServerRequest) -> None:
    """Echo data frames one by one keeping type, fin and compression; Pong each Ping;
    Close on Close."""
    receive = session.incoming.receive
    send = session.send_nowait
    while True:
        try:
            frame = await receive()
        except SessionClosed:
            return
        cls = type(frame)
        if cls is Text or cls is Binary:
            send(frame, frame.compressed)  # compressed when it came compressed
            if session.writing_paused:
                await session.drain()
        elif cls is Ping:
            send(Pong(frame.data))
        elif cls is Close:
            await session.close()
            return


async def sink(session: RawSession, request: ServerRequest) -> None:
    """Read everything, answer nothing, until the client's Close."""
    async for frame in session.incoming:
        if isinstance(frame, Close):
            await session.close()
            return


async def ping(session: RawSession, request: ServerRequest) -> None:
    """Send `n` pings `interval` seconds apart; report each as a Text frame."""
    q = request.query
    n = int(q.get("n", 3))
    interval = float(q.get("interval", 0.2))
    timeout = float(q.get("timeout", 1.0))
    pending: dict[bytes, asyncio.Future[None]] = {}
    loop = asyncio.get_running_loop()

    async def reader() -> None:
        async for frame in session.incoming:
            if isinstance(frame, Pong) and frame.data in pending and not pending[frame.data].done():
                pending[frame.data].set_result(None)
            elif isinstance(frame, Ping):
                await session.send(Pong(frame.data))
            elif isinstance(frame, Close):
                await session.close()
                return

    task = session.launch(reader())
    for i in range(1, n + 1):
        payload = b"server-ping-%d" % i
        pending[payload] = loop.create_future()
        start = loop.time()
        try:
            await session.send(Ping(payload))
            await asyncio.wait_for(asyncio.shield(pending[payload]), timeout)
            await session.send(Text(f"pong {payload.decode()} received after {(loop.time() - start) * 1000:.1f} ms"))
        except TimeoutError:
            await session.send(Text(f"no pong for {payload.decode()} within {timeout:g} s"))
        except SessionClosed:
            return
        await asyncio.sleep(interval)
    try:
        await session.send(Text("ping done"))
    except SessionClosed:
        return
    await task


async def fragments(session: RawSession, request: ServerRequest) -> None:
    """Send fragmented messages: text in three parts with a Ping in the middle, binary in two."""
    await session.send(Text("Part 1 ", fin=False))
    await session.send(Text("Part 2 ", fin=False))
    await session.send(Ping(b"between-fragments"))
    await session.send(Text("Part 3", fin=True))
    await session.send(Binary(b"\x01\x02\x03", fin=False))
    await session.send(Binary(b"\x04\x05", fin=True))
    # A text message split inside a multi-byte character (valid as a whole).
    snowman = "☃".encode()
    await session.send(Text(b"snow" + snowman[:1], fin=False))
    await session.send(Text(snowman[1:] + b"man", fin=True))
    await session.send(Text("done"))
    await echo(session, request)


async def close(session: RawSession, request: ServerRequest) -> None:
    """Close at once with `code` and `reason` from the query, then wait for the reply."""
    q = request.query
    code = int(q.get("code", 1000))
    reason = q.get("reason", "")
    try:
        session.send_nowait(Close(CloseReason(code, reason)))
    except InvalidSend:  # an invalid code on purpose: send it anyway
        await session.send_raw(encode_frame(8, CloseReason(code, reason).encode(), mask=False))
    await session.close()


async def flood(session: RawSession, request: ServerRequest) -> None:
    """Send `n` frames of `size` bytes as fast as the connection takes them."""
    q = request.query
    n = int(q.get("n", 1000))
    size = int(q.get("size", 16))
    kind = q.get("type", "text")
    body = (b"x" * size) if kind == "text" else bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    cls = Text if kind == "text" else Binary
    frame = cls(body)
    send = session.send_nowait
    for _ in range(n):
        try:
            send(frame)
        except SessionClosed:
            return
        if session.writing_paused:
            try:
                await session.drain()
            except SessionClosed:
                return
    await session.send(Text("flood done"))
    await echo(session, request)


BAD_KINDS: dict[str, bytes] = {
    "masked": encode_frame(1, b"masked by the server", mask=b"\x01\x02\x03\x04"),
    "opcode": encode_frame(3, b"reserved opcode", mask=False),
    "rsv": encode_frame(1, b"rsv1 without extension", rsv=4, mask=False),
    "utf8": encode_frame(1, b"bad \xff\xfe utf-8", mask=False),
    "control": encode_frame(9, b"p" * 126, mask=False),
    "ping-fragmented": encode_frame(9, b"fragmented ping", fin=False, mask=False),
    "closecode": encode_frame(8, (999).to_bytes(2, "big") + b"bad code", mask=False),
    "close-utf8": encode_frame(8, (1000).to_bytes(2, "big") + b"\xff", mask=False),
    "continuation": encode_frame(0, b"continuation without a message", mask=False),
}


async def bad(session: RawSession, request: ServerRequest) -> None:
    """Send a hello, then one protocol violation, then wait for the client to react."""
    kind = request.path.rsplit("/", 1)[-1]
    await session.send(Text(f"about to send: {kind}"))
    if kind == "drop":
        # A frame header announcing 100 bytes, 10 of them, then the TCP connection ends.
        await session.send_raw(encode_frame(2, bytes(100), mask=False)[:12])
        session.drop_connection()  # the partial frame goes out, then the connection is cut
        return
    await session.send_raw(BAD_KINDS[kind])
    try:
        async with asyncio.timeout(5):
            async for frame in session.incoming:
                if isinstance(frame, Close):
                    break
    except (SessionClosed, TimeoutError):
        pass
    session.drop_connection()


async def proto(session: RawSession, request: ServerRequest) -> None:
    """Serve one of the ready-made protocols in `protocols/`."""
    name = request.path.rsplit("/", 1)[-1]
    module = importlib.import_module(f"protocols.{name}")
    await module.serve(session)


ROUTES: dict[str, ServerHandler] = {
    "/echo": echo,
    "/": echo,
    "/sink": sink,
    "/ping": ping,
    "/fragments": fragments,
    "/close": close,
    "/flood": flood,
}


def _route(path: str) -> ServerHandler | None:
    if path in ROUTES:
        return ROUTES[path]
    if path.startswith("/bad/") and (path[5:] in BAD_KINDS or path[5:] == "drop"):
        return bad
    if path.startswith("/proto/") and path[7:] in protocols.NAMES:
        return proto
    return None


# -- the server ------------------------------------------------------------------------

Start = Callable[[ServerHandler, RawSession, ServerRequest], None]


class _ServerProtocol(asyncio.Protocol):
    """One connection until its handshake is done: then its session takes the transport."""

    def __init__(
        self,
        url: str,
        record: bool,
        handler_for: Callable[[str], ServerHandler | None],
        start: Start,
        compression: Deflate | None,
    ) -> None:
        self.url = url
        self.record = record
        self.compression = compression
        self.handler_for = handler_for
        self.start = start
        self.handshake = ServerHandshake()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = as_transport(transport)

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        try:
            req = self.handshake.receive(data)
        except HandshakeError as exc:
            self._refuse(400, exc.reason)
            return
        if req is None:
            return
        if req.path.startswith("/status/"):
            try:
                status = int(req.path[8:])
            except ValueError:
                status = 400
            headers = [("Location", "/echo")] if 300 <= status < 400 else []
            self._refuse(status, f"refused with {status} on request", headers)
            return
        problem = self.handshake.problem()
        if problem is not None:
            self._refuse(400, problem)
            return
        handler = self.handler_for(req.path)
        if handler is None:
            self._refuse(404, f"no such path: {req.path}")
            return
        session = RawSession(
            client=False,
            url=f"{self.url}{req.target}",
            max_message_size=MAX_SERVER_MESSAGE,
            max_queue=DEFAULT_MAX_QUEUE,
            close_timeout=5.0,
            record=self.record,
        )
        try:
            policy = deflate_policy(req.query.get("deflate"), self.compression)
        except ValueError as exc:
            self._refuse(400, str(exc))
            return
        agreed = self.handshake.negotiate_deflate(policy)
        subprotocol = req.subprotocols[0] if req.subprotocols else None
        self.transport.write(self.handshake.accept(subprotocol, agreed[1] if agreed else None))
        session.subprotocol = subprotocol
        session.request_headers = req.headers
        self.start(handler, session, req)
        deflate = None
        if agreed is not None and policy is not None:
            deflate = PerMessageDeflate(agreed[0], client=False, level=policy.level, mem_level=policy.mem_level)
        session.attach(
            self.transport, self.handshake.trailing, extensions=[agreed[1]] if agreed else [], deflate=deflate
        )

    def _refuse(self, status: int, reason: str, headers: list[tuple[str, str]] | None = None) -> None:
        assert self.transport is not None
        self.transport.write(self.handshake.reject(status, reason + "\n", headers))
        self.transport.close()

    def connection_lost(self, exc: BaseException | None) -> None:
        pass


class EmbeddedServer:
    """A running embedded server (see the module docstring for its paths)."""

    def __init__(
        self,
        host: str,
        port: int,
        tls: ssl.SSLContext | None,
        record: bool,
        handlers: dict[str, ServerHandler] | None,
        compression: Deflate | None = None,
    ) -> None:
        self.compression = compression  # what it accepts of a permessage-deflate offer (None: declines)
        self.host = host
        self.port = port
        self.tls = tls
        self.record = record
        self.handlers: dict[str, ServerHandler] = dict(handlers or {})
        self._server: asyncio.Server | None = None
        self._sessions: set[RawSession] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        scheme = "wss" if self.tls is not None else "ws"
        return f"{scheme}://{format_host(self.host)}:{self.port}"

    @property
    def sessions(self) -> list[RawSession]:
        """The server-side sessions whose handlers are still running."""
        return list(self._sessions)

    def _handler_for(self, path: str) -> ServerHandler | None:
        return self.handlers.get(path) or _route(path)

    def _new_connection(self) -> _ServerProtocol:
        return _ServerProtocol(self.url, self.record, self._handler_for, self._start_session, self.compression)

    def _start_session(self, handler: ServerHandler, session: RawSession, request: ServerRequest) -> None:
        self._sessions.add(session)
        task = asyncio.get_running_loop().create_task(self._run(handler, session, request))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def start(self) -> None:
        """Start listening (what `await serve(...)` does)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._new_connection, self.host, self.port, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _run(self, handler: ServerHandler, session: RawSession, request: ServerRequest) -> None:
        try:
            await handler(session, request)
        except (SessionClosed, asyncio.CancelledError):
            pass
        except Exception:
            # A handler's bug: logged, and its client sees 1011, not a hang.
            log.exception("handler for %s failed", request.path)
            await session.close(CloseReason(CloseReason.Codes.INTERNAL_ERROR, "server handler failed"))
        finally:
            self._sessions.discard(session)
            if session.state is not SessionState.CLOSED:
                session.drop_connection()  # a handler that returns ends its connection

    async def close(self) -> None:
        """Stop listening, end every connection and handler."""
        if self._server is not None:
            self._server.close()
        for session in list(self._sessions):
            session.drop_connection(abort=True)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def serve_forever(self) -> None:
        assert self._server is not None
        await self._server.serve_forever()

    async def __aenter__(self) -> EmbeddedServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<EmbeddedServer {self.url} sessions={len(self._sessions)}>"


class _Serve:
    """What `serve()` returns: await it for the server, or use it as `async with`."""

    def __init__(self, server: EmbeddedServer) -> None:
        self._server = server

    def __await__(self) -> Any:
        return self._start().__await__()

    async def _start(self) -> EmbeddedServer:
        await self._server.start()
        return self._server

    async def __aenter__(self) -> EmbeddedServer:
        return await self._start()

    async def __aexit__(self, *exc: Any) -> None:
        await self._server.close()


def serve(
    host: str = "127.0.0.1",
    port: int = 0,
    tls: ssl.SSLContext | None = None,
    *,
    record: bool = False,
    handlers: dict[str, ServerHandler] | None = None,
    compression: Deflate | None = DEFAULT_COMPRESSION,
) -> _Serve:
    """Start the embedded server in the running loop (`port=0`: pick a free port):
    `server = await serve()` or `async with serve() as server:`.

    `handlers` adds or overrides paths: `async def handler(session, request)`.
    Server sessions do not record unless `record=True`. `compression`: what the server
    accepts of a client's permessage-deflate offer (default: any offer; None declines
    every offer); per connection, `?deflate=` in the URL changes it (see `deflate_policy`).
    """
    return _Serve(EmbeddedServer(host, port, tls, record, handlers, compression))


def deflate_policy(query: str | None, default: Deflate | None) -> Deflate | None:
    """The server's permessage-deflate policy for one connection, from its `?deflate=`
    query value: `no` declines; else a comma list of `server_no_context_takeover`,
    `client_no_context_takeover`, `no_context_takeover` (both), `server_max_window_bits:N`,
    `client_max_window_bits:N`. Absent: `default`. `ValueError` for anything else."""
    if query is None:
        return default
    if query in ("no", "off", "none"):
        return None
    options: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in query.split(","))):
        name, _, value = item.partition(":")
        if name == "no_context_takeover" and not value:
            options.update(server_no_context_takeover=True, client_no_context_takeover=True)
        elif name in ("server_no_context_takeover", "client_no_context_takeover") and not value:
            options[name] = True
        elif name in ("server_max_window_bits", "client_max_window_bits") and value.isdigit():
            options[name] = int(value)
        else:
            raise ValueError(f"?deflate=: unknown option {item!r}")
    try:
        return Deflate(**options)
    except ValueError as exc:
        raise ValueError(f"?deflate=: {exc}") from None
