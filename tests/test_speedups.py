"""The compiled fast path (`rawws_nb/_speedups.c`) against the pure-Python reference.

`make test` builds the extension, so here it must be in use (unless RAWWS_NB_PURE is set,
which `make test` also does for a second run of the wire, connection and session tests).
Every check compares the two paths on the same input: frames (class, data, fin, rsv),
header codes, violations, joined payloads, and what stays buffered.
"""

from __future__ import annotations

import os
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rawws_nb import wire
from rawws_nb.frames import RX, Frame
from rawws_nb.wire import FrameReader, apply_mask, encode_frame, masked_frame, parse_header

PURE = bool(os.environ.get("RAWWS_NB_PURE"))


def test_the_compiled_path_is_in_use_when_built() -> None:
    # make test compiles it (`.ci/hatch_build.py`); only RAWWS_NB_PURE turns it off.
    assert wire.COMPILED is not PURE


def _shape(frames: list[Frame]) -> list[tuple[str, bytes, bool, int, bool]]:
    return [(type(f).__name__, f.data, f.fin, f.rsv1 << 2 | f.rsv2 << 1 | f.rsv3, f.compressed) for f in frames]


def _run(
    data: bytes,
    cuts: list[int],
    *,
    compiled: bool,
    client: bool,
    limits: tuple[int | None, int | None],
    join: int,
    take: int | None = None,
    drains: int = 0,
) -> list[object]:
    """Feed `data` cut at `cuts`, at most `take` frames per feed; after each piece,
    `drains` more `feed(b"", take)` while frames are held back; all of them at the end."""
    reader = FrameReader(client=client, max_frame_size=limits[0], max_message_size=limits[1], tag=RX, compiled=compiled)
    reader.join_max = join
    out: list[object] = []

    def feed(piece: bytes, limit: int | None) -> None:
        frames, codes, violation = reader.feed(piece, limit)
        joined = None if reader.joined is None else bytes(reader.joined)
        out.append((_shape(frames), list(codes), violation, joined, reader.controls, reader.buffered, reader.limited))

    pos = 0
    for cut in [*cuts, len(data)]:
        feed(data[pos:cut], take)
        pos = max(pos, cut)
        for _ in range(drains):
            if reader.limited:
                feed(b"", take)
    while reader.limited:
        feed(b"", None)
    return out


def _compare(data: bytes, cuts: list[int], **options: object) -> None:
    pure = _run(data, cuts, compiled=False, **options)  # type: ignore[arg-type]
    fast = _run(data, cuts, compiled=True, **options)  # type: ignore[arg-type]
    assert fast == pure


# Frames of every shape, valid and not: the fast path must take the plain ones and leave
# every other one to the Python reader, with the same result.
_PAYLOADS = st.one_of(
    st.binary(max_size=40),
    st.text(max_size=20).map(lambda s: s.encode("utf-8")),
    st.sampled_from([b"\xed\xa0\x80", b"\xc0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82", b"caf\xc3\xa9", b"\xff"]),
    st.integers(126, 70_000).map(lambda n: b"a" * n),
)
_FRAME = st.tuples(
    st.sampled_from([0, 1, 1, 1, 2, 2, 2, 3, 8, 9, 10]),  # mostly plain data frames
    st.booleans() | st.just(True),
    st.sampled_from([0, 0, 0, 0, 4, 1]),
    _PAYLOADS,
    st.sampled_from([None, None, None, True]),  # None: masked as the side expects
)


def _stream(frames: list[tuple[int, bool, int, bytes, bool | None]], client: bool) -> bytes:
    out = []
    for opcode, fin, rsv, payload, wrong_mask in frames:
        masked = not client if wrong_mask is None else client
        out.append(encode_frame(opcode, payload, fin=fin, rsv=rsv, mask=masked))
    return b"".join(out)


@pytest.mark.skipif(PURE, reason="RAWWS_NB_PURE: this run checks the pure-Python path alone")
@settings(max_examples=int(os.environ.get("RAWWS_NB_EXAMPLES", "400")), deadline=None)
@given(
    frames=st.lists(_FRAME, max_size=12),
    client=st.booleans(),
    limits=st.sampled_from([(None, None), (100, None), (None, 50), (70_000, 200)]),
    join=st.sampled_from([-1, 0, 16, 512]),
    take=st.sampled_from([None, None, 0, 1, 3]),
    drains=st.integers(0, 2),
    seed=st.integers(0, 2**32),
)
def test_compiled_reader_matches_the_pure_python_reader(
    frames: list[tuple[int, bool, int, bytes, bool | None]],
    client: bool,
    limits: tuple[int | None, int | None],
    join: int,
    take: int | None,
    drains: int,
    seed: int,
) -> None:
    data = _stream(frames, client)
    rng = random.Random(seed)
    cuts = sorted(rng.randrange(len(data) + 1) for _ in range(rng.randrange(4))) if data else []
    _compare(data, cuts, client=client, limits=limits, join=join, take=take, drains=drains)


