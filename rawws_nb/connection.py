"""The sans-IO WebSocket connection: RFC 6455's rules, once, for every front end.

A `Connection` is one side (client or server) of a WebSocket connection after the
opening handshake. Bytes in: `receive_data(data)` returns the frames they complete and
the peer's first protocol violation, as values; `receive_eof()` says the transport
ended. Frames out: `send(frame)` checks a frame and appends its wire bytes, `send_raw`
appends bytes as they are; `data_to_send()` hands the bytes out. It does no I/O, reads
no clock and sets no timer (it imports no asyncio, socket or ssl): the asyncio
`RawSession` drives it for the client and the embedded server; other front ends (a
relay, a capture reader) can drive it the same way.

What it does NOT do, on purpose (a raw connection):

* no automatic Pong: a received Ping is returned like any frame;
* no automatic Ping or keep-alive;
* no automatic Close reply: a received Close moves the state to CLOSING and is
  returned; the caller decides whether and when to `send` a Close.

What it does do:

* validate what the peer sends (`wire.FrameReader`: opcodes, rsv bits, masking,
  control-frame rules, fragmentation, UTF-8, Close payloads, size limits);
* validate what the caller sends with `send` (whole control frames of at most 125
  bytes, sendable Close codes, fragments continuing their message as CONTINUATION
  frames, nothing after a Close); `send_raw` bypasses every check and changes no state;
* mask what a client sends (keys drawn from a pool of `os.urandom` bytes);
* the closing handshake and the fail policy (below), with the state in one place.

States and transitions (`TRANSITIONS`, the one table the state moves by):

| state | event | next state |
|---|---|---|
| CONNECTING | OPENED (handshake done) | OPEN |
| OPEN | SEND_CLOSE, RECEIVE_CLOSE, FAIL | CLOSING |
| CLOSING | SEND_CLOSE, RECEIVE_CLOSE, FAIL | CLOSING |
| any | END (transport ended) | CLOSED |

Once both Close frames are exchanged (`closing_handshake_done`), the server side asks
for the transport to be closed (`should_close_transport`); the client side waits for
the server to close it (its front end bounds the wait with a timer).

The fail policy (RFC 6455 7.1.7): a peer violation fails the connection: a Close with
the violation's code (1002, 1007, 1009) is sent and the transport is to be closed.
`receive_data` returns the violation as a value; the front end calls `fail()`. Invalid
UTF-8 (1007) must fail at once (`failure_can_wait` is False): the message it belongs to
is invalid, so nothing should answer its earlier fragments. A framing violation (1002,
1009) may wait until the frames received before it were handled, so they can still be
answered (the front end decides how long; the asyncio session fails when its consumer
reaches the violation in `incoming`, or after `close_timeout`).
"""

from __future__ import annotations

import enum
import os
from array import array

from .deflate import PerMessageDeflate, RawInflater
from .errors import InvalidSend, MessageTooBig, PeerProtocolError, SessionClosed
from .frames import COMPRESSED, FRAME_CLASSES, RX, Close, CloseReason, Frame, is_valid_close_code, make_frame
from .wire import CONTROL_MAX, FrameReader, Violation, apply_mask, header_bytes, masked_frame

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "FAIL_AT_ONCE",
    "TRANSITIONS",
    "Connection",
    "Event",
    "State",
]

DEFAULT_MAX_MESSAGE_SIZE = 1 << 20  # 1 MiB, as the websockets library

# Violations with these close codes fail the connection at once (see the module doc).
FAIL_AT_ONCE = frozenset({1007})

_MASK_POOL = 4096  # bytes of os.urandom drawn at a time for mask keys
_MASK_SLICE = 1 << 26  # client frames larger than this are masked in slices of this size (one pass
# below it: a fresh buffer per 1 MiB slice cost more in page faults than the masking itself)


class State(enum.Enum):
    """Where a connection is (the public `rawws_nb.SessionState`)."""

    CONNECTING = "CONNECTING"
    OPEN = "OPEN"
    CLOSING = "CLOSING"
    CLOSED = "CLOSED"


class Event(enum.Enum):
    """What moves a connection from one state to another."""

    OPENED = "the opening handshake is done"
    SEND_CLOSE = "a Close frame was sent"
    RECEIVE_CLOSE = "a Close frame was received"
    FAIL = "the connection was failed after a peer violation"
    END = "the transport ended"


