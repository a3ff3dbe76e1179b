"""The sans-IO core in memory: a client and a server `Connection` wired together, no
sockets (like websockets' tests/test_protocol.py). Every send rule, the closing
handshake both ways, each peer violation and the fail policy, the receive bound."""

from __future__ import annotations

import pytest

from rawws_nb import CloseReason, Frame, InvalidSend, MessageTooBig, PeerProtocolError, SessionClosed
from rawws_nb.connection import FAIL_AT_ONCE, TRANSITIONS, Connection, Event, State
from rawws_nb.frames import FRAME_CLASSES, RX, header_code, make_frame
from rawws_nb.wire import Violation, encode_frame, parse_header

SIDES = pytest.mark.parametrize("client_side", [True, False], ids=["client", "server"])


def pair(**options) -> tuple[Connection, Connection]:
    client = Connection(client=True, **options)
    server = Connection(client=False, **options)
    client.opened()
    server.opened()
    return client, server


def ends(client_side: bool, **options) -> tuple[Connection, Connection]:
    """(this side, the peer)."""
    client, server = pair(**options)
    return (client, server) if client_side else (server, client)


def wire(conn: Connection) -> bytes:
    return b"".join(bytes(b) for b in conn.data_to_send())


def transfer(source: Connection, target: Connection, limit: int | None = None):
    return target.receive_data(wire(source), limit)


def peer_bytes(client_side: bool, opcode: int, payload: bytes = b"", **kw) -> bytes:
    """A frame as the peer of `client_side` would put it on the wire (masked from a client)."""
    return encode_frame(opcode, payload, mask=not client_side, **kw)


# -- sending ------------------------------------------------------------------------------


@SIDES
def test_frames_go_across_with_type_fin_and_the_header_code(client_side):
    me, peer = ends(client_side)
    sent = [Frame.Text("héllo"), Frame.Binary(b"\x00\x01"), Frame.Ping(b"p"), Frame.Pong(b"q")]
    codes = [me.send(f) for f in sent]
    got, rx_codes, violation = transfer(me, peer)
    assert violation is None and got == sent
    assert codes == [header_code(f.type, True, 0, len(f.data)) for f in sent]
    assert list(rx_codes) == [c | RX for c in codes]


@SIDES
def test_a_client_masks_and_a_server_does_not(client_side):
    me, _ = ends(client_side)
    me.send(Frame.Binary(b"x" * 10))
    me.send(Frame.Binary(b"x" * 10))
    data = wire(me)
    first = parse_header(data)
    second = parse_header(data, first.size + first.length)
    assert (first.mask is not None) is client_side
    if client_side:
        assert first.mask != second.mask  # a fresh key per frame
        assert data[first.size : first.size + 10] != b"x" * 10


@SIDES
def test_fragments_put_text_then_continuation_on_the_wire(client_side):
    me, peer = ends(client_side)
    for frame in (Frame.Text("a", fin=False), Frame.Ping(b"between"), Frame.Text("b", fin=False), Frame.Text("c")):
        me.send(frame)
    got, codes, violation = transfer(me, peer)
    assert violation is None
    assert [(c & 0x0F, bool(c & 0x80)) for c in codes] == [(1, False), (9, True), (0, False), (0, True)]
    assert [f.data for f in got] == [b"a", b"between", b"b", b"c"]


@SIDES
@pytest.mark.parametrize(
    ("frame", "words"),
    [
        (Frame.Ping(b"p" * 126), "max 125"),
        (Frame.Pong(b"p", fin=False), "cannot be fragmented"),
        (Frame.Close(b"\x03"), "cannot be 1 byte"),
        (Frame.Close(CloseReason(1005)), "may not be sent"),
        (Frame.Close(CloseReason(999)), "may not be sent"),
    ],
)
def test_invalid_control_frames_are_refused(client_side, frame, words):
    me, _ = ends(client_side)
    with pytest.raises(InvalidSend, match=words):
        me.send(frame)
    assert me.bytes_to_send == 0 and me.state is State.OPEN


