"""The relay as an HTTP proxy (`rw.relay(None)`), with real peers on both sides: the
websockets library's client pointed at the relay with `proxy=` (it tunnels ws and wss
with CONNECT), its server (plain and with a trustme certificate), plain TCP and HTTP
servers for tunnels that are not WebSocket, and hand-written requests for what clients
do not send on cue (absolute-form upgrades, garbage). Nothing is mocked: every test
opens real loopback connections."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import ssl
import subprocess
import sys

import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.server import serve as ws_serve
from websockets.exceptions import InvalidProxyStatus, InvalidStatus

import rawws_nb as rw
from rawws_nb.relay import LocalCA, Relay, rewrite_text

from .relay_support import data_rows, until

pytestmark = pytest.mark.timeout(60)


async def echo(ws):
    async for message in ws:
        await ws.send(message)


def port_of(server) -> int:
    return server.sockets[0].getsockname()[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def read_head(reader) -> bytes:
    return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)


async def connect_through(relay, target: str):
    """A raw CONNECT: (reader, writer, the relay's answer head)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
    writer.write(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    return reader, writer, await read_head(reader)


def all_rows_both_legs(df, opcode, text):
    rows = df[(df.opcode == opcode) & (df.text == text)]
    return sorted(zip(rows.leg, rows.dir, strict=True))


# -- WebSocket through CONNECT ------------------------------------------------------------------


async def test_ws_through_connect_is_a_flow_with_both_legs_recorded():
    async with ws_serve(echo, "127.0.0.1", 0, subprotocols=["chat.v1"]) as server, rw.relay(None) as relay:
        assert relay.url.startswith("http://127.0.0.1:") and relay.proxy_mode
        url = f"ws://127.0.0.1:{port_of(server)}/chat?room=1"
        async with ws_connect(url, proxy=relay.url, subprotocols=["chat.v1"], compression=None) as ws:
            assert ws.subprotocol == "chat.v1"
            await ws.send("through the proxy")
            assert await ws.recv() == "through the proxy"
            await ws.send(b"\x00\x01\xff")
            assert await ws.recv() == b"\x00\x01\xff"
        await until(lambda: relay.flows and relay.flows[0].ended)
        flow = relay.flows[0]
        assert flow.upstream_url == url and flow.path == "/chat?room=1"
        assert flow.client.url == url
        df = relay.timeline
        for leg, direction in [("client", "rx"), ("upstream", "tx"), ("upstream", "rx"), ("client", "tx")]:
            assert list(data_rows(df, leg, direction).opcode) == ["text", "binary"], (leg, direction)
        assert all_rows_both_legs(df, "text", "through the proxy") == [
            ("client", "rx"),
            ("client", "tx"),
            ("upstream", "rx"),
            ("upstream", "tx"),
        ]
        assert relay.tunnels == [] and relay.refused == []


async def test_wss_is_intercepted_with_the_relay_ca(ca, client_tls):
    """The client trusts relay.ca; the relay trusts the upstream's (trustme) CA."""
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(server_tls)
    async with (
        ws_serve(echo, "127.0.0.1", 0, ssl=server_tls) as server,
        rw.relay(None, upstream_tls=client_tls) as relay,
    ):
        assert relay.ca is not None and b"BEGIN CERTIFICATE" in relay.ca.cert_pem
        for host in ("localhost", "127.0.0.1"):
            url = f"wss://{host}:{port_of(server)}/secure"
            async with ws_connect(url, proxy=relay.url, ssl=relay.ca.client_context(), compression=None) as ws:
                # The client talks TLS with the relay: the certificate is the relay CA's.
                cert = ws.transport.get_extra_info("peercert")
                issuer = dict(item for rdn in cert["issuer"] for item in rdn)
                assert issuer["commonName"] == "rawws_nb relay CA"
                await ws.send(f"secret for {host}")
                assert await ws.recv() == f"secret for {host}"
        await until(lambda: len(relay.flows) == 2 and all(f.ended for f in relay.flows))
        assert [f.upstream_url for f in relay.flows] == [
            f"wss://localhost:{port_of(server)}/secure",
            f"wss://127.0.0.1:{port_of(server)}/secure",
        ]
        df = relay.timeline
        assert all_rows_both_legs(df, "text", "secret for localhost") == [
            ("client", "rx"),
            ("client", "tx"),
            ("upstream", "rx"),
            ("upstream", "tx"),
        ]
        assert relay.tunnels == []


async def test_upstream_tls_applies_to_wss_only(client_tls):
    """A proxy relay given upstream_tls (for its wss targets) still opens ws:// targets plainly."""
    async with ws_serve(echo, "127.0.0.1", 0) as server, rw.relay(None, upstream_tls=client_tls) as relay:
        async with ws_connect(f"ws://127.0.0.1:{port_of(server)}/", proxy=relay.url) as ws:
            await ws.send("plain")
            assert await ws.recv() == "plain"
        assert relay.flows[0].upstream_url.startswith("ws://")


async def test_a_wss_upstream_is_verified_by_default(ca):
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_tls)
    async with ws_serve(echo, "127.0.0.1", 0, ssl=server_tls) as server, rw.relay(None) as relay:
        url = f"wss://localhost:{port_of(server)}/"
        with pytest.raises(InvalidStatus) as info:
            await ws_connect(url, proxy=relay.url, ssl=relay.ca.client_context())
        assert info.value.response.status_code == 502  # answered inside the TLS the relay terminated
        assert b"certificate" in info.value.response.body.lower()
        assert relay.flows == [] and relay.refused[0].status == 502


async def test_a_client_that_does_not_trust_the_ca_is_a_tunnel_with_an_error():
    async with ws_serve(echo, "127.0.0.1", 0) as server, rw.relay(None) as relay:
        with pytest.raises(ssl.SSLCertVerificationError):
            await ws_connect(f"wss://localhost:{port_of(server)}/", proxy=relay.url)  # the system's CAs
        await until(lambda: relay.tunnels and relay.tunnels[0].ended)
        tunnel = relay.tunnels[0]
        assert tunnel.kind == "https" and "relay.ca" in tunnel.error


async def test_hooks_and_intercept_work_on_proxy_flows():
    async with (
        ws_serve(echo, "127.0.0.1", 0) as server,
        rw.relay(None, on_frame=rewrite_text("secret", "[redacted]", "down")) as relay,
    ):
        async with ws_connect(f"ws://127.0.0.1:{port_of(server)}/", proxy=relay.url, compression=None) as ws:
            await ws.send("the secret")
            assert await ws.recv() == "the [redacted]"
            relay.intercept = True
            await ws.send("held")
            await until(lambda: relay.held)
            assert relay.held[0].direction == "up"
            relay.held[0].forward(rw.Frame.Text("edited"))
            await until(lambda: relay.held and relay.held[0].direction == "down")  # the echo, held too
            relay.held[0].forward()
            assert await ws.recv() == "edited"
            relay.intercept = False


async def test_compression_auto_negotiates_each_leg_in_proxy_mode():
    async with ws_serve(echo, "127.0.0.1", 0) as server, rw.relay(None) as relay:
        async with ws_connect(f"ws://127.0.0.1:{port_of(server)}/", proxy=relay.url) as ws:  # offers deflate
            await ws.send("squeeze " * 20)
            assert await ws.recv() == "squeeze " * 20
        flow = relay.flows[0]
        assert flow.client.extensions and flow.upstream.extensions
        assert data_rows(relay.timeline, "upstream", "tx").compressed.all()


# -- what is not WebSocket goes through untouched ------------------------------------------------


async def test_a_tcp_tunnel_passes_bytes_untouched_both_ways_with_half_close():
    async def tcp_echo(reader, writer):
        data = await reader.read()  # until the client's EOF
        writer.write(data[::-1])
        await writer.drain()
        writer.close()

    payload = bytes(range(256)) * 40 + b"GET / HTTP/1.1\r\n\r\n"
    async with await asyncio.start_server(tcp_echo, "127.0.0.1", 0) as server, rw.relay(None) as relay:
        reader, writer, head = await connect_through(relay, f"127.0.0.1:{port_of(server)}")
        assert head.startswith(b"HTTP/1.1 200 ")
        writer.write(b"\x00not http at all\xff" + payload)
        writer.write_eof()
        back = await asyncio.wait_for(reader.read(), 5)
        assert back == (b"\x00not http at all\xff" + payload)[::-1]
        writer.close()
        await until(lambda: relay.tunnels and relay.tunnels[0].ended)
        tunnel = relay.tunnels[0]
        assert (tunnel.kind, tunnel.host, tunnel.port, tunnel.reason) == (
            "connect",
            "127.0.0.1",
            port_of(server),
            "not HTTP",
        )
        assert tunnel.bytes_up == tunnel.bytes_down == len(back) and tunnel.error is None
        table = relay.tunnel_table
        assert list(table.columns[:4]) == ["kind", "host", "port", "bytes_up"] and table.loc[1, "bytes_down"] == len(
            back
        )
        assert relay.flows == []


async def test_a_target_that_speaks_first_gets_a_plain_tunnel():
    async def banner(reader, writer):
        writer.write(b"SSH-2.0-banner\r\n")
        line = await reader.readline()
        writer.write(b"got " + line)
        await writer.drain()
        writer.close()

    async with await asyncio.start_server(banner, "127.0.0.1", 0) as server, rw.relay(None) as relay:
        reader, writer, head = await connect_through(relay, f"127.0.0.1:{port_of(server)}")
        assert head.startswith(b"HTTP/1.1 200 ")
        assert await asyncio.wait_for(reader.readline(), 5) == b"SSH-2.0-banner\r\n"  # the client sent nothing yet
        writer.write(b"SSH-2.0-client\r\n")
        assert await asyncio.wait_for(reader.read(), 5) == b"got SSH-2.0-client\r\n"
        writer.close()
        assert relay.tunnels[0].reason == "the target spoke first"


async def test_plain_http_through_connect_is_untouched():
    seen = []

    async def http_server(reader, writer):
        seen.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Origin: yes\r\n\r\nhello")
        await writer.drain()
        writer.close()

    async with await asyncio.start_server(http_server, "127.0.0.1", 0) as server, rw.relay(None) as relay:
        reader, writer, _ = await connect_through(relay, f"127.0.0.1:{port_of(server)}")
        request = b"GET /page HTTP/1.1\r\nHost: example\r\nConnection: keep-alive\r\n\r\n"
        writer.write(request)
        assert await asyncio.wait_for(reader.read(), 5) == (
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Origin: yes\r\n\r\nhello"
        )
        writer.close()
        assert seen == [request]  # as the client sent it, byte for byte
        assert relay.tunnels[0].reason == "HTTP GET /page (not a WebSocket upgrade)"


@pytest.mark.parametrize("choice", [False, "predicate"])
async def test_tls_not_intercepted_is_tunnelled_untouched(ca, client_tls, choice):
    async def tls_echo(reader, writer):
        writer.write(await reader.readline())
        await writer.drain()
        writer.close()

    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_tls)
    asked = []

    def predicate(host, port):
        asked.append((host, port))
        return host != "localhost"

    intercept = predicate if choice == "predicate" else False
    async with (
        await asyncio.start_server(tls_echo, "127.0.0.1", 0, ssl=server_tls) as server,
        rw.relay(None, intercept_tls=intercept) as relay,
    ):
        port = port_of(server)
        reader, writer, head = await connect_through(relay, f"localhost:{port}")
        assert head.startswith(b"HTTP/1.1 200 ")
        # The server's own certificate (trustme's CA), so the relay did not touch the TLS.
        await writer.start_tls(client_tls, server_hostname="localhost")
        writer.write(b"end to end\n")
        assert await asyncio.wait_for(reader.readline(), 5) == b"end to end\n"
        writer.close()
        await until(lambda: relay.tunnels and relay.tunnels[0].ended)
        assert relay.tunnels[0].reason == "TLS, not intercepted" and relay.tunnels[0].bytes_up > 100
    assert asked == ([("localhost", port)] if choice == "predicate" else [])


