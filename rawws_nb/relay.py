"""The relay: intercept a real client's WebSocket traffic frame by frame.

`relay = await rw.relay("ws://server:8080")` listens on `relay.url`; each client that
connects to `relay.url + path` gets a `Flow`: the relay opens `upstream + path` (query,
subprotocols and end-to-end headers forwarded; the Host header, `Sec-WebSocket-Key`,
`-Accept`, `-Version`, `-Extensions` and the hop-by-hop headers regenerated), then
answers the client with the upstream's answer: its subprotocol and end-to-end headers
on a 101, or its refusal (status, headers, start of the body) as is.

A flow is two `RawSession`s on the core: `flow.client` (server side, facing the client)
and `flow.upstream` (client side, facing the upstream). Raw in both directions:

* every frame is forwarded as a frame: each fragment on its own (a continuation goes
  out as a continuation), fin and rsv kept, Ping, Pong and Close included;
* the relay answers nothing by itself: a Ping reaches the other side and its Pong comes
  back, a Close is forwarded and the peer's Close reply is what completes the other
  leg's closing handshake, so each leg closes cleanly when the other does;
* a leg that drops (TCP ends without a Close, or its peer violated the protocol) makes
  the relay drop the other one; both legs then show a row with close code 1006 and an
  `error` note saying what happened (the relay's notes are rows with `error` set and
  no payload).

`on_frame(frame, flow, direction)` (`direction` "up": client to upstream, "down":
upstream to client; plain or async) sees each received frame before it is forwarded and
returns the frame to send (the same or another), a list of frames, or None to drop it.
A hook that raises (or returns something else) is noted as an error row on the leg the
frame came from and the frame is forwarded unchanged: a hook bug never kills a flow.
`delay`, `refragment`, `rewrite_text` and `chain` build common hooks. Injecting is
sending: `await flow.client.send(...)` / `await flow.upstream.send(...)`. With
`relay.intercept = True` every frame to forward waits in `relay.held` until it is
forwarded (as is or edited) or dropped, one by one (the `RelayPanel` does this).

Compression (`compression="auto"`, the default): when the client offers
permessage-deflate, the relay offers it upstream, and accepts the client's offer when
the upstream accepted: each leg negotiates its own parameters and contexts, so hooks and
the timeline see inflated data; a frame goes out compressed when it came compressed.
`compression=None` strips the offer (neither leg compresses). `compression="passthrough"`:
the client's `Sec-WebSocket-Extensions` offer goes upstream as is and the upstream's
answer comes back as is; neither leg inflates or compresses (`Connection.opened(passthrough=True)`):
frames are forwarded untouched, rsv1 and the compressed payload as they came. Hooks and
the timeline then see compressed bytes (`frame.compressed` True; received rows
`compressed` True with the raw length; sent rows as sent: rsv1 set, `compressed` False,
since that side compressed nothing); `rewrite_text` leaves such frames alone. Only
permessage-deflate can be agreed (another extension in the answer is a 502).

`relay.flows` keeps every flow, ended ones included, unless `keep_flows=N` (a relay
left running for long): then only the N most recent ended flows are kept, older ones and
their rows are forgotten (`relay.forgotten` counts them), open flows always stay.

`relay.timeline` is every flow's rows in time order with `flow` (id) and `leg`
(`client` or `upstream`); `dir` is seen from the relay (`rx` on the client leg: sent by
the client). `t_rel` counts from the relay's start. `rw.to_pcapng(relay.timeline, path)`
writes one connection per flow and leg.

TLS: `tls=` a server `ssl.SSLContext` listens with wss (`LocalCA` makes a local CA and
a certificate for a host name); a wss upstream is verified by default (`upstream_tls=`
an `ssl.SSLContext` to trust another CA).

Proxy mode (`rw.relay(None)`): the relay is an HTTP proxy at `relay.url`
(`http://127.0.0.1:PORT`; https:// with `tls=`), for clients whose proxy setting points
at it. The targets are the hosts the clients ask for, connected directly (`proxy=` is
not used):

* `CONNECT host:port`: the relay connects to the target first (502 with the reason if
  it cannot), answers `200 Connection established`, and the tunnel's first bytes decide.
  A TLS ClientHello: the relay terminates the TLS with a certificate for `host` issued
  by `relay.ca` (a `LocalCA`, made per relay unless `ca=` gives one; one certificate per
  host, cached; the clients must trust it: `relay.ca.cert_pem`, `relay.write_ca(path)`)
  and reads the request inside. A WebSocket upgrade (in TLS or plain) becomes a `Flow`
  to wss://host:port + path (verified as usual, `upstream_tls=`) or ws://host:port +
  path, over the connection already opened. Anything else is a `Tunnel`, bytes passed
  both ways untouched: not HTTP, HTTP that is no upgrade, a target that speaks first,
  nothing decisive within HANDSHAKE_TIMEOUT, and TLS for hosts not intercepted
  (`intercept_tls=False`, or a predicate `f(host, port) -> bool`). HTTP inside
  terminated TLS that is no upgrade goes on over a new TLS session to the target (a
  "https" tunnel, decrypted bytes counted; 502 inside the TLS if the target's TLS fails).
* absolute-form requests (`GET http://host:port/path`): an upgrade becomes a flow to
  ws://host:port/path; any other request is forwarded as plain HTTP: sent to the target
  in origin form with `Connection: close` (Proxy-* headers removed), on a connection of
  its own, and the answer passed back byte for byte (an "http" tunnel); the client's
  connection closes after that answer (no keep-alive through the relay).
* anything else (an origin-form request, a request h11 cannot parse, a CONNECT target
  that is no host:port): 400 with the reason.

Flows from proxy mode are ordinary flows (hooks, `intercept`, the timeline, the
`RelayPanel`). `relay.tunnels` lists the tunnels (`kind`, `host`, `port`, `bytes_up`,
`bytes_down`, `reason`, `error`), `relay.tunnel_table` as a DataFrame; `relay.refused`
the 400s and 502s. `relay.close()` ends flows, tunnels and undecided connections.
"""

from __future__ import annotations

import asyncio
import http
import inspect
import re
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from .connect import web_socket_raw_session
from .deflate import Deflate, PerMessageDeflate
from .errors import HandshakeError, InvalidSend, ProxyError, SessionClosed
from .frames import RX, TX, CloseReason, Frame, Text, header_code, make_frame
from .handshake import ServerHandshake, ServerRequest, format_host, parse_url
from .loops import as_transport, call_soon
from .proxy import dial
from .session import DEFAULT_CLOSE_TIMEOUT, DEFAULT_MAX_QUEUE, RawSession, SessionState
from .timeline.recorder import DEFAULT_CAPACITY, DEFAULT_PAYLOAD_CAP

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "Direction",
    "Flow",
    "FrameHook",
    "HeldFrame",
    "LocalCA",
    "Refusal",
    "Relay",
    "Tunnel",
    "chain",
    "delay",
    "refragment",
    "relay",
    "rewrite_text",
]

Direction = Literal["up", "down"]
HookResult = Frame | Iterable[Frame] | None
FrameHook = Callable[[Frame, "Flow", Direction], HookResult | Awaitable[HookResult]]

DEFAULT_RELAY_MESSAGE = 64 << 20  # a relay passes large messages on: 64 MiB per message
HANDSHAKE_TIMEOUT = 10.0  # seconds a client has to send its upgrade request

