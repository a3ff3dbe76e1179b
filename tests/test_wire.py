"""The frame writer and the validating reader (sans-IO), checked against wsproto."""

from __future__ import annotations

import itertools
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wsproto.frame_protocol import FrameProtocol, ParseFailed

from rawws_nb import Frame
from rawws_nb.wire import (
    COMPILED,
    FrameReader,
    apply_mask,
    encode_frame,
    frame_header,
    parse_header,
    split_frames,
)


def parse_all(data: bytes, *, client: bool = True, chunks: list[int] | None = None, **limits):
    reader = FrameReader(client=client, **limits)
    frames, violation = [], None
    pieces = [data] if chunks is None else _split(data, chunks)
    for piece in pieces:
        got, codes, violation = reader.feed(piece)
        assert [c >> 16 for c in codes] == [len(f.data) for f in got]
        assert [bool(c & 0x80) for c in codes] == [f.fin for f in got]
        frames.extend((c & 0x0F, f) for c, f in zip(codes, got, strict=True))
        if violation is not None:
            break
    return frames, violation, reader


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


@pytest.mark.parametrize("n", [0, 1, 3, 4, 5, 7, 8, 9, 125, 2047, 2048, 2049, 65536, 1 << 20])
def test_mask_is_an_involution_and_matches_the_definition(n):
    data = os.urandom(n)
    key = os.urandom(4)
    masked = bytes(apply_mask(data, key))
    definition = np.frombuffer(data, dtype=np.uint8) ^ np.resize(np.frombuffer(key, dtype=np.uint8), n)
    assert masked == definition.tobytes()
    assert bytes(apply_mask(masked, key)) == data


@pytest.mark.parametrize("n", [0, 125, 126, 65535, 65536])
def test_encode_then_parse_round_trips_every_length_form(n):
    payload = os.urandom(n)
    wire = encode_frame(2, payload, mask=True)
    frames, violation, _ = parse_all(wire, client=False)
    assert violation is None
    assert [(op, f.data, f.fin) for op, f in frames] == [(2, payload, True)]


def test_fragments_surface_with_their_message_type_and_wire_opcode():
    wire = (
        encode_frame(1, b"Part 1 ", fin=False, mask=False)
        + encode_frame(9, b"ping-in-between", mask=False)
        + encode_frame(0, b"Part 2", fin=True, mask=False)
    )
    frames, violation, _ = parse_all(wire)
    assert violation is None
    assert [(op, type(f).__name__, f.fin) for op, f in frames] == [
        (1, "Text", False),
        (9, "Ping", True),
        (0, "Text", True),
    ]


def test_utf8_may_split_across_fragments_but_not_be_invalid():
    snowman = "☃".encode()
    ok = encode_frame(1, b"a" + snowman[:2], fin=False, mask=False) + encode_frame(0, snowman[2:], mask=False)
    frames, violation, _ = parse_all(ok)
    assert violation is None and b"".join(f.data for _, f in frames).decode() == "a☃"
    bad = encode_frame(1, b"ok", fin=False, mask=False) + encode_frame(0, b"\xff", fin=False, mask=False)
    frames, violation, _ = parse_all(bad)
    assert violation.code == 1007 and len(frames) == 1  # reported at the frame that holds the bad byte


@pytest.mark.parametrize(
    ("wire", "code", "words"),
    [
        (encode_frame(3, b"x", mask=False), 1002, "reserved data opcode"),
        (encode_frame(0xB, b"x", mask=False), 1002, "reserved control opcode"),
        (encode_frame(1, b"x", rsv=4, mask=False), 1002, "rsv bits"),
        (encode_frame(1, b"x", mask=True), 1002, "masked"),
        (encode_frame(9, b"p" * 126, mask=False), 1002, "control frame payload"),
        (encode_frame(9, b"p", fin=False, mask=False), 1002, "fragmented control"),
        (encode_frame(0, b"x", mask=False), 1002, "continuation"),
        (encode_frame(1, b"a", fin=False, mask=False) + encode_frame(2, b"b", mask=False), 1002, "inside a fragmented"),
        (encode_frame(1, b"\xc3\x28", mask=False), 1007, "UTF-8"),
        (encode_frame(8, b"\x03", mask=False), 1002, "1-byte"),
        (encode_frame(8, (999).to_bytes(2, "big"), mask=False), 1002, "invalid code 999"),
        (encode_frame(8, (1005).to_bytes(2, "big"), mask=False), 1002, "invalid code 1005"),
        (encode_frame(8, (1000).to_bytes(2, "big") + b"\xff", mask=False), 1007, "not valid UTF-8"),
        (bytes([0x82, 127]) + (1 << 63).to_bytes(8, "big"), 1002, "most significant bit"),
    ],
)
def test_violations_are_values_with_the_rfc_close_code(wire, code, words):
    _frames, violation, reader = parse_all(wire)
    assert violation is not None and violation.code == code and words in violation.reason
    frames, codes, violation = reader.feed(encode_frame(1, b"more", mask=False))
    assert (frames, list(codes), violation) == ([], [], None)  # nothing after a failure