# -- absolute-form requests ------------------------------------------------------------------------


def masked_text(text: str) -> bytes:
    data = text.encode()
    key = b"\x01\x02\x03\x04"
    return bytes([0x81, 0x80 | len(data)]) + key + bytes(b ^ key[i % 4] for i, b in enumerate(data))


async def test_an_absolute_form_upgrade_is_a_flow():
    async with ws_serve(echo, "127.0.0.1", 0) as server, rw.relay(None) as relay:
        target = f"127.0.0.1:{port_of(server)}"
        reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
        writer.write(
            f"GET http://{target}/abs?x=1 HTTP/1.1\r\nHost: {target}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\nProxy-Connection: keep-alive\r\n\r\n".encode()
        )
        head = await read_head(reader)
        assert head.startswith(b"HTTP/1.1 101 ") and b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head
        writer.write(masked_text("absolute"))
        assert await asyncio.wait_for(reader.readexactly(10), 5) == b"\x81\x08absolute"
        writer.close()
        await until(lambda: relay.flows and relay.flows[0].ended)
        assert relay.flows[0].upstream_url == f"ws://{target}/abs?x=1"
        assert all_rows_both_legs(relay.timeline, "text", "absolute") == [
            ("client", "rx"),
            ("client", "tx"),
            ("upstream", "rx"),
            ("upstream", "tx"),
        ]


