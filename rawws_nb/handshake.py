"""The HTTP/1.1 opening handshake, sans-IO, on h11 and wsproto's key helpers.

`ClientHandshake` builds the upgrade request (any method, any headers: a raw tool may
send odd requests on purpose) and checks the response as RFC 6455 4.1 says: status
101, `Upgrade: websocket`, `Connection: upgrade`, the `Sec-WebSocket-Accept` token, and
no subprotocol or extension the client did not offer. Anything else is a
`HandshakeError` naming what was wrong. Redirects are reported, never followed.
`ServerHandshake` is the embedded server's side. Extensions: only permessage-deflate
(`rawws_nb.deflate`), and only when offered; a server enabling anything else fails.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import h11
from wsproto.utilities import generate_accept_token, generate_nonce, split_comma_header

from .deflate import (
    EXTENSION_NAME,
    Deflate,
    DeflateParams,
    NegotiationFailed,
    accept_offer,
    check_response,
    parse_extensions,
)
from .errors import HandshakeError

__all__ = [
    "Accepted",
    "ClientHandshake",
    "RequestBuilder",
    "ServerHandshake",
    "ServerRequest",
    "Target",
    "format_host",
    "parse_url",
]

MAX_RESPONSE_HEAD = 16 * 1024  # bytes of status line + headers accepted from a server
MAX_BODY_KEPT = 4096  # bytes of a rejection body kept in HandshakeError.body
MAX_BODY_READ = 64 * 1024  # bytes of a rejection body read before giving up on it


@dataclass
class RequestBuilder:
    """What the `request=` callable of the connect functions receives and may change.

    `headers` is an ordered dict (set a header to override a default one, e.g.
    `Origin` or even `Sec-WebSocket-Version`), `subprotocols` the offered subprotocols,
    `url` the full URL (change it to change the path or query).
    """

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    subprotocols: list[str] = field(default_factory=list)
    extensions: list[str] = field(default_factory=list)

    def header(self, name: str, value: str) -> None:
        """Set one header (same as `headers[name] = value`)."""
        self.headers[name] = value


def format_host(host: str) -> str:
    """`host` as it goes in a URL or a Host header: IPv6 addresses in brackets."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    resource: str  # path + query

    @property
    def secure(self) -> bool:
        return self.scheme == "wss"

    @property
    def netloc(self) -> str:
        """host[:port] as in the URL and the Host header (the port only when not the default)."""
        host = format_host(self.host)
        return host if self.port == (443 if self.secure else 80) else f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.netloc}{self.resource}"


def parse_url(url: str) -> Target:
    """Split a ws:// or wss:// URL (http/https accepted as aliases)."""
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss"):
        raise ValueError(f"not a WebSocket URL (ws:// or wss://): {url!r}")
    if not parts.hostname:
        raise ValueError(f"URL has no host: {url!r}")
    port = parts.port or (443 if scheme == "wss" else 80)
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(scheme, parts.hostname, port, resource)


@dataclass(frozen=True)
class Accepted:
    """What a 101 response agreed: subprotocol, extensions (the response's header
    values), and the permessage-deflate parameters when it was negotiated."""

    status: int
    headers: list[tuple[str, str]]
    subprotocol: str | None
    trailing: bytes
    extensions: list[str] = field(default_factory=list)
    deflate: DeflateParams | None = None


def _offer_from_params(params: list[tuple[str, str | None]]) -> Deflate:
    """The `Deflate` a permessage-deflate offer (as sent, e.g. typed by hand) means."""
    got = dict(params)

    def bits(value: str | None) -> int | None:
        return int(value) if value is not None and value.isdigit() and 8 <= int(value) <= 15 else None

    client: int | bool | None = None
    if "client_max_window_bits" in got:
        client = bits(got["client_max_window_bits"]) or True
    return Deflate(
        client_max_window_bits=client,
        server_max_window_bits=bits(got.get("server_max_window_bits")),
        client_no_context_takeover="client_no_context_takeover" in got,
        server_no_context_takeover="server_no_context_takeover" in got,
    )


