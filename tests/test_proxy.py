"""Proxies, against real ones: Debian's tinyproxy (HTTP CONNECT, with and without
BasicAuth, and one that allows CONNECT to port 443 only) and Dante (SOCKS4/5, socks5h),
ws and wss (the embedded server with a trustme certificate) through each; plus a
stand-in CONNECT proxy on loopback for what real proxies cannot be made to do on cue
(the environment path with a non-loopback host name, a TLS-speaking https:// proxy,
silence, garbage, a refusal that keeps the connection open).

The proxies are started here on free 127.0.0.1 ports and stopped by PID; `make
proxy-deps` installs them. A missing binary fails the test (it does not skip).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import rawws_nb as rw
from rawws_nb.errors import ProxyError

USER, PASSWORD = "alice", "s3cret"


# --- starting real proxies --------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _binary(name: str, package: str) -> str:
    places = (f"/usr/sbin/{name}", f"/usr/bin/{name}")
    found = shutil.which(name) or next((p for p in places if os.path.exists(p)), None)
    if found is None:
        pytest.fail(f"{name} is not installed: run `make proxy-deps` (apt-get install {package})", pytrace=False)
    return found


class RealProxy:
    """A proxy process on 127.0.0.1:`port`; `log()` is what it wrote so far."""

    def __init__(self, argv: list[str], port: int, logfile: Path) -> None:
        self.port = port
        self.logfile = logfile
        self._out = logfile.open("wb")
        self.proc = subprocess.Popen(argv, stdout=self._out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"{argv[0]} exited at start ({self.proc.returncode}):\n{self.log()}", pytrace=False)
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    pytest.fail(f"{argv[0]} did not listen on 127.0.0.1:{port}:\n{self.log()}", pytrace=False)
                time.sleep(0.05)

    def log(self) -> str:
        return self.logfile.read_text(errors="replace")

    async def wait_log(self, text: str, timeout: float = 3.0) -> str:
        deadline = time.monotonic() + timeout
        while text not in self.log() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return self.log()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, 15)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, 9)
                self.proc.wait(5)
        self._out.close()


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="rawws-proxy-") as d:
        yield Path(d)


def _tinyproxy(workdir: Path, name: str, extra: str = "") -> Iterator[RealProxy]:
    binary = _binary("tinyproxy", "tinyproxy")
    port = _free_port()
    conf = workdir / f"{name}.conf"
    conf.write_text(f"Port {port}\nListen 127.0.0.1\nAllow 127.0.0.1\nTimeout 60\nLogLevel Connect\n{extra}")
    proxy = RealProxy([binary, "-d", "-c", str(conf)], port, workdir / f"{name}.log")
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def tinyproxy(workdir: Path) -> Iterator[RealProxy]:
    yield from _tinyproxy(workdir, "tinyproxy")


@pytest.fixture(scope="module")
def tinyproxy_auth(workdir: Path) -> Iterator[RealProxy]:
    yield from _tinyproxy(workdir, "tinyproxy-auth", f"BasicAuth {USER} {PASSWORD}\n")


@pytest.fixture(scope="module")
def tinyproxy_443(workdir: Path) -> Iterator[RealProxy]:
    yield from _tinyproxy(workdir, "tinyproxy-443", "ConnectPort 443\n")


@pytest.fixture(scope="module")
def dante(workdir: Path) -> Iterator[RealProxy]:
    binary = _binary("danted", "dante-server")
    port = _free_port()
    conf = workdir / "danted.conf"
    conf.write_text(
        "logoutput: stderr\n"
        f"internal: 127.0.0.1 port = {port}\n"
        "external: 127.0.0.1\n"
        "socksmethod: none\n"
        "clientmethod: none\n"
        "user.privileged: root\n"
        "user.unprivileged: nobody\n"
        "client pass { from: 127.0.0.0/8 to: 0.0.0.0/0 }\n"
        "socks pass { from: 127.0.0.0/8 to: 0.0.0.0/0 log: connect error }\n"
    )
    proxy = RealProxy([binary, "-f", str(conf), "-N", "1"], port, workdir / "danted.log")
    yield proxy
    proxy.stop()


async def _echo(session: rw.RawSession, text: str = "through") -> None:
    await session.send(text)
    frame = await asyncio.wait_for(session.incoming.receive(), 5)
    assert frame.read_text() == text
    await session.close()


def _closed_port() -> int:
    return _free_port()  # nothing listens there once the probe socket is closed


# --- tinyproxy: HTTP CONNECT ----------------------------------------------------------


async def test_ws_through_tinyproxy(server, tinyproxy):
    proxy = f"http://127.0.0.1:{tinyproxy.port}"
    session = await rw.web_socket_raw_session(server.url + "/echo", proxy=proxy)
    hs = session.handshake
    assert hs.proxy == proxy
    assert hs.proxy_request_line == f"CONNECT 127.0.0.1:{server.port} HTTP/1.1"
    assert hs.proxy_status_line is not None and hs.proxy_status_line.split()[1] == "200"
    assert hs.remote_address == f"127.0.0.1:{tinyproxy.port}"
    assert hs.timings.proxy is not None and hs.timings.upgrade is not None and hs.timings.tls is None
    await _echo(session)
    log = await tinyproxy.wait_log(f"CONNECT 127.0.0.1:{server.port}")
    assert f"CONNECT 127.0.0.1:{server.port} HTTP/1.1" in log


async def test_wss_through_tinyproxy_verifies_the_server_inside_the_tunnel(tls_server, client_tls, tinyproxy):
    proxy = f"http://127.0.0.1:{tinyproxy.port}"
    session = await rw.web_socket_raw_session(tls_server.url + "/echo", tls=client_tls, proxy=proxy)
    hs = session.handshake
    assert hs.tls_version is not None and hs.tls_version.startswith("TLS")
    assert hs.timings.tls is not None and hs.timings.proxy is not None
    await _echo(session)
    # Default verification (system CAs) inside the tunnel: the trustme CA is not trusted.
    with pytest.raises(ssl.SSLCertVerificationError, match="inside the tunnel of the proxy"):
        await rw.web_socket_raw_session(tls_server.url + "/echo", proxy=proxy)


@pytest.mark.parametrize("secure", [False, True], ids=["ws", "wss"])
async def test_tinyproxy_basic_auth_right_password(server, tls_server, client_tls, tinyproxy_auth, secure):
    proxy = f"http://{USER}:{PASSWORD}@127.0.0.1:{tinyproxy_auth.port}"
    url = (tls_server.url if secure else server.url) + "/echo"
    session = await rw.web_socket_raw_session(url, proxy=proxy, tls=client_tls if secure else None)
    hs = session.handshake
    assert hs.proxy == f"http://{USER}:***@127.0.0.1:{tinyproxy_auth.port}"
    assert ("Proxy-Authorization", "Basic ***") in hs.proxy_request_headers
    assert PASSWORD not in str(hs) and PASSWORD not in repr(hs.as_dict())
    await _echo(session)


async def test_tinyproxy_basic_auth_wrong_password(server, tinyproxy_auth):
    # tinyproxy 1.11.1 answers a wrong Proxy-Authorization with "401 Unauthorized" and
    # WWW-Authenticate (407 only when the header is missing): the error reports what it said.
    proxy = f"http://{USER}:wrong@127.0.0.1:{tinyproxy_auth.port}"
    t0 = time.monotonic()
    with pytest.raises(ProxyError) as info:
        await rw.web_socket_raw_session(server.url + "/echo", proxy=proxy, open_timeout=10)
    assert time.monotonic() - t0 < 2  # reported at once, not at open_timeout
    exc = info.value
    assert isinstance(exc, rw.RawWsError)
    assert (exc.status, exc.reason) == (401, "Unauthorized")
    assert exc.header("www-authenticate") == 'Basic realm="Tinyproxy"'
    assert "HTTP 401 Unauthorized; the proxy rejected the credentials in the proxy URL" in str(exc)
    assert "wrong" not in str(exc) and exc.proxy == f"http://{USER}:***@127.0.0.1:{tinyproxy_auth.port}"
    assert b"<html>" in exc.body
    assert exc.handshake.step == "proxy"
    assert exc.handshake.proxy_status_line == "HTTP/1.0 401 Unauthorized"
    assert ("Proxy-Authorization", "Basic ***") in exc.handshake.proxy_request_headers


async def test_tinyproxy_without_credentials_is_407(server, tinyproxy_auth):
    with pytest.raises(ProxyError, match=r"HTTP 407 .*put user:password@ in the proxy URL") as info:
        await rw.web_socket_raw_session(server.url + "/echo", proxy=f"http://127.0.0.1:{tinyproxy_auth.port}")
    exc = info.value
    assert (exc.status, exc.reason) == (407, "Proxy Authentication Required")
    assert exc.header("Proxy-Authenticate") == 'Basic realm="Tinyproxy"'
    assert b"This proxy requires authentication" in exc.body


async def test_tinyproxy_refusing_the_port_is_403(server, tinyproxy_443):
    with pytest.raises(ProxyError, match="HTTP 403 Access violation") as info:
        await rw.web_socket_raw_session(server.url + "/echo", proxy=f"http://127.0.0.1:{tinyproxy_443.port}")
    assert info.value.status == 403
    assert b"not allowed with the port" in info.value.body


async def test_tinyproxy_that_cannot_reach_the_server_is_500(tinyproxy):
    port = _closed_port()
    with pytest.raises(ProxyError, match="HTTP 500 Unable to connect") as info:
        await rw.web_socket_raw_session(f"ws://127.0.0.1:{port}/", proxy=f"http://127.0.0.1:{tinyproxy.port}")
    assert info.value.status == 500


async def test_a_proxy_port_that_refuses_connections(server):
    port = _closed_port()
    with pytest.raises(ProxyError, match=f"cannot connect to the proxy 127.0.0.1:{port}: Connection refused") as info:
        await rw.web_socket_raw_session(server.url + "/echo", proxy=f"http://127.0.0.1:{port}")
    assert info.value.status is None
    with pytest.raises(ProxyError, match="cannot connect to the SOCKS proxy"):
        await rw.web_socket_raw_session(server.url + "/echo", proxy=f"socks5://127.0.0.1:{port}")


@pytest.mark.parametrize("entry", ["web_socket_raw_session", "web_socket_raw", "block", "ws_raw", "wss_raw", "sync"])
async def test_every_entry_point_takes_proxy(server, tls_server, client_tls, tinyproxy, entry):
    proxy = f"http://127.0.0.1:{tinyproxy.port}"
    before = tinyproxy.log().count("CONNECT 127.0.0.1:")
    if entry == "web_socket_raw_session":
        await _echo(await rw.web_socket_raw_session(server.url + "/echo", proxy=proxy))
    elif entry == "web_socket_raw":
        async with rw.web_socket_raw(host="127.0.0.1", port=server.port, path="/echo", proxy=proxy) as session:
            assert session.handshake.proxy == proxy
            await session.send("x")
            assert (await session.incoming.receive()).read_text() == "x"
    elif entry == "block":

        async def block(session: rw.RawSession) -> str:
            return str(session.handshake.proxy)

        assert await rw.web_socket_raw(server.url + "/echo", block=block, proxy=proxy) == proxy
    elif entry == "ws_raw":
        async with rw.ws_raw(server.url + "/echo", proxy=proxy) as session:
            assert session.handshake.proxy == proxy
    elif entry == "wss_raw":
        async with rw.wss_raw(host="127.0.0.1", port=tls_server.port, path="/echo", tls=client_tls, proxy=proxy) as s:
            assert s.handshake.proxy == proxy and s.handshake.tls_version is not None
    else:
        session = await asyncio.to_thread(rw.connect_sync, server.url + "/echo", proxy=proxy)
        assert session.handshake.proxy == proxy
        await asyncio.to_thread(rw.sync.close_sync, session, None, 5)
    log = await tinyproxy.wait_log("CONNECT 127.0.0.1:")
    assert log.count("CONNECT 127.0.0.1:") > before


# --- Dante: SOCKS ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scheme", "host"),
    [("socks5", "127.0.0.1"), ("socks5", "localhost"), ("socks5h", "localhost"), ("socks4", "127.0.0.1")],
)
@pytest.mark.parametrize("secure", [False, True], ids=["ws", "wss"])
async def test_through_dante(server, tls_server, client_tls, dante, scheme, host, secure):
    srv = tls_server if secure else server
    url = f"{'wss' if secure else 'ws'}://{host}:{srv.port}/echo"
    proxy = f"{scheme}://127.0.0.1:{dante.port}"
    session = await rw.web_socket_raw_session(url, proxy=proxy, tls=client_tls if secure else None)
    hs = session.handshake
    assert hs.proxy == proxy and hs.remote_address == f"127.0.0.1:{dante.port}"
    assert hs.timings.proxy is not None and hs.proxy_request_line is None  # SOCKS: no HTTP exchange
    assert (hs.tls_version is not None) == secure
    assert hs.request_header("Host") == f"{host}:{srv.port}"
    await _echo(session)
    log = await dante.wait_log(f"127.0.0.1.{srv.port}")
    assert f"127.0.0.1.{srv.port}" in log  # Dante's own record of the connection it made


async def test_socks5h_sends_the_name_and_dante_resolves_it(server, dante):
    # socks5h: the name goes to the proxy; `.invalid` cannot resolve there, so Dante refuses.
    with pytest.raises(ProxyError, match=r"SOCKS proxy socks5h://127.0.0.1:\d+ refused to connect to example.invalid"):
        await rw.web_socket_raw_session(
            f"ws://example.invalid:{server.port}/", proxy=f"socks5h://127.0.0.1:{dante.port}"
        )


async def test_dante_refusing_a_closed_port(dante):
    port = _closed_port()
    with pytest.raises(ProxyError, match=r"refused to connect to 127.0.0.1:\d+: .*reply code \d+") as info:
        await rw.web_socket_raw_session(f"ws://127.0.0.1:{port}/", proxy=f"socks5://127.0.0.1:{dante.port}")
    assert info.value.status is None and info.value.reason
    assert info.value.handshake.step == "proxy"


# --- a stand-in CONNECT proxy ---------------------------------------------------------


class StandIn:
    """A CONNECT proxy on 127.0.0.1 that records each request head and, per `mode`:
    "tunnel" to `upstream` (host, port) whatever was asked, "502", "silent", "close",
    "garbage", or "407-open" (a 407 whose body never ends, connection kept open)."""

    def __init__(self, mode: str = "tunnel", upstream: tuple[str, int] | None = None, tls=None) -> None:
        self.mode = mode
        self.upstream = upstream
        self.tls = tls
        self.requests: list[str] = []
        self.server: asyncio.Server | None = None
        self.port = 0
        self.tasks: set[asyncio.Task] = set()

    async def __aenter__(self) -> StandIn:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0, ssl=self.tls)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        assert self.server is not None
        self.server.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.tasks.add(asyncio.current_task())
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            self.requests.append(head.decode("latin-1"))
            if self.mode == "502":
                writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 11\r\nConnection: close\r\n\r\nno upstream")
            elif self.mode == "garbage":
                writer.write(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
            elif self.mode == "407-open":
                writer.write(
                    b"HTTP/1.1 407 Who Are You\r\nProxy-Authenticate: Basic realm=x\r\nContent-Length: 999\r\n\r\nab"
                )
                await writer.drain()
                await asyncio.sleep(3600)
            elif self.mode == "silent":
                await asyncio.sleep(3600)
            elif self.mode == "tunnel":
                assert self.upstream is not None
                up_reader, up_writer = await asyncio.open_connection(*self.upstream)
                writer.write(b"HTTP/1.1 200 Connection established\r\nVia: stand-in\r\n\r\n")
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
                return
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


@pytest.fixture
def no_env_proxy(monkeypatch):
    for name in list(os.environ):
        if name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)
    return monkeypatch


async def test_environment_proxy_for_a_non_loopback_host(server, no_env_proxy):
    async with StandIn("tunnel", ("127.0.0.1", server.port)) as standin:
        no_env_proxy.setenv("HTTP_PROXY", f"http://127.0.0.1:{standin.port}")
        session = await rw.web_socket_raw_session(f"ws://example.invalid:{server.port}/echo")  # proxy=True
        assert standin.requests[0].startswith(f"CONNECT example.invalid:{server.port} HTTP/1.1\r\n")
        assert session.handshake.proxy == f"http://127.0.0.1:{standin.port}"
        assert session.handshake.request_header("Host") == f"example.invalid:{server.port}"
        assert ("Via", "stand-in") in session.handshake.proxy_response_headers
        await _echo(session)


async def test_environment_proxy_answering_502(no_env_proxy):
    async with StandIn("502") as standin:
        no_env_proxy.setenv("HTTPS_PROXY", f"http://127.0.0.1:{standin.port}")
        with pytest.raises(ProxyError, match=r"CONNECT example\.invalid:443 with HTTP 502 Bad Gateway") as info:
            await rw.web_socket_raw_session("wss://example.invalid/")
        assert standin.requests == [standin.requests[0]]
        assert standin.requests[0].startswith("CONNECT example.invalid:443 HTTP/1.1\r\nHost: example.invalid:443\r\n")
        assert info.value.status == 502 and info.value.reason == "Bad Gateway" and info.value.body == b"no upstream"


async def test_environment_wss_verifies_the_target_name_inside_the_tunnel(ca, client_tls, no_env_proxy):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("example.invalid").configure_cert(ctx)
    async with rw.serve(tls=ctx) as srv, StandIn("tunnel", ("127.0.0.1", srv.port)) as standin:
        no_env_proxy.setenv("HTTPS_PROXY", f"http://127.0.0.1:{standin.port}")
        session = await rw.web_socket_raw_session(f"wss://example.invalid:{srv.port}/echo", tls=client_tls)
        assert standin.requests[0].startswith(f"CONNECT example.invalid:{srv.port} ")
        await _echo(session)
        # The same server reached as 127.0.0.1 (explicit proxy): the name does not match.
        with pytest.raises(ssl.SSLCertVerificationError, match="inside the tunnel"):
            await rw.web_socket_raw_session(
                f"wss://127.0.0.1:{srv.port}/echo", tls=client_tls, proxy=f"http://127.0.0.1:{standin.port}"
            )


async def test_ws_proxy_is_preferred_and_no_proxy_is_honoured(server, no_env_proxy):
    async with StandIn("502") as http_proxy, StandIn("tunnel", ("127.0.0.1", server.port)) as ws_proxy:
        no_env_proxy.setenv("http_proxy", f"http://127.0.0.1:{http_proxy.port}")
        no_env_proxy.setenv("ws_proxy", f"http://127.0.0.1:{ws_proxy.port}")
        await _echo(await rw.web_socket_raw_session(f"ws://example.invalid:{server.port}/echo"))
        assert len(ws_proxy.requests) == 1 and http_proxy.requests == []
        no_env_proxy.setenv("no_proxy", "example.invalid")
        with pytest.raises(OSError, match=r"cannot resolve the server's host name 'example\.invalid'") as info:
            await rw.web_socket_raw_session(f"ws://example.invalid:{server.port}/echo")
        assert not isinstance(info.value, ProxyError)
        assert len(ws_proxy.requests) == 1 and http_proxy.requests == []


async def test_loopback_is_direct_with_proxy_true_and_proxy_none_is_direct(server, no_env_proxy):
    async with StandIn("502") as standin:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "WS_PROXY", "ALL_PROXY"):
            no_env_proxy.setenv(name, f"http://127.0.0.1:{standin.port}")
        for url in (server.url + "/echo", f"ws://localhost:{server.port}/echo"):
            session = await rw.web_socket_raw_session(url)
            assert session.handshake.proxy is None
            await _echo(session)
        session = await rw.web_socket_raw_session(server.url + "/echo", proxy=None)
        assert session.handshake.proxy is None and session.handshake.timings.proxy is None
        await _echo(session)
        with pytest.raises(OSError, match="cannot resolve"):
            await rw.web_socket_raw_session("ws://example.invalid/", proxy=None)
        assert standin.requests == []
        # An explicit URL is used for any host, loopback included.
        with pytest.raises(ProxyError, match="502"):
            await rw.web_socket_raw_session(server.url + "/echo", proxy=f"http://127.0.0.1:{standin.port}")
        assert len(standin.requests) == 1


@pytest.fixture
def proxy_tls_server_ctx(ca):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(ctx)
    return ctx


@pytest.mark.parametrize("secure", [False, True], ids=["ws", "wss (TLS in TLS)"])
async def test_https_proxy(server, tls_server, client_tls, proxy_tls_server_ctx, secure):
    srv = tls_server if secure else server
    async with StandIn("tunnel", ("127.0.0.1", srv.port), tls=proxy_tls_server_ctx) as standin:
        proxy = f"https://localhost:{standin.port}"
        session = await rw.web_socket_raw_session(
            srv.url + "/echo", proxy=proxy, proxy_tls=client_tls, tls=client_tls if secure else None
        )
        assert session.handshake.proxy == proxy
        assert (session.handshake.tls_version is not None) == secure
        await _echo(session)
        with pytest.raises(ProxyError, match=r"TLS certificate of the proxy .* rejected.*proxy_tls="):
            await rw.web_socket_raw_session(srv.url + "/echo", proxy=proxy, tls=client_tls if secure else None)


async def test_a_silent_proxy_times_out_in_the_proxy_step(server):
    async with StandIn("silent") as standin:
        expected = r"open_timeout=0.3s: stopped in the proxy step \(waiting for the proxy\)"
        with pytest.raises(TimeoutError, match=expected):
            await rw.web_socket_raw_session(
                server.url + "/echo", proxy=f"http://127.0.0.1:{standin.port}", open_timeout=0.3
            )


async def test_a_407_that_keeps_the_connection_open_does_not_hang(server):
    async with StandIn("407-open") as standin:
        t0 = time.monotonic()
        with pytest.raises(ProxyError, match="HTTP 407 Who Are You") as info:
            await rw.web_socket_raw_session(server.url + "/", proxy=f"http://127.0.0.1:{standin.port}", open_timeout=10)
        assert time.monotonic() - t0 < 2
        assert info.value.status == 407 and info.value.body == b"ab"


@pytest.mark.parametrize(
    ("mode", "message"),
    [("close", "closed the connection before answering CONNECT"), ("garbage", "something that is not HTTP")],
)
async def test_a_proxy_that_does_not_speak_http(server, mode, message):
    async with StandIn(mode) as standin:
        with pytest.raises(ProxyError, match=message) as info:
            await rw.web_socket_raw_session(server.url + "/", proxy=f"http://127.0.0.1:{standin.port}")
        assert info.value.status is None


def test_bad_proxy_values_are_clear():
    async def open_with(proxy):
        return await rw.web_socket_raw_session("ws://127.0.0.1:9/", proxy=proxy)

    for value, error, text in [
        ("ftp://127.0.0.1:21", ValueError, "scheme must be one of http, https, socks4"),
        ("http://", ValueError, "has no host"),
        ("http://user@127.0.0.1:3128", ValueError, "user name but no password"),
        ("http://127.0.0.1:3128/path", ValueError, "no path"),
        ("http://127.0.0.1:99999", ValueError, "invalid port"),
        (3128, TypeError, "proxy= takes True"),
    ]:
        with pytest.raises(error, match=text):
            asyncio.run(open_with(value))


def test_a_bad_environment_proxy_says_where_it_came_from(no_env_proxy):
    no_env_proxy.setenv("WSS_PROXY", "ftp://127.0.0.1:21")
    with pytest.raises(ValueError, match=r"from the environment; pass proxy=None"):
        asyncio.run(rw.web_socket_raw_session("wss://example.invalid/"))
