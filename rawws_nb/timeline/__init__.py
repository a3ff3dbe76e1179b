"""Frame timelines: the recorder (hot path), the pandas view of what went over the wire,
its analysis (the `.rawws` accessor), files (Parquet, HAR) and replay.

Importing this package (as `import rawws_nb` does) registers the `.rawws` accessor.
"""

from .accessor import TimelineAccessor  # registers DataFrame.rawws
from .analysis import HexDump
from .har import read_har, to_har
from .persist import read_timeline, save_timeline, timeline_metadata
from .recorder import DEFAULT_CAPACITY, DEFAULT_PAYLOAD_CAP, Recorder
from .replay import replay
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
    "replay",
    "save_timeline",
    "timeline_metadata",
    "to_har",
]
