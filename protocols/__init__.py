"""Ready-made protocol definitions for the codec layer (`rawws_nb.codec`).

- `protocols.tlv`: type/length/payload messages hello, chat, ack, error (version 1.0).
- `protocols.versioned`: a protocol with versions 1.0 and 2.0 (2.0 adds fields and types).
- `protocols.mqtt`: MQTT 3.1.1 (subprotocol `mqtt`), with a small broker as its `serve`.

Each module has a `PROTOCOL` (a `rawws_nb.codec.Protocol`) and `async def serve(session)`,
the server side the embedded test server runs at `/proto/<name>`. Every `/proto/<name>`
endpoint starts with version negotiation (docs/architecture.md), also for `tlv`, which has one
version: clients call `await negotiate(session, protocol)` first; except `mqtt`, which
speaks MQTT from the first frame (CONNECT), as MQTT brokers do.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["NAMES", "load"]

NAMES: tuple[str, ...] = ("tlv", "versioned", "mqtt")


def load(name: str) -> ModuleType:
    """The protocol module `protocols.<name>` (KeyError for names not in `NAMES`)."""
    if name not in NAMES:
        raise KeyError(f"no protocol {name!r} (have: {', '.join(NAMES)})")
    return importlib.import_module(f"{__name__}.{name}")
