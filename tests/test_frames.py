"""Frames are immutable values with readable reprs (no I/O here)."""

from __future__ import annotations

import pickle

import pytest

from rawws_nb import CloseReason, Frame, FrameType
from rawws_nb.frames import hexdump


def test_constructors_accept_both_ktor_and_python_argument_orders():
    assert (
        Frame.Binary(True, b"\x01\x00")
        == Frame.Binary(b"\x01\x00", fin=True)
        == Frame.Binary(fin=True, data=b"\x01\x00")
    )
    assert Frame.Text(fin=False, data=b"Part 1 ") == Frame.Text("Part 1 ", fin=False)
    assert Frame.Text("héllo").data == "héllo".encode()
    assert Frame.Text(b"\xce", fin=False).data == b"\xce"  # a fragment may split a character
    assert Frame.Ping("manual-ping").data == b"manual-ping"


def test_types_and_pattern_matching():
    frame = Frame.Text("hi")
    assert isinstance(frame, Frame) and isinstance(frame, Frame.Text)
    assert frame.type is FrameType.TEXT
    match frame:
        case Frame.Binary():
            kind = "binary"
        case Frame.Text(data):
            kind = f"text {data!r}"
    assert kind == "text b'hi'"
    with pytest.raises(TypeError):
        Frame(b"x")


def test_frames_are_immutable_and_hashable():
    frame = Frame.Binary(b"abc")
    with pytest.raises(AttributeError):
        frame.data = b"x"
    with pytest.raises(AttributeError):
        frame.fin = False
    assert hash(frame) == hash(Frame.Binary(b"abc"))
    assert frame != Frame.Text(b"abc")  # same bytes, different type
    assert pickle.loads(pickle.dumps(frame)) == frame


def test_reprs_are_log_friendly():
    assert repr(Frame.Text("hello")) == "TEXT 'hello' [5 bytes]"
    assert repr(Frame.Text("Part 1 ", fin=False)) == "TEXT 'Part 1 ' [7 bytes, fin=False]"
    assert repr(Frame.Binary(b"\x01\x02\x03")) == "BINARY 01 02 03 [3 bytes]"
    assert repr(Frame.Ping(b"manual-ping")) == "PING 'manual-ping' [11 bytes]"
    assert repr(Frame.Pong(b"")) == "PONG [0 bytes]"
    assert repr(Frame.Binary(b"x", rsv1=True)) == "BINARY 'x' [1 bytes, rsv1=True]"
    close = Frame.Close(CloseReason(CloseReason.Codes.NORMAL, "Custom close"))
    assert repr(close) == "CLOSE 1000 (NORMAL) 'Custom close' [14 bytes]"


def test_html_repr_has_a_hex_dump():
    html = Frame.Binary(b"\x00\x01AB")._repr_html_()
    assert "00 01 41 42" in html and "..AB" in html


def test_close_reason_codes_and_reading():
    assert CloseReason.Codes.GOING_AWAY == 1001
    assert CloseReason.Codes.TRY_AGAIN_LATER == 1013
    reason = CloseReason(4000, "app")
    assert reason.known_reason is None and CloseReason(1009).known_reason is CloseReason.Codes.TOO_BIG
    frame = Frame.Close(CloseReason(CloseReason.Codes.GOING_AWAY, "bye"))
    assert frame.data == b"\x03\xe9bye"
    assert frame.read_reason() == CloseReason(1001, "bye")
    assert Frame.Close().read_reason() is None
    assert Frame.Text("x").read_text() == "x"


def test_hexdump_layout():
    dump = hexdump(bytes(range(20)))
    first, second = dump.splitlines()
    assert first.startswith("00000000  00 01 02 03")
    assert second.startswith("00000010  10 11 12 13")
