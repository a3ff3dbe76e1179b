"""Compression passthrough: the core's `Connection.opened(passthrough=True)` in memory
(a real permessage-deflate sender on one side, a passthrough connection in the middle
that neither inflates nor compresses, a real inflating receiver at the far end), then
the relay's `compression="passthrough"` between the websockets library's client and
server, both compressing."""

from __future__ import annotations

import asyncio
import os

import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.server import serve as ws_serve

import rawws_nb as rw
from rawws_nb import Frame
from rawws_nb.connection import Connection
from rawws_nb.deflate import DeflateParams, PerMessageDeflate
from rawws_nb.frames import COMPRESSED

pytestmark = pytest.mark.timeout(60)

TEXT = "compress me, " * 50


def wire(conn: Connection) -> bytes:
    return b"".join(bytes(b) for b in conn.data_to_send())


def deflating(client: bool) -> Connection:
    conn = Connection(client=client)
    conn.opened(PerMessageDeflate(DeflateParams(), client=client))
    return conn


def passing(client: bool) -> Connection:
    conn = Connection(client=client)
    conn.opened(passthrough=True)
    return conn


# -- the core, in memory --------------------------------------------------------------------------


def test_passthrough_keeps_compressed_frames_as_they_came_and_forwards_them_untouched():
    sender = deflating(client=True)  # a browser: compresses what it sends
    middle_in = passing(client=False)  # the relay's leg facing it
    middle_out = passing(client=True)  # the relay's leg facing the server
    receiver = deflating(client=False)  # the server: inflates

    sender.send(Frame.Text(TEXT))
    sender.send(Frame.Binary(b"\x00" * 300, fin=False))  # a compressed message in two frames
    sender.send(Frame.Binary(b"\x01" * 300, fin=True))
    sender.send(Frame.Ping(b"ctl"))
    frames, codes, violation = middle_in.receive_data(wire(sender))
    assert violation is None  # compressed text is not UTF-8, and that is not checked here
    assert [(type(f).__name__, f.fin, f.rsv1, f.compressed) for f in frames] == [
        ("Text", True, True, True),
        ("Binary", False, True, True),
        ("Binary", True, False, True),
        ("Ping", True, False, False),
    ]
    assert len(frames[0].data) < len(TEXT)  # the payload as on the wire: compressed
    for frame, code in zip(frames, codes, strict=True):
        assert code >> 16 == len(frame.data)  # the row's length is the raw length
        assert bool(code & COMPRESSED) == frame.compressed

    for frame in frames:
        middle_out.send(frame, compress=False)  # as given: rsv1 from the frame
    got, _, violation = receiver.receive_data(wire(middle_out))
    assert violation is None
    assert got[0].data.decode() == TEXT
    assert got[1].data + got[2].data == b"\x00" * 300 + b"\x01" * 300
    assert got[3].data == b"ctl"


@pytest.mark.parametrize(
    ("build", "reason"),
    [
        (lambda c: (c.send_raw(bytes([0x01, 0x80]) + b"\0" * 4), c.send_raw(bytes([0xC0, 0x80]) + b"\0" * 4)), "rsv1"),
        (lambda c: c.send_raw(bytes([0xC9, 0x80]) + b"\0" * 4), "rsv1"),  # a Ping with rsv1
        (lambda c: c.send_raw(bytes([0xA1, 0x80]) + b"\0" * 4), "rsv2"),
    ],
    ids=["rsv1-on-a-continuation", "rsv1-on-a-control-frame", "rsv2"],
)
def test_passthrough_still_checks_where_rsv1_may_be(build, reason):
    sender = Connection(client=True)
    sender.opened()
    build(sender)
    _, _, violation = passing(client=False).receive_data(wire(sender))
    assert violation is not None and violation.code == 1002 and reason in violation.reason


def test_without_passthrough_rsv1_is_refused():
    sender = deflating(client=True)
    sender.send(Frame.Text(TEXT))
    plain = Connection(client=False)
    plain.opened()
    _, _, violation = plain.receive_data(wire(sender))
    assert violation is not None and violation.code == 1002


# -- the relay between two compressing peers -----------------------------------------------------


