"""What each narrowed `except` still catches, and what it no longer hides.

Each fast path falls back to plain construct only for the exceptions that mean "this
input is not for the fast path" (`fastpath.DECODE_MISSES` / `ENCODE_MISSES`); each
reference path turns only construct's errors into `DecodeError`/`EncodeError`. A bug
(here: a construct adapter or a value that raises `RuntimeError`) propagates instead of
becoming a fallback or an error about the data.
"""

from __future__ import annotations

import struct

import construct as cs
import pytest
from construct import Bytes, Float32b, Int8ub, Int16ub, PascalString, Struct

from protocols import tlv, versioned
from rawws_nb.codec import (
    DecodeError,
    EncodeError,
    MessageType,
    NegotiationError,
    Protocol,
    check_roundtrip,
    decode_for_timeline,
    field_info,
    negotiate,
)
from rawws_nb.codec import message as message_module
from rawws_nb.codec.fastpath import DECODE_MISSES, ENCODE_MISSES, Miss, Unsupported, compile_payload
from rawws_nb.errors import SessionClosed
from rawws_nb.frames import CloseReason, Frame

V2 = versioned.PROTOCOL.for_version((2, 0))


class Bug(RuntimeError):
    """Stands for a programming error somewhere under the codec."""


class BuggyAdapter(cs.Adapter):
    """An adapter with a bug on one side."""

    def __init__(self, subcon, *, on_decode: bool = False, on_encode: bool = False) -> None:
        super().__init__(subcon)
        self.on_decode, self.on_encode = on_decode, on_encode

    def _decode(self, obj, context, path):
        if self.on_decode:
            raise Bug("decode")
        return obj

    def _encode(self, obj, context, path):
        if self.on_encode:
            raise Bug("encode")
        return obj


class BadIndex:
    """An int-like value whose conversion has a bug."""

    def __index__(self) -> int:
        raise Bug("__index__")


# -- fast encode: ENCODE_MISSES fall back, bugs propagate -----------------------------------


def test_values_the_fast_encoder_does_not_take_get_construct_errors():
    cases = [
        ("sample", {"seq": -1, "t_us": 1, "value": 0.5}),  # struct.error: out of range
        ("sample", {"seq": "x", "t_us": 1, "value": 0.5}),  # struct.error: not an int
        ("sample", {"seq": 1, "t_us": 1, "value": 1e300}),  # OverflowError: too large for Float32
        ("sample", {"seq": 1, "t_us": 1}),  # KeyError: missing
        ("sample", {"seq": 1, "t_us": 1, "value": 0.5, "extra": 1}),  # Miss: unknown key
        ("say", {"id": 1, "text": "hi", "priority": ["normal"]}),  # TypeError: unhashable enum value
    ]
    for name, fields in cases:
        assert V2.fast_paths(name)[0]
        with pytest.raises(EncodeError):
            V2.encode(name, **fields)


def test_the_fast_encoders_raise_only_encode_misses():
    compiled = V2.message_type("sample").codec.compiled
    assert compiled is not None
    for fields in ({"seq": -1, "t_us": 1, "value": 0.5}, {"seq": 1, "t_us": 1, "value": 1e300}, {"seq": 1}):
        with pytest.raises(ENCODE_MISSES):
            compiled.encode(fields)


def test_a_bug_in_a_value_is_not_swallowed_by_the_fast_encoder():
    # Before: the fast path's `except Exception` passed it to construct, whose own
    # `except Exception` reported an EncodeError about the value.
    with pytest.raises(Bug):
        V2.encode("sample", seq=BadIndex(), t_us=1, value=0.5)
    with pytest.raises(Bug):
        tlv.PROTOCOL.encode("chat", id=BadIndex(), text="x")  # the non-fused fast path


def test_nested_struct_values_that_are_not_dicts_fall_back():
    proto = Protocol("n", [MessageType("m", 1, Struct("p" / Struct("a" / Int8ub, "b" / cs.Default(Int8ub, 1))))])
    assert proto.decode(proto.encode("m", p={"a": 2})).fields == {"p": {"a": 2, "b": 1}}
    for bad in ([1, 2], "ab", 5):
        with pytest.raises(EncodeError):
            proto.encode("m", p=bad)


def test_an_unknown_encoding_is_outside_the_compiled_subset():
    mt = MessageType("m", 1, Struct("s" / PascalString(Int8ub, "no-such-codec")))
    assert mt.codec.compiled is None
    with pytest.raises(Unsupported, match="unknown encoding"):
        compile_payload(mt.struct)
    proto = Protocol("e", [mt])
    with pytest.raises(EncodeError):  # before: LookupError from the fast path, then construct
        proto.encode("m", s="x")
    with pytest.raises(DecodeError):
        proto.decode(b"\x01\x00\x00\x00\x02\x01x")


