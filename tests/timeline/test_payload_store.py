"""The recorder's payload store against a plain list of one payload per row.

Runs of single payloads and packed batches (one buffer per batch, one run object for
consecutive batches), appended, dropped from the front (cutting a batch in two) and read
back by slice, in random order: every read must give what the list gives, and the tail's
room what the capacity leaves."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rawws_nb.timeline import recorder
from rawws_nb.timeline.recorder import _PackedRun, _PayloadStore

_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.binary(max_size=3)),
        st.tuples(st.just("extend"), st.lists(st.binary(max_size=3), max_size=4)),
        st.tuples(st.just("packed"), st.lists(st.binary(max_size=3), min_size=1, max_size=6)),
        st.tuples(st.just("drop"), st.integers(0, 9)),
        st.tuples(st.just("clear"), st.none()),
    ),
    max_size=40,
)


def _read(store: _PayloadStore, start: int, stop: int, lengths) -> list[bytes]:
    out: list[bytes] = []
    for run, first, lo, hi in store.pieces(start, stop):
        if type(run) is list:
            out += run[lo - first : hi - first]
        else:
            assert type(run) is _PackedRun
            out += run.payloads(first, lo, hi, lengths)
    return out


@settings(max_examples=int(os.environ.get("RAWWS_NB_EXAMPLES", "300")), deadline=None)
@given(ops=_OPS, capacity=st.integers(1, 50))
def test_the_payload_store_reads_as_a_list_of_one_payload_per_row(ops, capacity):
    store, model = _PayloadStore(capacity), []
    every: list[bytes] = []  # every payload ever added, by position (what the row store's lengths give)

    def lengths(a: int, b: int) -> np.ndarray:
        return np.array([len(p) for p in every[a:b]], dtype=np.int64)

    for kind, arg in ops:
        if kind == "append":
            store.append(arg)
            model.append(arg)
            every.append(arg)
        elif kind == "extend":
            store.extend(arg)
            model.extend(arg)
            every.extend(arg)
        elif kind == "packed":
            store.add_packed(b"".join(arg), len(arg))
            model.extend(arg)
            every.extend(arg)
        elif kind == "drop":
            store.drop_front(arg, lengths)
            del model[:arg]
        else:
            store.clear()
            model.clear()
        assert len(store) == len(model)
        assert _read(store, 0, len(model), lengths) == model
        assert _read(store, 1, len(model) - 1, lengths) == model[1:-1]
        assert [_read(store, i, i + 1, lengths)[0] for i in range(len(model))] == model
        # The tail may hold what the capacity leaves once the other runs are counted.
        tail, room, run = store.holder[:3]
        assert room == capacity - (len(model) - len(tail))
        # A packed batch may join the open run only while the tail is empty.
        if run is not None and not tail:
            assert store.pieces(len(model) - 1, len(model))[0][0] is run if model else True


@pytest.mark.skipif(recorder._payload_list is list, reason="the compiled path is off: plain lists")
def test_the_stores_lists_are_not_walked_by_the_garbage_collector():
    import gc

    rec = recorder.Recorder(1000, 64)
    for i in range(100):
        rec.stage_tx(i, (1 << 16) | 0x81, b"x")
    store = rec._store
    assert not gc.is_tracked(store.holder[0])
    run = recorder._PackedRun()
    assert not gc.is_tracked(run.blobs) and not gc.is_tracked(run.ends)
    rec._flush()
    assert len(rec.to_dataframe()) == 100 and rec.to_dataframe().payload.iloc[-1] == b"x"
