"""The session's compiled per-frame path (`rawws_nb._speedups.Lane`) against the Python
path it stands in for (`RawSession._on_data`, `RawSession._send_nowait`).

Every script runs twice over real sockets, once with the lane and once with the session
on its Python path only, and both must give the same frames, the same ending and the same
timeline; the lane's counters show which frames it took itself. What the peer received is
checked at the peer (the websockets library parses it)."""

from __future__ import annotations

import asyncio
import gc
import socket
import weakref

import pytest

import rawws_nb as rw
from rawws_nb import PeerProtocolError, SessionClosed
from rawws_nb.frames import Binary, Text
from rawws_nb.wire import encode_frame

from .test_hostile_peers import ScriptedServer, accept_for

pytestmark = pytest.mark.skipif(
    rw.session._Lane is None, reason="the compiled path is not built (RAWWS_NB_PURE=1 or no compiler)"
)

OK = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n"


def python_path(session: rw.RawSession) -> None:
    """Take the lane away: the session runs its Python path only (the reference)."""
    session._lane = None
    session._protocol.data_received = session._on_data
    session._send_now = session._send_nowait


def frame(opcode: int, payload: bytes, fin: bool = True, rsv: int = 0, mask: bool = False) -> bytes:
    return encode_frame(opcode, payload, fin=fin, rsv=rsv, mask=mask)


async def received_by(reads: list[bytes], lane: bool, **options):
    """A client session fed `reads` (each written on its own) by a scripted server: the
    frames it got, how it ended, its timeline and its lane."""

    async def script(reader, writer, request):
        writer.write(OK.format(accept_for(request)).encode())
        await writer.drain()
        await asyncio.sleep(0.02)  # not in the handshake's read (`attach` hands that to the Python path)
        for chunk in reads:
            writer.write(chunk)
            await writer.drain()
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.05)  # then the server closes TCP: the client sees its end

    async with ScriptedServer(script) as srv:
        session = await rw.web_socket_raw_session(f"ws://127.0.0.1:{srv.port}/", close_timeout=1.0, **options)
        if not lane:
            python_path(session)
        lane_used = session._lane
        got, ending = [], None
        try:
            async with asyncio.timeout(5):
                while True:
                    got.append(await session.incoming.receive())
        except (SessionClosed, PeerProtocolError) as exc:
            ending = (type(exc).__name__, exc.reason.code if getattr(exc, "reason", None) else None)
        except TimeoutError:
            ending = ("waiting",)
        session.drop_connection(abort=True)
        await asyncio.sleep(0)
        return got, ending, rows(session), lane_used


def rows(session: rw.RawSession) -> list[tuple]:
    df = session.timeline
    return [
        (r.dir, r.opcode, r.fin, r.length, bytes(r.payload) if r.payload is not None else None, r.error)
        for r in df.itertuples()
    ]


def frames_of(got):
    return [(type(f).__name__, f.fin, bytes(f.data)) for f in got]


SCRIPTS = {
    "one text": [frame(1, b"hello")],
    "text and binary in one read": [frame(1, b"a") + frame(2, b"\x00\xff") + frame(1, b"")],
    "many small frames, one read": [b"".join(frame(1, b"%d" % i) for i in range(30))],
    "a frame split over reads": [frame(1, b"split me")[:3], frame(1, b"split me")[3:]],
    "a frame and a half": [frame(1, b"one") + frame(2, b"two")[:2], frame(2, b"two")[2:] + frame(1, b"three")],
    "a ping between data": [frame(1, b"x") + frame(9, b"p") + frame(1, b"y")],
    "a pong alone": [frame(10, b"late")],
    "a fragmented message": [frame(1, b"par", fin=False), frame(0, b"ts"), frame(1, b"after")],
    "a 126-byte payload (16-bit length)": [frame(2, b"b" * 126)],
    "a 16-bit length, under 128 bytes": [bytes((0x82, 126, 0, 100)) + b"c" * 100],
    "invalid UTF-8": [frame(1, b"ok"), frame(1, b"\xff\xfe")],
    "a masked frame from the server": [frame(1, b"x"), frame(1, b"masked", mask=True)],
    "an rsv bit": [frame(1, b"x", rsv=4)],
    "an unknown opcode": [frame(1, b"x") + frame(3, b"?")],
    "a close": [frame(1, b"bye") + frame(8, b"\x03\xe8")],
    "a long read (the Python path's)": [frame(2, b"z" * 300) + frame(1, b"tail")],
}


