"""rawws_nb: raw WebSocket sessions for notebooks.

Every frame visible and sendable, nothing automatic (no pings, no pongs, no close
replies), every frame recorded into a pandas timeline. The architecture is in
docs/architecture.md.
"""

import importlib

from . import sync
from .connect import web_socket_raw, web_socket_raw_session, ws_raw, wss_raw
from .deflate import Deflate
from .errors import HandshakeError, InvalidSend, MessageTooBig, PeerProtocolError, ProxyError, RawWsError, SessionClosed
from .frames import CloseReason, Frame, FrameType, hexdump
from .handshake import RequestBuilder
from .loops import SyncOnLoopError
from .pcap import CaptureError, read_pcap, to_pcapng
from .relay import relay
from .replay import replay
from .server import EmbeddedServer, serve
from .session import Incoming, RawSession, SessionState
from .sync import connect_sync, serve_sync
from .timeline import accessor as _accessor  # noqa: F401  (registers DataFrame.rawws)
from .timeline import read_har, read_timeline, save_timeline, to_har
from .version import __version__
from .wire import encode_frame

_WIDGETS = {"ConnectPanel", "Dashboard", "SendPanel", "TimelinePanel", "LatencyPanel", "RelayPanel"}


def __getattr__(name: str) -> object:
    # Widgets load lazily: `import rawws_nb` does not import ipywidgets.
    if name in _WIDGETS or name == "widgets":
        # import_module, not `from . import widgets`: that would ask this __getattr__
        # for `widgets` again before the submodule exists (a RecursionError).
        widgets = importlib.import_module(f"{__name__}.widgets")
        return widgets if name == "widgets" else getattr(widgets, name)
    raise AttributeError(f"module 'rawws_nb' has no attribute {name!r}")


__all__ = [
    "__version__",
    "CaptureError",
    "read_pcap",
    "to_pcapng",
    "Deflate",
    "CloseReason",
    "ConnectPanel",
    "Dashboard",
    "LatencyPanel",
    "SendPanel",
    "SyncOnLoopError",
    "TimelinePanel",
    "connect_sync",
    "serve_sync",
    "sync",
    "EmbeddedServer",
    "Frame",
    "FrameType",
    "HandshakeError",
    "Incoming",
    "InvalidSend",
    "MessageTooBig",
    "PeerProtocolError",
    "ProxyError",
    "RawSession",
    "RawWsError",
    "RequestBuilder",
    "SessionClosed",
    "SessionState",
    "encode_frame",
    "hexdump",
    "read_har",
    "read_timeline",
    "relay",
    "RelayPanel",
    "replay",
    "save_timeline",
    "to_har",
    "serve",
    "web_socket_raw",
    "web_socket_raw_session",
    "ws_raw",
    "wss_raw",
]
