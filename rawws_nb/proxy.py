"""The proxy step: how the connect functions open the byte stream to the server,
directly or through a proxy (DESIGN.md, "Proxies").

`proxy=` on every entry point:

- `True` (the default): from the environment as the websockets library does
  (`urllib.request.getproxies()`: `ws_proxy`, then `socks_proxy`, then `https_proxy`,
  then `http_proxy` for ws://; `wss_proxy`, `socks_proxy`, `https_proxy` for wss://;
  `no_proxy` honoured through `urllib.request.proxy_bypass`), except that loopback hosts
  (`localhost`, 127.0.0.0/8, ::1: the embedded server) are always reached directly;
- a URL (`http://`, `https://`, `socks4://`, `socks4a://`, `socks5://`, `socks5h://`,
  with `user:password@` for authentication): that proxy, for any host, loopback included;
- `None` (or False): directly.

HTTP(S) proxies get `CONNECT host:port` (with `Proxy-Authorization: Basic` when the URL
has credentials), for ws and wss alike; an https:// proxy is reached over TLS first
(verified with `proxy_tls`, else the system's CAs), and the server's TLS runs inside the
tunnel, verified as usual (TLS in TLS). SOCKS goes through python-socks; socks5h and
socks4a let the proxy resolve the server's name, socks5 and socks4 resolve it here.
A proxy that cannot be reached, refuses or answers nonsense raises `ProxyError` (with
`.status` when it answered with an HTTP status); a refusal is reported as soon as its
head arrives, never waited on. Every step is recorded in a `HandshakeInfo`.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import os
import socket
import ssl
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass

import h11
from python_socks import ProxyConnectionError as SocksConnectionError
from python_socks import ProxyError as SocksReplyError
from python_socks import ProxyTimeoutError as SocksTimeoutError
from python_socks import ProxyType
from python_socks.async_.asyncio import Proxy as SocksProxy

from .errors import ProxyError
from .handshake import format_host
from .handshake_info import HandshakeInfo, parse_head, redact_headers
from .loops import as_transport

__all__ = [
    "PROXY_SCHEMES",
    "ProxyURL",
    "dial",
    "environment_proxy",
    "is_loopback",
    "open_transport",
    "parse_proxy",
    "select_proxy",
]

PROXY_SCHEMES = ("http", "https", "socks4", "socks4a", "socks5", "socks5h")
MAX_PROXY_HEAD = 16 * 1024  # bytes of a proxy's answer head accepted
MAX_PROXY_BODY = 4096  # bytes of a refusal body kept
REFUSAL_GRACE = 0.25  # seconds a refusal's body may take to arrive before the refusal is reported
_SOCKS = {
    "socks4": (ProxyType.SOCKS4, False),
    "socks4a": (ProxyType.SOCKS4, True),
    "socks5": (ProxyType.SOCKS5, False),
    "socks5h": (ProxyType.SOCKS5, True),
}
_NO_TIMEOUT = 10.0**9  # python-socks always applies a timeout; the caller's open_timeout is the real bound


@dataclass(frozen=True)
class ProxyURL:
    """A parsed proxy address; `url` shows it with the password hidden."""

    scheme: str
    host: str
    port: int
    username: str | None = None
    password: str | None = None

    @property
    def is_socks(self) -> bool:
        return self.scheme.startswith("socks")

    @property
    def url(self) -> str:
        auth = f"{urllib.parse.quote(self.username, safe='')}:***@" if self.username is not None else ""
        return f"{self.scheme}://{auth}{format_host(self.host)}:{self.port}"

    def __repr__(self) -> str:
        return f"ProxyURL({self.url!r})"


def parse_proxy(url: str) -> ProxyURL:
    """Check and split a proxy URL; `ValueError` says what is wrong with it."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in PROXY_SCHEMES:
        raise ValueError(f"proxy URL {url!r}: scheme must be one of {', '.join(PROXY_SCHEMES)}")
    if not parts.hostname:
        raise ValueError(f"proxy URL {url!r} has no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"proxy URL {url!r}: a proxy URL has no path, query or fragment")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"proxy URL {url!r} has an invalid port") from None
    username = password = None
    if parts.username is not None:
        if parts.password is None:
            raise ValueError(f"proxy URL {url!r} has a user name but no password (use user:password@)")
        username = urllib.parse.unquote(parts.username)
        password = urllib.parse.unquote(parts.password)
    default = {"http": 80, "https": 443}.get(scheme, 1080)
    return ProxyURL(scheme, parts.hostname, port or default, username, password)


def is_loopback(host: str) -> bool:
    """`localhost` (and names under it) or a loopback address: always reached directly with `proxy=True`."""
    name = host.strip("[]").lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def environment_proxy(host: str, port: int, secure: bool) -> str | None:
    """The proxy URL the environment gives for this server, or None (`no_proxy` matched,
    or nothing set). Same order as the websockets library: a WebSocket-specific proxy,
    then SOCKS, then HTTPS, then (ws:// only) HTTP."""
    if urllib.request.proxy_bypass(f"{host}:{port}"):
        return None
    proxies = urllib.request.getproxies()
    for key in ("wss", "socks", "https") if secure else ("ws", "socks", "https", "http"):
        found = proxies.get(key)
        if found:
            if key == "socks" and found.startswith("http://"):
                # The OS settings give SOCKS proxies as http://host:port.
                found = "socks5h://" + found.removeprefix("http://")
            return found
    return None


def select_proxy(option: str | bool | None, host: str, port: int, secure: bool) -> ProxyURL | None:
    """What `proxy=` means for this server: a `ProxyURL`, or None to connect directly."""
    if option is None or option is False:
        return None
    if option is True:
        if is_loopback(host):
            return None
        found = environment_proxy(host, port, secure)
        if not found:
            return None
        try:
            return parse_proxy(found)
        except ValueError as exc:
            raise ValueError(f"{exc} (from the environment; pass proxy=None to connect directly)") from None
    if isinstance(option, str):
        return parse_proxy(option)
    raise TypeError(f"proxy= takes True (from the environment), a proxy URL or None, not {option!r}")


async def open_transport(
    protocol: asyncio.Protocol,
    host: str,
    port: int,
    *,
    tls: ssl.SSLContext | None,
    proxy: ProxyURL | None,
    proxy_tls: ssl.SSLContext | None,
    info: HandshakeInfo,
    sock: socket.socket | None = None,
) -> asyncio.Transport:
    """Open the stream to `host:port` (through `proxy` if not None, TLS with `tls` if not
    None), then give it to `protocol` (`connection_made`, then any bytes that came early).
    Each step is timed into `info`; `info.step` names the one in progress. `sock`: a
    socket already connected to `host:port` (the relay's proxy mode), used instead."""
    loop = asyncio.get_running_loop()
    if sock is not None:
        return await _start(loop, protocol, sock, tls, host, info)
    if proxy is None:
        sock = await _tcp(host, port, info, what="server")
        return await _start(loop, protocol, sock, tls, host, info)
    info.proxy = proxy.url
    if proxy.is_socks:
        sock = await _socks(proxy, host, port, info)
        return await _start(loop, protocol, sock, tls, host, info)
    sock = await _tcp(proxy.host, proxy.port, info, what="proxy", proxy=proxy)
    transport, trailing = await _http_tunnel(loop, sock, proxy, proxy_tls, host, port, info)
    try:
        if tls is not None:
            if trailing:
                raise ProxyError(
                    f"proxy {proxy.url} sent {len(trailing)} bytes after its 200 answer, before TLS started",
                    proxy=proxy.url,
                    status=200,
                )
            info.step = "tls"
            t0 = time.perf_counter()
            placeholder = _Buffering()
            inner = await loop.start_tls(transport, placeholder, tls, server_hostname=host)
            if inner is None:
                raise ProxyError(f"TLS could not start on the connection through {proxy.url}", proxy=proxy.url)
            transport = as_transport(inner)
            info.timings.tls = time.perf_counter() - t0
            trailing = placeholder.take()
            _tls_details(transport, info)
    except BaseException:
        transport.abort()
        raise
    transport.set_protocol(protocol)
    protocol.connection_made(transport)
    if trailing:
        protocol.data_received(trailing)
    return transport


async def dial(host: str, port: int) -> socket.socket:
    """A non-blocking TCP socket connected to `host:port` (the first address that
    accepts); `OSError` says which addresses failed and why."""
    return await _tcp(host, port, HandshakeInfo(url=f"tcp://{format_host(host)}:{port}"), what="server")


async def _tcp(host: str, port: int, info: HandshakeInfo, what: str, proxy: ProxyURL | None = None) -> socket.socket:
    """DNS, then a TCP connection to the first address that accepts (in getaddrinfo's order)."""
    loop = asyncio.get_running_loop()
    info.step = "dns"
    t0 = time.perf_counter()
    try:
        addresses = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        message = f"cannot resolve the {what}'s host name {host!r}: {exc.strerror}"
        if proxy is not None:
            raise ProxyError(message, proxy=proxy.url) from exc
        raise socket.gaierror(exc.errno, message) from exc
    info.timings.dns = time.perf_counter() - t0
    info.step = "connect"
    t0 = time.perf_counter()
    failures: list[tuple[str, str]] = []
    last: OSError | None = None
    for family, kind, proto, _name, address in addresses:
        shown = f"{format_host(str(address[0]))}:{address[1]!s}"
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, address)
        except OSError as exc:
            sock.close()
            failures.append((shown, os.strerror(exc.errno) if exc.errno else str(exc)))
            last = exc
            continue
        except BaseException:
            sock.close()
            raise
        info.timings.connect = time.perf_counter() - t0
        info.remote_address = shown
        return sock
    asked = f"{format_host(host)}:{port}"
    why = "; ".join(reason if shown == asked else f"{shown}: {reason}" for shown, reason in failures)
    message = f"cannot connect to the {what} {asked}: {why or 'no address'}"
    if proxy is not None:
        raise ProxyError(message, proxy=proxy.url) from last
    raise OSError(last.errno if last else None, message) from last