TRANSITIONS: dict[tuple[State, Event], State] = {
    (State.CONNECTING, Event.OPENED): State.OPEN,
    (State.CONNECTING, Event.END): State.CLOSED,
    (State.OPEN, Event.SEND_CLOSE): State.CLOSING,
    (State.OPEN, Event.RECEIVE_CLOSE): State.CLOSING,
    (State.OPEN, Event.FAIL): State.CLOSING,
    (State.OPEN, Event.END): State.CLOSED,
    (State.CLOSING, Event.SEND_CLOSE): State.CLOSING,
    (State.CLOSING, Event.RECEIVE_CLOSE): State.CLOSING,
    (State.CLOSING, Event.FAIL): State.CLOSING,
    (State.CLOSING, Event.END): State.CLOSED,
    (State.CLOSED, Event.END): State.CLOSED,
}

_OPEN = State.OPEN
_CLOSING = State.CLOSING


class Connection:
    """One side of a WebSocket connection, sans I/O (see the module docstring).

    `client=True` is the client side (it masks what it sends and expects unmasked
    frames); `client=False` the server side. `max_message_size` bounds a message (all
    its fragments), `max_frame_size` one frame; both are checked from frame headers,
    before payloads are buffered (None: no limit).
    """

    __slots__ = (
        "_failed",
        "_mask_pool",
        "_mask_pos",
        "_out",
        "_out_size",
        "_tx_compressed",
        "_tx_msg_cls",
        "client",
        "close_reason",
        "close_received",
        "close_sent",
        "deflate",
        "end",
        "failure",
        "failure_error",
        "reader",
        "should_close_transport",
        "state",
    )

    def __init__(
        self,
        *,
        client: bool,
        max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE,
        max_frame_size: int | None = None,
        state: State = State.CONNECTING,
        deflate: PerMessageDeflate | None = None,
    ) -> None:
        self.client = client
        self.state = state
        self.deflate = deflate  # permessage-deflate, when the handshake negotiated it
        self.reader = FrameReader(
            client=client,
            max_frame_size=max_frame_size,
            max_message_size=max_message_size,
            tag=RX,
            inflater=None if deflate is None else deflate.inflater,
        )
        # The closing handshake: what was sent and received (None: nothing yet).
        self.close_sent: CloseReason | None = None
        self.close_received: CloseReason | None = None
        # How the connection is ending or ended: the peer's Close reason (1005 for an
        # empty Close), the failure's reason, or 1006 when the transport dropped.
        self.close_reason: CloseReason | None = None
        self.failure: Violation | None = None  # the peer's violation, once found
        self.failure_error: SessionClosed | None = None  # the exception that describes it
        self.end: SessionClosed | None = None  # how it ended (set by receive_eof)
        self.should_close_transport = False
        self._failed = False
        self._tx_msg_cls: type[Frame] | None = None  # the fragmented message being sent
        self._tx_compressed = False  # ... and whether it is compressed
        self._mask_pool = b""
        self._mask_pos = _MASK_POOL
        self._out: list[bytes | memoryview] = []
        self._out_size = 0

    def __repr__(self) -> str:
        side = "client" if self.client else "server"
        return f"<Connection {side} {self.state.value}>"

    # -- state ---------------------------------------------------------------------------

    def _move(self, event: Event) -> None:
        try:
            self.state = TRANSITIONS[self.state, event]
        except KeyError:
            raise RuntimeError(f"no transition from {self.state.value} on {event.name}") from None

    def opened(self, deflate: PerMessageDeflate | None = None, passthrough: bool = False) -> None:
        """The opening handshake is done: CONNECTING -> OPEN, with permessage-deflate when
        the handshake negotiated it. `passthrough=True` (not automatic: a relay's
        `compression="passthrough"`): permessage-deflate was negotiated but is not applied
        here: rsv1 is accepted on a message's first frame, the payloads stay compressed
        (`frame.compressed` True, the raw bytes), and `send` sends what it is given (rsv1
        from the frame, nothing compressed); `deflate` is then ignored."""
        self._move(Event.OPENED)
        if passthrough:
            self.reader.use_inflater(RawInflater())
        elif deflate is not None:
            self.deflate = deflate
            self.reader.use_inflater(deflate.inflater)

    @property
    def closing_handshake_done(self) -> bool:
        """Both Close frames were exchanged."""
        return self.close_sent is not None and self.close_received is not None

    @property
    def sending_message(self) -> bool:
        """True while a fragmented message is being sent (its last frame not yet sent)."""
        return self._tx_msg_cls is not None

    @property
    def controls(self) -> int:
        """Control frames among those the last `receive_data` returned."""
        return self.reader.controls

    @property
    def limited(self) -> bool:
        """The last `receive_data` stopped at its `limit`: complete frames may still be
        buffered; `receive_data(b"", n)` returns them."""
        return self.reader.limited

    # -- receiving -----------------------------------------------------------------------

    def receive_data(self, data: bytes, limit: int | None = None) -> tuple[list[Frame], array[int], Violation | None]:
        """Feed received bytes. Returns the frames they complete, in order, their header
        codes (an `array("q")` of `frames.header_code`s: wire opcode, fin, rsv, length, the RX bit), and the
        peer's violation if one was found now (after which nothing more is accepted).

        At most `limit` frames are parsed (None: all); the rest stays buffered (see
        `limited`), except once a Close was sent, when every frame is returned so the
        peer's Close can arrive. A received Close moves the state. A violation is
        returned, not acted on: call `fail()`, at once or, when `failure_can_wait`,
        after the frames before it were handled.
        """
        reader = self.reader
        if self.close_sent is not None:
            limit = None
        frames, codes, violation = reader.feed(data, limit)
        if reader.controls:
            for code, frame in zip(codes, frames, strict=True):
                if code & 0x0F == 8:
                    self._on_close(frame)
        if violation is not None:
            self._on_violation(violation)
        return frames, codes, violation

    def received_into(self, n: int, limit: int | None = None) -> tuple[list[Frame], array[int], Violation | None]:
        """`receive_data` for `n` bytes a front end read straight into
        `reader.receive_buffer()` (while `reader.receiving_large`): the large frame once
        complete, or the peer's violation."""
        if self.close_sent is not None:
            limit = None
        frames, codes, violation = self.reader.received_into(n, limit)
        if violation is not None:
            self._on_violation(violation)
        return frames, codes, violation

    def _on_close(self, frame: Frame) -> None:
        if self.close_received is not None:
            return
        assert isinstance(frame, Close)
        reason = frame.read_reason() or CloseReason(1005, "")
        self.close_received = reason
        self.close_reason = reason
        self._move(Event.RECEIVE_CLOSE)
        if self.close_sent is not None:
            self._closing_handshake_done()

    def _on_violation(self, violation: Violation) -> None:
        self.failure = violation
        exc_cls = MessageTooBig if violation.code == 1009 else PeerProtocolError
        self.failure_error = exc_cls(
            CloseReason(violation.code, violation.reason), clean=False, detail="peer protocol violation"
        )

    @property
    def failure_can_wait(self) -> bool:
        """True when the violation found may wait for `fail()` until the frames received
        before it were handled (a framing violation); False when the connection must fail
        at once (`FAIL_AT_ONCE`: invalid UTF-8). See the module docstring."""
        return self.failure is not None and self.failure.code not in FAIL_AT_ONCE

    def fail(self) -> Close | None:
        """Fail the connection after the peer's violation: send a Close with its code
        (unless a Close was sent already) and ask for the transport to be closed.
        Returns the Close frame sent (to record it), or None. Does nothing without a
        violation, or when done already."""
        failure = self.failure
        if failure is None or self._failed or self.state is State.CLOSED:
            return None
        self._failed = True
        reason = CloseReason(failure.code, _truncate(failure.reason))
        if self.close_reason is None:
            self.close_reason = reason
        sent = None
        if self.close_sent is None and not self.should_close_transport:
            sent = Close(reason)
            self._write_close(sent.data, reason)
        self._move(Event.FAIL)
        self.should_close_transport = True
        return sent

    @property
    def failed(self) -> bool:
        """True once `fail()` acted (or the violation failed the connection at once)."""
        return self._failed

    def receive_eof(self, detail: str = "") -> Violation | None:
        """The transport ended (`detail`: why, if known). Moves to CLOSED and sets `end`
        (the `SessionClosed` that describes how). Returns the incomplete frame still
        buffered, as a 1006 `Violation` to record, or None. Call `receive_data(b"")`
        first to take complete frames still buffered because of a `limit`."""
        partial = self.reader.partial() if self.failure is None else None
        if self.state is not State.CLOSED:
            self._move(Event.END)
        if self.failure_error is not None:
            self._failed = True
            self.end = self.failure_error
        elif self.close_received is not None:
            self.end = SessionClosed(self.close_received, clean=True)
        else:
            why = "connection dropped without a Close frame"
            if detail:
                why += f": {detail}"
            reason = CloseReason(1006, why)
            if self.close_reason is None:
                self.close_reason = reason
            self.end = SessionClosed(reason, clean=False)
        return partial

    def end_exception(self) -> SessionClosed:
        """What a send on an ended (or ending) connection raises."""
        if self.end is not None:
            return self.end
        if self.failure_error is not None and self._failed:
            return self.failure_error
        return SessionClosed(self.close_reason or CloseReason(1006, ""), detail="the connection is closed")

    # -- sending -------------------------------------------------------------------------

    def send(self, frame: Frame, compress: bool = True) -> int:
        """Check `frame` and append its wire bytes. With permessage-deflate negotiated, a
        data message is compressed unless `compress=False` (decided at its first frame;
        its fragments continue the compressed stream; rsv1 goes on the first frame only).
        Returns its header code (`frames.header_code`: wire opcode, fin,
        rsv, length), the form the recorder stores.

        Data frames continue an unfinished message as CONTINUATION frames; control
        frames must be whole and at most 125 bytes; a Close's code must be sendable;
        nothing may follow a Close. Raises `InvalidSend` for a frame that breaks a rule
        (use `send_raw` to send it anyway), `SessionClosed` once the connection ended or
        is being closed.
        """
        cls = type(frame)
        state = self.state
        if (state is not _OPEN and state is not _CLOSING) or self.should_close_transport:
            if state is State.CONNECTING:
                raise InvalidSend("the connection is not open yet (the opening handshake is not done)")
            raise self.end_exception()
        if self.close_sent is not None:
            raise InvalidSend("a Close frame was already sent; use send_raw to send frames after it")
        opcode = frame.type
        payload = frame.data
        fin = frame.fin
        wire: int = opcode
        compressed = False
        if opcode < 8:
            current = self._tx_msg_cls
            if current is None:
                compressed = self._tx_compressed = compress and self.deflate is not None
            elif current is cls:
                compressed = self._tx_compressed
                wire = 0
            else:
                raise InvalidSend(
                    f"a fragmented {current.type.name} message is unfinished: send {current.__name__} frames "
                    "until fin=True (or use send_raw)"
                )
            self._tx_msg_cls = None if fin else cls
        else:
            _check_control(opcode, payload, fin)
        b0 = (0x80 if fin else 0) | wire
        rsv = frame.rsv
        if rsv:
            b0 |= rsv << 4
        if opcode == 8:
            self._write_close(payload, _close_reason(payload), b0)
        elif compressed:
            assert self.deflate is not None
            payload = self.deflate.deflater.compress(payload, fin)
            if wire:
                b0 |= 0x40  # rsv1: this message is compressed
            self._write_frame(b0, payload)
            return len(payload) << 16 | COMPRESSED | b0
        else:
            self._write_frame(b0, payload)
        return len(payload) << 16 | b0

    def send_data(self, opcode: int, payload: bytes, compress: bool = True) -> int:
        """`send(make_frame(FRAME_CLASSES[opcode], payload), compress)`: one whole frame
        of the type `opcode` (1-2, 8-10). Same rules, same result, same exceptions; a
        whole Text or Binary message on an open connection skips building the frame
        (the request-response hot path)."""
        if (
            self.state is _OPEN
            and (opcode == 1 or opcode == 2)
            and self._tx_msg_cls is None
            and (self.deflate is None or not compress)
        ):
            # Open (so no Close either way), no fragmented message being sent, nothing to compress.
            b0 = 0x80 | opcode
            self._write_frame(b0, payload)
            return len(payload) << 16 | b0
        return self.send(make_frame(FRAME_CLASSES[opcode], payload), compress)

    def _write_close(self, payload: bytes, reason: CloseReason, b0: int = 0x88) -> None:
        self._write_frame(b0, payload)
        self.close_sent = reason
        self._move(Event.SEND_CLOSE)
        if self.close_received is not None:
            self._closing_handshake_done()

    def _closing_handshake_done(self) -> None:
        if not self.client:
            self.should_close_transport = True  # RFC 6455 7.1.1: the server closes TCP first

    def send_raw(self, data: bytes | bytearray | memoryview) -> None:
        """Append `data` to the bytes to send, as they are: crafted frames, valid or not.
        Nothing is checked and no state changes (a Close sent this way does not count
        as the closing handshake's)."""
        state = self.state
        if state is State.CONNECTING:
            raise InvalidSend("the connection is not open yet (the opening handshake is not done)")
        if state is State.CLOSED or self.should_close_transport:
            raise self.end_exception()
        self._out.append(bytes(data))
        self._out_size += len(data)

    def _write_frame(self, b0: int, payload: bytes) -> None:
        n = len(payload)
        out = self._out
        if self.client:
            pos = self._mask_pos
            if pos >= _MASK_POOL:
                self._mask_pool = os.urandom(_MASK_POOL)
                pos = 0
            self._mask_pos = pos + 4
            if n <= _MASK_SLICE:
                whole = masked_frame(b0, payload, self._mask_pool, pos)
                out.append(whole)
                self._out_size += len(whole)
            else:
                mask = self._mask_pool[pos : pos + 4]
                head = header_bytes(b0, n, mask)
                # Slice by slice (each starts at a multiple of 4, so the key applies as is):
                # the front end can write the first slices while it takes the rest.
                view = memoryview(payload)
                out.append(apply_mask(view[:_MASK_SLICE], mask, head))
                for start in range(_MASK_SLICE, n, _MASK_SLICE):
                    out.append(apply_mask(view[start : start + _MASK_SLICE], mask))
                self._out_size += len(head) + n
        else:
            head = header_bytes(b0, n)
            if n < 65536:
                out.append(head + payload)
            else:
                out.append(head)
                out.append(payload)
            self._out_size += len(head) + n

    def deflate_payload(self, data: bytes, fin: bool = True) -> bytes:
        """Compress `data` with this side's own compression context, as `send` would (for
        crafting frames for `send_raw` that continue the context). Raises `InvalidSend`
        when permessage-deflate was not negotiated."""
        if self.deflate is None:
            raise InvalidSend("permessage-deflate was not negotiated on this connection")
        return self.deflate.deflater.compress(data, fin)

    @property
    def bytes_to_send(self) -> int:
        """Bytes appended and not yet taken by `data_to_send`."""
        return self._out_size

    def data_to_send(self) -> list[bytes | memoryview]:
        """Take the bytes to write, in order (buffers to write one after the other)."""
        out = self._out
        if out:
            self._out = []
            self._out_size = 0
        return out


def _check_control(opcode: int, payload: bytes, fin: bool) -> None:
    if len(payload) > CONTROL_MAX:
        raise InvalidSend(f"control frame payload of {len(payload)} bytes (max 125); use send_raw to send it")
    if not fin:
        raise InvalidSend("control frames cannot be fragmented; use send_raw to send one")
    if opcode == 8:
        if len(payload) == 1:
            raise InvalidSend("a Close payload cannot be 1 byte; use send_raw to send one")
        if len(payload) >= 2:
            code = int.from_bytes(payload[:2], "big")
            if not is_valid_close_code(code):
                raise InvalidSend(f"close code {code} may not be sent; use send_raw to send it")


def _close_reason(payload: bytes) -> CloseReason:
    if len(payload) >= 2:
        return CloseReason(int.from_bytes(payload[:2], "big"), payload[2:].decode("utf-8", "replace"))
    return CloseReason(1005, "")


def _truncate(reason: str, limit: int = 123) -> str:
    """`reason` cut to at most `limit` UTF-8 bytes (a Close reason fits in 123)."""
    return reason.encode("utf-8")[:limit].decode("utf-8", "ignore")