def test_server_side_requires_masked_frames():
    _, violation, _ = parse_all(encode_frame(1, b"x", mask=False), client=False)
    assert violation.code == 1002 and "unmasked" in violation.reason


def test_size_limits_are_checked_from_the_header_before_buffering():
    reader = FrameReader(client=True, max_frame_size=1000, max_message_size=1500)
    # Only the header of a 10 MB frame: rejected at once, nothing buffered.
    frames, _, violation = reader.feed(bytes([0x82, 127]) + (10_000_000).to_bytes(8, "big"))
    assert violation.code == 1009 and reader.buffered == 0
    reader = FrameReader(client=True, max_frame_size=1000, max_message_size=1500)
    frames, _, violation = reader.feed(
        encode_frame(2, b"a" * 900, fin=False, mask=False) + encode_frame(0, b"b" * 900, mask=False)
    )
    assert violation.code == 1009 and "max_message_size" in violation.reason and len(frames) == 1


def test_partial_frames_wait_for_the_rest():
    wire = encode_frame(2, os.urandom(70000), mask=False)
    reader = FrameReader(client=True)
    for i in range(0, len(wire) - 1, 997):
        frames, _, violation = reader.feed(wire[i : min(i + 997, len(wire) - 1)])
        assert frames == [] and violation is None
    frames, _, violation = reader.feed(wire[-1:])
    assert violation is None and len(frames) == 1 and frames[0].data == wire[10:]


# -- properties ---------------------------------------------------------------------

frame_specs = st.lists(
    st.tuples(
        st.sampled_from([0, 1, 2, 8, 9, 10]),
        st.booleans(),
        st.one_of(st.binary(max_size=200), st.text(max_size=60).map(str.encode)),
    ),
    max_size=12,
)


def _valid_stream(specs) -> tuple[bytes, list[tuple[int, bytes, bool]]]:
    """Turn random specs into a valid server->client stream and the frames it holds."""
    out, expected, open_type = [], [], None
    for opcode, fin, payload in specs:
        if opcode >= 8:
            payload, fin = payload[:125], True
            if opcode == 8:
                payload = (1000).to_bytes(2, "big") + payload[:20].decode("utf-8", "ignore").encode()
        else:
            if open_type is None:
                opcode = opcode or 2
                open_type = opcode
            else:
                opcode = 0
            if open_type == 1:
                payload = payload.decode("utf-8", "ignore").encode()
            if fin:
                open_type = None
        out.append(encode_frame(opcode, payload, fin=fin, mask=False))
        expected.append((opcode, payload, fin))
    return b"".join(out), expected


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(frame_specs, st.lists(st.integers(min_value=0, max_value=10_000), max_size=8))
def test_any_chunking_of_a_valid_stream_gives_the_same_frames(specs, cuts):
    wire, expected = _valid_stream(specs)
    frames, violation, reader = parse_all(wire, chunks=cuts)
    assert violation is None
    assert [(op, f.data, f.fin) for op, f in frames] == expected
    assert reader.buffered == 0