# Scripts whose first read is plain frames the lane takes itself.
TAKEN_BY_THE_LANE = {
    "one text",
    "text and binary in one read",
    "many small frames, one read",
    "a fragmented message",
    "invalid UTF-8",
    "a masked frame from the server",
}


@pytest.mark.parametrize("name", list(SCRIPTS))
async def test_the_lane_receives_as_the_python_path_does(name):
    reads = SCRIPTS[name]
    with_lane = await received_by(reads, lane=True)
    without = await received_by(reads, lane=False)
    assert frames_of(with_lane[0]) == frames_of(without[0])
    assert with_lane[1] == without[1]
    assert with_lane[2] == without[2]  # the timeline, row for row
    assert with_lane[3] is not None and without[3] is None
    if name in TAKEN_BY_THE_LANE:
        assert with_lane[3].frames_in > 0


async def test_the_lane_takes_plain_reads_and_hands_on_the_rest():
    got, _, _, lane = await received_by([frame(1, b"a"), frame(1, b"b"), frame(9, b"p"), frame(2, b"c")], lane=True)
    assert frames_of(got) == [("Text", True, b"a"), ("Text", True, b"b"), ("Ping", True, b"p"), ("Binary", True, b"c")]
    assert 1 <= lane.frames_in <= 3  # a read holding the Ping went to the Python path


async def test_the_lane_limits_are_the_readers():
    reads = [frame(1, b"small"), frame(1, b"x" * 40)]
    for lane in (True, False):
        got, ending, timeline, _ = await received_by(reads, lane=lane, max_message_size=16)
        assert frames_of(got) == [("Text", True, b"small")]
        assert ending[1] == 1009
        assert timeline[-2][-1] is not None  # the oversize frame, recorded with its error


async def test_a_full_incoming_pauses_reading_and_loses_nothing(server):
    session = await rw.web_socket_raw_session(server.url, max_queue=4)
    try:
        await session.send("first")
        assert (await session.incoming.receive()).data == b"first"
        assert session._lane.frames_in == 1
        for i in range(40):
            await session.send(f"m{i}")
        await asyncio.sleep(0.2)
        assert session.reading_paused
        got = [(await session.incoming.receive()).data for _ in range(40)]
        assert got == [f"m{i}".encode() for i in range(40)]
    finally:
        await session.close()


async def test_the_lane_sends_what_the_peer_parses(peer):
    session = await rw.web_socket_raw_session(peer.url)
    try:
        await peer.opened()
        await session.send("text é")
        await session.send(b"\x00bin")
        await session.send(bytearray(b"ba"))  # the Python path's
        await session.send(Binary(b"frame"))  # a whole frame: the lane sends its payload
        await session.send("x" * 70000)  # over the lane's size: the Python path's
        await session.send("y" * 300)
        await peer.wait_for(lambda r: len(r) >= 6)
        assert [(f.opcode, f.data) for f in peer.received] == [
            ("TEXT", "text é".encode()),
            ("BINARY", b"\x00bin"),
            ("BINARY", b"ba"),
            ("BINARY", b"frame"),
            ("TEXT", b"x" * 70000),
            ("TEXT", b"y" * 300),
        ]
        lane = session._lane
        # str, bytes and whole frames up to 64 KiB go through the lane (the first written
        # at once, the others batched to the next loop turn); the bytearray and the long
        # message through the Python path.
        assert lane.frames_out == 4 and lane.fd >= 0
        sent = [r for r in rows(session) if r[0] == "tx"]
        assert [r[3] for r in sent] == [len("text é".encode()), 4, 2, 5, 70000, 300]
    finally:
        await session.close()