async def test_an_absolute_form_http_request_is_forwarded_in_origin_form():
    seen = []

    async def http_server(reader, writer):
        seen.append(await reader.readuntil(b"\r\n\r\n"))
        seen.append(await reader.readexactly(4))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()

    async with await asyncio.start_server(http_server, "127.0.0.1", 0) as server, rw.relay(None) as relay:
        target = f"127.0.0.1:{port_of(server)}"
        reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
        writer.write(
            f"POST http://{target}/form?q=1 HTTP/1.1\r\nHost: {target}\r\nProxy-Connection: keep-alive\r\n"
            "Proxy-Authorization: Basic eDp5\r\nContent-Length: 4\r\n\r\nbody".encode()
        )
        assert await asyncio.wait_for(reader.read(), 5) == b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        writer.close()
        assert seen[0] == (
            f"POST /form?q=1 HTTP/1.1\r\nhost: {target}\r\ncontent-length: 4\r\nConnection: close\r\n\r\n".encode()
        )
        assert seen[1] == b"body"
        await until(lambda: relay.tunnels and relay.tunnels[0].ended)
        assert relay.tunnels[0].kind == "http" and relay.tunnels[0].bytes_down == 40


# -- errors ----------------------------------------------------------------------------------------


async def test_an_unreachable_connect_target_is_a_502_with_the_reason():
    dead = free_port()
    async with rw.relay(None) as relay:
        reader, writer, head = await connect_through(relay, f"127.0.0.1:{dead}")
        assert head.startswith(b"HTTP/1.1 502 Bad Gateway\r\n")
        body = await asyncio.wait_for(reader.read(), 5)
        assert f"cannot connect to 127.0.0.1:{dead}".encode() in body and b"refused" in body.lower()
        writer.close()
        with pytest.raises(InvalidProxyStatus) as info:
            await ws_connect(f"ws://127.0.0.1:{dead}/", proxy=relay.url)
        assert info.value.response.status_code == 502
        assert [r.status for r in relay.refused] == [502, 502] and relay.tunnels == []


