"""permessage-deflate, sans-IO: negotiation (RFC 7692 section 7), compression contexts,
window bits, the inflate limit; and the core with the extension, client against server
in memory."""

from __future__ import annotations

import os
import zlib

import pytest

from rawws_nb import CloseReason, Deflate, Frame, InvalidSend
from rawws_nb.connection import Connection, State
from rawws_nb.deflate import (
    DeflateParams,
    Deflater,
    InflateError,
    Inflater,
    NegotiationFailed,
    PerMessageDeflate,
    TooBig,
    accept_offer,
    check_response,
    parse_extensions,
)
from rawws_nb.frames import COMPRESSED
from rawws_nb.wire import encode_frame, parse_header

# -- negotiation -----------------------------------------------------------------------------


def params(header: str):
    ((name, items),) = parse_extensions([header])
    assert name == "permessage-deflate"
    return items


def test_offers_as_browsers_send_them():
    assert Deflate().offer() == "permessage-deflate; client_max_window_bits"
    offer = Deflate(client_max_window_bits=10, server_max_window_bits=12, server_no_context_takeover=True)
    assert offer.offer() == (
        "permessage-deflate; server_no_context_takeover; server_max_window_bits=12; client_max_window_bits=10"
    )
    assert Deflate(client_max_window_bits=None).offer() == "permessage-deflate"
    with pytest.raises(ValueError, match=r"8\.\.15"):
        Deflate(server_max_window_bits=16)


def test_extension_headers_parse_with_quoted_values_and_several_offers():
    got = parse_extensions(['permessage-deflate; client_max_window_bits="10", x-foo', "permessage-deflate"])
    assert got == [
        ("permessage-deflate", [("client_max_window_bits", "10")]),
        ("x-foo", []),
        ("permessage-deflate", []),
    ]
    with pytest.raises(NegotiationFailed):
        parse_extensions(["permessage-deflate; =10"])


@pytest.mark.parametrize(
    ("offer", "response", "agreed"),
    [
        (Deflate(), "", DeflateParams()),
        (Deflate(), "client_max_window_bits=9", DeflateParams(client_max_window_bits=9)),
        (Deflate(), "server_max_window_bits=10", DeflateParams(server_max_window_bits=10)),
        (Deflate(), "server_no_context_takeover", DeflateParams(server_no_context_takeover=True)),
        (Deflate(), "client_no_context_takeover", DeflateParams(client_no_context_takeover=True)),
        (Deflate(client_max_window_bits=10), "", DeflateParams(client_max_window_bits=10)),
        (
            Deflate(server_no_context_takeover=True, server_max_window_bits=11),
            "server_no_context_takeover; server_max_window_bits=9",
            DeflateParams(server_no_context_takeover=True, server_max_window_bits=9),
        ),
    ],
)
def test_valid_responses_give_the_agreed_parameters(offer, response, agreed):
    header = "permessage-deflate" + (f"; {response}" if response else "")
    assert check_response(offer, params(header)) == agreed


@pytest.mark.parametrize(
    ("offer", "response", "words"),
    [
        (Deflate(client_max_window_bits=None), "client_max_window_bits=10", "did not offer it"),
        (Deflate(client_max_window_bits=10), "client_max_window_bits=12", "exceeds the offered 10"),
        (Deflate(server_max_window_bits=10), "server_max_window_bits=12", "exceeds the offered 10"),
        (Deflate(server_max_window_bits=10), "", "lacks it"),
        (Deflate(server_no_context_takeover=True), "", "lacks it"),
        (Deflate(), "server_max_window_bits=7", "8..15"),
        (Deflate(), "server_max_window_bits=010", "8..15"),
        (Deflate(), "server_max_window_bits", "8..15"),
        (Deflate(), "client_no_context_takeover=1", "takes no value"),
        (Deflate(), "server_no_context_takeover; server_no_context_takeover", "given twice"),
        (Deflate(), "x_unknown", "unknown permessage-deflate parameter"),
    ],
)
def test_invalid_responses_fail_with_the_reason(offer, response, words):
    with pytest.raises(NegotiationFailed, match=words):
        check_response(offer, params("permessage-deflate" + (f"; {response}" if response else "")))