class ClientHandshake:
    """Client side: `request_bytes()`, then `receive(data)` until it returns `Accepted`.

    `receive` returns None while more bytes are needed and raises `HandshakeError`
    when the server refused or answered something that is not a valid upgrade.
    """

    def __init__(self, builder: RequestBuilder, target: Target) -> None:
        self.builder = builder
        self.target = target
        self._conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_RESPONSE_HEAD)
        self._key: bytes = b""
        self._rejected: h11.Response | h11.InformationalResponse | None = None
        self._body: list[bytes] = []
        self._body_len = 0

    def request_bytes(self) -> bytes:
        b = self.builder
        headers: dict[str, str] = {
            "Host": self.target.netloc,
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Key": generate_nonce().decode("ascii"),
            "Sec-WebSocket-Version": "13",
        }
        if b.subprotocols:
            headers["Sec-WebSocket-Protocol"] = ", ".join(b.subprotocols)
        if b.extensions:
            headers["Sec-WebSocket-Extensions"] = ", ".join(b.extensions)
        lower = {k.lower(): k for k in headers}
        for name, value in b.headers.items():
            existing = lower.get(name.lower())
            if existing is not None:
                del headers[existing]
            headers[name] = value
            lower[name.lower()] = name
        self._key = next(v for k, v in headers.items() if k.lower() == "sec-websocket-key").encode("ascii")
        request = h11.Request(method=b.method, target=self.target.resource, headers=list(headers.items()))
        return self._conn.send(request) or b""

    def receive(self, data: bytes) -> Accepted | None:
        self._conn.receive_data(data)
        while True:
            try:
                event = self._conn.next_event()
            except h11.RemoteProtocolError as exc:
                if self._rejected is not None:
                    raise self._rejection() from None
                raise HandshakeError(None, [], b"", f"invalid HTTP response: {exc}") from None
            if event is h11.NEED_DATA:
                if self._rejected is not None and self._body_len >= MAX_BODY_READ:
                    raise self._rejection()
                return None
            if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                if self._rejected is not None:
                    raise self._rejection()
                raise HandshakeError(None, [], b"", "connection closed during the handshake")
            if isinstance(event, h11.InformationalResponse):
                if event.status_code == 101:
                    return self._accept(event)
                continue  # 1xx other than 101: keep reading
            if isinstance(event, h11.Response):
                self._rejected = event
            elif isinstance(event, h11.Data):
                self._body.append(bytes(event.data))
                self._body_len += len(event.data)
            elif isinstance(event, h11.EndOfMessage):
                raise self._rejection()

    def eof(self) -> None:
        """The server closed the connection before the handshake finished."""
        if self._rejected is not None:
            raise self._rejection()
        raise HandshakeError(None, [], b"", "connection closed during the handshake")

    def _rejection(self) -> HandshakeError:
        ev = self._rejected
        assert ev is not None
        headers = _headers(ev.headers)
        status = ev.status_code
        body = b"".join(self._body)[:MAX_BODY_KEPT]
        if 300 <= status < 400:
            location = next((v for k, v in headers if k.lower() == "location"), None)
            reason = f"server redirected ({status}) to {location!r}; redirects are not followed"
        else:
            reason = f"server rejected the upgrade with HTTP {status} {ev.reason.decode('latin-1')}".rstrip()
        return HandshakeError(status, headers, body, reason)

    def _accept(self, event: h11.InformationalResponse) -> Accepted:
        headers = _headers(event.headers)

        def values(name: str) -> list[str]:
            return [v for k, v in headers if k.lower() == name]

        def fail(reason: str) -> HandshakeError:
            return HandshakeError(101, headers, b"", reason)

        connection = [t.lower() for v in values("connection") for t in split_comma_header(v.encode())]
        if "upgrade" not in connection:
            raise fail("missing 'Connection: Upgrade' in the 101 response")
        upgrade = values("upgrade")
        if [u.lower() for u in upgrade] != ["websocket"]:
            raise fail(f"missing 'Upgrade: websocket' in the 101 response (got {upgrade!r})")
        accept = values("sec-websocket-accept")
        expected = generate_accept_token(self._key).decode("ascii")
        if accept != [expected]:
            raise fail(f"wrong Sec-WebSocket-Accept: got {accept!r}, expected {expected!r}")
        protocols = [p for v in values("sec-websocket-protocol") for p in split_comma_header(v.encode())]
        subprotocol = None
        if protocols:
            if len(protocols) > 1 or protocols[0] not in self.builder.subprotocols:
                raise fail(f"server chose subprotocol {', '.join(protocols)!r}, offered {self.builder.subprotocols!r}")
            subprotocol = protocols[0]
        try:
            accepted = parse_extensions(values("sec-websocket-extensions"))
        except NegotiationFailed as exc:
            raise fail(str(exc)) from None
        deflate: DeflateParams | None = None
        offered = self.offered_extensions()
        for name, params in accepted:
            if name not in offered:
                raise fail(f"server enabled extension {name!r} that was not offered")
            if name != EXTENSION_NAME:
                raise fail(f"server enabled extension {name!r}; rawws_nb implements only {EXTENSION_NAME}")
            if deflate is not None:
                raise fail(f"server enabled {EXTENSION_NAME} twice")
            try:
                deflate = check_response(offered[name], params)
            except NegotiationFailed as exc:
                raise fail(f"invalid {EXTENSION_NAME} response: {exc}") from None
        extensions = [v for v in values("sec-websocket-extensions")]
        trailing, _closed = self._conn.trailing_data
        return Accepted(101, headers, subprotocol, bytes(trailing), extensions, deflate)

    def offered_extensions(self) -> dict[str, Deflate]:
        """The extensions the request offers, by name; a permessage-deflate offer as the
        `Deflate` it means (the first, when several are offered)."""
        offered: dict[str, Deflate] = {}
        try:
            items = parse_extensions(self.builder.extensions)
        except NegotiationFailed:
            items = []  # a malformed offer on purpose: any acceptance fails as unoffered
        for name, params in items:
            if name in offered:
                continue
            offered[name] = _offer_from_params(params) if name == EXTENSION_NAME else Deflate()
        return offered