# Request headers the relay does not forward: hop-by-hop ones (RFC 9110 7.6.1) and the
# handshake's own, which the upstream request regenerates.
_NOT_FORWARDED = frozenset(
    {
        "host",
        "connection",
        "upgrade",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "proxy-authenticate",
        "te",
        "trailer",
        "transfer-encoding",
        "content-length",
        "sec-websocket-key",
        "sec-websocket-accept",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
    }
)
# Response headers of the upstream's 101 the relay's own 101 already has (or must not have).
_NOT_PASSED_BACK = _NOT_FORWARDED | {"date"}


def _end_to_end(headers: Iterable[tuple[str, str]], dropped: frozenset[str]) -> list[tuple[str, str]]:
    """`headers` without `dropped` ones and without those the Connection header lists."""
    items = list(headers)
    listed = {
        token.strip().lower()
        for name, value in items
        if name.lower() == "connection"
        for token in value.split(",")
        if token.strip()
    }
    return [(k, v) for k, v in items if k.lower() not in dropped and k.lower() not in listed]


def _merge(headers: list[tuple[str, str]]) -> dict[str, str]:
    """Headers as the request builder's dict: repeated fields joined (RFC 9110 5.3;
    Cookie with "; ", RFC 6265 5.4)."""
    merged: dict[str, str] = {}
    names: dict[str, str] = {}
    for name, value in headers:
        key = name.lower()
        if key in names:
            sep = "; " if key == "cookie" else ", "
            merged[names[key]] += sep + value
        else:
            names[key] = name
            merged[name] = value
    return merged


# -- flows ------------------------------------------------------------------------------


class Flow:
    """One client connection through the relay: `client` (the relay's server-side
    session facing the client) and `upstream` (its client session facing the upstream).

    `id` numbers flows from 1; `path` is the request target (path and query) the client
    asked for, `request` its upgrade request, `upstream_url` what the relay opened."""

    def __init__(
        self,
        relay: Relay,
        flow_id: int,
        request: ServerRequest,
        client: RawSession,
        upstream: RawSession,
        done: asyncio.Future[None],
    ) -> None:
        self.relay = relay
        self.id = flow_id
        self.request = request
        self.client = client
        self.upstream = upstream
        self.started_at = time.time_ns()
        self.hook_errors = 0  # hook calls that raised or returned something unusable
        self._done = done  # set by the relay once both legs are closed

    @property
    def path(self) -> str:
        return self.request.target

    @property
    def upstream_url(self) -> str:
        return self.upstream.url

    @property
    def subprotocol(self) -> str | None:
        return self.upstream.subprotocol

    @property
    def ended(self) -> bool:
        """True once both legs are closed and nothing more is forwarded."""
        return self._done.done()

    async def wait_closed(self) -> None:
        """Wait until both legs are closed."""
        await asyncio.shield(self._done)

    def leg(self, name: str) -> RawSession:
        """`"client"` or `"upstream"`."""
        if name == "client":
            return self.client
        if name == "upstream":
            return self.upstream
        raise ValueError(f'a flow has the legs "client" and "upstream", not {name!r}')

    @property
    def timeline(self) -> pd.DataFrame:
        """Both legs' rows in time order, with `flow` and `leg`."""
        legs = [(self.id, "client", self.client), (self.id, "upstream", self.upstream)]
        return _combine(legs, self.relay.started_at)

    def __repr__(self) -> str:
        state = "ended" if self.ended else "open"
        return (
            f"<Flow {self.id} {self.path} {state} client={self.client.state.value} "
            f"upstream={self.upstream.state.value}>"
        )


class Refusal:
    """A client connection the relay did not turn into a flow: the upstream refused
    the upgrade (its status, headers and body went back to the client), could not be
    reached (502), or the client's request was not a WebSocket upgrade (400)."""

    def __init__(self, path: str, status: int, reason: str, headers: list[tuple[str, str]], body: bytes) -> None:
        self.path = path
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
        self.at = time.time_ns()

    def __repr__(self) -> str:
        return f"<Refusal {self.status} {self.path} {self.reason!r}>"


class HeldFrame:
    """A frame waiting in `relay.held` while `relay.intercept` is on: call `forward()`
    (optionally with a replacement frame or a list of frames) or `drop()`. Safe to call
    from any thread (widget callbacks)."""

    def __init__(self, flow: Flow, direction: Direction, frame: Frame, future: asyncio.Future[list[Frame]]):
        self.flow = flow
        self.direction = direction
        self.frame = frame
        self._future = future

    @property
    def decided(self) -> bool:
        return self._future.done()

    def forward(self, frame: Frame | Iterable[Frame] | None = None) -> None:
        """Forward the frame (or `frame` instead: a frame or a list of frames)."""
        if frame is None:
            out = [self.frame]
        elif isinstance(frame, Frame):
            out = [frame]
        else:
            out = list(frame)
        self._decide(out)

    def drop(self) -> None:
        """Forward nothing."""
        self._decide([])

    def _decide(self, frames: list[Frame]) -> None:
        future = self._future

        def settle() -> None:
            if not future.done():
                future.set_result(frames)

        call_soon(future.get_loop(), settle)

    def __repr__(self) -> str:
        return f"<HeldFrame flow {self.flow.id} {self.direction} {self.frame!r}>"


# -- the listening side ------------------------------------------------------------------


