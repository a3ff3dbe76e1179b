"""Version negotiation on the wire (docs/architecture.md, "The codec's wire conventions").

The client's first Binary frame is its offer: `[major, minor]` byte pairs, most preferred
first. The server answers one Binary frame `[major, minor]` with the version it picked
(the first offered version it supports), or closes with 1003 (CANNOT_ACCEPT) when none
fits. Both sides then use that version's message set; on success the helpers set
`session.protocol` and `session.protocol_version`, which the timeline uses to decode.

While waiting, Ping and Pong frames are not part of the negotiation: they are passed to
`on_frame` when given (for example to answer pings) and otherwise left alone; nothing is
answered automatically. A Text frame (or a malformed Binary frame) is a protocol error:
the helper fails and closes with 1002 (PROTOCOL_ERROR). A timeout closes with 1008
(VIOLATED_POLICY). A Close from the peer ends the negotiation; the helper answers it
(completing the closing handshake) when `close_on_failure` is set.

The pure helpers (`encode_offer`, `decode_offer`, `encode_choice`, `decode_choice`,
`choose_version`) are what the two coroutines use, for tests and other transports.
The coroutines take any session with the few members of `SessionLike` (a
`rawws_nb.RawSession` has them); they import no front end.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import typing
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..errors import RawWsError, SessionClosed
from ..frames import Close, CloseReason, Frame
from .message import Version
from .protocol import Protocol, VersionLike, format_version, parse_version

__all__ = [
    "FrameSource",
    "NegotiationError",
    "NegotiationTimeout",
    "SessionLike",
    "accept_negotiation",
    "choose_version",
    "decode_choice",
    "decode_offer",
    "encode_choice",
    "encode_offer",
    "negotiate",
]

#: `on_frame(frame)`: plain or async; its result is awaited when it is awaitable.
OnFrame = Callable[[Frame], object]
_CODES = CloseReason.Codes


class FrameSource(typing.Protocol):
    """Where a session's received frames come from (`RawSession.incoming`)."""

    async def receive(self) -> Frame: ...


class SessionLike(typing.Protocol):
    """What the negotiation helpers use of a session: `send`, `incoming.receive()`,
    `close`, and the `protocol`/`protocol_version` attributes they set on success.
    `rawws_nb.RawSession` is one; tests and other transports can pass their own."""

    protocol: Any
    protocol_version: Any

    @property
    def incoming(self) -> FrameSource: ...

    async def send(self, frame: Frame, /) -> None: ...

    async def close(self, reason: CloseReason | None = None, /) -> None: ...


class NegotiationError(RawWsError):
    """Negotiation failed: no common version, a malformed or unexpected frame, the peer
    closed, or (`NegotiationTimeout`) no answer in time. `offered`/`supported` list the
    versions involved; `close_reason` is the peer's Close when it sent one.

    A `rawws_nb.RawWsError`."""

    def __init__(
        self,
        message: str,
        *,
        offered: Sequence[Version] = (),
        supported: Sequence[Version] = (),
        close_reason: CloseReason | None = None,
    ) -> None:
        super().__init__(message)
        self.offered = tuple(offered)
        self.supported = tuple(supported)
        self.close_reason = close_reason


class NegotiationTimeout(NegotiationError, TimeoutError):
    """No offer (server side) or no answer (client side) within the timeout (also a
    `TimeoutError`)."""


def _versions_text(versions: Iterable[Version]) -> str:
    return ", ".join(format_version(v) for v in versions) or "none"


def encode_offer(versions: Iterable[VersionLike]) -> bytes:
    """The offer frame's payload: `[major, minor]` pairs, most preferred first."""
    parsed = [parse_version(v) for v in versions]
    if not parsed:
        raise ValueError("an offer needs at least one version")
    return bytes(b for v in parsed for b in v)


def decode_offer(data: bytes) -> list[Version]:
    """The versions of an offer payload; NegotiationError when it is empty or odd-sized."""
    if not data or len(data) % 2:
        raise NegotiationError(f"malformed version offer: {len(data)} bytes ({bytes(data[:16]).hex(' ')})")
    return [(data[i], data[i + 1]) for i in range(0, len(data), 2)]


