"""Frame timelines: the recorder (hot path), the pandas view of what went over the wire,
its analysis (the `.rawws` accessor) and files (Parquet, HAR). Replay, which opens a
session, is a tool above this layer: `rawws_nb.replay`.

Importing this package loads the recorder only (no pandas, no pyarrow); the other names
load their module on first use. Importing `rawws_nb.timeline.accessor` (as `import
rawws_nb` does) registers the `.rawws` accessor.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from .recorder import DEFAULT_CAPACITY, DEFAULT_PAYLOAD_CAP, Recorder

if TYPE_CHECKING:
    from .accessor import TimelineAccessor
    from .analysis import HexDump
    from .har import read_har, to_har
    from .persist import read_timeline, save_timeline, timeline_metadata
    from .schema import COLUMNS, SCHEMA_VERSION, conform, empty_timeline

__all__ = [
    "COLUMNS",
    "DEFAULT_CAPACITY",
    "DEFAULT_PAYLOAD_CAP",
    "SCHEMA_VERSION",
    "TimelineAccessor",
    "HexDump",
    "Recorder",
    "conform",
    "empty_timeline",
    "read_har",
    "read_timeline",
    "save_timeline",
    "timeline_metadata",
    "to_har",
]

# name -> the module (in this package) that defines it; these modules import pandas.
_LAZY = {
    "COLUMNS": "schema",
    "SCHEMA_VERSION": "schema",
    "conform": "schema",
    "empty_timeline": "schema",
    "TimelineAccessor": "accessor",
    "HexDump": "analysis",
    "read_har": "har",
    "to_har": "har",
    "read_timeline": "persist",
    "save_timeline": "persist",
    "timeline_metadata": "persist",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value  # once loaded, a plain module attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
