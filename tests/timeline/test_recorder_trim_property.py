"""A bounded recorder keeps exactly the newest rows of an unbounded one.

Random mixes of the recorder's inputs (sent frames, received batches with and without a
reader's joined payloads, explicit rows and error rows, fragments in both directions,
reads in between)
go into a recorder with a small capacity and one without a bound: every kept row, its
view (payload, text, message number, opcode of its message) and the counters must be
the same as the unbounded recorder's newest rows, however the rows were staged,
flushed in chunks or trimmed.
"""

from __future__ import annotations

import os
from array import array

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from rawws_nb.frames import COMPRESSED, RX, TX, Frame, FrameType, header_code, make_frame
from rawws_nb.timeline import recorder as recorder_module
from rawws_nb.timeline.recorder import Recorder

_KINDS = {1: Frame.Text, 2: Frame.Binary, 9: Frame.Ping}
_FRAME = st.tuples(
    st.sampled_from([1, 2, 0, 0, 9]),  # opcode (0: a continuation)
    st.booleans(),  # fin
    st.binary(max_size=24),
)
_EVENT = st.one_of(
    st.tuples(st.just("tx"), _FRAME),
    st.tuples(st.just("tx-stamped-with-the-last"), _FRAME),
    st.tuples(st.just("tx-compressed"), _FRAME),
    st.tuples(st.just("rx"), st.lists(_FRAME, min_size=1, max_size=30), st.booleans()),
    st.tuples(st.just("add"), _FRAME),
    st.tuples(st.just("error"), _FRAME),
    st.tuples(st.just("read"), st.none()),  # reading between frames (the open packed batch is synced)
)


def _code(opcode: int, fin: bool, payload: bytes, direction: int) -> int:
    fin = fin or opcode >= 8
    return header_code(FrameType(opcode) if opcode else FrameType.CONTINUATION, fin, 0, len(payload), direction)


def _feed(rec: Recorder, events: list[tuple]) -> None:
    t = 1_000
    for event in events:
        t += 7
        kind = event[0]
        if kind == "tx":
            opcode, fin, payload = event[1]
            rec.stage_tx(t, _code(opcode, fin, payload, TX), payload)
        elif kind == "tx-stamped-with-the-last":
            opcode, fin, payload = event[1]
            rec.stage_tx(None, _code(opcode, fin, payload, TX), payload)
        elif kind == "tx-compressed":  # the length on the wire differs from the payload's
            opcode, fin, payload = event[1]
            rec.stage_tx(t, _code(opcode, fin, payload[:5], TX) | COMPRESSED, payload)
        elif kind == "rx":
            frames_in, joined = event[1], event[2]
            codes = array("q", [_code(o, f, p, RX) for o, f, p in frames_in])
            frames = [make_frame(_KINDS.get(o, Frame.Binary), p, f or o >= 8) for o, f, p in frames_in]
            blob = bytearray(b"".join(p for _, _, p in frames_in)) if joined else None
            rec.stage_rx(t, codes, frames, 0, blob)
        elif kind == "add":
            opcode, fin, payload = event[1]
            rec.add(t, _code(opcode, fin, payload, RX), payload)
        elif kind == "read":
            assert len(rec) + rec.dropped == rec.total
            rec.recent(2)
        else:
            opcode, fin, payload = event[1]
            rec.add_error(t, _code(opcode, fin, payload, TX), payload[:3], len(payload), None, "cut short")


@settings(max_examples=int(os.environ.get("RAWWS_NB_EXAMPLES", "120")), deadline=None)
@given(events=st.lists(_EVENT, max_size=60), capacity=st.integers(1, 40), flush_at=st.sampled_from([1, 5, 32768]))
def test_a_bounded_recorder_keeps_the_newest_rows_of_the_whole(
    events: list[tuple], capacity: int, flush_at: int
) -> None:
    saved = recorder_module._FLUSH_AT
    recorder_module._FLUSH_AT = flush_at
    try:
        whole, bounded = Recorder(capacity=10**6), Recorder(capacity=capacity)
        _feed(whole, events)
        _feed(bounded, events)
    finally:
        recorder_module._FLUSH_AT = saved
    assert whole.total == bounded.total
    assert bounded.dropped + len(bounded) == bounded.total
    full = whole.to_dataframe()
    kept = bounded.to_dataframe()
    expected = full.loc[kept.index]
    assert list(kept.index) == list(range(bounded.first, bounded.total))
    columns = ["dir", "opcode", "fin", "length", "payload", "text", "message", "error"]
    pd.testing.assert_frame_equal(kept[columns], expected[columns])
    assert bounded.count(bounded.first) == whole.count(bounded.first)
    recent = bounded.recent(5)
    assert [r.row for r in recent] == list(kept.index[-5:])


@settings(max_examples=int(os.environ.get("RAWWS_NB_EXAMPLES", "120")), deadline=None)
@given(
    events=st.lists(_EVENT, max_size=60),
    capacity=st.integers(1, 40),
    flush_at=st.sampled_from([1, 5, 32768]),
    payload_cap=st.sampled_from([1024, 3, 0]),
)
def test_the_compiled_recorder_gives_the_rows_the_reference_gives(
    events: list[tuple], capacity: int, flush_at: int, payload_cap: int
) -> None:
    # Compiled: the staging of single frames (`stage`) and the flush (`flush_rows`) in C.
    saved = recorder_module._FLUSH_AT
    recorder_module._FLUSH_AT = flush_at
    try:
        fast = Recorder(capacity=capacity, payload_cap=payload_cap)
        reference = Recorder(capacity=capacity, payload_cap=payload_cap, compiled=False)
        _feed(fast, events)
        _feed(reference, events)
    finally:
        recorder_module._FLUSH_AT = saved
    assert (recorder_module._c_flush is not None) is not bool(os.environ.get("RAWWS_NB_PURE"))  # make test builds it
    assert (recorder_module._c_stage is not None) is not bool(os.environ.get("RAWWS_NB_PURE"))
    assert (recorder_module._c_stagers is not None) is not bool(os.environ.get("RAWWS_NB_PURE"))
    pd.testing.assert_frame_equal(fast.to_dataframe(), reference.to_dataframe())
    assert fast.recent(7) == reference.recent(7)
    assert (fast.total, fast.dropped, fast.count()) == (reference.total, reference.dropped, reference.count())