def test_the_server_answers_an_offer_within_its_policy():
    agreed, header = accept_offer(Deflate(), params("permessage-deflate; client_max_window_bits"))
    assert agreed == DeflateParams() and header == "permessage-deflate"
    policy = Deflate(client_max_window_bits=10, server_max_window_bits=12, server_no_context_takeover=True)
    agreed, header = accept_offer(policy, params("permessage-deflate; client_max_window_bits"))
    assert header == (
        "permessage-deflate; server_no_context_takeover; server_max_window_bits=12; client_max_window_bits=10"
    )
    assert agreed.client_max_window_bits == 10 and agreed.server_max_window_bits == 12
    # An offered server limit is always answered, even at 15; a client limit never invented.
    offer = params("permessage-deflate; server_max_window_bits=15")
    agreed, header = accept_offer(Deflate(client_max_window_bits=9), offer)
    assert header == "permessage-deflate; server_max_window_bits=15" and agreed.client_max_window_bits == 15
    assert accept_offer(Deflate(), params("permessage-deflate; bogus")) is None


# -- compression contexts ----------------------------------------------------------------------


@pytest.mark.parametrize("bits", range(8, 16))
@pytest.mark.parametrize("takeover", [True, False])
def test_deflater_output_inflates_with_a_window_of_the_agreed_size(bits, takeover):
    deflater = Deflater(bits, no_context_takeover=not takeover)
    inflater = zlib.decompressobj(-bits)  # the strictest peer: exactly the agreed window
    for message in (os.urandom(50) * 40, os.urandom(300) * 10, b"abc" * 3000, b""):  # repeats 300 bytes apart too
        wire = deflater.compress(message)
        assert not wire.endswith(b"\x00\x00\xff\xff")
        assert inflater.decompress(wire + b"\x00\x00\xff\xff") == message
        if not takeover:
            inflater = zlib.decompressobj(-bits)


def test_context_takeover_makes_repeated_messages_smaller():
    message = os.urandom(200)
    keep, reset = Deflater(15), Deflater(15, no_context_takeover=True)
    first = len(keep.compress(message))
    assert len(keep.compress(message)) < first / 4  # a back-reference to the previous message
    assert len(reset.compress(message)) == len(reset.compress(message)) == first


def test_fragments_continue_one_stream():
    deflater, inflater = Deflater(), Inflater()
    parts = [deflater.compress(b"part one, ", fin=False), deflater.compress(b"part two", fin=True)]
    assert parts[0].endswith(b"\x00\x00\xff\xff")  # a sync flush: the stream goes on
    assert inflater.inflate(parts[0], False) + inflater.inflate(parts[1], True) == b"part one, part two"


def test_a_bomb_stops_at_the_limit_with_bounded_output():
    bomb = Deflater().compress(bytes(50_000_000))
    assert len(bomb) < 100_000
    inflater = Inflater()
    with pytest.raises(TooBig, match="more than 1000000"):
        inflater.inflate(bomb, True, limit=1_000_000)


def test_a_corrupt_stream_is_an_inflate_error():
    with pytest.raises(InflateError, match="invalid compressed data"):
        Inflater().inflate(b"\xff\xff\xff\xff garbage", True)


# -- the core with permessage-deflate, in memory ---------------------------------------------------


DEFAULTS = DeflateParams()


def deflate_pair(agreed: DeflateParams = DEFAULTS, **options):
    client = Connection(client=True, **options)
    server = Connection(client=False, **options)
    client.opened(PerMessageDeflate(agreed, client=True))
    server.opened(PerMessageDeflate(agreed, client=False))
    return client, server


def wire(conn: Connection) -> bytes:
    return b"".join(bytes(b) for b in conn.data_to_send())


