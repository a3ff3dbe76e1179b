"""The four entry points, after Ktor's CIO raw API: `web_socket_raw_session`,
`web_socket_raw`, `ws_raw`, `wss_raw`.

Each takes a URL or `host`/`port`/`path`, `method="GET"`, and `request`, a callable
that receives the `RequestBuilder` (headers, subprotocols, url) before it is sent.
TLS verification is on by default for wss (pass `tls=ssl_context` to trust another
CA); redirects are reported as `HandshakeError`, never followed.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Generator
from typing import Any

from .deflate import EXTENSION_NAME, Deflate, PerMessageDeflate
from .errors import HandshakeError, ProxyError
from .frames import CloseReason
from .handshake import Accepted, ClientHandshake, RequestBuilder, Target, parse_url
from .handshake_info import HandshakeInfo, parse_head
from .loops import as_transport
from .proxy import open_transport, select_proxy
from .session import DEFAULT_CLOSE_TIMEOUT, DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_MAX_QUEUE, RawSession
from .timeline.recorder import DEFAULT_CAPACITY, DEFAULT_PAYLOAD_CAP

__all__ = ["web_socket_raw", "web_socket_raw_session", "ws_raw", "wss_raw"]

DEFAULT_OPEN_TIMEOUT = 10.0
MAX_HEAD_KEPT = 16 * 1024  # bytes of the response head kept for `session.handshake`
_STEP_DOING = {
    "dns": "resolving the host name",
    "connect": "connecting (TCP)",
    "proxy": "waiting for the proxy",
    "tls": "the TLS handshake",
    "upgrade": "waiting for the upgrade response",
}


class _HandshakeProtocol(asyncio.Protocol):
    """Runs the client handshake, then hands the transport to the session. It keeps the
    request and the response head as they went over the wire for `session.handshake`."""

    def __init__(
        self,
        session: RawSession,
        handshake: ClientHandshake,
        info: HandshakeInfo,
        compression: Deflate | None,
        passthrough: bool = False,
    ) -> None:
        self.passthrough = passthrough  # permessage-deflate negotiated is not applied (a relay's passthrough)
        self.session = session
        self.handshake = handshake
        self.info = info
        self.compression = compression  # this side's compressor settings (level, mem_level)
        self.done: asyncio.Future[Accepted] = session.loop.create_future()
        self.transport: asyncio.Transport | None = None
        self.raw = bytearray()
        self.sent_at = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = as_transport(transport)
        request = self.handshake.request_bytes()
        head = parse_head(request)
        if head is not None:
            self.info.request_line, self.info.request_headers = head
        self.info.step = "upgrade"
        self.sent_at = time.perf_counter()
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        if self.done.done():
            return
        assert self.transport is not None
        if self.info.status_line is None and len(self.raw) < MAX_HEAD_KEPT:
            self.raw += data
            self._record_head()
        try:
            accepted = self.handshake.receive(data)
        except HandshakeError as exc:
            self._finish()
            self.done.set_exception(exc)
            self.transport.close()
            return
        if accepted is None:
            return
        self._finish()
        session = self.session
        session.subprotocol = accepted.subprotocol
        session.response_headers = accepted.headers
        deflate = None
        passthrough = self.passthrough and accepted.deflate is not None
        if accepted.deflate is not None and not passthrough:
            settings = self.compression or Deflate()
            deflate = PerMessageDeflate(
                accepted.deflate, client=True, level=settings.level, mem_level=settings.mem_level
            )
        session.attach(
            self.transport, accepted.trailing, extensions=accepted.extensions, deflate=deflate, passthrough=passthrough
        )
        self.done.set_result(accepted)

    def _record_head(self) -> None:
        head = parse_head(bytes(self.raw))
        if head is not None:
            self.info.status_line, self.info.response_headers = head
            self.raw.clear()

    def _finish(self) -> None:
        if self.info.timings.upgrade is None:
            self.info.timings.upgrade = time.perf_counter() - self.sent_at

    def eof_received(self) -> bool | None:
        self._handshake_ended()
        return None

    def connection_lost(self, exc: BaseException | None) -> None:
        self._handshake_ended()

    def _handshake_ended(self) -> None:
        if not self.done.done():
            if self.sent_at:
                self._finish()
            try:
                self.handshake.eof()
            except HandshakeError as exc:
                self.done.set_exception(exc)


def _compression(value: str | Deflate | bool | None) -> Deflate | None:
    """What `compression=` means: None/False nothing offered (the default: raw), "deflate"
    or True permessage-deflate with `client_max_window_bits`, a `Deflate` exactly that."""
    if value is None or value is False:
        return None
    if value is True or value == "deflate" or value == EXTENSION_NAME:
        return Deflate()
    if isinstance(value, Deflate):
        return value
    raise ValueError(f'compression= takes "deflate", a rawws_nb.Deflate(...) or None, not {value!r}')


def _resolve(
    url: str | None, method: str, host: str | None, port: int | None, path: str | None, secure: bool | None
) -> Target:
    if url is not None:
        target = parse_url(url)
        if secure and not target.secure:
            target = Target("wss", target.host, port or (443 if target.port == 80 else target.port), target.resource)
        if host is not None or port is not None or path is not None:
            target = Target(
                target.scheme,
                host or target.host,
                port or target.port,
                path if path is not None else target.resource,
            )
        return target
    scheme = "wss" if secure else "ws"
    resource = path or "/"
    if not resource.startswith("/"):
        resource = "/" + resource
    return Target(scheme, host or "localhost", port or (443 if secure else 80), resource)


async def _open(
    url: str | None = None,
    *,
    method: str = "GET",
    host: str | None = None,
    port: int | None = None,
    path: str | None = None,
    request: Callable[[RequestBuilder], Any] | None = None,
    tls: ssl.SSLContext | bool | None = None,
    compression: str | Deflate | bool | None = None,
    secure: bool | None = None,
    subprotocols: list[str] | None = None,
    headers: dict[str, str] | None = None,
    open_timeout: float | None = DEFAULT_OPEN_TIMEOUT,
    close_timeout: float | None = DEFAULT_CLOSE_TIMEOUT,
    max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE,
    max_frame_size: int | None = None,
    max_queue: int = DEFAULT_MAX_QUEUE,
    record: bool = True,
    timeline_capacity: int = DEFAULT_CAPACITY,
    payload_cap: int = DEFAULT_PAYLOAD_CAP,
    protocol: Any = None,
    proxy: str | bool | None = True,
    proxy_tls: ssl.SSLContext | None = None,
    keylog: str | os.PathLike[str] | None = None,
    auto_pong: bool = False,
    ping_interval: float | None = None,
    sock: socket.socket | None = None,
    deflate_passthrough: bool = False,
) -> RawSession:
    if secure is None and tls not in (None, False):
        secure = True
    target = _resolve(url, method, host, port, path, secure)
    offer = _compression(compression)
    builder = RequestBuilder(
        method=method,
        url=target.url,
        headers=dict(headers or {}),
        subprotocols=list(subprotocols or []),
        extensions=[offer.offer()] if offer is not None else [],
    )
    if request is not None:
        result = request(builder)
        if asyncio.iscoroutine(result):
            await result
    if builder.url != target.url:
        target = parse_url(builder.url) if builder.url.startswith(("ws", "http")) else target
    ssl_ctx: ssl.SSLContext | None = None
    if target.secure:
        ssl_ctx = tls if isinstance(tls, ssl.SSLContext) else ssl.create_default_context()
        if keylog is not None:
            # NSS key log format (SSLKEYLOGFILE): Wireshark decrypts a capture of this
            # session with it. Set on the context, so it applies to its other users too.
            ssl_ctx.keylog_filename = os.fspath(keylog)
    elif keylog is not None:
        raise ValueError(f"keylog= applies to wss:// sessions; {target.url} is not one")
    session = RawSession(
        client=True,
        url=target.url,
        max_message_size=max_message_size,
        max_frame_size=max_frame_size,
        max_queue=max_queue,
        close_timeout=close_timeout,
        record=record,
        timeline_capacity=timeline_capacity,
        payload_cap=payload_cap,
        protocol=protocol,
        auto_pong=auto_pong,
        ping_interval=ping_interval,
    )
    handshake = ClientHandshake(builder, target)
    chosen = select_proxy(proxy, target.host, target.port, target.secure) if sock is None else None
    info = HandshakeInfo(url=target.url, proxy=chosen.url if chosen is not None else None)
    proto = _HandshakeProtocol(session, handshake, info, offer, deflate_passthrough)
    try:
        async with asyncio.timeout(open_timeout):
            await open_transport(
                proto, target.host, target.port, tls=ssl_ctx, proxy=chosen, proxy_tls=proxy_tls, info=info, sock=sock
            )
            await proto.done
    except TimeoutError:
        if proto.transport is not None:
            proto.transport.abort()
        where = f" through the proxy {info.proxy}" if info.proxy else ""
        raise TimeoutError(
            f"opening {target.url}{where} took longer than open_timeout={open_timeout}s: "
            f"stopped in the {info.step} step ({_STEP_DOING.get(info.step, info.step)})"
        ) from None
    except ssl.SSLCertVerificationError as exc:
        if proto.transport is not None:
            proto.transport.abort()
        hint = (
            "; pass tls=ssl_context that trusts the server's CA (verification stays on)"
            if exc.verify_code in (18, 19, 20, 21)
            else ""
        )
        where = f" (inside the tunnel of the proxy {info.proxy})" if info.proxy else ""
        raise ssl.SSLCertVerificationError(
            exc.errno, f"TLS certificate of {target.host}:{target.port}{where} rejected: {exc.verify_message}{hint}"
        ) from exc
    except (HandshakeError, ProxyError) as exc:
        if proto.transport is not None:
            proto.transport.abort()
        # The record up to the failure, on the exception instance (DESIGN: "HandshakeError
        # carrying the status, headers and the start of the body"; now also the exchange).
        vars(exc)["handshake"] = info
        raise
    except BaseException:
        if proto.transport is not None:
            proto.transport.abort()
        raise
    info.step = "open"
    session.request_headers = list(builder.headers.items())
    # A public attribute of the session (RawSession will declare it; set here, where the
    # handshake is observed).
    session.handshake = info
    return session


async def web_socket_raw_session(url: str | None = None, **options: Any) -> RawSession:
    """Open a raw session and return it (you close it).

    Options: `method`, `host`, `port`, `path`, `request`, `tls`, `compression` (None:
    nothing offered; "deflate" or `rawws_nb.Deflate(...)`: offer permessage-deflate), `subprotocols`,
    `headers`, `open_timeout`, `close_timeout`, `max_message_size`, `max_frame_size`,
    `max_queue`, `record`, `timeline_capacity`, `payload_cap`, `protocol`, `proxy`
    (True: from the environment, loopback direct; a proxy URL; None: direct),
    `proxy_tls` (the context that verifies an https:// proxy), `sock` (a socket already
    connected to the server: used instead of opening one; the proxy is then not used),
    `deflate_passthrough` (a relay's: permessage-deflate, when the response agrees to it,
    is not applied: received payloads stay compressed, sends go out as given).
    `session.handshake` then shows the exchange and its timings (`HandshakeInfo`).
    """
    return await _open(url, **options)


Handler = Callable[[RawSession], Awaitable[Any]]


class _Connect:
    """Awaitable (returns the session, or the result of `block`) and async context manager."""

    def __init__(self, url: str | None, block: Handler | None, options: dict[str, Any]) -> None:
        self._url = url
        self._block = block
        self._options = options
        self._session: RawSession | None = None

    def __await__(self) -> Generator[Any, None, Any]:
        return self._run().__await__()

    async def _run(self) -> Any:
        session = await _open(self._url, **self._options)
        if self._block is None:
            return session
        try:
            result = await self._block(session)
        except BaseException:
            await _close_after_error(session)
            raise
        await session.close()
        return result

    async def __aenter__(self) -> RawSession:
        if self._block is not None:
            raise TypeError("use either block= (and await) or `async with`, not both")
        self._session = await _open(self._url, **self._options)
        return self._session

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        assert self._session is not None
        if exc_type is None:
            await self._session.close()
        else:
            await _close_after_error(self._session)


async def _close_after_error(session: RawSession) -> None:
    # Shielded: the block may have been cancelled; the session still closes properly.
    await asyncio.shield(session.close(CloseReason(CloseReason.Codes.INTERNAL_ERROR)))


def web_socket_raw(url: str | None = None, *, block: Handler | None = None, **options: Any) -> _Connect:
    """Open a raw session: `await web_socket_raw(..., block=handler)` runs `handler(session)`
    and closes the session after it; `async with web_socket_raw(...) as session:` closes
    on exit; `await web_socket_raw(...)` without `block` returns the open session."""
    return _Connect(url, block, options)


def ws_raw(url: str | None = None, *, block: Handler | None = None, **options: Any) -> _Connect:
    """Short alias of `web_socket_raw`."""
    return _Connect(url, block, options)


def wss_raw(url: str | None = None, *, block: Handler | None = None, **options: Any) -> _Connect:
    """`web_socket_raw` over TLS, always (default port 443; verification on unless `tls`
    is a context that says otherwise)."""
    options["secure"] = True
    return _Connect(url, block, options)
