"""Exceptions. Peer misbehaviour ends a session with a `SessionClosed` subclass;
local misuse (an invalid frame passed to `send`) raises `InvalidSend`."""

from __future__ import annotations

from .frames import CloseReason

__all__ = [
    "HandshakeError",
    "InvalidSend",
    "MessageTooBig",
    "PeerProtocolError",
    "ProxyError",
    "RawWsError",
    "SessionClosed",
]


class RawWsError(Exception):
    """Base class of rawws_nb's exceptions."""


class HandshakeError(RawWsError):
    """The opening handshake failed.

    `status` is the HTTP status (None when no valid response came), `headers` the
    response headers as (name, value) pairs, `body` the start of the response body,
    `reason` what exactly was wrong.
    """

    def __init__(self, status: int | None, headers: list[tuple[str, str]], body: bytes, reason: str) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.reason = reason
        super().__init__(reason if not body else f"{reason}; body starts {body[:200]!r}")

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)


class SessionClosed(RawWsError):
    """The session has ended; `reason` says how.

    `reason.code` is the peer's close code when a Close frame arrived, 1005 when that
    frame had no code, 1006 when the connection dropped without one. `clean` is True
    when the session ended after a Close frame (sent or received) without error.
    """

    def __init__(self, reason: CloseReason, clean: bool = False, detail: str = "") -> None:
        self.reason = reason
        self.clean = clean
        self.detail = detail
        text = f"session closed: {reason.code}"
        if reason.message:
            text += f" {reason.message!r}"
        if detail:
            text += f" ({detail})"
        super().__init__(text)

    @property
    def code(self) -> int:
        return self.reason.code


class PeerProtocolError(SessionClosed):
    """The peer violated RFC 6455; the session failed the connection with `code`
    (1002 protocol error, 1007 invalid data) and recorded the offending frame."""


class MessageTooBig(PeerProtocolError):
    """The peer sent a frame or message over `max_frame_size`/`max_message_size` (1009)."""


class InvalidSend(RawWsError, ValueError):
    """`send` refused a frame (a local mistake, e.g. a 200-byte Ping); use `send_raw`
    to put deliberately invalid frames on the wire."""


class ProxyError(RawWsError):
    """The proxy step failed: the proxy could not be reached, refused the tunnel, or
    answered something that is not a proxy reply.

    `proxy` is the proxy's URL (password hidden), `status` the HTTP status when an HTTP
    proxy answered (407: authentication needed or wrong; None for SOCKS proxies and
    unreachable ones), `reason` the proxy's own words (the HTTP reason phrase or the
    SOCKS reply), `headers` the proxy's response headers as (name, value) pairs, `body`
    the start of its response body. The connect functions also set `handshake` on the
    exception: the handshake record up to the failure.
    """

    def __init__(
        self,
        message: str,
        *,
        proxy: str,
        status: int | None = None,
        reason: str = "",
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
    ) -> None:
        self.proxy = proxy
        self.status = status
        self.reason = reason
        self.headers = headers or []
        self.body = body
        super().__init__(message)

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)
