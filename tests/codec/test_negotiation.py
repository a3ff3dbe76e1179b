"""Negotiation and message exchange against the embedded server's /proto/<name> endpoints."""

from __future__ import annotations

import pytest

import rawws_nb as rw
from protocols import tlv, versioned
from rawws_nb.codec import MessageType, NegotiationError, NegotiationTimeout, Protocol, negotiate
from rawws_nb.frames import CloseReason, Frame

PROTO = versioned.PROTOCOL

# A newer client: it also knows a version 3.0 the server has never heard of.
V3 = [*versioned.V2, MessageType("bye", 9)]
CLIENT_V3 = Protocol("versioned", {**{v: PROTO.for_version(v).message_types for v in PROTO.versions}, (3, 0): V3})
FUTURE_ONLY = Protocol("versioned", {(3, 0): V3})


@pytest.fixture
async def server():
    async with await rw.serve(host="127.0.0.1", port=0) as srv:
        yield srv


async def _receive_messages(session, codec, n):
    decoder = codec.decoder()
    out = []
    while len(out) < n:
        frame = await session.incoming.receive()
        assert isinstance(frame, Frame.Binary), frame
        out.extend(decoder.feed(frame))
    return out


@pytest.mark.asyncio
async def test_success_and_exchange(server):
    session = await rw.web_socket_raw_session(server.url + "/proto/versioned")
    assert await negotiate(session, PROTO) == (2, 0)
    assert session.protocol is PROTO and session.protocol_version == (2, 0)
    codec = PROTO.for_version(session.protocol_version)
    await session.send(codec.frame("hello", name="test", features={"samples": True}))
    await session.send(codec.frame("say", id=7, priority="high", text="hi"))
    await session.send(codec.frame("sample", seq=1, t_us=2, value=0.5))
    await session.send(codec.frame("stats"))
    got = await _receive_messages(session, codec, 5)
    assert [m.name for m in got] == ["welcome", "ack", "say", "sample", "stats_reply"]
    assert got[0].fields["features"] == {"receipts": False, "samples": True, "stats": False}
    assert got[1].fields == {"id": 7, "status": "ok"}
    assert got[2].fields == {"id": 7, "priority": "high", "text": "hi"}
    assert got[4].fields["messages"] == 4
    await session.close()
    # the timeline decodes the Binary frames after negotiation with version 2.0
    df = session.timeline
    binary = df[df.opcode == "binary"]
    assert list(binary.msg_type.iloc[2:]) == ["hello", "say", "sample", "stats", *[m.name for m in got]]
    assert binary.fields.iloc[3] == {"id": 7, "priority": "high", "text": "hi"}
    # and afterwards, on any timeline: the same decoding through the pandas accessor
    again = df.drop(columns=["msg_type", "fields"]).rawws.decode(PROTO, (2, 0))
    assert list(again[again.opcode == "binary"].msg_type.iloc[2:6]) == ["hello", "say", "sample", "stats"]


@pytest.mark.asyncio
async def test_downgrade_by_the_client(server):
    session = await rw.web_socket_raw_session(server.url + "/proto/versioned")
    assert await negotiate(session, PROTO, offer=[(1, 0)]) == (1, 0)
    v1 = PROTO.for_version((1, 0))
    await session.send(v1.frame("say", id=1, text="old"))
    got = await _receive_messages(session, v1, 2)
    assert got[0].fields == {"id": 1} and got[0].version == (1, 0)  # v1 ack: no status
    await session.send(v1.frame("hello", name="x"))
    welcome = (await _receive_messages(session, v1, 1))[0]
    assert set(welcome.fields) == {"server", "session"}
    await session.close()
    df = session.timeline
    assert "ack" in set(df.msg_type.dropna()) and "welcome" in set(df.msg_type.dropna())


@pytest.mark.asyncio
async def test_downgrade_by_the_server(server):
    session = await rw.web_socket_raw_session(server.url + "/proto/versioned")
    assert CLIENT_V3.versions == ((1, 0), (2, 0), (3, 0))
    assert await negotiate(session, CLIENT_V3) == (2, 0)  # offers 3.0, 2.0, 1.0; the server knows 2.0
    assert session.protocol_version == (2, 0)
    codec = CLIENT_V3.for_version((2, 0))
    await session.send(codec.frame("say", id=2, text="v2"))
    assert (await _receive_messages(session, codec, 1))[0].fields == {"id": 2, "status": "ok"}
    await session.close()