class _Front(asyncio.Protocol):
    """A client connection (or the HTTP inside TLS the relay terminated) until it is
    handed on: to a flow's client leg, to a tunnel, or answered with a refusal. While it
    is a front, `relay.close()` can abort it (`fronts`)."""

    def __init__(self, refused: Callable[[Refusal], None], fronts: set[_Front]) -> None:
        self.refused = refused
        self.fronts = fronts
        self.handshake = ServerHandshake()
        self.transport: asyncio.Transport | None = None
        self.task: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = as_transport(transport)
        self.fronts.add(self)
        self.timer = asyncio.get_running_loop().call_later(HANDSHAKE_TIMEOUT, self.timed_out)

    def timed_out(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def release(self) -> None:
        """The transport goes elsewhere (or is closing): no timer, no longer a front."""
        if self.timer is not None:
            self.timer.cancel()
        self.fronts.discard(self)

    def refuse(self, status: int, reason: str, headers: list[tuple[str, str]], body: bytes, path: str) -> None:
        """Answer the client with this status (an upstream's refusal, passed back)."""
        assert self.transport is not None
        self.release()
        try:
            phrase = http.HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
        head = [f"HTTP/1.1 {status} {phrase}".rstrip()]
        for name, value in _end_to_end(headers, _NOT_FORWARDED | {"date"}):
            head.append(f"{name}: {value}")
        head += [f"Content-Length: {len(body)}", "Connection: close"]
        self.transport.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1", "replace") + body)
        self.transport.close()
        self.refused(Refusal(path, status, reason, headers, body))

    def connection_lost(self, exc: BaseException | None) -> None:
        self.release()
        if self.task is not None and not self.task.done():
            self.task.cancel()  # the client left while the upstream was being opened


class _RelayProtocol(_Front):
    """One client connection until its request head is read: then `on_request` decides
    (a flow, a refusal, in proxy mode also a tunnel) and returns the task doing it."""

    def __init__(
        self,
        on_request: Callable[[_RelayProtocol, ServerRequest], asyncio.Task[None] | None],
        refused: Callable[[Refusal], None],
        fronts: set[_Front],
    ) -> None:
        super().__init__(refused, fronts)
        self.on_request = on_request
        self.decided = False

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        if self.decided:
            return  # reading is paused; nothing more arrives before the handshake is done
        try:
            req = self.handshake.receive(data)
        except HandshakeError as exc:
            self.decided = True
            self.refuse(400, exc.reason, [], (exc.reason + "\n").encode(), "")
            return
        if req is None:
            return
        self.decided = True
        if self.timer is not None:
            self.timer.cancel()
        self.transport.pause_reading()
        self.task = self.on_request(self, req)


class _Sniffer(_Front):
    """The first bytes of a CONNECT tunnel (after the relay's 200), or of what comes
    inside the TLS the relay terminated. They decide what the tunnel is, once:
    `decide(sniffer, kind, why)` with kind "tls" (a TLS record first), "ws" (a WebSocket
    upgrade request), "http" (another HTTP request) or "bytes" (not HTTP, the target
    spoke first, the client half-closed, or nothing decisive within HANDSHAKE_TIMEOUT).
    `buffer` keeps every byte read, for a tunnel to pass on as is. `lost()` is called
    when the client leaves before a decision."""

    def __init__(
        self,
        decide: Callable[[_Sniffer, str, str], None],
        lost: Callable[[], None],
        refused: Callable[[Refusal], None],
        fronts: set[_Front],
        tls_possible: bool,
    ) -> None:
        super().__init__(refused, fronts)
        self.on_decision = decide
        self.on_lost = lost
        self.tls_possible = tls_possible
        self.buffer = bytearray()
        self.request: ServerRequest | None = None
        self.decided = False
        self.client_eof = False

    def data_received(self, data: bytes) -> None:
        if self.decided:
            return
        first = not self.buffer
        self.buffer += data
        if first and self.tls_possible and data[:1] == b"\x16":  # a TLS handshake record: a ClientHello
            self.decide("tls", "TLS")
            return
        try:
            req = self.handshake.receive(data)
        except HandshakeError:
            self.decide("bytes", "not HTTP")
            return
        if req is None:
            return
        self.request = req
        if self.handshake.problem() is None:
            self.decide("ws", "a WebSocket upgrade")
        else:
            self.decide("http", f"HTTP {req.method} {req.target} (not a WebSocket upgrade)")

    def eof_received(self) -> bool | None:
        self.client_eof = True
        self.decide("bytes", "the client half-closed before a request")
        assert self.transport is not None
        return self.transport.can_write_eof()  # TCP: keep writing the target's answer

    def timed_out(self) -> None:
        self.decide("bytes", f"no request within {HANDSHAKE_TIMEOUT:g} s")

    def decide(self, kind: str, why: str) -> None:
        if self.decided:
            return
        self.decided = True
        self.release()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()
        self.on_decision(self, kind, why)

    def connection_lost(self, exc: BaseException | None) -> None:
        super().connection_lost(exc)
        if not self.decided:
            self.decided = True
            self.on_lost()


# -- proxy mode: tunnels ---------------------------------------------------------------------


class Tunnel:
    """A connection the proxy passed on as bytes, not as a WebSocket flow: `kind` is
    "connect" (a CONNECT tunnel, bytes untouched: not HTTP, TLS not intercepted, HTTP
    that is no WebSocket upgrade), "https" (the relay terminated the client's TLS, the
    request inside was no WebSocket upgrade: it goes on over TLS to the target, the
    bytes counted are the decrypted ones) or "http" (an absolute-form HTTP request,
    forwarded in origin form on a connection of its own). `reason` says why it is a
    tunnel; `error` what went wrong, if anything. `bytes_up`: client to target."""

    def __init__(self, tunnel_id: int, kind: str, host: str, port: int, reason: str) -> None:
        self.id = tunnel_id
        self.kind = kind
        self.host = host
        self.port = port
        self.reason = reason
        self.bytes_up = 0
        self.bytes_down = 0
        self.started_at = time.time_ns()
        self.ended_at: int | None = None
        self.error: str | None = None

    @property
    def target(self) -> str:
        return f"{format_host(self.host)}:{self.port}"

    @property
    def ended(self) -> bool:
        return self.ended_at is not None

    def end(self, error: str | None = None) -> None:
        if error is not None and self.error is None:
            self.error = error
        if self.ended_at is None:
            self.ended_at = time.time_ns()

    def as_dict(self) -> dict[str, Any]:
        return {
            "tunnel": self.id,
            "kind": self.kind,
            "host": self.host,
            "port": self.port,
            "bytes_up": self.bytes_up,
            "bytes_down": self.bytes_down,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "reason": self.reason,
            "error": self.error,
        }

    def __repr__(self) -> str:
        state = "ended" if self.ended else "open"
        error = f" error={self.error!r}" if self.error else ""
        return (
            f"<Tunnel {self.id} {self.kind} {self.target} up={self.bytes_up} down={self.bytes_down} "
            f"{state} ({self.reason}){error}>"
        )


class _SpliceEnd(asyncio.Protocol):
    """One side of a `_Splice` (the protocol of that side's transport)."""

    def __init__(self, splice: _Splice) -> None:
        self.splice = splice
        self.transport: asyncio.Transport | None = None
        self.pending = bytearray()  # for this side, before its transport joined
        self.eof = False
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = as_transport(transport)

    def write(self, data: bytes) -> None:
        if self.transport is None:
            self.pending += data
        elif not self.closed:
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        self.splice.carry(self, data)

    def eof_received(self) -> bool | None:
        return self.splice.carry_eof(self)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.splice.lost(self)

    def pause_writing(self) -> None:
        self.splice.peer(self).pause_reading()

    def resume_writing(self) -> None:
        self.splice.peer(self).resume_reading()

    def pause_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()


class _Splice:
    """Two transports joined: what one side reads the other writes, with flow control
    both ways (a side whose writes back up pauses the other's reading); an EOF is passed
    on (a half-close where both sides are TCP, else a close), a side that ends closes the
    other once its writes are out. `tunnel` counts the bytes (None: the relay's own hop)."""

    def __init__(self, tunnel: Tunnel | None, finished: Callable[[_Splice], None]) -> None:
        self.tunnel = tunnel
        self.finished = finished
        self.client = _SpliceEnd(self)
        self.target = _SpliceEnd(self)

    def peer(self, end: _SpliceEnd) -> _SpliceEnd:
        return self.target if end is self.client else self.client

    def join(self, client: asyncio.Transport, early: bytes = b"", client_eof: bool = False) -> None:
        """`client` (reading paused) becomes the client side; `early`: bytes it sent
        before (they go to the target first). The target side is connected already."""
        end = self.client
        end.transport = client
        client.set_protocol(end)
        if end.pending:
            client.write(bytes(end.pending))
            end.pending.clear()
        if early:
            self.carry(end, early)
        if client_eof:
            self.carry_eof(end)
        elif not client.is_closing():
            client.resume_reading()

    def carry(self, end: _SpliceEnd, data: bytes) -> None:
        if self.tunnel is not None:
            if end is self.client:
                self.tunnel.bytes_up += len(data)
            else:
                self.tunnel.bytes_down += len(data)
        self.peer(end).write(data)

    def carry_eof(self, end: _SpliceEnd) -> bool:
        end.eof = True
        other = self.peer(end)
        mine, theirs = end.transport, other.transport
        if theirs is None or other.closed:
            return False
        if other.eof:  # both directions are done
            theirs.close()
            return False
        if mine is not None and mine.can_write_eof() and theirs.can_write_eof():
            theirs.write_eof()  # a half-close goes on as one
            return True
        theirs.close()
        return False

    def lost(self, end: _SpliceEnd) -> None:
        end.closed = True
        other = self.peer(end)
        if other.transport is not None and not other.closed and not other.transport.is_closing():
            other.transport.close()  # after what is buffered for it
        if self.client.closed and (self.target.closed or self.target.transport is None):
            if self.tunnel is not None:
                self.tunnel.end()
            self.finished(self)

    def abort(self, error: str | None = None) -> None:
        if self.tunnel is not None:
            self.tunnel.end(error)
        for end in (self.client, self.target):
            if end.transport is not None and not end.closed:
                end.transport.abort()
        self.finished(self)


def _authority(target: str) -> tuple[str, int]:
    """`host` and `port` of a CONNECT request's authority-form target (IPv6 in brackets)."""
    host, sep, port_text = target.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"CONNECT needs host:port, not {target!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host or "[" in host or "]" in host:
        raise ValueError(f"CONNECT needs host:port (an IPv6 address in brackets), not {target!r}")
    return host, int(port_text)


def _absolute(target: str) -> tuple[str, int, str]:
    """`host`, `port` and the origin-form resource of an absolute-form target (http://)."""
    parts = urlsplit(target)
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"invalid port in {target!r}") from None
    if not parts.hostname:
        raise ValueError(f"no host in {target!r}")
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.hostname, port or 80, resource