@pytest.mark.parametrize("client_side", [True, False], ids=["client", "server"])
@pytest.mark.parametrize(
    "agreed",
    [DeflateParams(), DeflateParams(True, True, 9, 8), DeflateParams(client_no_context_takeover=True)],
    ids=["defaults", "small windows, no takeover", "client no takeover"],
)
def test_compressed_messages_both_ways(client_side, agreed):
    client, server = deflate_pair(agreed)
    me, peer = (client, server) if client_side else (server, client)
    sent = [Frame.Text("hello " * 200), Frame.Binary(os.urandom(3000)), Frame.Text("hello " * 200)]
    codes = [me.send(f) for f in sent]
    data = wire(me)
    assert all(c & COMPRESSED and c & 0x40 for c in codes)
    first = parse_header(data)
    assert first.rsv == 4 and first.length == codes[0] >> 16 < 1200  # the wire length, compressed
    got, rx_codes, violation = peer.receive_data(data)
    assert violation is None
    assert [f.data for f in got] == [f.data for f in sent]
    assert all(f.compressed and f.rsv1 for f in got)
    assert all(c & COMPRESSED for c in rx_codes) and [c >> 16 for c in rx_codes] == [c >> 16 for c in codes]


def test_a_fragmented_compressed_message_marks_only_its_first_frame():
    client, server = deflate_pair()
    codes = [client.send(Frame.Text("one ", fin=False)), client.send(Frame.Ping(b"p")), client.send(Frame.Text("two"))]
    assert [bool(c & 0x40) for c in codes] == [True, False, False]
    assert [bool(c & COMPRESSED) for c in codes] == [True, False, True]
    got, _, violation = server.receive_data(wire(client))
    assert violation is None
    assert [(f.data, f.rsv1, f.compressed) for f in got] == [
        (b"one ", True, True),
        (b"p", False, False),
        (b"two", False, True),
    ]


def test_compress_false_sends_a_message_as_is():
    client, server = deflate_pair()
    code = client.send(Frame.Binary(b"raw bytes"), compress=False)
    assert not code & (COMPRESSED | 0x40)
    got, _, _ = server.receive_data(wire(client))
    assert got[0].data == b"raw bytes" and not got[0].compressed


@pytest.mark.parametrize(
    ("data", "code", "words"),
    [
        (encode_frame(9, b"p", rsv=4, mask=True), 1002, "rsv1 set on a control frame"),
        (
            encode_frame(1, Deflater().compress(b"a", fin=False), fin=False, rsv=4, mask=True)
            + encode_frame(0, b"x", rsv=4, mask=True),
            1002,
            "rsv1 set on a continuation frame",
        ),
        (encode_frame(1, b"x", rsv=2, mask=True), 1002, "rsv2/rsv3"),
        (encode_frame(2, b"\xff\xfe\xfd not deflate", rsv=4, mask=True), 1002, "invalid compressed data"),
        (encode_frame(1, Deflater().compress(b"bad \xff utf-8"), rsv=4, mask=True), 1007, "invalid UTF-8"),
    ],
)
def test_broken_compression_from_a_peer_fails_the_connection(data, code, words):
    _, server = deflate_pair()
    _, _, violation = server.receive_data(data)
    assert violation.code == code and words in violation.reason


def test_a_decompression_bomb_fails_with_1009():
    _, server = deflate_pair(max_message_size=1 << 20)
    bomb = Deflater().compress(bytes(64 << 20))
    _, _, violation = server.receive_data(encode_frame(2, bomb, rsv=4, mask=True))
    assert violation.code == 1009 and "inflates to more than max_message_size=1048576" in violation.reason
    server.fail()
    assert server.close_sent == CloseReason(1009, violation.reason)


def test_without_the_extension_rsv1_is_still_a_violation_and_deflate_payload_refuses():
    client = Connection(client=True, state=State.OPEN)
    _, _, violation = client.receive_data(encode_frame(1, b"x", rsv=4, mask=False))
    assert violation.code == 1002 and "no extension was negotiated" in violation.reason
    with pytest.raises(InvalidSend, match="not negotiated"):
        client.deflate_payload(b"x")