@pytest.mark.parametrize(
    ("request_bytes", "reason"),
    [
        (b"\x16\x03\x01\x02\x00garbage\r\n\r\n", b"invalid HTTP request"),
        (b"GET /chat HTTP/1.1\r\nHost: x\r\n\r\n", b"this relay is an HTTP proxy"),
        (b"CONNECT nowhere HTTP/1.1\r\nHost: x\r\n\r\n", b"CONNECT needs host:port"),
        (b"CONNECT ::1:80 HTTP/1.1\r\nHost: x\r\n\r\n", b"IPv6 address in brackets"),
        (b"GET http://:80/ HTTP/1.1\r\nHost: x\r\n\r\n", b"no host"),
    ],
)
async def test_malformed_requests_get_400(request_bytes, reason):
    async with rw.relay(None) as relay:
        reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
        writer.write(request_bytes)
        answer = await asyncio.wait_for(reader.read(), 5)
        assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n") and reason in answer, answer
        writer.close()
        assert relay.refused[0].status == 400


async def test_close_ends_tunnels_pending_tunnels_and_flows_without_leaking_tasks():
    async def quiet(reader, writer):
        await reader.read()
        writer.close()

    before = set(asyncio.all_tasks())
    async with ws_serve(echo, "127.0.0.1", 0) as ws_server, await asyncio.start_server(quiet, "127.0.0.1", 0) as tcp:
        relay = await rw.relay(None)
        # an undecided CONNECT (nothing sent after the 200), a tunnel, a flow, a half-sent request
        _, idle, _ = await connect_through(relay, f"127.0.0.1:{port_of(tcp)}")
        r2, busy, _ = await connect_through(relay, f"127.0.0.1:{port_of(tcp)}")
        busy.write(b"\x00bytes")
        ws = await ws_connect(f"ws://127.0.0.1:{port_of(ws_server)}/", proxy=relay.url)
        _, partial = await asyncio.open_connection("127.0.0.1", relay.port)
        partial.write(b"CONNECT 127.0.0.1:1 HT")
        await until(lambda: relay.tunnels and relay.flows)
        async with asyncio.timeout(5):
            await relay.close()
        assert relay.tunnels[0].ended and relay.flows[0].ended
        assert await asyncio.wait_for(r2.read(), 5) == b""
        await ws.wait_closed()
        for writer in (idle, busy, partial):
            writer.close()
    await asyncio.sleep(0.05)
    left = {t for t in asyncio.all_tasks() - before if not t.done()}
    assert left == set(), left


