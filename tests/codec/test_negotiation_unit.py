"""Negotiation helpers against a scripted session (edge cases a real server will not produce)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from protocols import versioned
from rawws_nb import SessionClosed
from rawws_nb.codec import (
    NegotiationError,
    NegotiationTimeout,
    accept_negotiation,
    choose_version,
    decode_choice,
    decode_offer,
    encode_choice,
    encode_offer,
    negotiate,
)
from rawws_nb.frames import CloseReason, Frame

PROTO = versioned.PROTOCOL


class ScriptedSession:
    """The session API the helpers use: send, incoming.receive, close, two attributes."""

    def __init__(self, *frames: Frame | BaseException) -> None:
        self.script = list(frames)
        self.sent: list[Frame] = []
        self.closed_with: CloseReason | None = None
        self.protocol: Any = None
        self.protocol_version: Any = None
        self.incoming = self

    async def send(self, frame: Frame) -> None:
        self.sent.append(frame)

    async def receive(self) -> Frame:
        if not self.script:
            await asyncio.sleep(3600)
        item = self.script.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item

    async def close(self, reason: CloseReason | None = None) -> None:
        self.closed_with = reason


def test_wire_helpers():
    assert encode_offer([(2, 0), "1.0"]) == b"\x02\x00\x01\x00"
    assert decode_offer(b"\x02\x00\x01\x00") == [(2, 0), (1, 0)]
    assert encode_choice((2, 1)) == b"\x02\x01" and decode_choice(b"\x02\x01") == (2, 1)
    for bad in (b"", b"\x01", b"\x01\x00\x02"):
        with pytest.raises(NegotiationError, match="malformed version offer"):
            decode_offer(bad)
    with pytest.raises(NegotiationError, match="malformed version answer"):
        decode_choice(b"\x02\x00\x01\x00")
    with pytest.raises(ValueError):
        encode_offer([])
    assert choose_version([(3, 0), (2, 0), (1, 0)], PROTO.versions) == (2, 0)
    assert choose_version([(1, 0), (2, 0)], PROTO.versions) == (1, 0)  # the client's order wins
    assert choose_version([(9, 9)], PROTO.versions) is None


@pytest.mark.asyncio
async def test_client_success_sets_session_attributes():
    session = ScriptedSession(Frame.Binary(b"\x02\x00"))
    assert await negotiate(session, PROTO) == (2, 0)
    assert session.sent == [Frame.Binary(b"\x02\x00\x01\x00")]  # newest first by default
    assert session.protocol is PROTO and session.protocol_version == (2, 0)
    assert session.closed_with is None


@pytest.mark.asyncio
async def test_client_passes_pings_to_on_frame_and_answers_nothing():
    seen: list[Frame] = []
    session = ScriptedSession(Frame.Ping(b"p1"), Frame.Pong(b"x"), Frame.Binary(b"\x01\x00"))
    assert await negotiate(session, PROTO, offer=[(1, 0)], on_frame=seen.append) == (1, 0)
    assert seen == [Frame.Ping(b"p1"), Frame.Pong(b"x")]
    assert session.sent == [Frame.Binary(b"\x01\x00")]  # no pong sent behind our back

    async def pong(frame: Frame) -> None:
        if isinstance(frame, Frame.Ping):
            await session.send(Frame.Pong(frame.data))

    session = ScriptedSession(Frame.Ping(b"p2"), Frame.Binary(b"\x01\x00"))
    await negotiate(session, PROTO, offer=["1.0"], on_frame=pong)
    assert session.sent[-1] == Frame.Pong(b"p2")


@pytest.mark.asyncio
async def test_client_joins_a_fragmented_answer():
    session = ScriptedSession(Frame.Binary(b"\x02", fin=False), Frame.Binary(b"\x00"))
    assert await negotiate(session, PROTO) == (2, 0)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("answer", "match"),
    [
        (Frame.Binary(b"\x02\x00\x00"), "malformed version answer"),
        (Frame.Binary(b"\x01\x00"), "server picked 1.0, which was not offered"),
        (Frame.Text("hello"), "expected the version answer .Binary frame., got TEXT"),
    ],
)
async def test_client_rejects_bad_answers_with_1002(answer, match):
    session = ScriptedSession(answer)
    with pytest.raises(NegotiationError, match=match):
        await negotiate(session, PROTO, offer=[(2, 0)])
    assert session.closed_with is not None and session.closed_with.code == 1002
    assert session.protocol_version is None


@pytest.mark.asyncio
async def test_client_mismatch_from_server_close():
    session = ScriptedSession(Frame.Close(CloseReason(1003, "no common version")))
    with pytest.raises(NegotiationError, match="accepts none of the offered versions") as info:
        await negotiate(session, PROTO)
    assert info.value.close_reason == CloseReason(1003, "no common version")
    assert info.value.offered == ((2, 0), (1, 0))
    assert session.closed_with is not None and session.closed_with.code == 1003  # close handshake answered
    # without close_on_failure, nothing is sent
    session = ScriptedSession(Frame.Close(CloseReason(1003, "")))
    with pytest.raises(NegotiationError):
        await negotiate(session, PROTO, close_on_failure=False)
    assert session.closed_with is None


@pytest.mark.asyncio
async def test_client_timeout_closes_with_1008():
    session = ScriptedSession()
    with pytest.raises(NegotiationTimeout, match="no answer to the version offer") as info:
        await negotiate(session, PROTO, timeout=0.05)
    assert isinstance(info.value, TimeoutError)
    assert session.closed_with is not None and session.closed_with.code == 1008
    session = ScriptedSession()
    with pytest.raises(NegotiationTimeout):
        await negotiate(session, PROTO, timeout=0.05, close_on_failure=False)
    assert session.closed_with is None


@pytest.mark.asyncio
async def test_client_session_ended():
    session = ScriptedSession(SessionClosed(CloseReason(1006, "")))
    with pytest.raises(NegotiationError, match="the session ended during negotiation") as info:
        await negotiate(session, PROTO)
    assert info.value.close_reason == CloseReason(1006, "")


@pytest.mark.asyncio
async def test_client_offer_must_be_protocol_versions():
    with pytest.raises(ValueError, match="offer must be versions of versioned"):
        await negotiate(ScriptedSession(), PROTO, offer=[(3, 0)])


@pytest.mark.asyncio
async def test_server_picks_first_supported_offer():
    pings: list[Frame] = []
    session = ScriptedSession(Frame.Ping(b"1"), Frame.Binary(b"\x03\x00\x01\x00\x02\x00"))
    assert await accept_negotiation(session, PROTO, on_frame=pings.append) == (1, 0)
    assert session.sent == [Frame.Binary(b"\x01\x00")] and pings == [Frame.Ping(b"1")]
    assert session.protocol is PROTO and session.protocol_version == (1, 0)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("first", "code", "match"),
    [
        (Frame.Binary(b"\x09\x00"), 1003, "no common version: offered 9.0; supported 1.0, 2.0"),
        (Frame.Binary(b"\x02"), 1002, "malformed version offer"),
        (Frame.Text("2.0"), 1002, "expected a version offer"),
    ],
)
async def test_server_failures_close_with_the_right_code(first, code, match):
    session = ScriptedSession(first)
    with pytest.raises(NegotiationError, match=match):
        await accept_negotiation(session, PROTO)
    assert session.closed_with is not None and session.closed_with.code == code
    assert session.sent == [] and session.protocol_version is None


@pytest.mark.asyncio
async def test_server_timeout_and_client_close():
    session = ScriptedSession()
    with pytest.raises(NegotiationTimeout, match=r"no version offer within 0\.05 s"):
        await accept_negotiation(session, PROTO, timeout=0.05)
    assert session.closed_with is not None and session.closed_with.code == 1008
    session = ScriptedSession(Frame.Close(CloseReason(1000, "bye")))
    with pytest.raises(NegotiationError, match="client closed before offering"):
        await accept_negotiation(session, PROTO)
    assert session.closed_with is not None and session.closed_with.code == 1000


@pytest.mark.asyncio
async def test_close_reason_fits_a_control_frame():
    many = bytes(b for v in range(100, 160) for b in (v, 0))
    session = ScriptedSession(Frame.Binary(many))
    with pytest.raises(NegotiationError):
        await accept_negotiation(session, PROTO)
    assert session.closed_with is not None
    assert len(session.closed_with.message.encode()) <= 123
