"""Raw semantics checked at an independent peer (the websockets library's parser)."""

from __future__ import annotations

import asyncio
import os

import pytest
from websockets.frames import Opcode

import rawws_nb as rw
from rawws_nb import CloseReason, Frame


async def test_a_peer_ping_gets_no_pong_unless_we_send_one(peer):
    async with rw.ws_raw(peer.url) as session:
        conn = await peer.opened()
        conn.send(Opcode.PING, b"are-you-there")
        frame = await asyncio.wait_for(session.incoming.receive(), 2)
        assert frame == Frame.Ping(b"are-you-there")
        await asyncio.sleep(0.3)  # an automatic pong would have arrived by now
        assert [f for f in peer.received if f.opcode == "PONG"] == []
        await session.send(Frame.Pong(frame.data))
        await peer.wait_for(lambda got: any(f.opcode == "PONG" for f in got))
        assert [(f.opcode, f.data) for f in peer.received] == [("PONG", b"are-you-there")]


async def test_fragments_arrive_as_text_then_continuation_with_fin_bits(peer):
    async with rw.ws_raw(peer.url) as session:
        await session.send(Frame.Text(fin=False, data=b"Part 1 "))
        await session.send(Frame.Text(fin=False, data=b"Part 2 "))
        await session.send(Frame.Ping(b"between"))
        await session.send(Frame.Text(fin=True, data=b"Part 3"))
        await session.send(Frame.Binary(b"\x01", fin=False))
        await session.send(Frame.Binary(b"\x02", fin=True))
        await peer.wait_for(lambda got: len(got) >= 6)
    assert [(f.opcode, f.fin, f.data) for f in peer.received[:6]] == [
        ("TEXT", False, b"Part 1 "),
        ("CONT", False, b"Part 2 "),
        ("PING", True, b"between"),
        ("CONT", True, b"Part 3"),
        ("BINARY", False, b"\x01"),
        ("CONT", True, b"\x02"),
    ]


async def test_our_close_code_and_reason_arrive(peer):
    session = await rw.web_socket_raw_session(peer.url, close_timeout=2)
    await peer.opened()
    await session.close(CloseReason(4321, "custom close"))
    await peer.wait_for(lambda got: any(f.opcode == "CLOSE" for f in got))
    close = next(f for f in peer.received if f.opcode == "CLOSE")
    assert close.data == (4321).to_bytes(2, "big") + b"custom close"
    assert session.state is rw.SessionState.CLOSED
    assert session.close_reason.code == 4321  # websockets echoed our code


async def test_a_peer_close_is_delivered_and_not_answered_automatically(peer):
    session = await rw.web_socket_raw_session(peer.url, close_timeout=2)
    conn = await peer.opened()
    conn.send(Opcode.CLOSE, (1001).to_bytes(2, "big") + b"going")
    frame = await asyncio.wait_for(session.incoming.receive(), 2)
    assert isinstance(frame, Frame.Close) and frame.read_reason() == CloseReason(1001, "going")
    assert session.state is rw.SessionState.CLOSING
    await asyncio.sleep(0.2)
    assert not any(f.opcode == "CLOSE" for f in peer.received)
    await session.close()  # the user's answer: echoes the peer's code by default
    await peer.wait_for(lambda got: any(f.opcode == "CLOSE" for f in got))
    assert next(f for f in peer.received if f.opcode == "CLOSE").data[:2] == (1001).to_bytes(2, "big")


@pytest.mark.parametrize("size", [0, 125, 126, 2047, 2048, 65535, 65536, (1 << 20) + 3, 16 << 20])
async def test_masking_is_valid_for_every_length_form(peer, size):
    payload = os.urandom(size)
    async with rw.ws_raw(peer.url) as session:
        await session.send(Frame.Binary(payload))
        await peer.wait_for(lambda got: len(got) >= 1, timeout=20)
    first = peer.received[0]
    assert first.opcode == "BINARY" and first.fin and len(first.data) == size and first.data == payload


async def test_rsv_bits_are_sent_as_given(peer):
    async with rw.ws_raw(peer.url) as session:
        await session.send(Frame.Binary(b"x", rsv1=True))
        await asyncio.sleep(0.2)
    # websockets refuses rsv1 without an extension: it fails the connection with 1002.
    assert session.close_reason.code in (1002, 1006)


async def test_send_raw_puts_crafted_bytes_on_the_wire(peer):
    async with rw.ws_raw(peer.url) as session:
        await session.send_raw(rw.encode_frame(1, b"crafted", mask=b"abcd"))
        await peer.wait_for(lambda got: len(got) >= 1)
        await session.send_raw(rw.encode_frame(1, b"unmasked", mask=False))
        await asyncio.sleep(0.2)
    assert peer.received[0].data == b"crafted"
    assert len(peer.received) == 1  # websockets rejected the unmasked frame
    tx = session.timeline.query("dir == 'tx'")
    assert list(tx.payload[:2]) == [b"crafted", b"unmasked"]
