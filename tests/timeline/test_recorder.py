"""The recorder: views (`since`, `tail`), the ring and payload cap under `/flood`, memory."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc

import pandas as pd
import pytest

import rawws_nb as rw
from rawws_nb.frames import RX, TX, FrameType, header_code
from rawws_nb.timeline import COLUMNS, Recorder, empty_timeline

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
    rec.add(T0, header_code(1, False, direction=RX), b"text start", 0)
    rec.add(T0 + 1, header_code(2, False), b"\x00binary start", 1)
    for i in range(12):
        rec.add(T0 + 2 + i, header_code(9, direction=RX), b"ping", 2 + i)
    rec.add(T0 + 20, header_code(0, direction=RX), b" and its end", 0)
    rec.add(T0 + 21, header_code(0), b"\x01end", 1)
    df = rec.to_dataframe()
    assert rec.dropped > 2 and df.index[0] == rec.dropped and len(df) == len(rec) <= 8
    assert df.text.iloc[-2] == " and its end" and pd.isna(df.text.iloc[-1])


def test_payload_cap_keeps_control_frames_whole():
    rec = Recorder(payload_cap=4)
    rec.add(T0, header_code(2), b"0123456789", 0)
    rec.add(T0, header_code(9), b"a longer ping payload", 1)
    rec.add(T0, header_code(8), (1000).to_bytes(2, "big") + b"closing reason", 2)
    rec.add_error(T0, header_code(1, direction=RX), b"abcdefgh", 100, 3, "dropped mid-frame")
    rec.add_error(T0, header_code(2, direction=RX), b"abcdefgh", 8, 4, None)
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
    """The documented memory figure: about 60 bytes plus the payload (target <= 120)."""
    n = 20_000
    payloads = [b"p%015d" % i for i in range(n)]  # the frames' own payloads: kept alive by the recorder
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        rec = Recorder(capacity=n)
        for i, p in enumerate(payloads):
            rec.add(T0 + i, header_code(1), p, i)
        columns = (tracemalloc.get_traced_memory()[0] - before) / n
    finally:
        tracemalloc.stop()
    payload_object = payloads[0].__sizeof__()  # 33 bytes of header + 16 of payload
    assert columns + payload_object - 16 <= 120, columns
    assert 18 <= columns <= 30, columns  # the list slot (8) and the compact row (2 + 2 + an 8-byte timestamp)


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
    rec.add(T0, header_code(1, False), b"first", 0)
    for i in range(n):
        rec.add(T0 + i, header_code(9), b"p", 1 + i)
    rec.clear()
    rec.add(T0 + 50, header_code(0), b"last", 0)
    df = rec.to_dataframe()
    assert df.index.tolist() == [n + 1] and rec.dropped == n + 1 and df.text.tolist() == ["last"]


# -- the hot path's public API: stage_tx / stage_rx ---------------------------------------


def test_stage_tx_records_as_add_does():
    """Sent frames staged with one timestamp per loop turn (`t_ns` None: the previous
    frame's), data payloads capped, control frames whole, the same rows as `add` gives."""
    staged, added = Recorder(payload_cap=4, t0=T0), Recorder(payload_cap=4, t0=T0)
    close = (1000).to_bytes(2, "big") + b"bye now"
    frames = [  # (t_ns or None, opcode, fin, payload)
        (T0 + 5, 1, False, b"hello world"),
        (None, 9, True, b"a ping longer than the cap"),
        (None, 0, True, b"!"),
        (T0 + 9, 2, True, b"\x00\x01\x02\x03\x04"),
        (None, 8, True, close),
    ]
    t = T0
    for t_ns, op, fin, payload in frames:
        staged.stage_tx(t_ns, header_code(op, fin, length=len(payload)), payload)
        t = t if t_ns is None else t_ns
        added.add(t, header_code(op, fin), payload)
    df = staged.to_dataframe()
    pd.testing.assert_frame_equal(df, added.to_dataframe())
    assert df.t.tolist() == [pd.Timestamp(T0 + ns, tz="UTC") for ns in (5, 5, 5, 9, 9)]
    assert df.payload.tolist() == [b"hell", b"a ping longer than the cap", b"!", b"\x00\x01\x02\x03", close]
    assert df.length.tolist() == [11, 26, 1, 5, 9] and df.message.tolist() == [0, 1, 0, 2, 3]
    assert df.text.tolist()[:3] == ["hell", pd.NA, "!"] and df.close_code.tolist()[4] == 1000


def test_stage_tx_trims_to_capacity():
    rec = Recorder(capacity=8)
    for i in range(20):
        rec.stage_tx(T0 + i, header_code(1, length=1), b"x")
    assert rec.total == 20 and len(rec) <= 8 and rec.dropped == 20 - len(rec)
    assert rec.to_dataframe().index[-1] == 19


def test_stage_rx_takes_a_batch_and_ignores_an_empty_one():
    from rawws_nb import Frame

    rec = Recorder(payload_cap=3)
    rec.stage_rx(T0, [], [])
    frames = [Frame.Text("abcdef", fin=False), Frame.Ping(b"ping!"), Frame.Text("gh")]
    codes = [header_code(1, False, length=6, direction=RX), header_code(9, length=5, direction=RX)]
    codes.append(header_code(0, length=2, direction=RX))
    rec.stage_rx(T0 + 1, codes, frames)
    df = rec.to_dataframe()
    assert df.dir.tolist() == ["rx"] * 3 and df.opcode.tolist() == ["text", "ping", "continuation"]
    assert df.payload.tolist() == [b"abc", b"ping!", b"gh"] and df.length.tolist() == [6, 5, 2]
    assert (df.t == pd.Timestamp(T0 + 1, tz="UTC")).all() and df.message.tolist() == [0, 1, 0]


@pytest.mark.parametrize("compiled", [True, False])
def test_a_joined_batch_keeps_no_more_than_the_cap(compiled):
    # A reader joins payloads up to the `join_max` it was given; the cap may have been
    # lowered since (`payload_cap` set on a session's recorder): the batch is capped.
    from array import array

    from rawws_nb import Frame

    rec = Recorder(payload_cap=512, compiled=compiled)
    rec.payload_cap = 4
    payloads = [b"%010d" % i for i in range(10)]
    codes = array("q", [header_code(1, length=10, direction=RX)] * 10)
    rec.stage_rx(T0, codes, [Frame.Text(p) for p in payloads], 0, bytearray(b"".join(payloads)))
    df = rec.to_dataframe()
    assert df.payload.tolist() == [p[:4] for p in payloads] and df.length.tolist() == [10] * 10


def test_payload_cap_can_change():
    rec = Recorder(payload_cap=2)
    rec.stage_tx(T0, header_code(2, length=4), b"abcd")
    rec.payload_cap = 3
    rec.stage_tx(None, header_code(2, length=4), b"abcd")
    assert rec.to_dataframe().payload.tolist() == [b"ab", b"abc"] and Recorder(payload_cap=-5).payload_cap == 0


# -- decoders -------------------------------------------------------------------------------


def _binary(rec: Recorder, t: int, payload: bytes, fin: bool = True, op: int = 2) -> None:
    rec.stage_tx(t, header_code(op, fin, length=len(payload)), payload)


def test_set_decoder_applies_from_the_next_frame_on():
    rec = Recorder(t0=T0)
    seen: list[bytes] = []

    def decode(data: bytes):
        seen.append(data)
        return f"m{data[0]}", {"n": len(data)}, None

    _binary(rec, T0, b"\x01 before")
    rec.set_decoder(decode)
    _binary(rec, T0 + 1, b"\x02 one")
    _binary(rec, T0 + 2, b"\x03 in ", fin=False)  # a fragmented message: decoded whole, once
    _binary(rec, T0 + 3, b"two parts", op=0)
    rec.set_decoder(None)
    _binary(rec, T0 + 4, b"\x04 after")
    df = rec.to_dataframe()
    assert df.msg_type.tolist() == [pd.NA, "m2", pd.NA, "m3", pd.NA]
    assert df.fields.tolist() == [None, {"n": 5}, None, {"n": 14}, None]
    assert seen == [b"\x02 one", b"\x03 in two parts"]
    rec.to_dataframe()
    rec.recent(10)
    assert len(seen) == 2  # cached per row


def test_a_decoder_that_raises_or_misbehaves_gives_error_rows():
    rec = Recorder()
    answers = iter([ValueError("bad bytes"), ("name", None, "it said no"), "not a triple", (7, [1], 8)])

    def decode(data: bytes):
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    rec.set_decoder(decode)
    for i in range(4):
        _binary(rec, T0 + i, b"x%d" % i)
    df = rec.to_dataframe()
    assert df.error.tolist() == [
        "ValueError: bad bytes",
        "it said no",
        "ValueError: too many values to unpack (expected 3)",
        "8",
    ]
    assert df.msg_type.tolist() == [pd.NA, "name", pd.NA, "7"] and df.fields.tolist()[3] == [1]


def test_codec_decoder_uses_a_codec_duck_typed():
    from rawws_nb.timeline.recorder import codec_decoder

    class Failure(Exception):
        msg_type = "known"

    class Codec:
        def __init__(self, version=None):
            self.version = version

        def for_version(self, version):
            if version == (9, 9):
                raise ValueError("no version 9.9")
            return Codec(version)

        def decode(self, data: bytes):
            if data == b"bad":
                raise Failure("truncated at offset 1")
            return type("Message", (), {"name": "msg", "fields": {"v": self.version, "data": data}})()

    assert codec_decoder(Codec())(b"a") == ("msg", {"v": None, "data": b"a"}, None)
    assert codec_decoder(Codec(), (1, 0))(b"b") == ("msg", {"v": (1, 0), "data": b"b"}, None)
    assert codec_decoder(Codec())(b"bad") == ("known", None, "Failure: truncated at offset 1")
    rec = Recorder()
    rec.set_decoder(codec_decoder(Codec(), (9, 9)))
    _binary(rec, T0, b"c")
    assert rec.to_dataframe().error.tolist() == ["ValueError: no version 9.9"]


def test_a_continuation_recorded_after_a_view_of_its_first_frame():
    # The view materialises the first frame; the continuation then arrives alone (with
    # no message start in its batch): it still belongs to that message.
    rec = Recorder()
    rec.stage_tx(1, header_code(FrameType.TEXT, False, 0, 3, TX), b"abc")
    assert [r.fin for r in rec.recent(5)] == [False]
    rec.stage_tx(2, header_code(FrameType.CONTINUATION, True, 0, 3, TX), b"def")
    rows = rec.recent(5)
    assert [(r.opcode, r.message, r.text) for r in rows] == [("text", 0, "abc"), ("continuation", 0, "def")]


def test_lowering_the_capacity_drops_the_oldest_frames_now():
    for compiled in (True, False):
        rec = Recorder(capacity=100, compiled=compiled)
        for i in range(80):
            rec.stage_tx(T0 + i, header_code(2, length=1), bytes([i]))
        rec.capacity = 40
        kept = rec.to_dataframe().payload.tolist()
        assert len(kept) <= 40 and kept == [bytes([i]) for i in range(80 - len(kept), 80)]
        assert rec.dropped == 80 - len(kept)
        with pytest.raises(ValueError):
            rec.capacity = 0