def encode_choice(version: VersionLike) -> bytes:
    """The server's answer payload: `[major, minor]`."""
    return bytes(parse_version(version))


def decode_choice(data: bytes) -> Version:
    """The version in a server's answer; NegotiationError unless exactly two bytes."""
    if len(data) != 2:
        raise NegotiationError(f"malformed version answer: {len(data)} bytes ({bytes(data[:16]).hex(' ')})")
    return (data[0], data[1])


def choose_version(offer: Sequence[VersionLike], supported: Iterable[VersionLike]) -> Version | None:
    """The first offered version (client's preference order) that is supported, or None."""
    known = {parse_version(v) for v in supported}
    for v in offer:
        parsed = parse_version(v)
        if parsed in known:
            return parsed
    return None


def _short(text: str, limit: int = 123) -> str:
    """A close reason fits in 123 bytes of UTF-8 (125-byte control frame, 2-byte code)."""
    data = text.encode("utf-8")
    return text if len(data) <= limit else data[: limit - 3].decode("utf-8", "ignore") + "..."


async def _close(session: SessionLike, code: int, reason: str) -> None:
    """Close after a failure; a session that already ended (or a transport error) does
    not hide the failure being reported."""
    with contextlib.suppress(RawWsError, OSError):
        await session.close(CloseReason(code, _short(reason)))


async def _reply_close(session: SessionLike, frame: Close) -> CloseReason | None:
    """Answer a peer's Close, echoing its code when it may be sent."""
    reason = frame.read_reason()
    code = reason.code if reason is not None and reason.code not in (1005, 1006, 1015) else _CODES.NORMAL
    await _close(session, code, "")
    return reason


async def _call(on_frame: OnFrame | None, frame: Frame) -> None:
    if on_frame is None:
        return
    result = on_frame(frame)
    if inspect.isawaitable(result):
        await result


async def _receive_binary(session: SessionLike, on_frame: OnFrame | None) -> Frame:
    """The next whole Binary message (fragments joined); control frames go to `on_frame`.
    Returns a Text or Close frame as is, for the caller to reject."""
    parts: list[bytes] = []
    while True:
        frame = await session.incoming.receive()
        if isinstance(frame, (Frame.Ping, Frame.Pong)):
            await _call(on_frame, frame)
            continue
        if isinstance(frame, Frame.Binary):
            parts.append(frame.data)
            if frame.fin:
                return Frame.Binary(b"".join(parts))
            continue
        return frame


async def negotiate(
    session: SessionLike,
    protocol: Protocol,
    offer: Sequence[VersionLike] | None = None,
    timeout: float | None = 5.0,
    close_on_failure: bool = True,
    *,
    on_frame: OnFrame | None = None,
) -> Version:
    """Client side: offer versions, return the one the server picked.

    `offer` defaults to every version of `protocol`, newest first; each must be one of
    the protocol's versions. On success sets `session.protocol` and
    `session.protocol_version`. Raises `NegotiationError` (no common version: the server
    closed with 1003; malformed or unexpected answer; the session ended) or
    `NegotiationTimeout`; with `close_on_failure`, the session is closed first (1002 for
    a bad answer, 1008 for a timeout, the peer's code when it closed).
    `on_frame(frame)` (sync or async) receives pings and pongs that arrive meanwhile.
    """
    versions = [parse_version(v) for v in (offer if offer is not None else reversed(protocol.versions))]
    unknown = [v for v in versions if not protocol.supports(v)]
    if not versions or unknown:
        raise ValueError(
            f"offer must be versions of {protocol.name} ({_versions_text(protocol.versions)}), "
            f"got {_versions_text(versions)}"
        )
    failure: tuple[int, str] | None = None
    try:
        await session.send(Frame.Binary(encode_offer(versions)))
        async with asyncio.timeout(timeout):
            frame = await _receive_binary(session, on_frame)
    except TimeoutError:
        if close_on_failure:
            await _close(session, _CODES.VIOLATED_POLICY, f"no version answer within {timeout} s")
        raise NegotiationTimeout(
            f"{protocol.name}: no answer to the version offer ({_versions_text(versions)}) within {timeout} s",
            offered=versions,
            supported=protocol.versions,
        ) from None
    except SessionClosed as exc:
        raise NegotiationError(
            f"{protocol.name}: the session ended during negotiation ({exc})",
            offered=versions,
            close_reason=exc.reason,
        ) from exc

    if isinstance(frame, Frame.Close):
        reason = frame.read_reason()
        if close_on_failure:
            await _reply_close(session, frame)
        refused = reason is not None and reason.code == _CODES.CANNOT_ACCEPT
        what = "accepts none of the offered versions" if refused else "closed the connection"
        raise NegotiationError(
            f"{protocol.name}: the server {what} (offered {_versions_text(versions)}; close {reason})",
            offered=versions,
            close_reason=reason,
        )
    if not isinstance(frame, Frame.Binary):
        failure = (_CODES.PROTOCOL_ERROR, f"expected the version answer (Binary frame), got {frame.type.name}")
    else:
        try:
            chosen = decode_choice(frame.data)
        except NegotiationError as exc:
            failure = (_CODES.PROTOCOL_ERROR, str(exc))
        else:
            if chosen not in versions:
                failure = (_CODES.PROTOCOL_ERROR, f"server picked {format_version(chosen)}, which was not offered")
    if failure is not None:
        if close_on_failure:
            await _close(session, *failure)
        raise NegotiationError(f"{protocol.name}: {failure[1]}", offered=versions, supported=protocol.versions)
    session.protocol = protocol
    session.protocol_version = chosen
    return chosen


