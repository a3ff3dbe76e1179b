"""The streaming decoder: messages across frame boundaries, several per frame, errors."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols import tlv, versioned
from rawws_nb.codec import DecodeError, Protocol
from rawws_nb.frames import Frame

from .strategies import VARINT_PROTOCOL, valid_messages

V2 = versioned.PROTOCOL.for_version((2, 0))

MESSAGES = [
    ("hello", {"name": "client", "features": {"receipts": True, "samples": False, "stats": True}}),
    ("say", {"id": 1, "priority": "high", "text": "héllo wörld"}),
    ("sample", {"seq": 7, "t_us": 123456789, "value": 0.25}),
    ("stats", {}),
    ("ack", {"id": 1, "status": "ok"}),
    ("say", {"id": 2, "priority": "low", "text": ""}),
]


def _stream(codec=V2, messages=MESSAGES) -> bytes:
    return b"".join(codec.encode(name, **fields) for name, fields in messages)


def _names(msgs):
    return [m.name for m in msgs]


def test_split_at_every_byte_boundary():
    data = _stream()
    expected = [V2.decode(V2.encode(n, **f)) for n, f in MESSAGES]
    for cut in range(len(data) + 1):
        decoder = V2.decoder()
        got = decoder.feed(data[:cut]) + decoder.feed(data[cut:])
        assert got == expected, cut
        assert decoder.pending == 0 and decoder.offset == len(data)


def test_split_at_every_pair_of_boundaries():
    data = _stream(messages=MESSAGES[:3])
    for i in range(len(data) + 1):
        for j in range(i, len(data) + 1):
            decoder = V2.decoder()
            got = decoder.feed(data[:i]) + decoder.feed(data[i:j]) + decoder.feed(data[j:])
            assert _names(got) == ["hello", "say", "sample"], (i, j)


def test_byte_by_byte_and_whole_frames():
    data = _stream()
    decoder = V2.decoder()
    got = [m for i in range(len(data)) for m in decoder.feed(data[i : i + 1])]
    assert _names(got) == [n for n, _ in MESSAGES]
    # several messages per frame, as Frame objects
    decoder = V2.decoder()
    frames = [Frame.Binary(_stream(messages=MESSAGES[:4])), Frame.Binary(_stream(messages=MESSAGES[4:]))]
    assert _names(decoder.feed(frames[0])) == ["hello", "say", "sample", "stats"]
    assert _names(decoder.feed(frames[1])) == ["ack", "say"]
    assert decoder.feed_all([b"", memoryview(_stream(messages=MESSAGES[:1])), bytearray()])[0].name == "hello"


def test_pending_and_close():
    data = V2.encode("say", id=1, text="abc")
    decoder = V2.decoder()
    assert decoder.feed(data[:7]) == []
    assert decoder.pending == 7
    with pytest.raises(DecodeError, match="truncated payload"):
        decoder.close()
    assert decoder.feed(data[7:])[0].fields["text"] == "abc"
    decoder.close()  # nothing pending: fine
    assert "0 bytes pending" in repr(decoder)


def test_bad_message_in_the_middle_raises_with_earlier_messages_and_resumes():
    good1, good2 = V2.encode("ack", id=1), V2.encode("ack", id=2)
    bad = b"\x09\x00\x00\x00\x01\x00"  # unknown type code 9, framing intact
    decoder = V2.decoder()
    with pytest.raises(DecodeError, match="unknown type code 9") as info:
        decoder.feed(good1 + bad + good2)
    assert _names(info.value.messages) == ["ack"]
    assert info.value.stream_offset == len(good1)
    assert not decoder.broken
    assert decoder.feed(b"")[0].fields == {"id": 2, "status": "ok"}


def test_skip_mode_records_errors():
    decoder = V2.decoder(errors="skip")
    payload = b"\x00\x00\x00\x01\x00\x00\x05ab"  # say with a truncated text
    bad = b"\x03" + len(payload).to_bytes(4, "big") + payload
    got = decoder.feed(V2.encode("ack", id=1) + bad + V2.encode("ack", id=2))
    assert [m.fields["id"] for m in got] == [1, 2]
    assert len(decoder.skipped) == 1 and decoder.skipped[0].path == "say.text"


def test_framing_error_breaks_the_decoder():
    small = Protocol("small", versioned.V1, max_payload=100)
    decoder = small.decoder()
    good = small.encode("ack", id=1)
    with pytest.raises(DecodeError, match="declared payload length") as info:
        decoder.feed(good + b"\x04\x00\x01\x00\x00")
    assert _names(info.value.messages) == ["ack"]
    assert decoder.broken
    with pytest.raises(DecodeError, match="declared payload length"):
        decoder.feed(b"")
    decoder.reset()
    assert decoder.feed(good)[0].name == "ack"


def test_errors_argument_is_checked():
    with pytest.raises(ValueError):
        V2.decoder(errors="ignore")  # type: ignore[arg-type]


def test_construct_framing_streams():
    codec = VARINT_PROTOCOL.default
    messages = [codec.encode("single", v=i) for i in range(3)] + [
        codec.encode("blobs", fixed=b"abcd", pre=b"x" * 300, flag=False, tail=b"")
    ]
    data = b"".join(messages)
    for cut in range(len(data) + 1):
        decoder = codec.decoder()
        got = decoder.feed(data[:cut]) + decoder.feed(data[cut:])
        assert _names(got) == ["single", "single", "single", "blobs"], cut


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_random_streams_in_random_chunks(data):
    codec = data.draw(st.sampled_from([V2, tlv.PROTOCOL.default, VARINT_PROTOCOL.default]))
    messages = data.draw(st.lists(valid_messages(codec), min_size=1, max_size=6))
    blob = b"".join(codec.encode(name, **fields) for name, fields in messages)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(blob)), max_size=8)))
    chunks = [blob[a:b] for a, b in zip([0, *cuts], [*cuts, len(blob)], strict=True)]
    decoder = codec.decoder()
    got = decoder.feed_all(chunks)
    assert [m.raw for m in got] == [codec.encode(n, **f) for n, f in messages]
    assert decoder.pending == 0