async def test_sends_in_one_loop_turn_keep_their_order(peer):
    session = await rw.web_socket_raw_session(peer.url)
    try:
        await peer.opened()
        for i in range(200):
            session.send_nowait(f"{i}")  # the first goes out at once, the rest in a batch
        await peer.wait_for(lambda r: len(r) >= 200)
        assert [f.data for f in peer.received] == [b"%d" % i for i in range(200)]
        assert session._lane.frames_out == 200
    finally:
        await session.close()


async def test_a_send_the_socket_cannot_take_at_once_is_written_whole(peer):
    session = await rw.web_socket_raw_session(peer.url)
    try:
        conn = await peer.opened()
        conn.transport.pause_reading()  # the peer stops reading: the socket buffers fill up
        session.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        payloads = [bytes([i % 251]) * 60000 for i in range(40)]
        for data in payloads:
            session.send_nowait(data)  # not waiting for the drain the stalled peer never allows
            await asyncio.sleep(0)
            await asyncio.sleep(0)  # the batch is uncorked: the next send is the lane's again
        assert session.transport.get_write_buffer_size() > 0  # some of it waits in the transport
        assert session._lane.frames_out >= 10
        conn.transport.resume_reading()
        await peer.wait_for(lambda r: len(r) >= 40, timeout=20)
        assert [f.data for f in peer.received] == payloads
    finally:
        await session.close()


async def test_a_send_goes_after_what_the_transport_still_holds(peer):
    # The transport holds data the socket did not take; then the socket has room again
    # (its buffer enlarged) before the transport's own writer ran: the next send must not
    # go to the socket directly, ahead of the held data.
    session = await rw.web_socket_raw_session(peer.url)
    try:
        conn = await peer.opened()
        conn.transport.pause_reading()
        sock = session.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        payloads = [bytes([i]) * 30000 for i in range(8)]
        for data in payloads:
            session.send_nowait(data)
            await asyncio.sleep(0)
            await asyncio.sleep(0)
        assert session.transport.get_write_buffer_size() > 0
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)  # room, the writer not yet run
        session.send_nowait(b"last")
        assert session._lane.frames_out == len(payloads) + 1
        conn.transport.resume_reading()
        await peer.wait_for(lambda r: len(r) >= len(payloads) + 1, timeout=20)
        assert [f.data for f in peer.received] == [*payloads, b"last"]
    finally:
        await session.close()


async def test_a_send_on_a_closing_transport_raises_as_before(server):
    session = await rw.web_socket_raw_session(server.url)
    session.transport.close()
    with pytest.raises(SessionClosed):
        await session.send("late")
    assert session._lane.frames_out == 0


async def test_sending_after_close_raises_as_before(server):
    session = await rw.web_socket_raw_session(server.url)
    await session.close()
    with pytest.raises(SessionClosed):
        await session.send("late")
    with pytest.raises(UnicodeEncodeError):
        session.send_nowait("\ud800")  # not encodable: the same error either way


async def test_server_sessions_take_masked_frames_through_the_lane():
    seen = []

    async def handler(session, request):
        for _ in range(5):
            f = await session.incoming.receive()
            seen.append(f.data)
            await session.send(f.data)
        seen.append(session._lane.frames_in)
        await session.incoming.receive()  # the client's Close

    async with rw.serve(handlers={"/lane": handler}) as srv:
        client = await rw.web_socket_raw_session(srv.url + "/lane")
        for i in range(5):
            await client.send(f"n{i}")
            assert (await client.incoming.receive()).data == f"n{i}".encode()
        await client.close()
        async with asyncio.timeout(5):
            while len(seen) < 6:
                await asyncio.sleep(0.01)
    assert seen[:5] == [f"n{i}".encode() for i in range(5)] and seen[5] == 5


async def test_a_session_with_its_lane_is_collected(server):
    session = await rw.web_socket_raw_session(server.url)
    await session.send("x")
    await session.incoming.receive()
    await session.close()
    assert session._lane is not None  # it refers to the session: a cycle the collector must see
    ref = weakref.ref(session)
    del session
    gc.collect()
    assert ref() is None


async def test_the_lane_wakes_every_waiting_consumer(server):
    session = await rw.web_socket_raw_session(server.url)
    try:
        waiting = [asyncio.ensure_future(session.incoming.receive()) for _ in range(3)]
        await asyncio.sleep(0.01)
        for i in range(3):
            await session.send(f"w{i}")
        got = await asyncio.wait_for(asyncio.gather(*waiting), 5)
        assert sorted(f.data for f in got) == [b"w0", b"w1", b"w2"]
    finally:
        await session.close()


