"""The recorder: views (`since`, `tail`), the ring and payload cap under `/flood`, memory."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc

import pandas as pd
import pytest

import rawws_nb as rw
from rawws_nb.timeline import COLUMNS, Recorder, empty_timeline
from rawws_nb.timeline.recorder import RX, TX, flags

T0 = 1_700_000_000_000_000_000


async def test_every_view_equals_the_same_rows_of_the_whole(fragments_session):
    """`to_dataframe(since=)` and `tail()` give the rows of the full timeline exactly,
    text previews of continuations whose first frame is before the view included."""
    rec = fragments_session.recorder
    full = rec.to_dataframe()
    assert full.loc[1, "text"] == "Part 2 " and full.loc[7, "text"] == "\ufffd\ufffdman"
    for since in range(len(full) + 1):
        pd.testing.assert_frame_equal(rec.to_dataframe(since=since), full.loc[since:])
    for n in (0, 1, 3, 10, 100):
        pd.testing.assert_frame_equal(rec.tail(n), full.iloc[len(full) - min(n, len(full)) :])


async def test_dtypes_are_the_schema(fragments_session):
    df = fragments_session.timeline
    assert dict(df.dtypes) == COLUMNS and df.index.name == "frame"
    assert str(df.dtypes["t"]) == "datetime64[ns, UTC]"
    assert df.t_rel.iloc[0] > 0 and df.t_rel.is_monotonic_increasing
    pd.testing.assert_frame_equal(Recorder().to_dataframe(), empty_timeline())


def test_continuations_after_their_first_frame_was_dropped():
    rec = Recorder(capacity=8)
    rec.add(T0, flags(RX, 1, False), b"text start", 0)
    rec.add(T0 + 1, flags(TX, 2, False), b"\x00binary start", 1)
    for i in range(12):
        rec.add(T0 + 2 + i, flags(RX, 9, True), b"ping", 2 + i)
    rec.add(T0 + 20, flags(RX, 0, True), b" and its end", 0)
    rec.add(T0 + 21, flags(TX, 0, True), b"\x01end", 1)
    df = rec.to_dataframe()
    assert rec.dropped > 2 and df.index[0] == rec.dropped and len(df) == len(rec) <= 8
    assert df.text.iloc[-2] == " and its end" and pd.isna(df.text.iloc[-1])


def test_payload_cap_keeps_control_frames_whole():
    rec = Recorder(payload_cap=4)
    rec.add(T0, flags(TX, 2, True), b"0123456789", 0)
    rec.add(T0, flags(TX, 9, True), b"a longer ping payload", 1)
    rec.add(T0, flags(TX, 8, True), (1000).to_bytes(2, "big") + b"closing reason", 2)
    rec.add_error(T0, flags(RX, 1, True), b"abcdefgh", 100, 3, "dropped mid-frame")
    rec.add_error(T0, flags(RX, 2, True), b"abcdefgh", 8, 4, None)
    df = rec.to_dataframe()
    assert df.payload.tolist() == [b"0123", b"a longer ping payload", b"\x03\xe8closing reason", b"abcd", b"abcd"]
    assert df.length.tolist() == [10, 21, 16, 100, 8]
    assert df.close_code.tolist() == [pd.NA, pd.NA, 1000, pd.NA, pd.NA]
    assert df.close_reason.tolist() == [pd.NA, pd.NA, "closing reason", pd.NA, pd.NA]
    assert df.error.tolist() == [pd.NA, pd.NA, pd.NA, "dropped mid-frame", pd.NA]


async def test_capacity_and_payload_cap_under_flood(server):
    session = await rw.web_socket_raw_session(
        server.url + "/flood?n=5000&size=16", timeline_capacity=1000, payload_cap=8
    )
    peak = 0
    async with asyncio.timeout(10):
        while True:  # the ring stays bounded all along, not only at the end
            frame = await session.incoming.receive()
            peak = max(peak, len(session.recorder))
            if frame.data == b"flood done":
                break
    await session.send("after the flood")
    assert (await asyncio.wait_for(session.incoming.receive(), 2)).read_text() == "after the flood"
    await session.close()
    rec = session.recorder
    df = session.timeline
    assert peak <= 1000 and len(df) == len(rec) <= 1000
    assert rec.total == 5000 + 1 + 2 + 2  # flood, flood done, our text and its echo, two closes
    assert session.timeline_dropped == rec.dropped == rec.total - len(df)
    assert df.index[0] == rec.dropped and df.index[-1] == rec.total - 1
    data = df[df.opcode == "text"]
    assert (data.payload.map(len) <= 8).all() and (data.length >= data.payload.map(len)).all()
    assert data.length.iloc[0] == 16 and data.payload.iloc[0] == b"x" * 8
    assert df.close_code.dropna().tolist() == [1000, 1000]  # control frames whole


def test_bytes_per_recorded_frame():
    """The documented memory figure: about 70 bytes plus the payload (target <= 120)."""
    n = 20_000
    payloads = [b"p%015d" % i for i in range(n)]  # the frames' own payloads: kept alive by the recorder
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        rec = Recorder(capacity=n)
        for i, p in enumerate(payloads):
            rec.add(T0 + i, flags(TX, 1, True), p, i)
        columns = (tracemalloc.get_traced_memory()[0] - before) / n
    finally:
        tracemalloc.stop()
    payload_object = payloads[0].__sizeof__()  # 33 bytes of header + 16 of payload
    assert columns + payload_object - 16 <= 120, columns
    assert 34 <= columns <= 45


async def test_codec_decodes_fragmented_messages_in_views(server):
    from protocols import tlv
    from rawws_nb import Frame
    from rawws_nb.codec import negotiate

    session = await rw.web_socket_raw_session(server.url + "/proto/tlv")
    await negotiate(session, tlv.PROTOCOL)
    data = tlv.PROTOCOL.encode("chat", id=5, text="in three parts")
    await session.send(Frame.Binary(data[:3], fin=False))
    await session.send(Frame.Binary(data[3:9], fin=False))
    await session.send(Frame.Binary(data[9:]))
    await asyncio.wait_for(session.incoming.receive(), 2)  # ack
    await session.close()
    view = session.recorder.to_dataframe(since=3)  # frames 0-1 negotiation, 2-4 the chat: view from its 2nd part
    assert view.loc[4, "msg_type"] == "chat" and view.loc[4, "fields"] == {"id": 5, "text": "in three parts"}
    assert pd.isna(view.loc[3, "msg_type"])


@pytest.mark.parametrize("n", [1, 5, 9])
def test_clear_forgets_rows_but_keeps_numbering(n):
    rec = Recorder(capacity=100)
    rec.add(T0, flags(TX, 1, False), b"first", 0)
    for i in range(n):
        rec.add(T0 + i, flags(TX, 9, True), b"p", 1 + i)
    rec.clear()
    rec.add(T0 + 50, flags(TX, 0, True), b"last", 0)
    df = rec.to_dataframe()
    assert df.index.tolist() == [n + 1] and rec.dropped == n + 1 and df.text.tolist() == ["last"]
