"""The recorder's payload store against a plain list of one entry per row.

Runs of single payloads and packed batches (one entry for all their rows), appended,
dropped from the front and read back by row and by slice, in random order: every read
must give what the list gives, and the tail's room what the capacity leaves."""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from rawws_nb.timeline.recorder import _Packed, _PayloadStore

_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.binary(max_size=3)),
        st.tuples(st.just("extend"), st.lists(st.binary(max_size=3), max_size=4)),
        st.tuples(st.just("packed"), st.integers(1, 6)),
        st.tuples(st.just("drop"), st.integers(0, 9)),
        st.tuples(st.just("clear"), st.none()),
    ),
    max_size=40,
)


@settings(max_examples=int(os.environ.get("RAWWS_NB_EXAMPLES", "300")), deadline=None)
@given(ops=_OPS, capacity=st.integers(1, 50))
def test_the_payload_store_reads_as_a_list_of_one_entry_per_row(ops, capacity):
    store, model = _PayloadStore(capacity), []
    for kind, arg in ops:
        if kind == "append":
            store.append(arg)
            model.append(arg)
        elif kind == "extend":
            store.extend(arg)
            model.extend(arg)
        elif kind == "packed":
            packed = _Packed(b"")
            store.add_packed(packed, arg)
            model.extend([packed] * arg)
        elif kind == "drop":
            store.drop_front(arg)
            del model[:arg]
        else:
            store.clear()
            model.clear()
        assert len(store) == len(model)
        assert [store.get(i) for i in range(len(model))] == model
        assert store.slice(0, len(model)) == model
        assert store.slice(1, len(model) - 1) == model[1:-1]
        # The tail may hold what the capacity leaves once the other runs are counted.
        tail, room = store.holder
        assert room == capacity - (len(model) - len(tail))