# -- fast decode: DECODE_MISSES fall back, bugs propagate -----------------------------------


def test_data_the_fast_decoder_does_not_take_gets_decode_errors():
    good = V2.encode("sample", seq=1, t_us=2, value=0.5)
    for blob in (good[:-1], good + b"\x00", b"", b"\x06"):
        with pytest.raises(DecodeError):
            V2.decode(blob)
    chat = tlv.PROTOCOL.encode("chat", id=1, text="hé")
    with pytest.raises(DecodeError):  # UnicodeDecodeError in the compiled decoder
        tlv.PROTOCOL.decode(chat[:-2] + b"\xff\xfe")
    mt = tlv.PROTOCOL.message_type("ack")
    assert mt.codec.compiled is not None
    with pytest.raises(struct.error):  # the caller's `end` is past the data
        mt.codec.compiled.decode(b"\x00", 0, 4)
    with pytest.raises(DecodeError):  # ... and the payload codec falls back and reports it
        mt.codec.decode(b"\x00", 0, 4)


def test_the_fast_decoders_raise_only_decode_misses():
    compiled = tlv.PROTOCOL.message_type("chat").codec.compiled
    assert compiled is not None
    for payload in (b"", b"\x00\x00\x00\x01\x00\x05ab", b"\x00\x00\x00\x01\x00\x01\xff"):
        with pytest.raises(DECODE_MISSES):
            compiled.decode(payload, 0, len(payload))


def test_a_bug_in_a_construct_is_not_reported_as_bad_data():
    # Before: DecodeError("Bug: decode") / EncodeError, as if the bytes or values were wrong.
    proto = Protocol("bug", [MessageType("m", 1, Struct("x" / BuggyAdapter(Int8ub, on_decode=True)))])
    data = b"\x01\x00\x00\x00\x01\x07"
    with pytest.raises(Bug):
        proto.decode(data)
    with pytest.raises(Bug):  # the timeline hook reports data errors, not bugs
        decode_for_timeline(proto, None, data)
    proto = Protocol("bug", [MessageType("m", 1, Struct("x" / BuggyAdapter(Int8ub, on_encode=True)))])
    with pytest.raises(Bug):
        proto.encode("m", x=7)


def test_construct_errors_in_unsupported_constructs_still_become_codec_errors():
    mt = MessageType("m", 1, Struct("n" / cs.VarInt, "x" / BuggyAdapter(Int16ub)))
    assert mt.codec.compiled is None
    proto = Protocol("plain", [mt])
    assert proto.decode(proto.encode("m", n=300, x=2)).fields == {"n": 300, "x": 2}
    with pytest.raises(DecodeError, match="x"):
        proto.decode(proto.framing.pack(1, b"\x05\x00"))
    with pytest.raises(EncodeError):
        proto.encode("m", n=-1, x=2)
    with pytest.raises(EncodeError):
        proto.encode("m", n=1, x=[1])


def test_compiling_catches_only_unsupported(monkeypatch):
    def broken(struct_):
        raise Bug("compiler")

    monkeypatch.setattr(message_module, "compile_payload", broken)
    with pytest.raises(Bug):  # before: the codec silently used plain construct
        _ = MessageType("m", 1, Struct("x" / Int8ub)).codec


def test_a_miss_is_an_exception_of_its_own():
    assert issubclass(Miss, Exception) and not issubclass(Miss, (ValueError, DecodeError))
    assert Miss in DECODE_MISSES and Miss in ENCODE_MISSES


# -- framings ---------------------------------------------------------------------------------


def test_header_framing_reports_what_does_not_fit():
    framing = tlv.PROTOCOL.framing
    with pytest.raises(EncodeError, match="type 256"):
        framing.pack(256, b"")
    with pytest.raises(EncodeError, match="type 'x'"):
        framing.pack("x", b"")  # type: ignore[arg-type]
    small = Protocol(
        "s",
        [MessageType("m", 1, Struct("b" / cs.GreedyBytes))],
        framing=Struct("type" / Int8ub, "length" / Int8ub, "payload" / Bytes(cs.this.length)),
    )
    with pytest.raises(EncodeError, match="length 300") as info:
        small.encode("m", b=bytes(300))
    assert info.value.msg_type == "m"  # the general path names the message (the fast one deferred to it)