@SIDES
def test_a_new_message_inside_an_unfinished_one_is_refused(client_side):
    me, _ = ends(client_side)
    me.send(Frame.Text("part", fin=False))
    assert me.sending_message
    with pytest.raises(InvalidSend, match="fragmented TEXT message is unfinished"):
        me.send(Frame.Binary(b"other"))
    me.send(Frame.Text("end"))
    assert not me.sending_message


@SIDES
def test_nothing_is_sent_after_a_close_except_raw_bytes(client_side):
    me, _ = ends(client_side)
    me.send(Frame.Close(CloseReason(1000, "bye")))
    assert me.state is State.CLOSING and me.close_sent == CloseReason(1000, "bye")
    with pytest.raises(InvalidSend, match="already sent"):
        me.send(Frame.Text("late"))
    before = me.bytes_to_send
    me.send_raw(b"\x81\x00")  # raw bytes: no check, no state change
    assert me.bytes_to_send == before + 2 and me.state is State.CLOSING


def _outcome(conn: Connection, peer: Connection, call) -> tuple[object, ...]:
    """What a send did: its code or its exception, the frames the peer got, the state."""
    try:
        result: object = call()
    except (InvalidSend, SessionClosed) as exc:
        result = (type(exc), str(exc))
    got, codes, violation = transfer(conn, peer)
    return result, got, list(codes), violation, conn.state, conn.sending_message, conn.close_sent


def _in_state(client_side: bool, state: str) -> tuple[Connection, Connection]:
    me, peer = ends(client_side)
    if state == "fragmenting":
        me.send(Frame.Text("part", fin=False))
    elif state == "close received":
        peer.send(Frame.Close(CloseReason(1000)))
        transfer(peer, me)
    elif state == "close sent":
        me.send(Frame.Close(CloseReason(1000)))
    elif state == "connecting":
        me = Connection(client=client_side)
    transfer(me, peer)
    return me, peer


@SIDES
@pytest.mark.parametrize("state", ["open", "fragmenting", "close received", "close sent", "connecting"])
@pytest.mark.parametrize("opcode", [1, 2, 8, 9, 10])
def test_send_data_is_send_of_a_whole_frame_in_every_state(client_side, state, opcode):
    payload = b"\x03\xe8" if opcode == 8 else b"abc"
    frame = FRAME_CLASSES[opcode]
    a, a_peer = _in_state(client_side, state)
    b, b_peer = _in_state(client_side, state)
    by_frame = _outcome(a, a_peer, lambda: a.send(make_frame(frame, payload)))
    by_data = _outcome(b, b_peer, lambda: b.send_data(opcode, payload))
    assert by_data == by_frame


@pytest.mark.parametrize("slice_size", [8, 1 << 26])
def test_a_large_client_frame_masked_in_slices_reads_back_whole(monkeypatch, slice_size):
    from rawws_nb import connection

    monkeypatch.setattr(connection, "_MASK_SLICE", slice_size)
    me, peer = ends(True)
    payload = bytes(range(256)) * 7 + b"odd"  # not a multiple of the slice size
    me.send(Frame.Binary(payload))
    out = me.data_to_send()
    assert (len(out) > 2) is (slice_size == 8)  # header and slices, or one buffer
    got, _, violation = peer.receive_data(b"".join(bytes(b) for b in out))
    assert violation is None and got == [Frame.Binary(payload)]


def test_sending_before_the_handshake_is_done_is_local_misuse():
    conn = Connection(client=True)
    assert conn.state is State.CONNECTING
    with pytest.raises(InvalidSend, match="not open yet"):
        conn.send(Frame.Text("early"))
    with pytest.raises(InvalidSend, match="not open yet"):
        conn.send_raw(b"\x81\x00")


@SIDES
def test_rsv_bits_are_sent_as_given(client_side):
    me, peer = ends(client_side)
    code = me.send(Frame.Binary(b"x", rsv2=True))
    assert code & 0x70 == 0x20
    _, _, violation = transfer(me, peer)
    assert violation.code == 1002 and "rsv" in violation.reason