async def accept_negotiation(
    session: SessionLike,
    protocol: Protocol,
    timeout: float | None = 5.0,
    *,
    close_on_failure: bool = True,
    on_frame: OnFrame | None = None,
) -> Version:
    """Server side: read the client's offer, answer with the chosen version, return it.

    Picks the first offered version `protocol` supports. When none fits, closes with
    1003 (CANNOT_ACCEPT) and raises `NegotiationError`; a malformed offer or a Text frame
    closes with 1002, no offer within `timeout` with 1008 (`NegotiationTimeout`), a
    Close from the client is answered. On success sets `session.protocol` and
    `session.protocol_version`. `on_frame` receives pings and pongs meanwhile.
    """
    supported = protocol.versions
    try:
        async with asyncio.timeout(timeout):
            frame = await _receive_binary(session, on_frame)
    except TimeoutError:
        if close_on_failure:
            await _close(session, _CODES.VIOLATED_POLICY, f"no version offer within {timeout} s")
        raise NegotiationTimeout(f"{protocol.name}: no version offer within {timeout} s", supported=supported) from None
    except SessionClosed as exc:
        raise NegotiationError(
            f"{protocol.name}: the session ended before a version offer ({exc})",
            supported=supported,
            close_reason=exc.reason,
        ) from exc

    if isinstance(frame, Frame.Close):
        reason = await _reply_close(session, frame) if close_on_failure else frame.read_reason()
        raise NegotiationError(
            f"{protocol.name}: the client closed before offering a version (close {reason})",
            supported=supported,
            close_reason=reason,
        )
    if not isinstance(frame, Frame.Binary):
        message = f"expected a version offer (Binary frame), got {frame.type.name}"
        if close_on_failure:
            await _close(session, _CODES.PROTOCOL_ERROR, message)
        raise NegotiationError(f"{protocol.name}: {message}", supported=supported)
    try:
        offered = decode_offer(frame.data)
    except NegotiationError as exc:
        if close_on_failure:
            await _close(session, _CODES.PROTOCOL_ERROR, str(exc))
        raise NegotiationError(f"{protocol.name}: {exc}", supported=supported) from None
    chosen = choose_version(offered, supported)
    if chosen is None:
        message = f"no common version: offered {_versions_text(offered)}; supported {_versions_text(supported)}"
        if close_on_failure:
            await _close(session, _CODES.CANNOT_ACCEPT, message)
        raise NegotiationError(f"{protocol.name}: {message}", offered=offered, supported=supported)
    try:
        await session.send(Frame.Binary(encode_choice(chosen)))
    except SessionClosed as exc:
        raise NegotiationError(
            f"{protocol.name}: the session ended before the version answer ({exc})",
            offered=offered,
            supported=supported,
            close_reason=exc.reason,
        ) from exc
    session.protocol = protocol
    session.protocol_version = chosen
    return chosen
