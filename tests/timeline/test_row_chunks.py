"""The recorder's compact rows: a chunk reads back exactly the rows it was built from,
whatever widths its columns take (2-, 4- or 8-byte lengths; message numbers derived,
4-byte offsets or 8-byte), after its front is cut and over any slice; the C flush
narrows the same way and hands the rows it cannot narrow to the numpy code."""

from __future__ import annotations

import os
from array import array

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rawws_nb.frames import RX, TX, FrameType, header_code
from rawws_nb.timeline import recorder as recorder_module
from rawws_nb.timeline.recorder import ROW_DTYPE, Recorder, _Chunk

_LENGTHS = st.sampled_from([(0, 200), (0, 70_000), (0, 2**40)])
_MESSAGES = st.sampled_from(["consecutive", "near", "far"])


@st.composite
def _rows(draw):
    n = draw(st.integers(1, 40))
    step = st.sampled_from([0, 0, 0, 1, 5]) if draw(st.booleans()) else st.sampled_from([1, 2])  # runs, or not
    steps = draw(st.lists(step, min_size=n, max_size=n))
    t = np.cumsum(np.array(steps, dtype=np.int64)) + 1_700_000_000_000_000_000
    code = np.array(draw(st.lists(st.integers(0, 0xFFFF), min_size=n, max_size=n)), dtype=np.uint16)
    low, high = draw(_LENGTHS)
    length = np.array(draw(st.lists(st.integers(low, high), min_size=n, max_size=n)), dtype=np.int64)
    kind = draw(_MESSAGES)
    base = draw(st.integers(-1, 10**6))
    if kind == "consecutive":
        msg = np.arange(base, base + n, dtype=np.int64)
    elif kind == "near":
        msg = base + np.array(draw(st.lists(st.integers(-5, 50), min_size=n, max_size=n)), dtype=np.int64)
    else:
        msg = base + np.array(draw(st.lists(st.sampled_from([0, 3, 2**40]), min_size=n, max_size=n)), dtype=np.int64)
    rows = np.empty(n, dtype=ROW_DTYPE)
    rows["t"], rows["code"], rows["len"], rows["msg"] = t, code, length, msg
    return rows


def _read(chunk: _Chunk, a: int, b: int) -> np.ndarray:
    out = np.empty(b - a, dtype=ROW_DTYPE)
    chunk.fill(out, a, b)
    return out


@settings(max_examples=int(os.environ.get("RAWWS_NB_EXAMPLES", "300")), deadline=None)
@given(rows=_rows(), data=st.data())
def test_a_chunk_reads_back_its_rows_after_any_cut_and_over_any_slice(rows, data):
    chunk = _Chunk.build(rows["t"], rows["code"], rows["len"], rows["msg"])
    n = len(rows)
    assert len(chunk) == n
    np.testing.assert_array_equal(_read(chunk, 0, n), rows)
    a = data.draw(st.integers(0, n))
    b = data.draw(st.integers(a, n))
    for name in ("t", "code", "len", "msg"):
        np.testing.assert_array_equal(chunk.column(name, a, b), rows[name][a:b])
    k = data.draw(st.integers(0, n - 1))
    cut = chunk.cut(k)
    np.testing.assert_array_equal(_read(cut, 0, n - k), rows[k:])
    # Narrow where they fit: 2 bytes of length for small frames, no message column when
    # every row starts the next message.
    if rows["len"].max() <= 0xFFFF:
        assert chunk.length.dtype == np.uint16
    if np.array_equal(rows["msg"], np.arange(rows["msg"][0], rows["msg"][0] + n)):
        assert chunk.msg is None


def _text(direction: int, n: int, opcode: FrameType = FrameType.TEXT, fin: bool = True) -> int:
    return header_code(opcode, fin, 0, n, direction)