async def test_proxy_mode_save_and_the_ca_file(tmp_path):
    own = LocalCA("my CA")
    relay = Relay(None, ca=own)
    assert relay.ca is own and relay.upstream is None
    path = relay.write_ca(tmp_path / "ca.pem")
    assert path.read_bytes() == own.cert_pem
    assert Relay(None, intercept_tls=False).ca is None
    with pytest.raises(RuntimeError, match="no CA"):
        Relay(None, intercept_tls=False).write_ca(tmp_path / "x.pem")
    async with ws_serve(echo, "127.0.0.1", 0) as server, rw.relay(None) as relay:
        async with ws_connect(f"ws://127.0.0.1:{port_of(server)}/", proxy=relay.url) as ws:
            await ws.send("saved")
            await ws.recv()
        saved = relay.save_timeline(tmp_path / "proxy.parquet")
    df = rw.read_timeline(saved)
    assert set(df.leg) == {"client", "upstream"} and df.attrs["upstream"] is None


# -- the CLI, as real processes ------------------------------------------------------------------

CLI = [sys.executable, "-m", "rawws_nb.cli", "relay"]


async def test_cli_relay_proxy_prints_flows_and_tunnels_writes_the_ca_and_saves(tmp_path):
    async def tcp_echo(reader, writer):
        writer.write(await reader.read(100))
        await writer.drain()
        writer.close()

    ca_file, save = tmp_path / "relay-ca.pem", tmp_path / "proxy.parquet"
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        "--proxy",
        "--flows",
        "1",
        "--ca-out",
        str(ca_file),
        "--save",
        str(save),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "NO_COLOR": "1"},
    )
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        match = re.search(r"relay on (http://\S+) as an HTTP proxy", line)
        assert match and str(ca_file) in line, line
        proxy_url = match.group(1)
        async with rw.serve() as server, await asyncio.start_server(tcp_echo, "127.0.0.1", 0) as tcp:
            host, port = proxy_url.removeprefix("http://").rsplit(":", 1)
            reader, writer = await asyncio.open_connection(host, int(port))
            tcp_port = port_of(tcp)
            target = f"127.0.0.1:{tcp_port}"
            writer.write(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
            await read_head(reader)
            writer.write(b"\x00raw")
            assert await asyncio.wait_for(reader.read(), 5) == b"\x00raw"
            writer.close()
            async with ws_connect(server.url + "/echo", proxy=proxy_url, compression=None) as ws:
                await ws.send("through the cli proxy")
                assert await ws.recv() == "through the cli proxy"
        out, err = await asyncio.wait_for(proc.communicate(), 20)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err
    text = out.decode()
    assert f"tunnel 1: connect 127.0.0.1:{tcp_port} (not HTTP)" in text
    assert "tunnel 1 ended: 4 bytes up, 4 down" in text
    assert f"flow 1: /echo -> {server.url}/echo" in text
    for leg, arrow in [("client  ", "← RX"), ("upstream", "→ TX"), ("upstream", "← RX"), ("client  ", "→ TX")]:
        assert re.search(rf"\[flow 1 {leg}\] .*{arrow} TEXT .*'through the cli proxy'", text), (leg, arrow)
    assert ca_file.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    df = rw.read_timeline(save)
    assert set(df.leg) == {"client", "upstream"} and "Traceback" not in err.decode()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "the following arguments are required: upstream (or --proxy"),
        (["--proxy", "ws://127.0.0.1:1"], "give UPSTREAM or --proxy, not both"),
        (["ws://127.0.0.1:1", "--ca-out", "ca.pem"], "--ca-out goes with --proxy"),
        (["--proxy", "--ca-out", "/no/such/dir/ca.pem"], "--ca-out: no such directory"),
        (["--proxy", "--port", "70000"], "not a TCP port"),
    ],
)
def test_cli_relay_proxy_bad_input_is_one_line_and_exit_2(args, message):
    result = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