def _origin_form(req: ServerRequest, host: str, port: int, resource: str) -> bytes:
    """`req` as an origin server gets it: origin-form target, no Proxy-* headers, and
    `Connection: close` (one request per forwarded connection)."""
    lines = [f"{req.method} {resource} HTTP/1.1"]
    headers = _end_to_end(
        req.headers, frozenset({"connection", "keep-alive", "proxy-connection", "proxy-authorization"})
    )
    if not any(name.lower() == "host" for name, _ in headers):
        lines.append(f"Host: {format_host(host)}" + ("" if port == 80 else f":{port}"))
    lines += [f"{name}: {value}" for name, value in headers]
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")


# -- the relay -------------------------------------------------------------------------


class Relay:
    """A running relay (see the module docstring). Create it with `rw.relay(...)`."""

    def __init__(
        self,
        upstream: str | None,
        host: str = "127.0.0.1",
        port: int = 0,
        on_frame: FrameHook | None = None,
        tls: ssl.SSLContext | None = None,
        *,
        upstream_tls: ssl.SSLContext | None = None,
        compression: str | Deflate | None = "auto",
        proxy: str | bool | None = True,
        open_timeout: float | None = 10.0,
        close_timeout: float | None = DEFAULT_CLOSE_TIMEOUT,
        max_message_size: int | None = DEFAULT_RELAY_MESSAGE,
        max_queue: int = DEFAULT_MAX_QUEUE,
        record: bool = True,
        timeline_capacity: int = DEFAULT_CAPACITY,
        payload_cap: int = DEFAULT_PAYLOAD_CAP,
        ca: LocalCA | None = None,
        intercept_tls: bool | Callable[[str, int], bool] = True,
        keep_flows: int | None = None,
    ) -> None:
        if keep_flows is not None and keep_flows < 0:
            raise ValueError(f"keep_flows must be None or at least 0, not {keep_flows}")
        if upstream is not None:
            target = parse_url(upstream)  # ValueError for anything but a ws:// or wss:// URL
        if compression not in ("auto", "passthrough", None) and not isinstance(compression, Deflate):
            raise ValueError(
                f'compression= takes "auto", "passthrough", None or a rawws_nb.Deflate(...), not {compression!r}'
            )
        # passthrough: the client's offer goes upstream as is, frames stay compressed on both legs
        self.passthrough = compression == "passthrough"
        self.upstream: str | None = target.url if upstream is not None else None
        self._base = target.url.split("?", 1)[0].rstrip("/") if upstream is not None else ""
        # Proxy mode: the CA whose certificates the relay shows for intercepted TLS.
        self.intercept_tls = intercept_tls
        self.ca: LocalCA | None = ca
        if upstream is None and ca is None and intercept_tls is not False:
            self.ca = LocalCA("rawws_nb relay CA")
        self.host = host
        self.port = port
        self.on_frame = on_frame
        self.tls = tls
        self.upstream_tls = upstream_tls
        self.compression: Deflate | None = (
            Deflate() if compression == "auto" else compression if isinstance(compression, Deflate) else None
        )
        self.proxy = proxy
        self.open_timeout = open_timeout
        self.close_timeout = close_timeout
        self.max_message_size = max_message_size
        self.max_queue = max_queue
        self.record = record
        self.timeline_capacity = timeline_capacity
        self.payload_cap = payload_cap
        self.flows: list[Flow] = []
        # For a long-running relay: at most this many ended flows are kept (the oldest,
        # with their legs' timelines, are forgotten first; open flows always stay).
        self.keep_flows = keep_flows
        self.forgotten = 0  # ended flows forgotten that way
        self.refused: list[Refusal] = []
        self.tunnels: list[Tunnel] = []
        self.held: list[HeldFrame] = []
        self.started_at = time.time_ns()
        self._intercept = False
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._next_id = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listeners: list[Callable[[Flow], None]] = []
        self._ends: dict[int, asyncio.Future[None]] = {}  # flow id -> set when both legs closed
        self._dropping: dict[int, set[str]] = {}  # flow id -> legs the relay drops on purpose
        self._fronts: set[_Front] = set()  # client connections not yet handed on
        self._splices: set[_Splice] = set()  # tunnels and TLS hops, joined
        self._host_contexts: dict[str, ssl.SSLContext] = {}  # proxy mode: a certificate per host

    # -- public ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Where clients connect: ws:// or wss:// (with `tls`); in proxy mode the proxy
        URL to give them (http://, or https:// with `tls`)."""
        if self.proxy_mode:
            scheme = "https" if self.tls is not None else "http"
        else:
            scheme = "wss" if self.tls is not None else "ws"
        return f"{scheme}://{format_host(self.host)}:{self.port}"

    @property
    def proxy_mode(self) -> bool:
        """True when the relay is an HTTP proxy (`upstream=None`)."""
        return self.upstream is None

    @property
    def tunnel_table(self) -> pd.DataFrame:
        """`tunnels` as a DataFrame (one row per tunnel: kind, host, port, bytes each way,
        times, reason, error)."""
        import pandas as pd

        columns = ["tunnel", "kind", "host", "port", "bytes_up", "bytes_down", "started_at", "ended_at", "reason"]
        df = pd.DataFrame([t.as_dict() for t in self.tunnels], columns=[*columns, "error"])
        for column in ("started_at", "ended_at"):
            df[column] = pd.to_datetime(df[column], unit="ns", utc=True)
        return df.set_index("tunnel")

    def write_ca(self, path: str | Path) -> Path:
        """Proxy mode: write the relay's CA certificate (PEM) to `path`, for the clients
        to trust (their wss connections are intercepted with certificates it issues)."""
        if self.ca is None:
            raise RuntimeError("this relay has no CA (it is not in proxy mode, or intercept_tls=False)")
        return self.ca.write_cert(path)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("the relay is not started")
        return self._loop

    @property
    def active(self) -> list[Flow]:
        """The flows whose legs are not both closed yet."""
        return [flow for flow in self.flows if not flow.ended]

    @property
    def intercept(self) -> bool:
        """While True, every frame to forward waits in `held` for `forward()` or `drop()`."""
        return self._intercept

    @intercept.setter
    def intercept(self, on: bool) -> None:
        self._intercept = bool(on)
        if not on:
            for held in list(self.held):
                held.forward()  # switching off releases what waits, unchanged

    @property
    def timeline(self) -> pd.DataFrame:
        """Every flow's rows in time order, with `flow` (id) and `leg` (`client`,
        `upstream`); `dir` as seen from the relay; `t_rel` from the relay's start."""
        legs: list[tuple[int, str, RawSession]] = []
        for flow in self.flows:
            legs += [(flow.id, "client", flow.client), (flow.id, "upstream", flow.upstream)]
        df = _combine(legs, self.started_at)
        df.attrs.update(url=self.url, upstream=self.upstream, relay=True)
        return df

    def save_timeline(self, path: str | Path, **options: Any) -> Path:
        """Save `timeline` as Parquet (read it back with `rawws_nb.read_timeline`)."""
        from .timeline.persist import save_timeline

        return save_timeline(self.timeline, path, metadata={"url": self.url, "upstream": self.upstream}, **options)

    def on_flow(self, callback: Callable[[Flow], None]) -> None:
        """Call `callback(flow)` (on the relay's loop) for each new flow."""
        self._listeners.append(callback)

    async def start(self) -> None:
        """Start listening (what `await rw.relay(...)` does)."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        handler = self._proxy_request if self.proxy_mode else self._upstream_request
        self._server = await loop.create_server(
            lambda: _RelayProtocol(handler, self.refused.append, self._fronts), self.host, self.port, ssl=self.tls
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self, reason: CloseReason | None = None) -> None:
        """Stop listening and end every flow. Without `reason` the relay sends nothing
        of its own: each connection is dropped (its peer sees 1006); with `reason` a
        Close with it goes to both peers first (at most `close_timeout` for replies)."""
        if self._server is not None:
            self._server.close()
        for front in list(self._fronts):
            if front.transport is not None:
                front.transport.abort()
        for splice in list(self._splices):
            splice.abort("the relay was closed")
        for held in list(self.held):
            held.drop()
        flows = self.active
        if reason is not None:
            await asyncio.gather(
                *(leg.close(reason) for flow in flows for leg in (flow.client, flow.upstream)),
                return_exceptions=True,
            )
        for flow in flows:
            self._dropping[flow.id].update(("client", "upstream"))
            for leg in (flow.client, flow.upstream):
                if leg.state is not SessionState.CLOSED:
                    leg.drop_connection(abort=True)
        tasks = list(self._tasks)
        if tasks:
            try:
                async with asyncio.timeout(5.0):
                    await asyncio.gather(*tasks, return_exceptions=True)
            except TimeoutError:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> Relay:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        where = f"-> {self.upstream}" if self.upstream is not None else f"proxy tunnels={len(self.tunnels)}"
        return f"<Relay {self.url} {where} flows={len(self.flows)} active={len(self.active)}>"

    # -- opening a flow -------------------------------------------------------------------

    def _spawn(self, coro: Awaitable[None]) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _upstream_request(self, conn: _RelayProtocol, req: ServerRequest) -> asyncio.Task[None] | None:
        problem = conn.handshake.problem()
        if problem is not None:
            conn.refuse(400, problem, [], (problem + "\n").encode(), req.target)
            return None
        url = self._base + req.target
        return self._spawn(self._open_flow(conn, req, url, self.url + req.target))

    # -- proxy mode --------------------------------------------------------------------------

    def _proxy_request(self, conn: _RelayProtocol, req: ServerRequest) -> asyncio.Task[None] | None:
        """A request to the relay as a proxy: CONNECT, or an absolute-form request."""
        if req.method == "CONNECT":
            try:
                host, port = _authority(req.target)
            except ValueError as exc:
                return self._bad_request(conn, str(exc), req.target)
            return self._spawn(self._connect(conn, req, host, port))
        if req.target.lower().startswith(("http://", "ws://")):
            try:
                host, port, resource = _absolute(req.target)
            except ValueError as exc:
                return self._bad_request(conn, str(exc), req.target)
            if conn.handshake.problem() is None:
                url = f"ws://{format_host(host)}:{port}{resource}"
                return self._spawn(self._open_flow(conn, req, url, url))
            return self._spawn(self._forward_http(conn, req, host, port, resource))
        return self._bad_request(
            conn,
            f"this relay is an HTTP proxy: it takes CONNECT host:port or an absolute-form request "
            f"(GET http://host/path), not {req.method} {req.target}",
            req.target,
        )

    @staticmethod
    def _bad_request(conn: _Front, text: str, path: str) -> None:
        conn.refuse(400, text, [], (f"relay: {text}\n").encode(), path)

    async def _dial(self, conn: _Front, host: str, port: int, path: str) -> socket.socket | None:
        """A TCP connection to the target, or None after answering the client with 502."""
        try:
            async with asyncio.timeout(self.open_timeout):
                return await dial(host, port)
        except (OSError, TimeoutError) as exc:
            why = str(exc) or f"no connection within open_timeout={self.open_timeout}s"
            text = f"relay: cannot connect to {format_host(host)}:{port}: {why}"
            conn.refuse(502, text, [], (text + "\n").encode(), path)
            return None

    async def _connect(self, conn: _RelayProtocol, req: ServerRequest, host: str, port: int) -> None:
        """CONNECT: connect to the target (502 if that fails), answer 200, then let the
        tunnel's first bytes decide what it is."""
        transport = conn.transport
        assert transport is not None
        sock = await self._dial(conn, host, port, req.target)
        if sock is None:
            return
        if transport.is_closing():
            sock.close()
            return
        conn.release()
        transport.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        loop = asyncio.get_running_loop()
        fd = sock.fileno()

        def decided(sniffer: _Sniffer, kind: str, why: str) -> None:
            loop.remove_reader(fd)
            sniffer.task = self._spawn(self._tunnel_decided(sniffer, kind, why, host, port, sock, outer=True))

        def lost() -> None:
            loop.remove_reader(fd)
            sock.close()

        sniffer = _Sniffer(decided, lost, self.refused.append, self._fronts, tls_possible=True)
        transport.set_protocol(sniffer)
        sniffer.connection_made(transport)
        # A target that speaks first (or closes) makes the tunnel a plain one at once.
        loop.add_reader(fd, sniffer.decide, "bytes", "the target spoke first")
        early = conn.handshake.trailing
        if early:
            sniffer.data_received(early)
        if not sniffer.decided:
            transport.resume_reading()

    def _intercepts(self, host: str, port: int) -> bool:
        choice = self.intercept_tls
        if callable(choice):
            try:
                return bool(choice(host, port))
            except Exception:  # a predicate's bug: the tunnel stays untouched
                return False
        return bool(choice) and self.ca is not None

    def _host_context(self, host: str) -> ssl.SSLContext:
        ctx = self._host_contexts.get(host)
        if ctx is None:
            assert self.ca is not None
            ctx = self._host_contexts[host] = self.ca.server_context(host)
        return ctx

    def _upstream_context(self) -> ssl.SSLContext:
        return self.upstream_tls if self.upstream_tls is not None else ssl.create_default_context()

    async def _tunnel_decided(
        self, sniffer: _Sniffer, kind: str, why: str, host: str, port: int, sock: socket.socket, outer: bool
    ) -> None:
        try:
            await self._tunnel_decided_unguarded(sniffer, kind, why, host, port, sock, outer)
        except Exception as exc:  # a bug or an odd request must not leave a task failing unseen
            sock.close()
            if sniffer.transport is not None:
                sniffer.transport.abort()
            tunnel = self._new_tunnel("connect" if outer else "https", host, port, why)
            tunnel.end(f"the relay could not handle this tunnel: {type(exc).__name__}: {exc}")

    async def _tunnel_decided_unguarded(
        self, sniffer: _Sniffer, kind: str, why: str, host: str, port: int, sock: socket.socket, outer: bool
    ) -> None:
        transport = sniffer.transport
        assert transport is not None
        if transport.is_closing():
            sock.close()
            return
        if kind == "tls" and self._intercepts(host, port):
            await self._terminate_tls(sniffer, host, port, sock)
            return
        req = sniffer.request
        if kind == "ws" and req is not None:
            resource = req.target if req.target.startswith("/") else _absolute(req.target)[2]
            url = f"{'ws' if outer else 'wss'}://{format_host(host)}:{port}{resource}"
            await self._open_flow(sniffer, req, url, url, sock=sock)
            return
        if kind == "tls":
            why = "TLS, not intercepted"
        await self._splice_to(
            sniffer,
            bytes(sniffer.buffer),
            host,
            port,
            sock,
            kind="connect" if outer else "https",
            reason=why,
            tls=None if outer else self._upstream_context(),
            client_eof=sniffer.client_eof,
        )

    async def _terminate_tls(self, sniffer: _Sniffer, host: str, port: int, sock: socket.socket) -> None:
        """The client's TLS ends here, with a certificate for `host` from `self.ca`: its
        bytes go through a socket pair to a TLS server side whose plain side is sniffed
        again (the ClientHello is already read, so the TLS cannot start on the client's
        own transport)."""
        loop = asyncio.get_running_loop()
        client = sniffer.transport
        assert client is not None
        hop = _Splice(None, self._splices.discard)
        self._splices.add(hop)
        outside, inside = socket.socketpair()
        try:
            await loop.connect_accepted_socket(lambda: hop.target, sock=outside)
        except BaseException:
            outside.close()
            inside.close()
            sock.close()
            hop.abort()
            raise
        hop.join(client, bytes(sniffer.buffer))

        def decided(inner: _Sniffer, kind: str, why: str) -> None:
            inner.task = self._spawn(self._tunnel_decided(inner, kind, why, host, port, sock, outer=False))

        def factory() -> _Sniffer:
            return _Sniffer(decided, sock.close, self.refused.append, self._fronts, tls_possible=False)

        try:
            await loop.connect_accepted_socket(
                factory, sock=inside, ssl=self._host_context(host), ssl_handshake_timeout=HANDSHAKE_TIMEOUT
            )
        except Exception as exc:  # the client refused the certificate, or left
            inside.close()
            sock.close()
            tunnel = self._new_tunnel("https", host, port, "TLS intercepted")
            tunnel.end(
                f"the TLS handshake with the client failed ({type(exc).__name__}: {exc}); "
                "does the client trust relay.ca?"
            )
            hop.abort()

    def _new_tunnel(self, kind: str, host: str, port: int, reason: str) -> Tunnel:
        tunnel = Tunnel(len(self.tunnels) + 1, kind, host, port, reason)
        self.tunnels.append(tunnel)
        return tunnel

    async def _splice_to(
        self,
        front: _Front,
        early: bytes,
        host: str,
        port: int,
        sock: socket.socket,
        *,
        kind: str,
        reason: str,
        tls: ssl.SSLContext | None,
        client_eof: bool = False,
    ) -> None:
        """Join the client's transport (that of `front`) to `sock`: bytes both ways,
        `early` first (what the client sent already)."""
        client = front.transport
        assert client is not None
        tunnel = self._new_tunnel(kind, host, port, reason)
        splice = _Splice(tunnel, self._splices.discard)
        self._splices.add(splice)
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.open_timeout):
                await loop.create_connection(
                    lambda: splice.target, sock=sock, ssl=tls, server_hostname=host if tls is not None else None
                )
        except Exception as exc:
            sock.close()
            why = str(exc) or type(exc).__name__
            self._splices.discard(splice)
            tunnel.end(f"cannot open {tunnel.target}: {why}")
            if kind == "https" and not client.is_closing():  # the client speaks HTTP to us: say why
                text = f"relay: cannot open TLS to {tunnel.target}: {why}"
                front.refuse(502, text, [], (text + "\n").encode(), tunnel.target)
            else:
                client.abort()
            return
        except BaseException:
            sock.close()
            splice.abort("cancelled")
            raise
        if client.is_closing():
            splice.abort("the client left")
            return
        front.release()
        splice.join(client, early, client_eof)

    async def _forward_http(
        self, conn: _RelayProtocol, req: ServerRequest, host: str, port: int, resource: str
    ) -> None:
        """An absolute-form request that is no WebSocket upgrade: sent on in origin form
        (with `Connection: close`) on a connection of its own, the answer passed back."""
        sock = await self._dial(conn, host, port, req.target)
        if sock is None:
            return
        head = _origin_form(req, host, port, resource)
        why = f"HTTP {req.method} {resource} (not a WebSocket upgrade)"
        await self._splice_to(conn, head + conn.handshake.trailing, host, port, sock, kind="http", reason=why, tls=None)

    def _offered_deflate(self, req: ServerRequest) -> bool:
        return any(
            "permessage-deflate" in value.lower()
            for name, value in req.headers
            if name.lower() == "sec-websocket-extensions"
        )

    async def _open_flow(
        self, conn: _Front, req: ServerRequest, url: str, client_url: str, sock: socket.socket | None = None
    ) -> None:
        """Open `url` for the client's upgrade `req` (over `sock` when the proxy has
        connected it already), then answer the client and start forwarding."""
        transport = conn.transport
        assert transport is not None
        forwarded = _merge(_end_to_end(req.headers, _NOT_FORWARDED))
        compress = self.compression if self.compression is not None and self._offered_deflate(req) else None
        offer = [v for k, v in req.headers if k.lower() == "sec-websocket-extensions"] if self.passthrough else []
        try:
            upstream = await web_socket_raw_session(
                url,
                headers=forwarded,
                subprotocols=list(req.subprotocols),
                compression=compress,
                request=(lambda builder: builder.extensions.extend(offer)) if offer else None,
                deflate_passthrough=self.passthrough,
                tls=self.upstream_tls if url.startswith("wss:") else None,  # tls= alone would mean wss
                proxy=self.proxy if sock is None and not self.proxy_mode else None,
                sock=sock,
                open_timeout=self.open_timeout,
                close_timeout=self.close_timeout,
                max_message_size=self.max_message_size,
                max_queue=self.max_queue,
                record=self.record,
                timeline_capacity=self.timeline_capacity,
                payload_cap=self.payload_cap,
            )
        except HandshakeError as exc:
            status = exc.status if exc.status is not None and exc.status != 101 else 502
            body = (
                exc.body
                if exc.status == status
                else (f"relay: the upstream failed the handshake: {exc.reason}\n").encode()
            )
            conn.refuse(status, exc.reason, exc.headers if exc.status == status else [], body, req.target)
            return
        except (OSError, TimeoutError, ProxyError) as exc:
            text = f"relay: cannot open the upstream {url}: {exc}"
            conn.refuse(502, text, [], (text + "\n").encode(), req.target)
            return
        except Exception as exc:  # anything else still answers the client: never a hang
            text = f"relay: opening the upstream {url} failed: {type(exc).__name__}: {exc}"
            conn.refuse(502, text, [], (text + "\n").encode(), req.target)
            return
        if transport.is_closing():
            upstream.drop_connection(abort=True)  # the client left meanwhile
            return
        conn.release()
        client = RawSession(
            client=False,
            url=client_url,
            max_message_size=self.max_message_size,
            max_queue=self.max_queue,
            close_timeout=self.close_timeout,
            record=self.record,
            timeline_capacity=self.timeline_capacity,
            payload_cap=self.payload_cap,
        )
        agreed = None
        if compress is not None and upstream.deflate is not None:
            agreed = conn.handshake.negotiate_deflate(compress)
        # passthrough: the upstream's answer to the client's own offer goes back as is
        passed = ", ".join(upstream.extensions) if self.passthrough else ""
        response = conn.handshake.accept(upstream.subprotocol, passed or (agreed[1] if agreed else None))
        extra = _end_to_end(upstream.response_headers, _NOT_PASSED_BACK)
        if extra:  # the upstream's own end-to-end headers (Set-Cookie, ...) go back too
            lines = "".join(f"{k}: {v}\r\n" for k, v in extra).encode("latin-1", "replace")
            response = response[:-2] + lines + b"\r\n"
        transport.write(response)
        client.subprotocol = upstream.subprotocol
        client.request_headers = list(req.headers)
        deflate = None
        if agreed is not None and compress is not None:
            deflate = PerMessageDeflate(agreed[0], client=False, level=compress.level, mem_level=compress.mem_level)
        client.attach(
            transport,
            conn.handshake.trailing,
            extensions=[passed] if passed else [agreed[1]] if agreed else [],
            deflate=deflate,
            passthrough=bool(passed),
        )
        transport.resume_reading()
        self._next_id += 1
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        flow = Flow(self, self._next_id, req, client, upstream, done)
        self._ends[flow.id] = done
        self._dropping[flow.id] = set()
        self.flows.append(flow)
        self._forget_ended()
        for callback in self._listeners:
            try:
                callback(flow)
            except Exception:  # a listener's bug must not stop the flow
                pass
        runner = asyncio.get_running_loop().create_task(self._run(flow))
        self._tasks.add(runner)
        runner.add_done_callback(self._tasks.discard)

    def _forget_ended(self) -> None:
        keep = self.keep_flows
        if keep is None:
            return
        ended = [f for f in self.flows if f.ended]
        if len(ended) <= keep:
            return
        gone = {f.id for f in ended[: len(ended) - keep]}
        self.flows = [f for f in self.flows if f.id not in gone]
        for flow_id in gone:
            self._ends.pop(flow_id, None)
            self._dropping.pop(flow_id, None)
        self.forgotten += len(gone)

    # -- forwarding -------------------------------------------------------------------------

    async def _run(self, flow: Flow) -> None:
        try:
            await asyncio.gather(
                self._pump(flow, flow.client, flow.upstream, "up"),
                self._pump(flow, flow.upstream, flow.client, "down"),
            )
        finally:
            for leg in (flow.client, flow.upstream):
                if leg.state is not SessionState.CLOSED:
                    leg.drop_connection(abort=True)
            done = self._ends[flow.id]
            if not done.done():
                done.set_result(None)

    async def _pump(self, flow: Flow, src: RawSession, dst: RawSession, direction: Direction) -> None:
        """Forward what `src` receives to `dst`, frame by frame, until `src` ends."""
        src_name, dst_name = ("client", "upstream") if direction == "up" else ("upstream", "client")
        receive = src.incoming.receive
        take = src.incoming.receive_nowait
        in_message = False  # a data message is unfinished (the next data frame is a continuation)
        try:
            while True:
                frame: Frame | None = await receive()
                while frame is not None:
                    opcode = frame.type
                    wire: int = opcode
                    if opcode < 8:
                        wire = 0 if in_message else opcode
                        in_message = not frame.fin
                    out = await self._outcome(flow, src, frame, wire, direction)
                    # passthrough: as received (rsv1, compressed payload), not compressed again
                    compressed = frame.compressed and not self.passthrough
                    if out and not await self._forward(flow, dst, dst_name, out, compressed):
                        return  # dst has ended: the other pump ends the flow
                    frame = take()
        except SessionClosed as end:
            await self._src_ended(flow, src, src_name, dst, dst_name, end)

    async def _outcome(self, flow: Flow, src: RawSession, frame: Frame, wire: int, direction: Direction) -> list[Frame]:
        hook = self.on_frame
        if hook is None:
            out = [frame]
        else:
            try:
                result = hook(frame, flow, direction)
                if inspect.isawaitable(result):
                    result = await result
                out = _as_frames(result)
            except Exception as exc:
                flow.hook_errors += 1
                self._note(
                    src,
                    header_code(wire, frame.fin, direction=RX),
                    f"on_frame raised {type(exc).__name__}: {exc}; the frame was forwarded unchanged",
                )
                out = [frame]
        if self._intercept and out:
            decided: list[Frame] = []
            for item in out:
                future: asyncio.Future[list[Frame]] = asyncio.get_running_loop().create_future()
                held = HeldFrame(flow, direction, item, future)
                self.held.append(held)
                try:
                    decided += await future
                finally:
                    if held in self.held:
                        self.held.remove(held)
            out = decided
        return out

    async def _forward(self, flow: Flow, dst: RawSession, dst_name: str, out: list[Frame], compressed: bool) -> bool:
        """Send `out` on `dst`; False once `dst` has ended."""
        for frame in out:
            if frame.rsv1 and compressed:  # inflated: this leg compresses it anew
                frame = make_frame(type(frame), frame.data, frame.fin, False, frame.rsv2, frame.rsv3)
            try:
                dst.send_nowait(frame, compressed)
            except InvalidSend as exc:
                self._note(dst, header_code(frame.type, frame.fin, direction=TX), f"not forwarded: {exc}")
                continue
            except SessionClosed:
                return False
            if dst.writing_paused:
                try:
                    await dst.drain()
                except SessionClosed:
                    return False
        return True

    async def _src_ended(
        self, flow: Flow, src: RawSession, src_name: str, dst: RawSession, dst_name: str, end: SessionClosed
    ) -> None:
        if src_name in self._dropping[flow.id]:
            return  # the relay dropped this leg itself (and noted why)
        if end.clean:
            # A Close went by on this leg; the other leg's closing handshake completes
            # with the forwarded Close. Bounded: a leg still open then is dropped.
            try:
                async with asyncio.timeout(self.close_timeout):
                    await dst.wait_closed()
            except TimeoutError:
                self._drop(flow, dst, dst_name, f"the {src_name} leg closed and this leg did not within close_timeout")
            return
        code = end.code
        if code == 1006:
            self._note(src, header_code(8, direction=RX), "the connection dropped without a Close (1006)", 1006)
        self._drop(flow, dst, dst_name, f"the {src_name} leg ended with {code} ({end})")

    def _drop(self, flow: Flow, leg: RawSession, name: str, why: str) -> None:
        if leg.state is SessionState.CLOSED:
            return
        self._dropping[flow.id].add(name)
        self._note(leg, header_code(8, direction=TX), f"relay dropped this leg (1006, no Close sent): {why}", 1006)
        leg.drop_connection()

    @staticmethod
    def _note(leg: RawSession, code: int, text: str, close_code: int | None = None) -> None:
        """An error row of the relay's own (no frame was sent or received for it)."""
        rec = leg.recorder
        if rec is None:
            return
        payload = close_code.to_bytes(2, "big") if close_code is not None else b""
        rec.add_error(time.time_ns(), code, payload, len(payload), None, text)