@pytest.mark.skipif(recorder_module._c_flush is None, reason="RAWWS_NB_PURE=1: the compiled path is off")
def test_the_c_flush_narrows_its_columns_and_declines_what_does_not_fit():
    flush = recorder_module._c_flush  # make test builds it (tests/test_speedups.py checks)
    codes = array("q", [_text(RX, 16)] * 3)
    code, length, msg, next_msg, open0, open1, last0, last1 = flush(codes, 7, -1, -1)
    assert (len(code), len(length), msg, next_msg) == (6, 6, None, 10)  # u2 lengths, messages 7, 8, 9
    assert (open0, open1, last0, last1) == (-1, 9, None, (9, 1))
    wide = array("q", [_text(TX, 70_000), _text(TX, 5, FrameType.CONTINUATION)])
    code, length, msg, next_msg, *_ = flush(wide, 3, 1, -1)
    assert len(length) == 8 and np.frombuffer(length, dtype=np.uint32).tolist() == [70_000, 5]
    assert np.frombuffer(msg, dtype=np.int32).tolist() == [0, 0]  # the continuation is message 3's
    assert flush(array("q", [_text(TX, 2**32)]), 0, -1, -1) is None
    far = array("q", [_text(TX, 1, FrameType.CONTINUATION)])
    assert flush(far, 2**31 + 5, 0, -1) is None  # message 0, 2**31 + 5 back: no 4-byte offset
    assert flush(far, 2**31 - 1, 0, -1) is not None


@pytest.mark.parametrize("flush_at", [1, 32768])
def test_rows_the_c_flush_declines_are_recorded_as_the_reference_records_them(flush_at):
    saved = recorder_module._FLUSH_AT
    recorder_module._FLUSH_AT = flush_at
    try:
        recorders = [Recorder(capacity=100), Recorder(capacity=100, compiled=False)]
        for rec in recorders:
            rec.add(10, _text(TX, 3, fin=False), b"abc", 0)  # TX message 0 stays open
            rec.add(11, _text(RX, 2, FrameType.BINARY), b"hi", 2**31 + 10)  # numbering jumps
            rec.stage_tx(12, _text(TX, 5, FrameType.CONTINUATION), b"defgh")  # message 0, far back
            rec.stage_tx(13, _text(TX, 2**33), b"big")  # a length that needs 8 bytes
            rec.stage_tx(None, _text(TX, 70_000), b"wide")
    finally:
        recorder_module._FLUSH_AT = saved
    fast, reference = (rec.to_dataframe() for rec in recorders)
    pd.testing.assert_frame_equal(fast, reference)
    assert fast["message"].tolist() == [0, 2**31 + 10, 0, 2**31 + 11, 2**31 + 12]
    assert fast["length"].tolist() == [3, 2, 5, 2**33, 70_000]


@pytest.mark.parametrize("capacity", [1000, 25])  # 25: trims cut packed batches in two
def test_consecutive_packed_batches_read_back_their_payloads(capacity):
    from rawws_nb.frames import Frame

    recorders = [Recorder(capacity=capacity), Recorder(capacity=capacity, compiled=False)]
    sent: list[bytes] = []
    for rec in recorders:
        sent.clear()
        for batch in range(6):
            payloads = [b"%d-%d" % (batch, i) * (1 + i % 3) for i in range(9 + batch)]
            sent += payloads
            codes = array("q", [_text(RX, len(p)) for p in payloads])
            frames = [Frame.Text(p) for p in payloads]
            rec.stage_rx(100 + batch, codes, frames, 0, bytearray(b"".join(payloads)))
    fast, reference = (rec.to_dataframe() for rec in recorders)
    pd.testing.assert_frame_equal(fast, reference)
    assert fast["payload"].tolist() == sent[-len(fast) :]
    assert [r.payload for r in recorders[0].recent(4)] == sent[-4:]


