"""The `.rawws` DataFrame accessor: timeline analysis on any timeline, live or loaded.

```python
df = session.timeline                 # or rw.read_timeline("run.parquet"), rw.read_har(...)
df.rawws.latency()                    # ping -> pong round trips, both directions
df.rawws.rtt(key=lambda p: json.loads(p)["id"])   # request -> response latency
df.rawws.messages()                   # fragments reassembled, one row per message
df.rawws.summary()                    # frames and bytes per direction and opcode, rates
df.rawws.hexdump(rows=[3, 4])         # hex + ASCII dump
df.rawws.decode(protocols.tlv.PROTOCOL)   # msg_type / fields from a codec
df.rawws.save("run.parquet"); df.rawws.to_har("run.har")
```

Registered when `rawws_nb` (or `rawws_nb.timeline`) is imported. Using it on a DataFrame
without the timeline columns raises `AttributeError` naming the missing ones.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

import pandas as pd

from . import analysis
from .schema import REQUIRED

__all__ = ["TimelineAccessor"]


@pd.api.extensions.register_dataframe_accessor("rawws")
class TimelineAccessor:
    """`df.rawws`: analysis of a frame timeline (see `rawws_nb.timeline.schema`)."""

    def __init__(self, df: pd.DataFrame) -> None:
        analysis.check_columns(df, REQUIRED)
        self._df = df

    def latency(self) -> pd.DataFrame:
        """Ping -> Pong round trips matched by payload, both directions (`analysis.latency`)."""
        return analysis.latency(self._df)

    def rtt(
        self,
        request: analysis.Selector = "tx",
        response: analysis.Selector = "rx",
        key: Callable[[bytes], Hashable | None] | None = None,
    ) -> pd.DataFrame:
        """Request -> response latency over data messages (`analysis.rtt`)."""
        return analysis.rtt(self._df, request=request, response=response, key=key)

    def messages(self, control: bool = False) -> pd.DataFrame:
        """Fragments reassembled, one row per message (`analysis.messages`)."""
        return analysis.messages(self._df, control=control)

    def summary(self) -> pd.DataFrame:
        """Frames and bytes per direction and opcode, totals, rates (`analysis.summary`)."""
        return analysis.summary(self._df)

    def hexdump(
        self, rows: Any = None, *, width: int = 16, limit: int | None = 256, max_frames: int = 50
    ) -> analysis.HexDump:
        """Hex + ASCII dump of frames (`analysis.hexdump`)."""
        return analysis.hexdump(self._df, rows, width=width, limit=limit, max_frames=max_frames)

    def decode(self, protocol: Any, version: Any = None) -> pd.DataFrame:
        """A copy with `msg_type`/`fields`/`error` decoded by a codec (`analysis.decode`)."""
        return analysis.decode(self._df, protocol, version)

    def save(self, path: str | Path, **metadata: Any) -> Path:
        """Save as Parquet (`rawws_nb.timeline.save_timeline`); `df.attrs` and `metadata`
        go in the file's metadata."""
        from .persist import save_timeline

        return save_timeline(self._df, path, metadata=metadata or None)

    def to_har(self, path: str | Path | None = None, **options: Any) -> dict[str, Any]:
        """Chrome HAR with `_webSocketMessages` (`rawws_nb.timeline.har.to_har`)."""
        from .har import to_har

        return to_har(self._df, path, **options)