@settings(max_examples=int(os.environ.get("RAWWS_NB_EXAMPLES", "300")), deadline=None)
@given(
    frames=st.lists(_FRAME, max_size=12),
    client=st.booleans(),
    take=st.sampled_from([0, 1, 2, 5]),
    drains=st.integers(0, 2),
    seed=st.integers(0, 2**32),
)
def test_a_limited_reader_gives_what_an_unlimited_one_gives(
    frames: list[tuple[int, bool, int, bytes, bool | None]], client: bool, take: int, drains: int, seed: int
) -> None:
    # Frames held back by a limit (and taken later, with or without new bytes coming in
    # between) are the same frames, in the same order, with the same outcome.
    data = _stream(frames, client)
    rng = random.Random(seed)
    cuts = sorted(rng.randrange(len(data) + 1) for _ in range(rng.randrange(4))) if data else []
    for compiled in (False, True) if wire.COMPILED else (False,):
        options = {"compiled": compiled, "client": client, "limits": (None, None), "join": -1}
        limited = _run(data, cuts, take=take, drains=drains, **options)  # type: ignore[arg-type]
        whole = _run(data, cuts, **options)  # type: ignore[arg-type]

        def flat(run: list[object]) -> tuple[list[object], list[object], list[object]]:
            frames_, codes_, violations = [], [], []
            for shape, codes, violation, *_ in run:  # type: ignore[misc]
                frames_ += shape
                codes_ += codes
                if violation is not None:  # its wording may say how far the frame had come
                    violations.append((violation.code, violation.opcode))
            return frames_, codes_, violations

        assert flat(limited) == flat(whole)


@pytest.mark.skipif(PURE, reason="RAWWS_NB_PURE: this run checks the pure-Python path alone")
def test_a_flood_of_plain_frames_in_odd_chunks() -> None:
    data = b"".join(encode_frame(1 + i % 2, b"%d" % i * (i % 7), mask=False) for i in range(5000))
    cuts = list(range(1, len(data), 997))
    _compare(data, cuts, client=True, limits=(None, None), join=512)
    masked = b"".join(encode_frame(1 + i % 2, b"%d" % i * (i % 300), mask=True) for i in range(2000))
    _compare(masked, list(range(3, len(masked), 4093)), client=False, limits=(1000, 1000), join=16)


@pytest.mark.skipif(PURE, reason="RAWWS_NB_PURE: this run checks the pure-Python path alone")
def test_limit_stops_both_paths_at_the_same_frame() -> None:
    data = b"".join(encode_frame(1, b"x%d" % i, mask=False) for i in range(100))
    for compiled in (False, True):
        reader = FrameReader(client=True, compiled=compiled)
        frames, codes, _ = reader.feed(data, 30)
        assert len(frames) == len(codes) == 30 and reader.limited
        more, _, _ = reader.feed(b"", 1000)
        assert [f.data for f in frames + more] == [b"x%d" % i for i in range(100)]


@pytest.mark.skipif(PURE, reason="RAWWS_NB_PURE: this run checks the pure-Python path alone")
@given(data=st.binary(max_size=300), key=st.binary(min_size=4, max_size=4), prefix=st.binary(max_size=14))
def test_compiled_mask_matches_python(data: bytes, key: bytes, prefix: bytes) -> None:
    assert apply_mask(data, key, prefix) == bytes(apply_mask(data, key, prefix, compiled=False))


@pytest.mark.skipif(PURE, reason="RAWWS_NB_PURE: this run checks the pure-Python path alone")
def test_compiled_mask_of_large_and_odd_sizes() -> None:
    rng = random.Random(7)
    for n in (0, 1, 7, 8, 31, 32, 33, 4099, 2**20 + 3):
        data = rng.randbytes(n)
        assert apply_mask(data, b"\x01\x80\xff\x10", b"HD") == bytes(
            apply_mask(data, b"\x01\x80\xff\x10", b"HD", compiled=False)
        )
        assert apply_mask(memoryview(data), b"abcd") == bytes(apply_mask(data, b"abcd", compiled=False))