@pytest.mark.parametrize("capacity", [10_000, 300, 37])  # smaller: trims cut the batches
def test_sent_frames_and_received_batches_small_and_large_read_back_in_order(capacity):
    # The compiled stagers copy sent payloads and small joined batches into the open
    # packed batch and keep a large joined batch (4 KiB or more) as a batch of its own;
    # a payload too long to pack goes to the tail between them. All must read back as the
    # reference (lists) records them, in order, also between frames.
    from rawws_nb.frames import Frame

    recorders = [Recorder(capacity=capacity), Recorder(capacity=capacity, compiled=False)]
    sent: list[bytes] = []
    for rec in recorders:
        sent.clear()
        t = 100
        for round_ in range(12):
            for i in range(5):
                p = b"tx%d.%d" % (round_, i)
                sent.append(p)
                t += 1
                rec.stage_tx(t if i == 0 else None, _text(TX, len(p)), p)
            size = 300 if round_ % 3 == 0 else 7  # 20 x 300 B: a joined 6 KiB; 20 x 7 B: 140 B
            payloads = [(b"rx%d.%d." % (round_, i)).ljust(size, b"z") for i in range(20)]
            sent += payloads
            codes = array("q", [_text(RX, len(p)) for p in payloads])
            t += 1
            rec.stage_rx(t, codes, [Frame.Text(p) for p in payloads], 0, bytearray(b"".join(payloads)))
            if round_ % 4 == 1:
                long = b"L" * 700  # not packed: to the tail
                sent.append(long)
                rec.stage_tx(None, _text(TX, len(long)), long)
            if round_ % 5 == 2:
                assert [r.payload for r in rec.recent(3)] == sent[-3:]
    fast, reference = (rec.to_dataframe() for rec in recorders)
    pd.testing.assert_frame_equal(fast, reference)
    assert fast["payload"].tolist() == sent[-len(fast) :]
    assert len(fast) + recorders[0].dropped == len(sent) and len(fast) <= capacity


def test_a_batch_given_as_a_list_of_codes_is_staged_as_an_array_is():
    from rawws_nb.frames import Frame

    payloads = [b"a%d" % i for i in range(10)]
    codes = [_text(RX, len(p)) for p in payloads]
    frames = [Frame.Text(p) for p in payloads]
    recorders = [Recorder(), Recorder(compiled=False), Recorder()]
    recorders[0].stage_rx(100, codes, frames, 0, bytearray(b"".join(payloads)))  # a list: the reference takes it
    recorders[1].stage_rx(100, codes, frames, 0, bytearray(b"".join(payloads)))
    recorders[2].stage_rx(100, array("q", codes), frames, 0, bytearray(b"".join(payloads)))
    first, *others = (rec.to_dataframe() for rec in recorders)
    for other in others:
        pd.testing.assert_frame_equal(first, other)
    assert first["payload"].tolist() == payloads


def test_a_bounded_recorder_stays_the_same_size_while_it_records():
    # The compiled stagers and flush hold references by hand: a leaked object per call
    # would grow the traced memory by megabytes here; a bounded recorder stays flat.
    import gc
    import tracemalloc

    from rawws_nb.frames import Frame

    rec = Recorder(capacity=1000, payload_cap=64)  # 16-byte payloads kept whole, 100-byte ones capped
    codes = array("q", [_text(RX, 16)] * 20)
    frames = [Frame.Text(b"x" * 16) for _ in range(20)]

    def work(k: int) -> None:
        for i in range(k):
            rec.stage_tx(i if i % 3 == 0 else None, _text(TX, 16), b"y" * 16)
            rec.stage_tx(i, _text(TX, 100), b"z" * 100)  # capped
            rec.stage_rx(i, codes, frames, 0, bytearray(b"x" * 320))  # packed
            rec.stage_rx(i, codes[:1], frames[:1])  # one frame
            if i % 1000 == 0:
                rec.count()  # flushes

    work(5000)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        work(30000)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 300_000, grown
    assert len(rec) <= 1000
