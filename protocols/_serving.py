"""The message loop shared by the protocols' `serve(session)` functions.

Uses only the session API `send`, `incoming.receive`, `close` (and `SessionClosed`).
After negotiation it answers each Ping with a Pong (as /echo does), answers the
client's Close, replies to each message with what the protocol's `respond` returns,
and reports undecodable messages and Text frames with the protocol's `error` message.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from rawws_nb.codec import (
    DecodeError,
    Message,
    NegotiationError,
    Protocol,
    ProtocolVersion,
    SessionLike,
    accept_negotiation,
)
from rawws_nb.errors import SessionClosed
from rawws_nb.frames import CloseReason, Frame

__all__ = ["Reply", "serve_protocol"]

# respond(message, codec, state) -> replies as (message name, fields) pairs
Reply = tuple[str, dict[str, Any]]
Respond = Callable[[Message, ProtocolVersion, dict[str, Any]], Iterable[Reply]]

_MAX_ERROR_TEXT = 500


async def _pong(session: SessionLike, frame: Frame) -> None:
    if isinstance(frame, Frame.Ping):
        await session.send(Frame.Pong(frame.data))


async def serve_protocol(
    session: SessionLike,
    protocol: Protocol,
    respond: Respond,
    *,
    error_code: Callable[[str], Any],
    timeout: float = 5.0,
) -> None:
    """Negotiate, then answer messages until the client closes.

    `error_code(kind)` maps "bad_message", "unknown_type" and "unexpected_frame" to the
    protocol's error code field value.
    """
    try:
        version = await accept_negotiation(session, protocol, timeout, on_frame=lambda f: _pong(session, f))
    except NegotiationError:
        return  # accept_negotiation closed the session with the right code
    codec = protocol.for_version(version)

    async def send_error(kind: str, text: str) -> None:
        await session.send(codec.frame("error", code=error_code(kind), message=text[:_MAX_ERROR_TEXT]))

    try:
        await _loop(session, protocol, codec, respond, send_error)
    except SessionClosed:
        return  # the client went away; nothing left to answer


async def _loop(
    session: SessionLike,
    protocol: Protocol,
    codec: ProtocolVersion,
    respond: Respond,
    send_error: Callable[[str, str], Awaitable[None]],
) -> None:
    decoder = codec.decoder()
    state: dict[str, Any] = {"messages": 0, "bytes": 0}
    while True:
        frame = await session.incoming.receive()
        if isinstance(frame, Frame.Ping):
            await session.send(Frame.Pong(frame.data))
            continue
        if isinstance(frame, Frame.Pong):
            continue
        if isinstance(frame, Frame.Close):
            reason = frame.read_reason()
            code = reason.code if reason is not None else CloseReason.Codes.NORMAL
            await session.close(CloseReason(code, ""))
            return
        if not isinstance(frame, Frame.Binary):
            await send_error("unexpected_frame", f"{frame.type.name} frames are not part of {protocol.name}")
            continue
        state["bytes"] += len(frame.data)
        data: bytes = frame.data
        while True:
            try:
                messages, error = decoder.feed(data), None
            except DecodeError as exc:
                messages, error = exc.messages, exc
            for message in messages:
                state["messages"] += 1
                for name, fields in respond(message, codec, state):
                    await session.send(codec.frame(name, **fields))
            if error is None:
                break
            kind = "unknown_type" if error.path == "type" else "bad_message"
            await send_error(kind, str(error))
            if decoder.broken:
                await session.close(CloseReason(CloseReason.Codes.PROTOCOL_ERROR, "framing error"))
                return
            data = b""
