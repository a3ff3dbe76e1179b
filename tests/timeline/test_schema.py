"""The schema: one place, typed; `conform` casts a loosely typed timeline back."""

from __future__ import annotations

import pandas as pd

from rawws_nb.timeline import COLUMNS, conform, empty_timeline
from rawws_nb.timeline.schema import OPCODE_NAMES, REQUIRED
from rawws_nb.timeline.schema import __doc__ as SCHEMA_DOC


def test_every_column_is_documented_and_typed():
    for name in COLUMNS:
        assert f"`{name}`" in SCHEMA_DOC
    assert set(REQUIRED) <= set(COLUMNS)
    df = empty_timeline()
    assert dict(df.dtypes) == COLUMNS and df.index.name == "frame"
    assert str(df.t.dtype) == "datetime64[ns, UTC]" and df.close_code.dtype == "Int64"
    assert list(df.opcode.cat.categories) == OPCODE_NAMES and list(df.dir.cat.categories) == ["tx", "rx"]
    assert df.text.dtype == pd.StringDtype("pyarrow")


def test_conform_casts_plain_columns():
    loose = pd.DataFrame(
        {
            "t": ["2026-01-01T00:00:00Z"],
            "dir": ["rx"],
            "opcode": ["close"],
            "fin": [1],
            "close_code": [1000],
            "text": [None],
            "payload": [b"\x03\xe8"],
        }
    )
    df = conform(loose)
    assert {c: df[c].dtype for c in df.columns} == {c: COLUMNS[c] for c in df.columns}
    assert df.t.iloc[0] == pd.Timestamp("2026-01-01", tz="UTC") and df.opcode.iloc[0] == "close"