@pytest.mark.asyncio
async def test_mismatch_closes_with_1003(server):
    session = await rw.web_socket_raw_session(server.url + "/proto/versioned")
    with pytest.raises(NegotiationError, match="accepts none of the offered versions") as info:
        await negotiate(session, FUTURE_ONLY)
    assert info.value.close_reason is not None
    assert info.value.close_reason.code == CloseReason.Codes.CANNOT_ACCEPT
    assert "supported 1.0, 2.0" in info.value.close_reason.message
    assert session.close_reason is not None and session.close_reason.code == 1003
    assert session.state.name == "CLOSED"
    assert session.protocol_version is None


@pytest.mark.asyncio
async def test_timeout_closes_with_1008(server):
    session = await rw.web_socket_raw_session(server.url + "/sink", close_timeout=2)
    with pytest.raises(NegotiationTimeout, match=r"within 0\.2 s"):
        await negotiate(session, PROTO, timeout=0.2)
    assert session.state.name == "CLOSED"
    closes = session.timeline.query("opcode == 'close' and dir == 'tx'")
    assert list(closes.close_code) == [1008]


@pytest.mark.asyncio
async def test_timeout_without_closing(server):
    session = await rw.web_socket_raw_session(server.url + "/sink")
    with pytest.raises(NegotiationTimeout):
        await negotiate(session, PROTO, timeout=0.1, close_on_failure=False)
    assert session.state.name == "OPEN"
    await session.close()


@pytest.mark.asyncio
async def test_server_answers_pings_during_and_after_negotiation(server):
    session = await rw.web_socket_raw_session(server.url + "/proto/tlv")
    await session.send(Frame.Ping(b"early"))
    seen: list[Frame] = []
    assert await negotiate(session, tlv.PROTOCOL, on_frame=seen.append) == (1, 0)
    assert seen == [Frame.Pong(b"early")]
    rtt = await session.ping(b"later", timeout=5)
    assert rtt >= 0
    await session.close()


@pytest.mark.asyncio
async def test_tlv_exchange_and_errors(server):
    session = await rw.web_socket_raw_session(server.url + "/proto/tlv", protocol=tlv.PROTOCOL)
    codec = tlv.PROTOCOL.for_version(await negotiate(session, tlv.PROTOCOL))
    # two messages in one frame, and one message split over two frames
    await session.send(Frame.Binary(codec.encode("hello", name="me") + codec.encode("chat", id=1, text="one")))
    split = codec.encode("chat", id=2, text="two")
    await session.send(Frame.Binary(split[:3], fin=True))
    await session.send(Frame.Binary(split[3:], fin=True))
    got = await _receive_messages(session, codec, 5)
    assert [(m.name, m.fields.get("id")) for m in got] == [
        ("hello", None),
        ("ack", 1),
        ("chat", 1),
        ("ack", 2),
        ("chat", 2),
    ]
    assert got[0].fields == {"name": tlv.SERVER_NAME}
    # broken on purpose: an unknown type code, a truncated field, a Text frame
    await session.send(Frame.Binary(b"\x07\x00\x00\x00\x00"))
    await session.send(Frame.Binary(b"\x02\x00\x00\x00\x07\x00\x00\x00\x01\x00\x05a"))
    await session.send(Frame.Text("not binary"))
    errors = await _receive_messages(session, codec, 3)
    assert [m.fields["code"] for m in errors] == ["unknown_type", "bad_message", "unexpected_frame"]
    assert "chat.text" in errors[1].fields["message"]
    await session.close()
    df = session.timeline
    assert df.msg_type.iloc[0] == "negotiation" and df.fields.iloc[0] == {"versions": ["1.0"]}
    assert df.msg_type.iloc[2] == "hello+chat" and len(df.fields.iloc[2]["messages"]) == 2
    bad = df[(df.dir == "tx") & df.error.notna()]
    assert len(bad) >= 3  # the split halves and the two broken messages have error rows
    assert bad.error.str.contains("unknown type code 7").any()
    assert bad.error.str.contains("chat.text").any()


@pytest.mark.asyncio
async def test_server_rejects_malformed_offer_and_text(server):
    session = await rw.web_socket_raw_session(server.url + "/proto/versioned")
    await session.send(Frame.Binary(b"\x02"))
    with pytest.raises(rw.SessionClosed):
        while True:
            frame = await session.incoming.receive()
            if isinstance(frame, Frame.Close):
                await session.close()
    assert session.close_reason is not None and session.close_reason.code == 1002

    session = await rw.web_socket_raw_session(server.url + "/proto/versioned")
    await session.send(Frame.Text("2.0"))
    frame = await session.incoming.receive()
    assert isinstance(frame, Frame.Close)
    assert frame.read_reason().code == 1002 and "expected a version offer" in frame.read_reason().message
    await session.close()
