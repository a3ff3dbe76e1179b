"""rawws_nb: raw WebSocket sessions for notebooks.

Every frame visible and sendable, nothing automatic (no pings, no pongs, no close
replies), every frame recorded into a pandas timeline. See DESIGN.md for the contract.
"""

from .connect import web_socket_raw, web_socket_raw_session, ws_raw, wss_raw
from .errors import HandshakeError, InvalidSend, MessageTooBig, PeerProtocolError, RawWsError, SessionClosed
from .frames import CloseReason, Frame, FrameType, hexdump
from .handshake import RequestBuilder
from .server import EmbeddedServer, serve
from .session import Incoming, RawSession, SessionState
from .wire import encode_frame

__version__ = "0.1.0"

__all__ = [
    "CloseReason",
    "EmbeddedServer",
    "Frame",
    "FrameType",
    "HandshakeError",
    "Incoming",
    "InvalidSend",
    "MessageTooBig",
    "PeerProtocolError",
    "RawSession",
    "RawWsError",
    "RequestBuilder",
    "SessionClosed",
    "SessionState",
    "encode_frame",
    "hexdump",
    "serve",
    "web_socket_raw",
    "web_socket_raw_session",
    "ws_raw",
    "wss_raw",
]