def _headers(raw: Iterable[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in raw]


@dataclass(frozen=True)
class ServerRequest:
    """An upgrade request as the embedded server saw it."""

    method: str
    target: str
    headers: list[tuple[str, str]]
    subprotocols: list[str]

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def query(self) -> dict[str, str]:
        from urllib.parse import parse_qsl

        return dict(parse_qsl(self.target.split("?", 1)[1])) if "?" in self.target else {}

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)


class ServerHandshake:
    """Server side: `receive(data)` until it returns a `ServerRequest` (or raises
    `HandshakeError` for a request that is not a valid upgrade), then `accept()` or
    `reject(status)` give the bytes to send. `trailing` holds bytes after the request."""

    def __init__(self) -> None:
        self._conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_RESPONSE_HEAD)
        self.request: ServerRequest | None = None
        self._key = b""

    def receive(self, data: bytes) -> ServerRequest | None:
        self._conn.receive_data(data)
        try:
            event = self._conn.next_event()
        except h11.RemoteProtocolError as exc:
            raise HandshakeError(400, [], b"", f"invalid HTTP request: {exc}") from None
        if event is h11.NEED_DATA:
            return None
        if not isinstance(event, h11.Request):
            raise HandshakeError(400, [], b"", "connection closed before a request")
        headers = _headers(event.headers)
        self.request = ServerRequest(
            event.method.decode("ascii"),
            event.target.decode("latin-1"),
            headers,
            [p for k, v in headers if k.lower() == "sec-websocket-protocol" for p in split_comma_header(v.encode())],
        )
        return self.request

    def problem(self) -> str | None:
        """Why the received request is not a valid WebSocket upgrade, or None."""
        req = self.request
        assert req is not None
        if req.method != "GET":
            return f"method must be GET, not {req.method}"
        if "upgrade" not in [t.lower() for t in split_comma_header((req.header("connection") or "").encode())]:
            return "missing 'Connection: Upgrade'"
        if (req.header("upgrade") or "").lower() != "websocket":
            return "missing 'Upgrade: websocket'"
        if req.header("sec-websocket-version") != "13":
            return "Sec-WebSocket-Version must be 13"
        key = req.header("sec-websocket-key")
        if not key:
            return "missing Sec-WebSocket-Key"
        self._key = key.encode("ascii")
        return None

    def negotiate_deflate(self, policy: Deflate | None) -> tuple[DeflateParams, str] | None:
        """Pick the first permessage-deflate offer of the request that `policy` accepts:
        the agreed parameters and the response header value; None when nothing was
        offered, `policy` is None (decline), or no offer is acceptable."""
        req = self.request
        assert req is not None
        if policy is None:
            return None
        values = [v for k, v in req.headers if k.lower() == "sec-websocket-extensions"]
        try:
            offers = parse_extensions(values)
        except NegotiationFailed:
            return None
        for name, params in offers:
            if name == EXTENSION_NAME:
                answer = accept_offer(policy, params)
                if answer is not None:
                    return answer
        return None

    def accept(self, subprotocol: str | None = None, extensions: str | None = None) -> bytes:
        headers = [
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Accept", generate_accept_token(self._key).decode("ascii")),
        ]
        if subprotocol is not None:
            headers.append(("Sec-WebSocket-Protocol", subprotocol))
        if extensions:
            headers.append(("Sec-WebSocket-Extensions", extensions))
        return (
            self._conn.send(h11.InformationalResponse(status_code=101, headers=headers, reason=b"Switching Protocols"))
            or b""
        )

    @property
    def trailing(self) -> bytes:
        return bytes(self._conn.trailing_data[0])

    def reject(self, status: int, body: str = "", headers: list[tuple[str, str]] | None = None) -> bytes:
        payload = body.encode("utf-8")
        hdrs = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(payload)))]
        hdrs += headers or []
        hdrs.append(("Connection", "close"))
        out = self._conn.send(h11.Response(status_code=status, headers=hdrs)) or b""
        out += self._conn.send(h11.Data(data=payload)) or b""
        out += self._conn.send(h11.EndOfMessage()) or b""
        return out