async def test_a_bounded_timeline_recorded_through_the_lane_keeps_the_latest(server):
    session = await rw.web_socket_raw_session(server.url, timeline_capacity=100)
    try:
        for i in range(300):
            await session.send(f"r{i}")
            assert (await session.incoming.receive()).data == f"r{i}".encode()
        assert session._lane.frames_in == 300 and session._lane.frames_out == 300
        df = session.timeline
        assert 100 - 100 // 8 <= len(df) <= 100  # at most `capacity`, dropped an eighth at a time
        assert len(df) + session.timeline_dropped == 600
        assert bytes(df.payload.iloc[-1]) == b"r299" and list(df.dir.iloc[-2:]) == ["tx", "rx"]
        assert df.t.is_monotonic_increasing
    finally:
        await session.close()


async def test_the_lane_stages_recorded_frames_natively(server):
    # Through the recorder's compiled Stager (no int objects, no Python call per frame);
    # a session without recording has nothing to stage.
    recording = await rw.web_socket_raw_session(server.url)
    quiet = await rw.web_socket_raw_session(server.url, record=False)
    try:
        assert recording._lane.native_staging is True
        assert quiet._lane.native_staging is False
        await recording.send("n")
        assert (await recording.incoming.receive()).data == b"n"
        assert [bytes(p) for p in recording.timeline.payload] == [b"n", b"n"]
    finally:
        await recording.close()
        await quiet.close()


async def test_on_asyncio_plain_tcp_the_lane_writes_to_the_socket_and_reads_the_transport(server):
    session = await rw.web_socket_raw_session(server.url)
    try:
        assert session._lane.fd >= 0 and session._lane.reads_transport is True
        await session.send("direct")
        assert (await session.incoming.receive()).data == b"direct"
    finally:
        await session.close()


async def test_after_a_large_frame_small_frames_are_the_lanes_again(server):
    # A frame of 64 KiB or more is read into its own payload buffer (another protocol on
    # the transport); then the transport is handed back, and small frames take the lane.
    session = await rw.web_socket_raw_session(server.url)
    try:
        big = bytes(range(256)) * 1024  # 256 KiB
        for i in range(3):
            await session.send(big)
            assert (await session.incoming.receive()).data == big
            await session.send(f"small {i}")
            assert (await session.incoming.receive()).data == f"small {i}".encode()
        assert session.transport.get_protocol() is session._protocol
        assert session._lane.frames_in == 3  # the small ones
        assert session.timeline.length.tolist() == [len(big), len(big), 7, 7] * 3
    finally:
        await session.close()


async def test_a_payload_cap_lowered_during_the_session_applies_to_the_lanes_frames(server):
    session = await rw.web_socket_raw_session(server.url)
    try:
        await session.send("0123456789")
        await session.incoming.receive()
        session.recorder.payload_cap = 4
        await session.send("abcdefghij")
        assert (await session.incoming.receive()).data == b"abcdefghij"
        assert session._lane.frames_out == 2 and session._lane.frames_in == 2
        df = session.timeline
        assert [bytes(p) for p in df.payload] == [b"0123456789"] * 2 + [b"abcd"] * 2
        assert df.length.tolist() == [10] * 4
    finally:
        await session.close()


async def test_fragments_go_through_the_python_path_in_order(peer):
    session = await rw.web_socket_raw_session(peer.url)
    try:
        await peer.opened()
        await session.send(Text(b"par", fin=False))
        await session.send(Text(b"ts"))  # continues the message: sent as a continuation frame
        await session.send(Binary(b"whole"))
        await peer.wait_for(lambda r: len(r) >= 3)
        assert [(f.opcode, f.fin, f.data) for f in peer.received] == [
            ("TEXT", False, b"par"),
            ("CONT", True, b"ts"),
            ("BINARY", True, b"whole"),
        ]
        assert session._lane.frames_out == 1  # the whole Binary frame only
    finally:
        await session.close()
