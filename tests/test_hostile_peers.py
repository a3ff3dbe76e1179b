"""Hostile and broken peers: handshake validation, TLS failures, slow peers, fuzzed streams.

The peers here are small asyncio servers that say exactly what the test scripts,
including nonsense; nothing is mocked: every test is a real socket.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import ssl
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rawws_nb as rw
from rawws_nb import Frame, HandshakeError, SessionClosed
from rawws_nb.wire import encode_frame

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_for(request: bytes) -> str:
    key = next(
        line.split(b":", 1)[1].strip()
        for line in request.split(b"\r\n")
        if line.lower().startswith(b"sec-websocket-key")
    )
    return base64.b64encode(hashlib.sha1(key + GUID).digest()).decode()


class ScriptedServer:
    """Accepts one connection at a time and runs `script(reader, writer, request)`."""

    def __init__(self, script):
        self.script = script
        self.server = None
        self.port = 0

    async def __aenter__(self):
        async def handle(reader, writer):
            try:
                request = await reader.readuntil(b"\r\n\r\n")
                await self.script(reader, writer, request)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        self.server = await asyncio.start_server(handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc):
        self.server.close()

    @property
    def url(self):
        return f"ws://127.0.0.1:{self.port}/"


def response(
    request: bytes, *extra: str, upgrade: str | None = "websocket", connection: str | None = "Upgrade"
) -> bytes:
    lines = ["HTTP/1.1 101 Switching Protocols"]
    if upgrade is not None:
        lines.append(f"Upgrade: {upgrade}")
    if connection is not None:
        lines.append(f"Connection: {connection}")
    lines.append(f"Sec-WebSocket-Accept: {accept_for(request)}")
    lines.extend(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest.mark.parametrize(
    ("kwargs", "extra", "words"),
    [
        ({"upgrade": None}, (), "Upgrade: websocket"),
        ({"upgrade": "h2c"}, (), "Upgrade: websocket"),
        ({"connection": None}, (), "Connection: Upgrade"),
        ({}, ("Sec-WebSocket-Protocol: chat.v9",), "subprotocol 'chat.v9'"),
        ({}, ("Sec-WebSocket-Extensions: permessage-deflate",), "extension 'permessage-deflate'"),
    ],
)
async def test_each_invalid_upgrade_response_is_a_specific_handshake_error(kwargs, extra, words):
    async def script(reader, writer, request):
        writer.write(response(request, *extra, **kwargs))
        await asyncio.sleep(1)

    async with ScriptedServer(script) as srv:
        with pytest.raises(HandshakeError, match=words) as info:
            await rw.web_socket_raw_session(srv.url, open_timeout=2)
    assert info.value.status == 101


async def test_a_huge_response_head_is_refused():
    async def script(reader, writer, request):
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\n")
        for i in range(10_000):
            writer.write(b"X-Filler-%d: %s\r\n" % (i, b"y" * 100))
            await writer.drain()

    async with ScriptedServer(script) as srv:
        with pytest.raises(HandshakeError, match="invalid HTTP response"):
            await rw.web_socket_raw_session(srv.url, open_timeout=5)


async def test_a_slow_loris_handshake_is_cut_by_open_timeout():
    async def script(reader, writer, request):
        for byte in response(request):
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(1)

    async with ScriptedServer(script) as srv:
        start = time.monotonic()
        with pytest.raises(TimeoutError, match=r"open_timeout=0\.5"):
            await rw.web_socket_raw_session(srv.url, open_timeout=0.5)
        assert time.monotonic() - start < 2


async def test_a_peer_that_never_closes_cannot_hold_close_beyond_close_timeout():
    async def script(reader, writer, request):
        writer.write(response(request))
        # Dribble a frame one byte per second, never answer the Close.
        for byte in encode_frame(1, b"x" * 100, mask=False):
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(1)

    async with ScriptedServer(script) as srv:
        session = await rw.web_socket_raw_session(srv.url, close_timeout=0.5)
        start = time.monotonic()
        await session.close()
        assert time.monotonic() - start < 2.5
        assert session.state is rw.SessionState.CLOSED
        with pytest.raises(SessionClosed) as info:
            await session.incoming.receive()
        assert info.value.code == 1006


@pytest.fixture(scope="module")
def tls_certs():
    import trustme

    ca = trustme.CA()
    now = datetime.datetime.now(datetime.UTC)
    return {
        "ca": ca,
        "good": ca.issue_cert("localhost"),
        "expired": ca.issue_cert(
            "localhost", not_before=now - datetime.timedelta(days=30), not_after=now - datetime.timedelta(days=1)
        ),
        "wrong-host": ca.issue_cert("other.example"),
    }


@pytest.mark.parametrize(("cert", "words"), [("expired", "expired"), ("wrong-host", "Hostname mismatch")])
async def test_tls_failures_name_the_reason(tls_certs, cert, words):
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_certs[cert].configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    tls_certs["ca"].configure_trust(client_ctx)
    async with rw.serve(tls=server_ctx) as srv:
        with pytest.raises(ssl.SSLCertVerificationError, match=words) as info:
            await rw.web_socket_raw_session(f"wss://localhost:{srv.port}/echo", tls=client_ctx)
        assert f"localhost:{srv.port}" in str(info.value)
        # Verification is on by default: without the CA even the good certificate is refused.
        with pytest.raises(ssl.SSLCertVerificationError, match="tls=ssl_context"):
            await rw.web_socket_raw_session(f"wss://localhost:{srv.port}/echo")


# -- fuzzing the reader through a real socket ----------------------------------------

valid_frames = st.lists(
    st.one_of(
        st.builds(lambda d: encode_frame(1, d, mask=False), st.text(max_size=40).map(str.encode)),
        st.builds(lambda d: encode_frame(2, d, mask=False), st.binary(max_size=300)),
        st.builds(lambda d: encode_frame(9, d, mask=False), st.binary(max_size=125)),
        st.builds(lambda d: encode_frame(10, d, mask=False), st.binary(max_size=125)),
    ),
    max_size=8,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(
    frames=valid_frames,
    garbage=st.binary(max_size=64),
    cuts=st.lists(st.integers(min_value=1, max_value=500), max_size=6),
    close_after=st.booleans(),
)
async def test_fuzzed_streams_end_in_a_defined_state_and_lose_nothing(frames, garbage, cuts, close_after):
    stream = b"".join(frames) + garbage

    async def script(reader, writer, request):
        writer.write(response(request))
        pos = 0
        for cut in [*cuts, len(stream)]:
            writer.write(stream[pos : pos + cut])
            pos += cut
            await writer.drain()
            await asyncio.sleep(0)
        if not close_after:
            await asyncio.sleep(0.3)

    async with ScriptedServer(script) as srv:
        session = await rw.web_socket_raw_session(srv.url, max_message_size=256, max_queue=4, close_timeout=0.3)
        delivered = []
        end = None
        try:
            async with asyncio.timeout(3):
                while True:
                    delivered.append(await session.incoming.receive())
        except SessionClosed as exc:
            end = exc
        await asyncio.wait_for(session.wait_closed(), 3)
    assert end is not None  # never a hang: the session ended within its time-outs
    assert end.code in (1000, 1001, 1002, 1005, 1006, 1007, 1009) or 1000 <= end.code <= 4999
    rx = session.timeline.query("dir == 'rx'")
    good = rx[rx.error.isna()]
    # Every delivered frame is in the timeline, in order, and nothing else was recorded as good.
    assert [bytes(p) for p in good.payload] == [f.data for f in delivered]
    if isinstance(end, rw.PeerProtocolError):
        assert rx.error.notna().sum() == 1 and rx.error.iloc[-1].endswith(f"(failing with {end.code})")
    assert all(len(f.data) <= 256 for f in delivered)
    if frames and not garbage:
        assert len(delivered) >= len(frames) - 1 or isinstance(end, rw.MessageTooBig)


async def test_valid_frames_survive_any_chunking_through_a_socket():
    payloads = [Frame.Text("héllo"), Frame.Binary(bytes(range(200))), Frame.Ping(b"p"), Frame.Text("☃" * 30)]
    wire = b"".join(encode_frame(int(f.type), f.data, mask=False) for f in payloads)

    async def script(reader, writer, request):
        writer.write(response(request))
        for i in range(len(wire)):
            writer.write(wire[i : i + 1])
            await writer.drain()
        await asyncio.sleep(0.5)

    async with ScriptedServer(script) as srv:
        async with rw.ws_raw(srv.url, close_timeout=0.2) as session:
            got = [await asyncio.wait_for(session.incoming.receive(), 2) for _ in payloads]
    assert got == payloads