def test_construct_framing_errors_and_bugs():
    framing = Struct("type" / cs.VarInt, "payload" / cs.Prefixed(cs.VarInt, cs.GreedyBytes))
    proto = Protocol("v", [MessageType("m", 1, Struct("x" / Int8ub))], framing=framing)
    with pytest.raises(EncodeError, match="framing"):
        proto.framing.pack(-1, b"")
    with pytest.raises(DecodeError, match="framing"):
        proto.decode(b"\x01\x05\x00")
    buggy = Struct("type" / BuggyAdapter(Int8ub, on_decode=True), "payload" / cs.Prefixed(Int8ub, cs.GreedyBytes))
    proto = Protocol("b", [MessageType("m", 1, Struct("x" / Int8ub))], framing=buggy)
    assert proto.encode("m", x=1) == b"\x01\x01\x01"
    with pytest.raises(Bug):
        proto.decode(b"\x01\x01\x01")


def test_the_fused_path_respects_max_payload():
    # `sample` has a fixed 16-byte payload; with max_payload=8 neither way may take it.
    proto = Protocol("tiny", {(2, 0): [V2.message_type("sample")]}, max_payload=8)
    assert proto.default.fast_paths("sample") == (True, True)  # the non-fused compiled paths
    with pytest.raises(EncodeError, match="exceeds max_payload"):
        proto.encode("sample", seq=1, t_us=2, value=0.5)
    with pytest.raises(DecodeError, match=r"outside 0\.\.8"):
        proto.decode(V2.encode("sample", seq=1, t_us=2, value=0.5))


def test_fast_paths_and_the_general_decoder_agree():
    assert V2.fast_paths("sample") == (True, True) and V2.fast_paths(6) == (True, True)
    assert V2.fast_paths("hello") == (False, False)  # FlagsEnum: plain construct
    data = V2.encode("say", id=3, text="hi")
    assert V2.decode_general(data) == V2.decode(data)
    with pytest.raises(KeyError):
        V2.fast_paths("nope")


# -- stream end ---------------------------------------------------------------------------------


def test_close_after_a_failed_feed_reports_undecoded_messages():
    p = tlv.PROTOCOL
    bad = p.framing.pack(2, b"\x00\x00\x00\x01\x00\x05ab")
    good = p.encode("ack", id=1)
    decoder = p.decoder()
    with pytest.raises(DecodeError):
        decoder.feed(bad + good)
    with pytest.raises(DecodeError, match="not yet decoded") as info:
        decoder.close()
    assert info.value.stream_offset == len(bad)
    assert [m.name for m in decoder.feed(b"")] == ["ack"]
    decoder.close()


# -- metadata and the round-trip checker --------------------------------------------------------


def test_struct_size_counts_unnamed_fields_and_constants():
    info = field_info(Struct("a" / Int8ub, cs.Padding(2), "m" / cs.Const(b"RW"), "f" / Float32b))
    assert info.size == 1 + 2 + 2 + 4 == Struct("a" / Int8ub, cs.Padding(2), cs.Const(b"RW"), Float32b).sizeof()
    assert [c.name for c in info.children] == ["a", "m", "f"]


def test_check_roundtrip_with_a_construct_that_construct_cannot_compile():
    mt = MessageType("m", 1, Struct("n" / Int8ub, "b" / Bytes(lambda this: this.n)))
    with pytest.raises(SyntaxError):
        mt.struct.compile()
    msg = check_roundtrip(Protocol("l", [mt]), "m", {"n": 2, "b": b"ab"})
    assert msg.fields == {"n": 2, "b": b"ab"}


# -- negotiation: closing after a failure ---------------------------------------------------------


class AnswerlessSession:
    """Answers the offer with a Text frame; `close` raises `error`."""

    def __init__(self, error: BaseException) -> None:
        self.error = error
        self.protocol = self.protocol_version = None
        self.incoming = self

    async def send(self, frame: Frame) -> None:
        pass

    async def receive(self) -> Frame:
        return Frame.Text("not a version")

    async def close(self, reason: CloseReason | None = None) -> None:
        raise self.error


async def test_a_session_that_already_ended_does_not_hide_the_negotiation_error():
    ended = SessionClosed(CloseReason(1006, ""))
    for error in (ended, ConnectionResetError()):
        with pytest.raises(NegotiationError, match="expected the version answer"):
            await negotiate(AnswerlessSession(error), versioned.PROTOCOL)


async def test_a_bug_in_close_is_not_swallowed():
    with pytest.raises(Bug):  # before: contextlib.suppress(Exception)
        await negotiate(AnswerlessSession(Bug("close")), versioned.PROTOCOL)