# -- the closing handshake ---------------------------------------------------------------


@SIDES
def test_closing_handshake_started_by_either_side(client_side):
    me, peer = ends(client_side)
    me.send(Frame.Close(CloseReason(1001, "going")))
    got, _, violation = transfer(me, peer)
    assert violation is None and got[0].read_reason() == CloseReason(1001, "going")
    assert peer.state is State.CLOSING and peer.close_received == CloseReason(1001, "going")
    assert not peer.should_close_transport  # nothing automatic: the peer has not answered
    assert peer.bytes_to_send == 0
    peer.send(Frame.Close(CloseReason(1001)))
    transfer(peer, me)
    assert me.closing_handshake_done and peer.closing_handshake_done
    client, server = (me, peer) if client_side else (peer, me)
    assert server.should_close_transport and not client.should_close_transport  # RFC 6455 7.1.1
    assert me.receive_eof() is None and peer.receive_eof() is None
    assert me.state is peer.state is State.CLOSED
    assert me.end.clean and me.end.code == 1001 and peer.end.clean


@SIDES
def test_an_empty_close_reads_as_1005(client_side):
    me, peer = ends(client_side)
    me.send(Frame.Close())
    transfer(me, peer)
    assert peer.close_received == CloseReason(1005, "") and peer.close_reason.code == 1005


@SIDES
def test_a_dropped_connection_ends_with_1006_and_reports_the_partial_frame(client_side):
    me, _peer = ends(client_side)
    data = peer_bytes(client_side, 2, bytes(100))[:30]
    got, _, violation = me.receive_data(data)
    assert got == [] and violation is None
    partial = me.receive_eof("reset by peer")
    assert partial.code == 1006 and partial.length == 100 and "middle of a frame" in partial.reason
    assert me.state is State.CLOSED and me.close_reason.code == 1006 and "reset by peer" in me.close_reason.message
    assert not me.end.clean
    with pytest.raises(SessionClosed):
        me.send(Frame.Text("after the end"))


# -- peer violations and the fail policy -----------------------------------------------------


VIOLATIONS = {
    "rsv bits": (lambda c: peer_bytes(c, 1, b"x", rsv=4), 1002, "rsv"),
    "reserved opcode": (lambda c: peer_bytes(c, 3, b"x"), 1002, "reserved data opcode"),
    "reserved control opcode": (lambda c: peer_bytes(c, 0xB, b"x"), 1002, "reserved control opcode"),
    "control too long": (lambda c: peer_bytes(c, 9, b"p" * 126), 1002, "126 bytes or more"),
    "fragmented control": (lambda c: peer_bytes(c, 9, b"p", fin=False), 1002, "fragmented control"),
    "stray continuation": (lambda c: peer_bytes(c, 0, b"x"), 1002, "without a message"),
    "new message inside one": (
        lambda c: peer_bytes(c, 1, b"a", fin=False) + peer_bytes(c, 2, b"b"),
        1002,
        "inside a fragmented message",
    ),
    "close code": (lambda c: peer_bytes(c, 8, (999).to_bytes(2, "big")), 1002, "invalid code 999"),
    "close of 1 byte": (lambda c: peer_bytes(c, 8, b"\x03"), 1002, "1-byte payload"),
    "close reason utf-8": (lambda c: peer_bytes(c, 8, (1000).to_bytes(2, "big") + b"\xff"), 1007, "not valid UTF-8"),
    "text utf-8": (lambda c: peer_bytes(c, 1, b"ok \xff"), 1007, "invalid UTF-8"),
    "wrong masking": (lambda c: encode_frame(1, b"x", mask=c), 1002, "frame"),
}