def _as_frames(result: Any) -> list[Frame]:
    if result is None:
        return []
    if isinstance(result, Frame):
        return [result]
    if isinstance(result, (list, tuple)):
        if all(isinstance(item, Frame) for item in result):
            return list(result)
    raise TypeError(f"on_frame must return a Frame, a list of Frames or None, not {type(result).__name__}")


def _combine(legs: list[tuple[int, str, RawSession]], t0: int) -> pd.DataFrame:
    import pandas as pd

    from .timeline.schema import empty_timeline

    parts = []
    for flow_id, name, session in legs:
        df = session.timeline
        if len(df):
            df = df.reset_index(drop=True)
            df.insert(0, "leg", name)
            df.insert(0, "flow", flow_id)
            parts.append(df)
    if not parts:
        out = empty_timeline().reset_index(drop=True)
        out.insert(0, "leg", pd.Series([], dtype="category"))
        out.insert(0, "flow", pd.Series([], dtype="int64"))
    else:
        out = pd.concat(parts, ignore_index=True)
        out = out.sort_values("t", kind="stable").reset_index(drop=True)
    out["leg"] = pd.Categorical(out["leg"], categories=["client", "upstream"])
    for column in ("dir", "opcode"):
        if column in out.columns and not isinstance(out[column].dtype, pd.CategoricalDtype):
            out[column] = out[column].astype("category")
    if len(out):
        out["t_rel"] = (out["t"].astype("int64") - t0) / 1e9
    out.index.name = "frame"
    return out