async def test_relay_passthrough_between_compressing_websockets_peers():
    seen = {}

    async def echo(ws):
        seen["offer"] = ws.request.headers["Sec-WebSocket-Extensions"]
        seen["answer"] = ws.response.headers["Sec-WebSocket-Extensions"]
        async for message in ws:
            await ws.send(message)

    async with ws_serve(echo, "127.0.0.1", 0) as server:
        upstream = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        async with rw.relay(upstream, compression="passthrough") as relay:
            async with ws_connect(relay.url + "/p") as ws:  # websockets offers permessage-deflate
                offer = ws.request.headers["Sec-WebSocket-Extensions"]
                await ws.send(TEXT)
                assert await ws.recv() == TEXT
                await ws.send([b"\x00" * 500, b"\x01" * 500])  # one message, fragmented
                assert await ws.recv() == b"\x00" * 500 + b"\x01" * 500
                answer = ws.response.headers["Sec-WebSocket-Extensions"]
            async with asyncio.timeout(5):
                await relay.flows[0].wait_closed()
    assert seen["offer"] == offer  # forwarded as is
    assert answer == seen["answer"]  # passed back as is
    flow = relay.flows[0]
    assert flow.client.deflate is None and flow.upstream.deflate is None  # negotiated, not applied
    assert flow.client.extensions == [answer] and flow.upstream.extensions == [answer]
    df = relay.timeline
    data = df[df.opcode.isin(["text", "binary", "continuation"]) & df.error.isna()]
    first = data[data.opcode != "continuation"]
    assert first.rsv1.all()  # both legs, both directions: rsv1 as the sender set it
    # Received rows are frames of compressed messages (not inflated); sent rows went out
    # as given (this side compressed nothing: compressed False, rsv1 kept).
    assert data[data.dir == "rx"].compressed.all() and not data[data.dir == "tx"].compressed.any()
    assert (data.length < 200).all()  # compressed sizes
    # The same bytes on both legs: received on one, sent as is on the other.
    client_rx = data[(data.leg == "client") & (data.dir == "rx")]
    upstream_tx = data[(data.leg == "upstream") & (data.dir == "tx")]
    assert list(client_rx.payload) == list(upstream_tx.payload)
    assert list(client_rx.rsv1) == list(upstream_tx.rsv1)
    assert list(client_rx.length) == list(client_rx.inflated_length)  # the raw length, nothing inflated
    upstream_rx = data[(data.leg == "upstream") & (data.dir == "rx")]
    client_tx = data[(data.leg == "client") & (data.dir == "tx")]
    assert list(upstream_rx.payload) == list(client_tx.payload)


async def test_relay_passthrough_without_an_offer_is_uncompressed():
    async def echo(ws):
        async for message in ws:
            await ws.send(message)

    async with ws_serve(echo, "127.0.0.1", 0) as server:
        upstream = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        async with rw.relay(upstream, compression="passthrough") as relay:
            async with ws_connect(relay.url, compression=None) as ws:
                await ws.send("plain")
                assert await ws.recv() == "plain"
            flow = relay.flows[0]
            assert flow.client.extensions == [] and flow.upstream.extensions == []
            assert not relay.timeline.compressed.any()


async def test_relay_passthrough_in_proxy_mode_and_hooks_see_compressed_frames():
    kinds = []

    def hook(frame, flow, direction):
        if frame.type < 8:
            kinds.append((direction, frame.compressed, frame.rsv1))
        return frame

    async def echo(ws):
        async for message in ws:
            await ws.send(message)

    async with (
        ws_serve(echo, "127.0.0.1", 0) as server,
        rw.relay(None, compression="passthrough", on_frame=hook) as relay,
    ):
        url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
        async with ws_connect(url, proxy=relay.url) as ws:
            await ws.send(TEXT)
            assert await ws.recv() == TEXT
    assert kinds == [("up", True, True), ("down", True, True)]


async def test_relay_passthrough_of_large_compressed_messages_both_ways():
    # Compressed frames of 64 KiB and more: read into their buffers on both legs (the
    # client's masked, the server's not) and forwarded compressed as they came.
    async def echo(ws):
        async for message in ws:
            await ws.send(message)

    payload = os.urandom(300_000)  # incompressible: its compressed frame is as large
    async with ws_serve(echo, "127.0.0.1", 0, max_size=None) as server:
        upstream = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        async with rw.relay(upstream, compression="passthrough") as relay:
            async with ws_connect(relay.url + "/p", max_size=None) as ws:
                await ws.send(payload)
                assert await ws.recv() == payload
            async with asyncio.timeout(5):
                await relay.flows[0].wait_closed()
    df = relay.timeline
    data = df[df.opcode.isin(["binary", "continuation"]) & df.error.isna()]
    assert len(data) == 4 and (data.length > 300_000).all() and data.rsv1.all()
