"""The `.rawws` accessor on scripted sessions: results checked against what the script
put on the wire (frame numbers and payloads written out by hand)."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pandas as pd
import pytest

import rawws_nb as rw
from rawws_nb import Frame

from .conftest import receive_until

SNOWMAN = "☃".encode()


def ns(ts) -> int:
    return pd.Timestamp(ts).value


# -- latency ----------------------------------------------------------------------------


async def test_latency_unanswered_pings_via_sink(sink_session):
    df = sink_session.timeline
    assert list(df.opcode) == ["ping", "text", "ping", "pong", "close", "close"]
    lat = df.rawws.latency()
    assert list(lat.columns) == ["dir", "payload", "ping", "pong", "sent_at", "answered_at", "rtt", "t_rel"]
    assert list(lat.payload) == [b"one", b"two"] and list(lat.dir) == ["tx", "tx"]
    assert list(lat.ping) == [0, 2]
    assert lat.pong.isna().all() and lat.answered_at.isna().all() and lat.rtt.isna().all()
    assert list(lat.sent_at) == [df.t[0], df.t[2]]
    assert lat.pong.dtype == "Int64" and lat.rtt.dtype == "float64"
    assert str(lat.sent_at.dtype) == "datetime64[ns, UTC]"


async def test_latency_both_directions(fragments_session):
    df = fragments_session.timeline
    lat = df.rawws.latency()
    # The server's Ping (frame 2) answered by our Pong (frame 12); our Ping (10) by its Pong (14).
    assert list(zip(lat.dir, lat.payload, lat.ping, lat.pong, strict=True)) == [
        ("rx", b"between-fragments", 2, 12),
        ("tx", b"mid", 10, 14),
    ]
    t = df.t
    assert lat.rtt.tolist() == [(ns(t[12]) - ns(t[2])) / 1e9, (ns(t[14]) - ns(t[10])) / 1e9]
    assert (lat.rtt > 0).all()
    assert list(lat.answered_at) == [t[12], t[14]]


async def test_latency_peer_pings_answered_and_not(server):
    """`/ping` pings us twice; we answer only the first."""
    session = await rw.web_socket_raw_session(server.url + "/ping?n=2&interval=0.01&timeout=0.3")
    ping = await session.incoming.receive()
    await session.send(Frame.Pong(ping.data))
    frames = await receive_until(session, "ping done")
    await session.close()
    assert [f.read_text() for f in frames if isinstance(f, Frame.Text)][1:] == [
        "no pong for server-ping-2 within 0.3 s",
        "ping done",
    ]
    lat = session.timeline.rawws.latency()
    assert list(lat.dir) == ["rx", "rx"] and list(lat.payload) == [b"server-ping-1", b"server-ping-2"]
    assert lat.rtt.notna().tolist() == [True, False]
    assert lat.pong.iloc[0] == 1 and pd.isna(lat.pong.iloc[1])


def test_latency_matches_by_payload_oldest_first():
    df = _frames(
        ("tx", "ping", b"a"),
        ("tx", "ping", b"a"),
        ("tx", "ping", b"b"),
        ("rx", "pong", b"b"),
        ("rx", "pong", b"a"),
        ("tx", "pong", b"a"),  # our pong: answers no ping of ours
        ("rx", "pong", b"zz"),  # unsolicited
    )
    lat = df.rawws.latency()
    assert lat.ping.tolist() == [0, 1, 2]
    assert lat.pong.tolist() == [4, pd.NA, 3]
    assert lat.rtt.tolist()[0] == pytest.approx(4e-3) and np.isnan(lat.rtt.iloc[1])


# -- messages ---------------------------------------------------------------------------


async def test_messages_reassembles_fragments_with_interleaved_control_frames(fragments_session):
    df = fragments_session.timeline
    assert df.message.tolist() == [0, 0, 1, 0, 2, 2, 3, 3, 4, 5, 6, 5, 7, 8, 9, 8, 10, 11]
    m = df.rawws.messages()
    assert m.index.tolist() == [0, 2, 3, 4, 5, 8]
    assert m.dir.tolist() == ["rx", "rx", "rx", "rx", "tx", "rx"]
    assert m.type.tolist() == ["text", "binary", "text", "text", "text", "text"]
    assert m.frames.tolist() == [3, 2, 2, 1, 2, 2]
    assert m.length.tolist() == [20, 5, 10, 4, 2, 2]
    assert m.payload.tolist() == [b"Part 1 Part 2 Part 3", b"\x01\x02\x03\x04\x05", b"snow" + SNOWMAN + b"man",
                                  b"done", b"AB", b"AB"]  # fmt: skip
    assert m.text.tolist() == ["Part 1 Part 2 Part 3", pd.NA, "snow☃man", "done", "AB", "AB"]
    assert m.first_frame.tolist() == [0, 4, 6, 8, 9, 13] and m.last_frame.tolist() == [3, 5, 7, 8, 11, 15]
    assert m.complete.all() and not m.capped.any()
    assert list(m["first"]) == [df.t[i] for i in (0, 4, 6, 8, 9, 13)]
    assert list(m["last"]) == [df.t[i] for i in (3, 5, 7, 8, 11, 15)]
    assert m.loc[5, "duration"] == (ns(df.t[11]) - ns(df.t[9])) / 1e9
    assert m.dtypes["type"] == df.dtypes["opcode"] and str(m.dtypes["text"]) == "string"
    with_control = df.rawws.messages(control=True)
    assert len(with_control) == 12 and with_control.loc[1, "type"] == "ping"


async def test_messages_of_a_view_starting_mid_message(fragments_session):
    view = fragments_session.timeline.loc[1:]  # starts on a continuation of message 0
    m = view.rawws.messages()
    first = m.loc[0]
    assert first.type == "text"  # the continuations carry text previews
    assert not first.complete and first.frames == 2 and first.payload == b"Part 2 Part 3"
    assert view.loc[3:].rawws.messages().loc[0, "type"] == "text"


def test_messages_keeps_unknown_continuations_apart():
    df = _frames(("rx", "continuation", b"\x00", False), ("rx", "continuation", b"\x01"), messages=[7, 7])
    m = df.rawws.messages()
    assert m.type.tolist() == ["continuation"] and m.payload.tolist() == [b"\x00\x01"] and not m.complete.any()


async def test_capped_payloads_are_flagged(server):
    session = await rw.web_socket_raw_session(server.url + "/echo", payload_cap=4)
    await session.send(Frame.Text("hello ", fin=False))
    await session.send(Frame.Text("world"))
    await session.send(Frame.Ping(b"a ping longer than the cap"))
    async with asyncio.timeout(5):
        for _ in range(3):
            await session.incoming.receive()
    await session.close()
    df = session.timeline
    assert df.length.tolist()[:3] == [6, 5, 26]
    assert df.payload.tolist()[:3] == [b"hell", b"worl", b"a ping longer than the cap"]  # the ping: whole
    m = df.rawws.messages()
    assert m.capped.tolist() == [True, True] and m.length.tolist() == [11, 11]
    assert m.payload.iloc[0] == b"hellworl"


# -- rtt --------------------------------------------------------------------------------


async def test_rtt_by_key_and_by_order(server):
    session = await rw.web_socket_raw_session(server.url + "/echo")
    for i in (1, 2, 3):
        await session.send(json.dumps({"id": i, "q": "x" * i}))
    async with asyncio.timeout(5):
        for _ in range(3):
            await session.incoming.receive()
    await session.close()
    df = session.timeline
    by_order = df.rawws.rtt()
    assert by_order.request.tolist() == [0, 1, 2] and by_order.response.tolist() == [3, 4, 5]
    assert by_order.rtt.tolist() == [(ns(df.t[i + 3]) - ns(df.t[i])) / 1e9 for i in range(3)]
    by_key = df.rawws.rtt(key=lambda p: json.loads(p)["id"])
    assert by_key.key.tolist() == [1, 2, 3] and by_key.response.tolist() == [3, 4, 5]
    only_two = df.rawws.rtt(request="dir == 'tx' and length > 20", key=lambda p: json.loads(p)["id"])
    assert only_two.key.tolist() == [3] and only_two.response.tolist() == [5]


def test_rtt_unanswered_and_out_of_order_responses():
    df = _frames(
        ("tx", "text", b"1"),
        ("tx", "text", b"2"),
        ("rx", "text", b"2"),
        ("rx", "text", b"9"),  # answers nothing
        ("tx", "text", b"3"),
        ("rx", "text", b"1"),
    )
    out = df.rawws.rtt(key=bytes)
    assert out.key.tolist() == [b"1", b"2", b"3"]
    assert out.response.tolist() == [5, 2, pd.NA]
    assert out.rtt.tolist()[:2] == pytest.approx([5e-3, 1e-3]) and np.isnan(out.rtt.iloc[2])
    fifo = df.rawws.rtt()
    assert fifo.response.tolist() == [2, 3, 5]
    custom = df.rawws.rtt(request=lambda m: m.dir == "tx", response=lambda m: m.text == "1")
    assert custom.response.tolist() == [5, pd.NA, pd.NA]


# -- summary, hexdump --------------------------------------------------------------------


async def test_summary_counts_bytes_rates(fragments_session):
    df = fragments_session.timeline
    s = df.rawws.summary()
    assert s.loc[("rx", "continuation"), "frames"] == 5 and s.loc[("rx", "continuation"), "bytes"] == 7 + 6 + 2 + 5 + 1
    assert s.loc[("tx", "all"), "frames"] == 5 and s.loc[("rx", "all"), "frames"] == 13
    assert s.loc[("all", "all"), "frames"] == 18 and s.loc[("all", "all"), "bytes"] == int(df.length.sum())
    duration = (ns(df.t.iloc[-1]) - ns(df.t.iloc[0])) / 1e9
    assert s.attrs["duration"] == duration
    assert s.loc[("all", "all"), "frames_per_s"] == pytest.approx(18 / duration)
    assert s.index.get_level_values(0).tolist()[-1] == "all" and s.errors.sum() == 0
    assert rw.timeline.empty_timeline().rawws.summary().empty


async def test_hexdump(fragments_session):
    df = fragments_session.timeline
    dump = df.rawws.hexdump(rows=[4, 5])
    assert str(dump).splitlines() == [
        f"#4 rx binary 3 B t={df.t_rel[4]:+.6f} s message 2",
        "00000000  01 02 03" + " " * 41 + "...",
        f"#5 rx continuation fin 2 B t={df.t_rel[5]:+.6f} s message 2",
        "00000000  04 05" + " " * 44 + "..",
    ]
    assert repr(dump) == str(dump) and "<pre" in dump._repr_html_()
    assert df.rawws.hexdump(rows=8).startswith("#8 rx text fin 4 B")
    assert df.rawws.hexdump(max_frames=2).endswith("… 16 more frames (pass rows= or max_frames=)")


# -- decode -----------------------------------------------------------------------------


async def test_decode_with_a_codec(server):
    from protocols import tlv
    from rawws_nb.codec import negotiate

    session = await rw.web_socket_raw_session(server.url + "/proto/tlv")
    await negotiate(session, tlv.PROTOCOL)
    data = tlv.PROTOCOL.encode("chat", id=8, text="fragmented")
    await session.send(Frame.Binary(data[:4], fin=False))
    await session.send(Frame.Ping(b"inside"))
    await session.send(Frame.Binary(data[4:]))
    await session.send(Frame.Binary(b"\x99\x00\x00\x00\x00"))  # unknown message type
    async with asyncio.timeout(5):
        while True:  # ack, chat, then an error message for the undecodable frame
            frame = await session.incoming.receive()
            if isinstance(frame, Frame.Binary) and frame.data[:1] == b"\x04":
                break
    await session.close()
    df = session.timeline
    plain = df.assign(msg_type=pd.array([pd.NA] * len(df), dtype="string[pyarrow]"), fields=None)
    decoded = plain.rawws.decode(tlv.PROTOCOL)
    assert decoded.loc[4, "msg_type"] == "chat" and decoded.loc[4, "fields"] == {"id": 8, "text": "fragmented"}
    assert pd.isna(decoded.loc[2, "msg_type"]) and decoded.loc[2, "fields"] is None  # first fragment
    assert pd.isna(decoded.loc[3, "msg_type"])  # the ping inside
    assert pd.notna(decoded.loc[5, "error"]) and pd.isna(decoded.loc[5, "msg_type"])
    assert decoded.dtypes.equals(df.dtypes)
    # The live timeline decodes the same way (the session negotiated, so the recorder knows the codec).
    assert df.loc[4, "msg_type"] == "chat" and df.loc[4, "fields"] == decoded.loc[4, "fields"]


def test_decode_with_a_decoder_function_or_a_duck_typed_codec():
    import functools

    from protocols import tlv
    from rawws_nb.codec import decode_for_timeline

    chat = tlv.PROTOCOL.encode("chat", id=3, text="hi")
    df = _frames(("tx", "binary", b"\x01\x00"), ("tx", "binary", chat), ("rx", "binary", b"\x99"))
    exact = df.rawws.decode(functools.partial(decode_for_timeline, tlv.PROTOCOL, None))
    assert exact.msg_type.tolist() == ["negotiation", "chat", pd.NA]
    assert exact.fields.tolist()[:2] == [{"versions": ["1.0"]}, {"id": 3, "text": "hi"}]
    # A codec Protocol brings its own timeline decoder: the same result.
    assert df.rawws.decode(tlv.PROTOCOL).msg_type.tolist() == exact.msg_type.tolist()

    class DecodeOnly:  # anything with decode(): plain decoding, no negotiation frames
        def decode(self, data: bytes):
            return tlv.PROTOCOL.decode(data)

    plain = df.rawws.decode(DecodeOnly())
    assert plain.msg_type.tolist()[1] == "chat" and plain.fields.tolist()[1] == {"id": 3, "text": "hi"}
    assert plain.error.tolist()[0].startswith("DecodeError") and pd.notna(plain.error.tolist()[2])

    def boom(data: bytes):
        raise RuntimeError("decoder bug")

    assert df.rawws.decode(boom).error.tolist() == ["RuntimeError: decoder bug"] * 3
    cleared = exact.rawws.decode(None)
    assert cleared.msg_type.isna().all() and cleared.fields.isna().all()
    with pytest.raises(TypeError, match="version applies to a codec"):
        df.rawws.decode(boom, (1, 0))
    with pytest.raises(TypeError, match="expected a codec"):
        df.rawws.decode(42)


@pytest.mark.filterwarnings("error")
def test_missing_times_are_nat_without_warnings():
    """NaT for unanswered pings / requests and empty summary rows: no deprecation warning
    (numpy >= 2.5 deprecates the unitless `np.datetime64("NaT")`)."""
    df = _frames(("tx", "ping", b"a"), ("tx", "text", b"q"), ("rx", "pong", b"a"))
    lat = df.rawws.latency()
    assert lat.answered_at.notna().all()
    unanswered = _frames(("tx", "ping", b"a"), ("tx", "text", b"q")).rawws
    assert unanswered.latency().answered_at.isna().all() and unanswered.rtt().answered_at.isna().all()
    assert str(unanswered.rtt().answered_at.dtype) == "datetime64[ns, UTC]"
    empty = _frames().rawws.summary()
    assert len(empty) == 0 and str(empty["first"].dtype) == "datetime64[ns, UTC]"


# -- validation -------------------------------------------------------------------------


def test_missing_columns_give_a_clear_error():
    with pytest.raises(AttributeError, match=r"not a rawws timeline: missing columns t, dir, opcode, fin, length"):
        pd.DataFrame({"a": [1]}).rawws  # noqa: B018
    df = _frames(("tx", "text", b"x")).drop(columns=["payload"])
    with pytest.raises(AttributeError, match=r"missing column payload \(a timeline has t, t_rel"):
        df.rawws.messages()


def test_accessor_works_on_plain_dtypes():
    df = _frames(("tx", "ping", b"p"), ("rx", "pong", b"p"))
    plain = df.astype({"dir": str, "opcode": str})
    assert plain.rawws.latency().pong.tolist() == [1]


# -- helpers ----------------------------------------------------------------------------


def _frames(*rows, messages=None) -> pd.DataFrame:
    """A timeline from `(dir, opcode, payload[, fin])` rows, 1 ms apart, via the recorder."""
    from rawws_nb.frames import RX, TX, header_code
    from rawws_nb.timeline.recorder import Recorder
    from rawws_nb.timeline.schema import OPCODES

    rec = Recorder(capacity=100, t0=1_700_000_000_000_000_000)
    seq = -1
    open_ = {TX: -1, RX: -1}
    for i, row in enumerate(rows):
        d, op, payload = row[:3]
        fin = row[3] if len(row) > 3 else True
        d = TX if d == "tx" else RX
        code = OPCODES[op]
        if messages is not None:
            msg = messages[i]
        elif code == 0:
            msg = open_[d]
        else:
            seq += 1
            msg = seq
            if code < 8:
                open_[d] = msg
        rec.add(1_700_000_000_000_000_000 + i * 1_000_000, header_code(code, fin, direction=d), payload, msg)
    return rec.to_dataframe()