# -- hook helpers -------------------------------------------------------------------------


def _wants(direction: Direction | None, actual: Direction) -> bool:
    return direction is None or direction == actual


def delay(seconds: float, direction: Direction | None = None) -> FrameHook:
    """A hook that holds each frame `seconds` before forwarding it (order is kept: the
    frames after it wait too). `direction` "up"/"down" limits it to one direction."""

    async def hook(frame: Frame, flow: Flow, actual: Direction) -> Frame:
        if _wants(direction, actual):
            await asyncio.sleep(seconds)
        return frame

    return hook


def refragment(size: int, direction: Direction | None = None) -> FrameHook:
    """A hook that splits each data frame into frames of at most `size` bytes of payload
    (the first keeps the frame's type, the others go out as continuations; the last
    keeps its fin). Control frames and empty frames pass unchanged."""
    if size < 1:
        raise ValueError("refragment: size must be at least 1 byte")

    def hook(frame: Frame, flow: Flow, actual: Direction) -> list[Frame]:
        data = frame.data
        if frame.type >= 8 or len(data) <= size or not _wants(direction, actual):
            return [frame]
        cls = type(frame)
        chunks = [data[i : i + size] for i in range(0, len(data), size)]
        return [make_frame(cls, chunk, frame.fin and i == len(chunks) - 1) for i, chunk in enumerate(chunks)]

    return hook