def _wsproto_parse(data: bytes):
    proto = FrameProtocol(client=True, extensions=[])
    frames, current = [], []
    try:
        proto.receive_bytes(data)
        for frame in proto.received_frames():
            payload = frame.payload
            if isinstance(payload, tuple):  # a Close, already parsed
                code, reason = payload
                payload = b"" if int(code) == 1005 else int(code).to_bytes(2, "big") + reason.encode()
            elif isinstance(payload, str):
                payload = payload.encode()
            current.append(bytes(payload))
            if frame.frame_finished:
                frames.append((int(frame.opcode), b"".join(current), frame.message_finished))
                current = []
    except ParseFailed as exc:
        return frames, int(exc.code)
    return frames, None


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(frame_specs, st.lists(st.tuples(st.integers(min_value=0), st.integers(min_value=0, max_value=255)), max_size=3))
def test_same_verdict_as_wsproto_on_valid_and_mutated_streams(specs, mutations):
    wire, _ = _valid_stream(specs)
    data = bytearray(wire)
    for pos, value in mutations:
        if data:
            data[pos % len(data)] = value
    data = bytes(data)
    theirs, their_code = _wsproto_parse(data)
    ours, violation, _ = parse_all(data)
    our_code = violation.code if violation is not None else None
    # wsproto stops reading at a Close; we deliver what follows (a raw tool shows it).
    closes = [i for i, (op, _) in enumerate(ours) if op == 8]
    if closes:
        ours, our_code = ours[: closes[0] + 1], None
    # wsproto rejects close code 1014 (registered by IANA since RFC 6455; we accept it).
    if their_code == 1002 and our_code is None and any(op == 8 and f.data[:2] == b"\x03\xf6" for op, f in ours):
        return
    if violation is not None and their_code is None and violation.payload is None:
        # We judge a frame from its first two bytes; wsproto waits for the whole header
        # and the payload first. When the length is known, complete the frame for wsproto.
        if violation.length is None or violation.length > 1 << 20:
            return  # the stream ends inside the header: wsproto has no verdict yet
        _, their_code = _wsproto_parse(data + bytes(violation.length or 0))
    assert our_code == their_code, (violation, data.hex())
    # wsproto reports a continuation frame with its message's opcode, as our Frame types do,
    # and decodes text to str (a character split across frames moves to the later frame):
    # compare text as one byte stream and everything else frame by frame.
    theirs = theirs[: len(ours)]
    assert [(int(f.type), f.data) for _, f in ours if f.type != 1] == [(op, d) for op, d, _ in theirs if op != 1]
    our_text = b"".join(f.data for _, f in ours if f.type == 1)
    their_text = b"".join(d for op, d, _ in theirs if op == 1)
    assert our_text.startswith(their_text) and len(our_text) - len(their_text) < 4
    if our_code is None:
        assert len(ours) == len(theirs)


def test_frames_from_the_reader_are_frames():
    frames, _, _ = parse_all(encode_frame(2, b"\x01", mask=False))
    assert isinstance(frames[0][1], Frame.Binary)


@pytest.mark.parametrize("n", [0, 125, 126, 65535, 65536])
@pytest.mark.parametrize("mask", [None, b"abcd"])
def test_parse_header_reads_what_frame_header_builds(n, mask):
    head = frame_header(2, n, fin=False, rsv=5, mask=mask)
    header = parse_header(head)
    assert (header.opcode, header.fin, header.rsv, header.length, header.size, header.mask) == (
        2,
        False,
        5,
        n,
        len(head),
        mask,
    )
    assert parse_header(head[:-1]) is None  # incomplete


def test_split_frames_cuts_crafted_bytes_and_reports_an_incomplete_tail():
    data = encode_frame(1, b"one", mask=b"\x01\x02\x03\x04") + encode_frame(3, b"reserved", mask=False)
    tail = encode_frame(2, bytes(10), mask=False)[:5]
    frames = split_frames(data + tail)
    assert [(f.b0 & 0x0F, f.payload, f.error) for f in frames[:2]] == [(1, b"one", None), (3, b"reserved", None)]
    assert frames[2].length == 10 and frames[2].error.startswith("incomplete frame")
    assert split_frames(b"\x81")[0].error == "incomplete frame header"


def test_feed_with_a_limit_keeps_the_rest_unparsed():
    reader = FrameReader(client=True)
    wire = b"".join(encode_frame(1, str(i).encode(), mask=False) for i in range(5))
    frames, codes, _ = reader.feed(wire, 2)
    assert [f.data for f in frames] == [b"0", b"1"] and len(codes) == 2 and reader.limited
    frames, _, _ = reader.feed(b"", 0)
    assert frames == [] and reader.limited
    frames, _, _ = reader.feed(b"", None)
    assert [f.data for f in frames] == [b"2", b"3", b"4"] and not reader.limited and reader.buffered == 0