@SIDES
@pytest.mark.parametrize("kind", list(VIOLATIONS))
def test_each_violation_is_a_value_and_fail_sends_its_code(client_side, kind):
    make, code, words = VIOLATIONS[kind]
    me, peer = ends(client_side)
    _got, _, violation = me.receive_data(make(client_side))
    assert isinstance(violation, Violation) and violation.code == code and words in violation.reason
    assert me.failure is violation and not me.failed  # a value: nothing acted on yet
    assert me.bytes_to_send == 0
    assert me.failure_can_wait is (code not in FAIL_AT_ONCE)
    sent = me.fail()
    assert sent is not None and sent.read_reason().code == code
    assert me.failed and me.should_close_transport and me.state is State.CLOSING
    assert me.close_reason.code == code
    peer_got, _, peer_violation = transfer(me, peer)
    assert peer_violation is None and peer_got[-1].read_reason().code == code
    assert me.fail() is None  # once
    # Nothing more is accepted, and sending now raises the failure.
    frames, codes, violation = me.receive_data(peer_bytes(client_side, 1, b"more"))
    assert (frames, list(codes), violation) == ([], [], None)
    with pytest.raises(PeerProtocolError):
        me.send(Frame.Text("after the failure"))
    me.receive_eof()
    assert isinstance(me.end, PeerProtocolError) and me.end.code == code


@SIDES
def test_frames_before_a_framing_violation_are_delivered_first(client_side):
    me, _ = ends(client_side)
    data = peer_bytes(client_side, 1, b"answer me") + peer_bytes(client_side, 3, b"bad")
    got, _, violation = me.receive_data(data)
    assert [f.data for f in got] == [b"answer me"] and violation.code == 1002
    assert me.failure_can_wait
    me.send(Frame.Text("answered"))  # still possible until fail()
    me.fail()
    assert me.should_close_transport


@SIDES
def test_oversize_messages_fail_with_1009_from_the_header(client_side):
    me, _ = ends(client_side, max_message_size=1000)
    got, _, violation = me.receive_data(peer_bytes(client_side, 2, bytes(5000))[:20])
    assert violation.code == 1009 and "max_message_size=1000" in violation.reason
    assert "max_frame_size" not in violation.reason
    assert isinstance(me.failure_error, MessageTooBig)
    fragmented = Connection(client=client_side, max_message_size=1000, state=State.OPEN)
    data = peer_bytes(client_side, 2, bytes(600), fin=False) + peer_bytes(client_side, 0, bytes(600))
    got, _, violation = fragmented.receive_data(data)
    assert len(got) == 1 and violation.code == 1009 and "1200+" not in violation.reason


# -- the receive bound ----------------------------------------------------------------------


@SIDES
def test_at_most_limit_frames_are_parsed_and_the_rest_waits(client_side):
    me, peer = ends(client_side)
    for i in range(10):
        peer.send(Frame.Text(str(i)))
    got, _, _ = transfer(peer, me, limit=3)
    assert [f.data for f in got] == [b"0", b"1", b"2"] and me.limited
    got, _, _ = me.receive_data(b"", 0)
    assert got == [] and me.limited
    got, _, _ = me.receive_data(b"", 4)
    assert [f.data for f in got] == [b"3", b"4", b"5", b"6"] and me.limited
    got, _, _ = me.receive_data(b"", 10)
    assert [f.data for f in got] == [b"7", b"8", b"9"] and not me.limited


@SIDES
def test_once_a_close_was_sent_the_limit_no_longer_holds_back_the_peers_close(client_side):
    me, peer = ends(client_side)
    for i in range(5):
        peer.send(Frame.Text(str(i)))
    peer.send(Frame.Close(CloseReason(1000)))
    transfer(peer, me, limit=1)
    me.send(Frame.Close(CloseReason(1000)))
    got, _, _ = me.receive_data(b"", 1)
    assert [type(f).__name__ for f in got] == ["Text"] * 4 + ["Close"]
    assert me.closing_handshake_done


# -- the state table ------------------------------------------------------------------------


def test_the_transition_table_is_complete_for_what_can_happen():
    for state in State:
        assert (state, Event.END) in TRANSITIONS  # a transport can end in any state
    assert TRANSITIONS[State.CONNECTING, Event.OPENED] is State.OPEN
    conn = Connection(client=True)
    conn.opened()
    with pytest.raises(RuntimeError, match="no transition from OPEN on OPENED"):
        conn.opened()