def rewrite_text(
    pattern: str | re.Pattern[str],
    replacement: str | Callable[[re.Match[str]], str],
    direction: Direction | None = None,
) -> FrameHook:
    """A hook that rewrites Text messages by regex (`re.sub(pattern, replacement, text)`).
    Only whole messages in one frame are rewritten; fragments pass unchanged (a regex
    over part of a message would not mean what it says)."""
    regex = re.compile(pattern)
    open_messages: set[tuple[int, str]] = set()  # (flow id, direction) with a message unfinished

    def hook(frame: Frame, flow: Flow, actual: Direction) -> Frame:
        if frame.type >= 8:
            return frame
        key = (flow.id, actual)
        continuing = key in open_messages
        if frame.fin:
            open_messages.discard(key)
        else:
            open_messages.add(key)
        if continuing or not frame.fin or type(frame) is not Text or not _wants(direction, actual):
            return frame
        if frame.compressed and flow.relay.passthrough:
            return frame  # compressed bytes (compression="passthrough"): no text to rewrite
        text = frame.data.decode("utf-8")
        new = regex.sub(replacement, text)
        return frame if new == text else Text(new)

    return hook


def chain(*hooks: FrameHook) -> FrameHook:
    """One hook that runs `hooks` in order, each on every frame the previous returned."""

    async def hook(frame: Frame, flow: Flow, direction: Direction) -> list[Frame]:
        frames = [frame]
        for step in hooks:
            nxt: list[Frame] = []
            for item in frames:
                result = step(item, flow, direction)
                if inspect.isawaitable(result):
                    result = await result
                nxt += _as_frames(result)
            frames = nxt
        return frames

    return hook


