"""The opening handshake made visible: `session.handshake` (request and response heads as
they went over the wire, the steps' timings) and the same record on `HandshakeError`;
errors and time-outs that name the step. Real peers on loopback: the embedded server, and
small asyncio servers that answer exactly what a test needs (odd header case, silence)."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl

import pytest

import rawws_nb as rw
from rawws_nb.handshake_info import HandshakeInfo, parse_head


async def test_handshake_record_of_a_direct_ws_session(server):
    session = await rw.web_socket_raw_session(server.url + "/echo?x=1", headers={"X-Trace": "abc"})
    hs = session.handshake
    assert isinstance(hs, HandshakeInfo)
    assert hs.url == server.url + "/echo?x=1"
    assert hs.step == "open" and hs.proxy is None
    assert hs.request_line == "GET /echo?x=1 HTTP/1.1"
    names = [name for name, _ in hs.request_headers]
    assert names[:5] == ["Host", "Upgrade", "Connection", "Sec-WebSocket-Key", "Sec-WebSocket-Version"]
    assert ("X-Trace", "abc") in hs.request_headers
    assert hs.request_header("host") == f"127.0.0.1:{server.port}"
    assert hs.status_line == "HTTP/1.1 101 Switching Protocols" and hs.status == 101
    assert hs.response_header("sec-websocket-accept")
    assert hs.remote_address == f"127.0.0.1:{server.port}"
    t = hs.timings
    assert t.dns is not None and t.connect is not None and t.upgrade is not None
    assert t.proxy is None and t.tls is None and hs.tls_version is None
    assert t.total == pytest.approx(t.dns + t.connect + t.upgrade)
    # The session's own header lists stay as they were.
    assert session.response_headers and ("X-Trace", "abc") in session.request_headers
    await session.close()


async def test_handshake_record_shows_and_saves(server):
    session = await rw.web_socket_raw_session(server.url + "/echo")
    hs = session.handshake
    text = str(hs)
    assert "> GET /echo HTTP/1.1" in text and "< HTTP/1.1 101 Switching Protocols" in text and "timings: dns" in text
    page = hs._repr_html_()
    assert "Switching Protocols" in page and "<th>upgrade</th>" in page
    record = json.loads(json.dumps(hs.as_dict()))  # JSON-ready, for timeline metadata
    assert record["status_line"] == "HTTP/1.1 101 Switching Protocols"
    assert record["timings"]["upgrade"] is not None and record["timings"]["total"] > 0
    await session.close()


async def test_handshake_record_of_wss(tls_server, client_tls):
    session = await rw.web_socket_raw_session(tls_server.url + "/echo", tls=client_tls)
    hs = session.handshake
    assert hs.tls_version in ("TLSv1.2", "TLSv1.3") and hs.tls_cipher
    assert hs.timings.tls is not None and hs.timings.tls > 0
    await session.close()


async def test_handshake_error_keeps_the_record(server):
    with pytest.raises(rw.HandshakeError) as info:
        await rw.web_socket_raw_session(server.url + "/status/403")
    exc = info.value
    assert exc.status == 403
    hs = exc.handshake
    assert hs.step == "upgrade" and hs.status == 403
    assert hs.status_line == "HTTP/1.1 403 "  # as on the wire: h11 sends an empty reason phrase
    assert hs.request_line == "GET /status/403 HTTP/1.1"
    assert hs.response_header("content-type") == "text/plain; charset=utf-8"
    assert hs.timings.upgrade is not None


async def _raw_server(answer: bytes | None):
    """A TCP server that reads a request head and answers `answer` (None: never answers)."""

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            if answer is None:
                await asyncio.sleep(3600)
            writer.write(answer)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(client, "127.0.0.1", 0)


async def test_response_head_is_recorded_as_received():
    answer = (
        b"HTTP/1.1 403 Nope\r\nx-odd-CASE: kept\r\nContent-Length: 4\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\ndeny"
    )
    srv = await _raw_server(answer)
    async with srv:
        port = srv.sockets[0].getsockname()[1]
        with pytest.raises(rw.HandshakeError) as info:
            await rw.web_socket_raw_session(f"ws://127.0.0.1:{port}/")
    hs = info.value.handshake
    assert hs.status_line == "HTTP/1.1 403 Nope"
    assert hs.response_headers == [
        ("x-odd-CASE", "kept"),
        ("Content-Length", "4"),
        ("Set-Cookie", "a=1"),
        ("Set-Cookie", "b=2"),
    ]
    assert info.value.body == b"deny"


async def test_a_silent_server_times_out_in_the_upgrade_step():
    srv = await _raw_server(None)
    async with srv:
        port = srv.sockets[0].getsockname()[1]
        expected = (
            r"took longer than open_timeout=0.3s: stopped in the upgrade step \(waiting for the upgrade response\)"
        )
        with pytest.raises(TimeoutError, match=expected):
            await rw.web_socket_raw_session(f"ws://127.0.0.1:{port}/", open_timeout=0.3)


async def test_a_tls_server_that_never_finishes_the_handshake_times_out_in_the_tls_step(client_tls):
    srv = await _raw_server(None)  # accepts TCP, never speaks TLS
    async with srv:
        port = srv.sockets[0].getsockname()[1]
        with pytest.raises(TimeoutError, match=r"stopped in the tls step \(the TLS handshake\)"):
            await rw.web_socket_raw_session(f"wss://127.0.0.1:{port}/", tls=client_tls, open_timeout=0.3)


async def test_direct_connection_refused_is_a_clear_oserror():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(OSError, match=f"cannot connect to the server 127.0.0.1:{port}: Connection refused"):
        await rw.web_socket_raw_session(f"ws://127.0.0.1:{port}/", proxy=None)


async def test_tls_verification_is_on_by_default(tls_server):
    with pytest.raises(ssl.SSLCertVerificationError, match=r"TLS certificate of 127\.0\.0\.1:\d+ rejected"):
        await rw.web_socket_raw_session(tls_server.url + "/echo")


def test_parse_head_keeps_spelling_and_skips_interim_responses():
    raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 101 null\r\nUPGRADE:websocket\r\nX-A:  b \r\n\r\nrest"
    assert parse_head(raw) == ("HTTP/1.1 101 null", [("UPGRADE", "websocket"), ("X-A", "b")])
    assert parse_head(b"HTTP/1.1 101 Switching") is None
