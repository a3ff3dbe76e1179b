"""Parquet and HAR round trips on arbitrary recordings (hypothesis): every frame back
exactly, whatever the opcodes, bits, payloads (invalid UTF-8 included), caps and errors."""

from __future__ import annotations

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rawws_nb.frames import RX, TX, header_code
from rawws_nb.timeline import Recorder, read_har, read_timeline, save_timeline, to_har

frame = st.tuples(
    st.sampled_from([TX, RX]),
    st.sampled_from([0, 1, 1, 2, 2, 3, 8, 9, 10, 0xB]),
    st.booleans(),  # fin
    st.integers(0, 7),  # rsv
    st.one_of(st.binary(max_size=40), st.text(max_size=20).map(str.encode)),
    st.integers(0, 3),  # extra length announced (a partial frame) when an error is set
    st.one_of(st.none(), st.text(min_size=1, max_size=10)),  # error
    st.integers(0, 5),  # gap, microseconds
)


def record(frames, payload_cap) -> pd.DataFrame:
    t0 = 1_790_000_000_123_456_789
    rec = Recorder(capacity=max(len(frames), 1), payload_cap=payload_cap, t0=t0)
    t = t0
    for i, (d, op, fin, rsv, payload, extra, error, gap) in enumerate(frames):
        t += gap * 1000 + 1
        if error is None:
            rec.add(t, header_code(op, fin, rsv, direction=d), payload, i // 2)
        else:
            rec.add_error(t, header_code(op, fin, rsv, direction=d), payload, len(payload) + extra, i // 2, error)
    return rec.to_dataframe()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(frame, max_size=25), st.sampled_from([0, 4, 1024]))
def test_parquet_and_har_round_trips(tmp_path, frames, payload_cap):
    df = record(frames, payload_cap)
    back = read_timeline(save_timeline(df, tmp_path / "t.parquet"))
    pd.testing.assert_frame_equal(back, df, check_exact=True)
    har = read_har(to_har(df))
    pd.testing.assert_frame_equal(har, df, check_exact=True)
    assert har.attrs["started_at_ns"] == back.attrs["started_at_ns"] == 1_790_000_000_123_456_789