# -- TLS: a local CA -------------------------------------------------------------------------


class LocalCA:
    """A throwaway certificate authority for TLS on loopback (needs `cryptography`,
    which `trustme` also uses): `server_context("localhost", "127.0.0.1")` for
    `rw.relay(..., tls=...)` or `rw.serve(tls=...)`, `client_context()` for clients that
    should trust it, `cert_pem` to give to a browser or another client."""

    def __init__(self, name: str = "rawws_nb local CA") -> None:
        try:
            from cryptography import x509
            from cryptography.hazmat.primitives import hashes, serialization
            from cryptography.hazmat.primitives.asymmetric import ec
            from cryptography.x509.oid import NameOID
        except ImportError as exc:  # pragma: no cover - cryptography comes with the test extras
            raise ImportError("LocalCA needs the cryptography package: pip install cryptography") from exc
        import datetime

        self._key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self._key, hashes.SHA256())
        )
        self.cert_pem: bytes = self._cert.public_bytes(serialization.Encoding.PEM)

    def issue(self, *hostnames: str) -> tuple[bytes, bytes]:
        """A certificate (PEM, with the CA's appended) and its key (PEM) for `hostnames`
        (DNS names or IP addresses)."""
        import datetime
        import ipaddress

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        if not hostnames:
            raise ValueError("issue() needs at least one host name")
        names: list[x509.GeneralName] = []
        for host in hostnames:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])]))
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        cert_pem = cert.public_bytes(serialization.Encoding.PEM) + self.cert_pem
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return cert_pem, key_pem

    def server_context(self, *hostnames: str) -> ssl.SSLContext:
        """A server `SSLContext` with a certificate for `hostnames` (default: localhost
        and 127.0.0.1)."""
        import os
        import tempfile

        cert_pem, key_pem = self.issue(*(hostnames or ("localhost", "127.0.0.1")))
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        fd, name = tempfile.mkstemp(suffix=".pem")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(key_pem + cert_pem)
            ctx.load_cert_chain(name)
        finally:
            os.unlink(name)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """A client `SSLContext` that trusts this CA (and verifies host names)."""
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        ctx.load_verify_locations(cadata=self.cert_pem.decode("ascii"))
        return ctx

    def write_cert(self, path: str | Path) -> Path:
        """Write the CA certificate (PEM) to `path`, for clients that read a file."""
        path = Path(path)
        path.write_bytes(self.cert_pem)
        return path


# -- the entry point ---------------------------------------------------------------------------


class _RelayStart:
    """What `relay()` returns: await it for the running relay, or `async with`."""

    def __init__(self, relay: Relay) -> None:
        self._relay = relay

    def __await__(self) -> Any:
        return self._start().__await__()

    async def _start(self) -> Relay:
        await self._relay.start()
        return self._relay

    async def __aenter__(self) -> Relay:
        return await self._start()

    async def __aexit__(self, *exc: object) -> None:
        await self._relay.close()


def relay(
    upstream: str | None,
    host: str = "127.0.0.1",
    port: int = 0,
    on_frame: FrameHook | None = None,
    tls: ssl.SSLContext | None = None,
    **options: Any,
) -> _RelayStart:
    """Start a relay to `upstream` (a ws:// or wss:// URL; the client's path and query
    are appended; None: an HTTP proxy, see "Proxy mode" in the module docstring) in the
    running loop: `relay = await rw.relay(...)` or `async with rw.relay(...) as relay:`.
    Binds 127.0.0.1 unless told otherwise (`port=0`: a free port). See the module
    docstring for what it forwards and how.

    Options: `upstream_tls` (an `ssl.SSLContext` verifying a wss upstream; default: the
    system's CAs), `compression` ("auto", None, or a `rawws_nb.Deflate`), `proxy` (for
    the upstream connections, as the connect functions take it), `open_timeout`,
    `close_timeout`, `max_message_size`, `max_queue`, `record`, `timeline_capacity`,
    `payload_cap` (each leg's session options); in proxy mode `ca` (a `LocalCA` to
    issue the intercepted hosts' certificates; default: a new one, `relay.ca`) and
    `intercept_tls` (True, False, or `f(host, port) -> bool`)."""
    return _RelayStart(Relay(upstream, host, port, on_frame, tls, **options))
