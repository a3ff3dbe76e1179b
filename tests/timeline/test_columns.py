"""Whole-column builders: Arrow UTF-8 decoding equals Python's, with the row-by-row
fallback only where bytes are invalid."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from rawws_nb.timeline._columns import decode_utf8, sparse_strings
from rawws_nb.timeline._plain import last_value_lookup


def reference(payloads, mask, limit):
    out = []
    for i, p in enumerate(payloads):
        if mask is not None and mask[i]:
            out.append(None)
        elif limit is None:
            out.append(p.decode("utf-8", "replace"))
        else:
            out.append(p[: limit * 4].decode("utf-8", "replace")[:limit])
    return out


payload = st.one_of(st.text(max_size=40).map(str.encode), st.binary(max_size=40))


@settings(max_examples=150, deadline=None)
@given(st.lists(payload, max_size=30), st.data(), st.sampled_from([None, 1, 5, 200]))
def test_decode_utf8_matches_python(payloads, data, limit):
    mask = np.array(data.draw(st.lists(st.booleans(), min_size=len(payloads), max_size=len(payloads))), dtype=bool)
    mask = mask if data.draw(st.booleans()) else None
    assert decode_utf8(payloads, mask, limit).to_pylist() == reference(payloads, mask, limit)


def test_decode_utf8_falls_back_per_block_only():
    payloads = [b"ok %d" % i for i in range(10_000)]
    payloads[5000] = b"bad \xff"
    payloads[9999] = "é".encode() * 300  # longer than the limit, valid
    out = decode_utf8(payloads, None, 200).to_pylist()
    assert out == reference(payloads, None, 200) and out[5000] == "bad \ufffd" and out[9999] == "é" * 200


def test_sparse_strings_and_lookup():
    col = sparse_strings(5, [1, 3], ["a", "b"])
    assert col.tolist()[1::2] == ["a", "b"] and str(col.dtype) == "string" and col.isna().sum() == 3
    values, found = last_value_lookup(np.array([4, 7, 4]), np.array([1, 2, 3]), np.array([4, 5, 7]))
    assert values.tolist() == [3, 0, 2] and found.tolist() == [True, False, True]