async def _start(
    loop: asyncio.AbstractEventLoop,
    protocol: asyncio.Protocol,
    sock: socket.socket,
    tls: ssl.SSLContext | None,
    host: str,
    info: HandshakeInfo,
) -> asyncio.Transport:
    """The socket (connected to the server or through a SOCKS tunnel) becomes a transport; TLS if asked."""
    if tls is not None:
        info.step = "tls"
    t0 = time.perf_counter()
    try:
        transport, _ = await loop.create_connection(
            lambda: protocol, sock=sock, ssl=tls, server_hostname=host if tls is not None else None
        )
    except BaseException:
        sock.close()
        raise
    if tls is not None:
        info.timings.tls = time.perf_counter() - t0
        _tls_details(transport, info)
    return as_transport(transport)


def _tls_details(transport: asyncio.BaseTransport, info: HandshakeInfo) -> None:
    obj = transport.get_extra_info("ssl_object")
    if isinstance(obj, ssl.SSLObject | ssl.SSLSocket):
        info.tls_version = obj.version()
        cipher = obj.cipher()
        info.tls_cipher = cipher[0] if cipher else None


async def _socks(proxy: ProxyURL, host: str, port: int, info: HandshakeInfo) -> socket.socket:
    """The SOCKS exchange, by python-socks (which also opens the TCP connection to the proxy)."""
    loop = asyncio.get_running_loop()
    info.step = "dns"
    t0 = time.perf_counter()
    try:
        addresses = await loop.getaddrinfo(proxy.host, proxy.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ProxyError(
            f"cannot resolve the proxy's host name {proxy.host!r}: {exc.strerror}", proxy=proxy.url
        ) from exc
    info.timings.dns = time.perf_counter() - t0
    proxy_ip = str(addresses[0][4][0])
    info.step = "proxy"
    kind, remote_dns = _SOCKS[proxy.scheme]
    client = SocksProxy(kind, proxy_ip, proxy.port, proxy.username, proxy.password, rdns=remote_dns)
    t0 = time.perf_counter()
    target = f"{format_host(host)}:{port}"
    try:
        sock = await client.connect(host, port, timeout=_NO_TIMEOUT)
    except SocksConnectionError as exc:
        raise ProxyError(f"cannot connect to the SOCKS proxy {proxy.url}: {exc}", proxy=proxy.url) from exc
    except SocksTimeoutError as exc:
        raise ProxyError(f"SOCKS proxy {proxy.url} did not answer: {exc}", proxy=proxy.url) from exc
    except SocksReplyError as exc:
        code = f" (reply code {exc.error_code})" if exc.error_code is not None else ""
        raise ProxyError(
            f"SOCKS proxy {proxy.url} refused to connect to {target}: {exc}{code}", proxy=proxy.url, reason=str(exc)
        ) from exc
    info.timings.proxy = time.perf_counter() - t0
    info.remote_address = f"{format_host(proxy_ip)}:{proxy.port}"
    return sock


@dataclass(frozen=True)
class _Answer:
    trailing: bytes


class _Buffering(asyncio.Protocol):
    """Holds bytes that arrive between two owners of a transport."""

    def __init__(self) -> None:
        self.data = bytearray()

    def data_received(self, data: bytes) -> None:
        self.data += data

    def take(self) -> bytes:
        data = bytes(self.data)
        self.data.clear()
        return data


class _TunnelProtocol(_Buffering):
    """Sends CONNECT and reads the proxy's answer (h11 parses it).

    A 2xx opens the tunnel. Any other answer is a refusal, reported when its body has
    ended or after `REFUSAL_GRACE` seconds at most, with whatever of the body came: a
    refused CONNECT never waits on a proxy that keeps the connection open.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, proxy: ProxyURL, target: str, headers: list[tuple[str, str]]
    ) -> None:
        super().__init__()
        self.loop = loop
        self.proxy = proxy
        self.target = target
        self.answer: asyncio.Future[_Answer] = loop.create_future()
        self.conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_PROXY_HEAD)
        self.request = self.conn.send(h11.Request(method="CONNECT", target=target, headers=headers)) or b""
        self.raw = bytearray()
        self.status_line: str | None = None
        self.headers: list[tuple[str, str]] = []
        self.response: h11.Response | None = None
        self.body = bytearray()
        self.grace: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        as_transport(transport).write(self.request)

    def data_received(self, data: bytes) -> None:
        if self.answer.done():
            super().data_received(data)  # after the answer: the tunnel's first bytes
            return
        if self.status_line is None and len(self.raw) < MAX_PROXY_HEAD:
            self.raw += data
            head = parse_head(bytes(self.raw))
            if head is not None:
                self.status_line, self.headers = head
        self._feed(data)

    def _feed(self, data: bytes) -> None:
        try:
            self.conn.receive_data(data)
            self._next()
        except h11.RemoteProtocolError as exc:
            if self.response is not None:
                self._refused()
            else:
                self._fail(f"proxy {self.proxy.url} answered CONNECT with something that is not HTTP ({exc})")

    def _next(self) -> None:
        while not self.answer.done():
            event = self.conn.next_event()
            if isinstance(event, h11.Response):
                self.response = event
                if not 200 <= event.status_code < 300:
                    self.grace = self.loop.call_later(REFUSAL_GRACE, self._refused)
            elif isinstance(event, h11.Data):
                self.body += event.data
                if len(self.body) >= MAX_PROXY_BODY:
                    self._refused()
            elif isinstance(event, h11.InformationalResponse):
                continue
            elif event is h11.NEED_DATA:
                return
            elif event is h11.PAUSED and self.response is not None and 200 <= self.response.status_code < 300:
                trailing, _closed = self.conn.trailing_data
                self.answer.set_result(_Answer(bytes(trailing)))
            elif self.response is not None:
                self._refused()  # EndOfMessage, ConnectionClosed
            else:
                self._closed()

    def _refused(self) -> None:
        if self.grace is not None:
            self.grace.cancel()
        response = self.response
        if self.answer.done() or response is None:
            return
        status = response.status_code
        reason = response.reason.decode("latin-1")
        headers = self.headers or [(k.decode("latin-1"), v.decode("latin-1")) for k, v in response.headers.raw_items()]
        if status == 407 or (status == 401 and self.proxy.username is not None):
            # 407 is the proxy's status for this; tinyproxy 1.11 answers wrong credentials with 401.
            hint = (
                "the proxy rejected the credentials in the proxy URL"
                if self.proxy.username is not None
                else "the proxy needs authentication: put user:password@ in the proxy URL"
            )
        else:
            hint = "the proxy refused the tunnel"
        message = f"proxy {self.proxy.url} answered CONNECT {self.target} with HTTP {status} {reason}".rstrip()
        error = ProxyError(
            f"{message}; {hint}",
            proxy=self.proxy.url,
            status=status,
            reason=reason,
            headers=headers,
            body=bytes(self.body[:MAX_PROXY_BODY]),
        )
        self.answer.set_exception(error)

    def _fail(self, message: str) -> None:
        if self.grace is not None:
            self.grace.cancel()
        if not self.answer.done():
            self.answer.set_exception(ProxyError(message, proxy=self.proxy.url))

    def _closed(self) -> None:
        if self.response is not None:
            self._refused()
        self._fail(f"proxy {self.proxy.url} closed the connection before answering CONNECT {self.target}")

    def eof_received(self) -> bool | None:
        if self.response is not None and not self.answer.done():
            self._feed(b"")  # the end of a refusal's body read until close
        self._closed()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed()


async def _http_tunnel(
    loop: asyncio.AbstractEventLoop,
    sock: socket.socket,
    proxy: ProxyURL,
    proxy_tls: ssl.SSLContext | None,
    host: str,
    port: int,
    info: HandshakeInfo,
) -> tuple[asyncio.Transport, bytes]:
    """CONNECT through an http:// or https:// proxy; returns the tunnel's transport and any
    bytes that came after the proxy's 200 answer."""
    info.step = "proxy"
    t0 = time.perf_counter()
    target = f"{format_host(host)}:{port}"
    headers = [("Host", target)]
    if proxy.username is not None:
        assert proxy.password is not None
        headers.append(("Proxy-Authorization", _basic(proxy.username, proxy.password)))
    tunnel = _TunnelProtocol(loop, proxy, target, headers)
    head = parse_head(tunnel.request)
    if head is not None:
        info.proxy_request_line, sent = head
        info.proxy_request_headers = redact_headers(sent)
    context = None
    if proxy.scheme == "https":
        context = proxy_tls if proxy_tls is not None else ssl.create_default_context()
    try:
        transport, _ = await loop.create_connection(
            lambda: tunnel, sock=sock, ssl=context, server_hostname=proxy.host if context is not None else None
        )
    except ssl.SSLCertVerificationError as exc:
        sock.close()
        raise ProxyError(
            f"TLS certificate of the proxy {proxy.url} rejected: {exc.verify_message}"
            "; pass proxy_tls=ssl_context that trusts the proxy's CA",
            proxy=proxy.url,
        ) from exc
    except (OSError, ssl.SSLError) as exc:
        sock.close()
        raise ProxyError(f"TLS with the proxy {proxy.url} failed: {exc}", proxy=proxy.url) from exc
    except BaseException:
        sock.close()
        raise
    transport = as_transport(transport)
    try:
        answer = await tunnel.answer
    except BaseException:
        transport.abort()
        raise
    finally:
        info.proxy_status_line = tunnel.status_line
        info.proxy_response_headers = tunnel.headers
    info.timings.proxy = time.perf_counter() - t0
    return transport, answer.trailing + tunnel.take()


def _basic(username: str, password: str) -> str:
    token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    return f"Basic {token}"
