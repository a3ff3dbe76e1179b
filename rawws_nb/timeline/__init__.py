"""Frame timelines: the recorder (hot path) and the pandas view of what went over the wire."""

from .recorder import DEFAULT_CAPACITY, DEFAULT_PAYLOAD_CAP, Recorder
from .schema import COLUMNS, empty_timeline

__all__ = ["COLUMNS", "DEFAULT_CAPACITY", "DEFAULT_PAYLOAD_CAP", "Recorder", "empty_timeline"]