# -- reading a large frame's payload straight into its buffer -----------------------------

_LARGE = st.tuples(
    st.sampled_from([1, 2, 2, 0]),  # opcode (0: continuation)
    st.booleans(),  # fin
    st.one_of(
        st.integers(65_536, 140_000).map(lambda n: b"b" * n),
        st.integers(65_536, 70_000).map(lambda n: "é".encode() * (n // 2)),
        st.integers(65_536, 70_000).map(lambda n: b"a" * n + b"\xff"),  # invalid UTF-8 at the end
        st.integers(65_536, 70_000).map(lambda n: b"\xc3" + b"a" * n),  # invalid at the start
        st.binary(max_size=30),  # small frames between
    ),
)


def _into_run(data: bytes, seed: int, use_buffer: bool, client: bool = True, **limits) -> list[object]:
    """Read `data` in random pieces; while a large frame is pending, into its buffer
    (`use_buffer`, now and then through `feed` instead) or always through `feed`."""
    import random

    rng = random.Random(seed)
    reader = FrameReader(client=client, **limits)
    frames: list[object] = []
    violations = []
    pos = 0
    while pos < len(data) and reader.failed is None:
        n = min(rng.choice([1, 7, 1000, 30_000, 70_000, 200_000]), len(data) - pos)
        if use_buffer and reader.receiving_large and rng.random() < 0.85:
            buf = reader.receive_buffer()
            assert len(buf) > 0
            n = min(n, len(buf))
            buf[:n] = data[pos : pos + n]
            got, codes, violation = reader.received_into(n)
        else:
            got, codes, violation = reader.feed(data[pos : pos + n])
        pos += n
        frames.extend((type(f).__name__, f.data, f.fin, c) for f, c in zip(got, codes, strict=True))
        if violation is not None:
            # Where invalid UTF-8 is found depends on how the bytes were cut; the rest may not.
            reason = "invalid UTF-8" if violation.code == 1007 else violation.reason
            violations.append((violation.code, reason, violation.opcode, violation.fin))
    partial = reader.partial() if reader.failed is None else None
    return [frames, violations, reader.buffered, partial and (partial.reason, partial.payload)]


@settings(max_examples=int(os.environ.get("RAWWS_NB_EXAMPLES", "80")), deadline=None)
@given(
    frames=st.lists(_LARGE, min_size=1, max_size=6),
    seed=st.integers(0, 2**32),
    cut=st.integers(0, 40),
    limits=st.sampled_from([{}, {"max_message_size": 100_000}, {"max_frame_size": 80_000}]),
    client=st.booleans(),
)
def test_reading_large_frames_into_their_buffers_gives_what_feed_gives(frames, seed, cut, limits, client):
    # client=False: a server reading a client's masked frames (unmasked in place at the end).
    # Without the compiled path nothing is read into a buffer: both runs use feed.
    data = b"".join(encode_frame(op, payload, fin=fin, mask=not client) for op, fin, payload in frames)
    data = data[: len(data) - cut]  # sometimes the connection drops inside the last frame
    assert _into_run(data, seed, True, client, **limits) == _into_run(data, seed, False, client, **limits)


@pytest.mark.skipif(not COMPILED, reason="reading into a frame's buffer needs the compiled PayloadBuffer")
def test_a_large_frame_read_into_its_buffer_is_that_buffer():
    payload = bytes(range(256)) * 1024  # 256 KiB
    data = encode_frame(2, payload, mask=False)
    reader = FrameReader(client=True)
    assert reader.feed(data[:1000]) == ([], reader.feed(b"")[1], None) and reader.receiving_large
    buf = reader.receive_buffer()
    assert len(buf) == len(payload) - (1000 - 10) and not buf.readonly
    buf[: len(buf)] = data[1000:]
    frames, codes, violation = reader.received_into(len(buf))
    assert violation is None and frames == [Frame.Binary(payload)] and not reader.receiving_large
    assert type(frames[0].data) is bytes and list(codes) == [len(payload) << 16 | 0x82]
    with pytest.raises(RuntimeError, match="no large frame"):
        reader.receive_buffer()