@pytest.mark.skipif(PURE, reason="RAWWS_NB_PURE: this run checks the pure-Python path alone")
def test_compiled_mask_in_place_matches_apply_mask() -> None:
    from rawws_nb import _speedups  # type: ignore[attr-defined]

    rng = random.Random(11)
    for n in (0, 1, 3, 8, 31, 33, 70_001):
        data = rng.randbytes(n)
        buf = bytearray(data)
        _speedups.mask_in_place(buf, b"\x9a\x01\xff\x42")
        assert bytes(buf) == bytes(apply_mask(data, b"\x9a\x01\xff\x42", compiled=False))
    with pytest.raises(TypeError):
        _speedups.mask_in_place(b"read-only", b"abcd")


@pytest.mark.skipif(PURE, reason="RAWWS_NB_PURE: this run checks the pure-Python path alone")
@given(
    b0=st.integers(0, 255),
    payload=st.one_of(st.binary(max_size=200), st.sampled_from([125, 126, 65535, 65536, 70_000]).map(bytes)),
    pos=st.integers(0, 12),
)
def test_compiled_masked_frame_matches_python(b0: int, payload: bytes, pos: int) -> None:
    keys = bytes(range(7, 23))
    whole = masked_frame(b0, payload, keys, pos)
    assert whole == masked_frame(b0, payload, keys, pos, compiled=False)
    header = parse_header(whole)
    assert header is not None and header.length == len(payload) and header.mask == keys[pos : pos + 4]
    assert bytes(apply_mask(whole[header.size :], header.mask)) == payload


@pytest.mark.skipif(PURE, reason="RAWWS_NB_PURE: this run checks the pure-Python path alone")
def test_compiled_masked_frame_refuses_a_key_outside_the_pool() -> None:
    with pytest.raises(ValueError, match="4 bytes at pos"):
        masked_frame(0x81, b"x", b"abcdef", 3)


@pytest.mark.skipif(PURE, reason="RAWWS_NB_PURE: this run checks the pure-Python path alone")
@settings(max_examples=2000)
@given(
    data=st.one_of(
        st.binary(max_size=24),
        st.lists(st.sampled_from([b"a", b"\xc3\xa9", b"\xe2\x82\xac", b"\xf0\x9f\x98\x80", b"\xed\x9f\xbf"])).map(
            b"".join
        ),
        st.lists(st.integers(0x80, 0xFF), max_size=6).map(bytes),
    )
)
def test_compiled_utf8_check_agrees_with_bytes_decode(data: bytes) -> None:
    from rawws_nb import _speedups  # type: ignore[attr-defined]

    try:
        data.decode("utf-8")
        expected = True
    except UnicodeDecodeError:
        expected = False
    assert _speedups.utf8_valid(data) is expected


@pytest.mark.skipif(PURE, reason="RAWWS_NB_PURE=1: the compiled path is off")
@given(st.lists(st.binary(max_size=40), max_size=30), st.binary(max_size=9), st.sampled_from([bytes, bytearray]))
def test_compiled_split_payloads_matches_python(payloads, prefix, kind):
    import numpy as np

    from rawws_nb import _speedups
    from rawws_nb.timeline.recorder import _split_payloads_py

    blob = kind(prefix + b"".join(payloads))
    sizes = np.array([len(p) for p in payloads], dtype=np.int64)
    got = _speedups.split_payloads(blob, sizes, len(prefix))
    assert got == _split_payloads_py(blob, sizes, len(prefix)) == payloads
    assert all(type(p) is bytes for p in got)


@pytest.mark.skipif(PURE, reason="RAWWS_NB_PURE=1: the compiled path is off")
def test_compiled_split_payloads_refuses_lengths_past_the_buffer():
    import numpy as np

    from rawws_nb import _speedups

    with pytest.raises(ValueError):
        _speedups.split_payloads(b"abc", np.array([2, 2], dtype=np.int64), 0)
    with pytest.raises(ValueError):
        _speedups.split_payloads(b"abc", np.array([-1, 4], dtype=np.int64), 0)
    with pytest.raises(TypeError):
        _speedups.split_payloads(b"abc", np.array([1, 1], dtype=np.int32), 0)
