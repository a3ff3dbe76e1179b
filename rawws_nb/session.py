"""`RawSession`: one WebSocket connection where nothing happens behind your back.

The engine is an asyncio `Protocol` on the loop that opened the session; it keeps
reading while no cell runs. What it does NOT do, on purpose:

* no automatic Pong: a peer's Ping is delivered to `incoming` and recorded, nothing more;
* no automatic Ping or keep-alive of any kind;
* no automatic Close reply: a peer's Close is delivered; answer it with `close()`.

What it does do: validate what the peer sends (RFC 6455) and fail the connection on a
violation (1002/1007/1009, recorded in the timeline, raised from `incoming`), bound
`incoming` (reading pauses when `max_queue` frames wait: TCP back-pressure), mask what a
client sends, record every frame both ways.
"""

from __future__ import annotations

import asyncio
import enum
import os
import time
from collections import deque
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from .errors import InvalidSend, MessageTooBig, PeerProtocolError, SessionClosed
from .frames import Binary, Close, CloseReason, Frame, Ping, Text, is_valid_close_code, make_frame
from .timeline.recorder import DEFAULT_CAPACITY, DEFAULT_PAYLOAD_CAP, RX, TX, Recorder
from .wire import CONTROL_MAX, FrameReader, Violation, apply_mask

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Incoming", "RawSession", "SessionState"]

DEFAULT_MAX_MESSAGE_SIZE = 1 << 20  # 1 MiB, as the websockets library
DEFAULT_MAX_QUEUE = 256  # frames waiting in `incoming` before reading pauses
DEFAULT_CLOSE_TIMEOUT = 10.0

_time_ns = time.time_ns
_perf = time.perf_counter
_MASK_POOL = 4096
_DIRECT_WRITE = 16384
_CORK_LIMIT = 65536
_MASK_SLICE = 1 << 20


_FAILURE = object()  # marks, in `incoming`, where a peer violation was detected


class SessionState(enum.Enum):
    CONNECTING = "CONNECTING"
    OPEN = "OPEN"
    CLOSING = "CLOSING"
    CLOSED = "CLOSED"


class Incoming:
    """The frames received, in order: `await receive()`, or `async for frame in ...`.

    Bounded: when `max_queue` frames wait here, the session stops reading the socket
    until you consume (TCP back-pressure on the peer; `session.reading_paused` says
    so). When the session ends, the frames already received are still delivered; then
    `receive()` raises `SessionClosed` (or `PeerProtocolError` after a violation), and
    `async for` ends quietly after a clean close and raises otherwise.
    """

    __slots__ = ("_end", "_queue", "_session", "_waiters")

    def __init__(self, session: RawSession) -> None:
        self._session = session
        self._queue: deque[Frame] = deque()
        self._waiters: list[asyncio.Future[None]] = []
        self._end: SessionClosed | None = None

    def __len__(self) -> int:
        """Frames waiting (the marker of a pending peer violation is not a frame)."""
        queue = self._queue
        return len(queue) - (1 if queue and queue[-1] is _FAILURE else 0)

    @property
    def closed(self) -> bool:
        """True once the session ended and every received frame was consumed."""
        return self._end is not None and not self._queue

    async def receive(self) -> Frame:
        """The next frame; waits for one."""
        queue = self._queue
        while not queue:
            if self._end is not None:
                raise self._end
            waiter = self._session._loop.create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        frame = queue.popleft()
        if frame is _FAILURE:
            self._session._fail_now()
            raise self._end  # type: ignore[misc]
        session = self._session
        if session._reading_paused and len(queue) <= session._resume_at:
            session._resume_reading()
        return frame

    def receive_nowait(self) -> Frame | None:
        """The next frame if one is waiting, else None (raises once the session ended)."""
        if self._queue:
            frame = self._queue.popleft()
            if frame is _FAILURE:
                self._session._fail_now()
                raise self._end  # type: ignore[misc]
            session = self._session
            if session._reading_paused and len(self._queue) <= session._resume_at:
                session._resume_reading()
            return frame
        if self._end is not None:
            raise self._end
        return None

    def __aiter__(self) -> Incoming:
        return self

    async def __anext__(self) -> Frame:
        try:
            return await self.receive()
        except SessionClosed as exc:
            if exc.clean:
                raise StopAsyncIteration from None
            raise

    def _wake(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    def _finish(self, end: SessionClosed) -> None:
        if self._end is None:
            self._end = end
        self._wake()


class RawSession:
    """A raw WebSocket session (client or server side). Open one with
    `web_socket_raw_session` / `web_socket_raw` / `ws_raw` / `wss_raw`."""

    def __init__(
        self,
        *,
        client: bool = True,
        url: str = "",
        max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE,
        max_frame_size: int | None = None,
        max_queue: int = DEFAULT_MAX_QUEUE,
        close_timeout: float | None = DEFAULT_CLOSE_TIMEOUT,
        record: bool = True,
        timeline_capacity: int = DEFAULT_CAPACITY,
        payload_cap: int = DEFAULT_PAYLOAD_CAP,
        protocol: Any = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self._loop = loop or asyncio.get_running_loop()
        self.client = client
        self.url = url
        self.subprotocol: str | None = None
        self.request_headers: list[tuple[str, str]] = []
        self.response_headers: list[tuple[str, str]] = []
        self.state = SessionState.CONNECTING
        self.close_reason: CloseReason | None = None
        self.max_queue = max(1, int(max_queue))
        self._resume_at = self.max_queue // 4
        self.close_timeout = close_timeout
        if max_frame_size is None:
            max_frame_size = max_message_size
        self._reader = FrameReader(
            client=client, max_frame_size=max_frame_size, max_message_size=max_message_size, tag=RX
        )
        self.started_at = _time_ns()
        self._recorder: Recorder | None = (
            Recorder(timeline_capacity, payload_cap, t0=self.started_at) if record else None
        )
        self.incoming = Incoming(self)
        self._queue = self.incoming._queue
        self._transport: asyncio.Transport | None = None
        self._cork: list[bytes] | None = None  # writes batched until the loop's next turn
        self._cork_bytes = 0
        self._close_sent: CloseReason | None = None
        self._close_received = False
        self._peer_close: asyncio.Future[None] = self._loop.create_future()
        self._lost: asyncio.Future[None] = self._loop.create_future()
        self._reading_paused = False
        self._write_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._ping_waiters: dict[bytes, list[tuple[asyncio.Future[float], float]]] = {}
        self._ping_seq = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._tx_msg_cls: type[Frame] | None = None
        self._mask_pool = b""
        self._mask_pos = _MASK_POOL
        self._violation: Violation | None = None
        self._failure: SessionClosed | None = None
        self._fail_handle: asyncio.TimerHandle | None = None
        self._failed = False
        self._abort_handle: asyncio.TimerHandle | None = None
        self.protocol: Any = None
        self._protocol_version: Any = None
        if protocol is not None:
            self.set_protocol(protocol)

    # -- public API -----------------------------------------------------------------

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop this session lives on."""
        return self._loop

    @property
    def reading_paused(self) -> bool:
        """True while reading is paused because `incoming` is full (back-pressure)."""
        return self._reading_paused

    @property
    def timeline(self) -> pd.DataFrame:
        """Every frame so far, both directions, as a DataFrame (built now)."""
        if self._recorder is None:
            from .timeline import empty_timeline

            return empty_timeline()
        return self._recorder.to_dataframe()

    @property
    def recorder(self) -> Recorder | None:
        """The live recorder (None when the session was opened with `record=False`)."""
        return self._recorder

    @property
    def timeline_dropped(self) -> int:
        """Frames that fell out of the timeline because of `timeline_capacity`."""
        return self._recorder.dropped if self._recorder is not None else 0

    def save_timeline(self, path: Any, **options: Any) -> Any:
        """Save the timeline as Parquet with this session's metadata (URL, subprotocol,
        start time); read it back with `rawws_nb.read_timeline`."""
        from .timeline import save_timeline

        return save_timeline(self, path, **options)

    def set_protocol(self, protocol: Any, version: Any = None) -> None:
        """Decode Binary frames in the timeline with a codec `Protocol` from now on."""
        self.protocol = protocol
        self._protocol_version = version
        if self._recorder is not None:
            self._recorder.set_codec(protocol, version)

    @property
    def protocol_version(self) -> Any:
        """The negotiated codec version (set by `rawws_nb.codec.negotiate`)."""
        return self._protocol_version

    @protocol_version.setter
    def protocol_version(self, version: Any) -> None:
        self._protocol_version = version
        if version is not None and self._recorder is not None and self.protocol is not None:
            self._recorder.set_codec(self.protocol, version)

    async def send(self, frame: Frame | str | bytes) -> None:
        """Send one frame as given (`str` -> Text, `bytes` -> Binary).

        Data frames continue an unfinished message as CONTINUATION frames; control
        frames must be whole and at most 125 bytes, Close codes must be valid: for
        anything invalid on purpose, use `send_raw`. Waits only while the transport's
        write buffer is full.
        """
        self._send_frame(frame)
        if self._write_paused:
            await self._wait_drain()

    async def send_raw(self, data: bytes) -> None:
        """Write `data` to the socket as-is (crafted frames, valid or not) and record
        the frames it contains (best effort: a partial frame is recorded as such)."""
        self._require_transport()
        data = bytes(data)
        self._write(data)
        if self._recorder is not None:
            self._record_raw(data)
        if self._write_paused:
            await self._wait_drain()

    async def ping(self, payload: bytes | str | None = None, timeout: float | None = None) -> float:
        """Send a Ping and wait for the Pong with the same payload; returns the round trip
        in seconds. Every frame, the Pong included, still reaches `incoming` and the
        timeline. Raises `TimeoutError` after `timeout`, `SessionClosed` if the session ends."""
        if payload is None:
            self._ping_seq += 1
            payload = b"rawws-%d" % self._ping_seq
        elif isinstance(payload, str):
            payload = payload.encode("utf-8")
        future: asyncio.Future[float] = self._loop.create_future()
        start = _perf()
        waiters = self._ping_waiters.setdefault(payload, [])
        entry = (future, start)
        waiters.append(entry)
        try:
            self._send_frame(Ping(payload))
            if timeout is None:
                return await future
            return await asyncio.wait_for(future, timeout)
        finally:
            if entry in waiters:
                waiters.remove(entry)
            if not waiters and self._ping_waiters.get(payload) is waiters:
                del self._ping_waiters[payload]

    def launch(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run `coro` as a task bound to the session: cancelled when the session ends."""
        task = self._loop.create_task(coro)
        if self.state is SessionState.CLOSED:
            task.cancel()
            return task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self, reason: CloseReason | None = None) -> None:
        """Close the session: send a Close (unless one was sent) and wait, at most
        `close_timeout`, for the peer's Close and the end of the connection.

        Without `reason`: NORMAL (1000), or, when the peer closed first, its own code.
        """
        if self.state is SessionState.CLOSED:
            return
        # A launched task that closes the session is not cancelled by the end it causes.
        self._tasks.discard(asyncio.current_task())  # type: ignore[arg-type]
        if self._close_sent is None and self._transport is not None:
            if reason is None:
                peer = self.close_reason
                reason = (
                    CloseReason(peer.code)
                    if self._close_received and peer is not None and is_valid_close_code(peer.code)
                    else CloseReason(CloseReason.Codes.NORMAL)
                )
            try:
                self._send_frame(Close(reason))
            except SessionClosed:
                pass
        await self._finish_close()

    async def wait_closed(self) -> CloseReason | None:
        """Wait until the connection has ended; returns `close_reason`."""
        await asyncio.shield(self._lost)
        return self.close_reason

    # -- the sync facade (rawws_nb.sync): for callbacks and scripts that don't await ----

    def send_sync(self, frame: Frame | str | bytes, timeout: float | None = None) -> None:
        """`send` from any thread (see `rawws_nb.sync`)."""
        from . import sync

        return sync.send_sync(self, frame, timeout)

    def send_raw_sync(self, data: bytes, timeout: float | None = None) -> None:
        """`send_raw` from any thread."""
        from . import sync

        return sync.send_raw_sync(self, data, timeout)

    def receive_sync(self, timeout: float | None = None) -> Frame:
        """`incoming.receive()` from any thread."""
        from . import sync

        return sync.receive_sync(self, timeout)

    def ping_sync(self, payload: bytes | str | None = None, timeout: float | None = 5.0) -> float:
        """`ping` from any thread."""
        from . import sync

        return sync.ping_sync(self, payload, timeout)

    def close_sync(self, reason: CloseReason | None = None, timeout: float | None = None) -> None:
        """`close` from any thread."""
        from . import sync

        return sync.close_sync(self, reason, timeout)

    def __repr__(self) -> str:
        role = "client" if self.client else "server"
        extra = ""
        if self.close_reason is not None:
            extra = f" close={self.close_reason.code}"
        if self._reading_paused:
            extra += " reading-paused"
        return f"<RawSession {role} {self.url} {self.state.value} queued={len(self._queue)}{extra}>"

    def _repr_html_(self) -> str:
        import html

        colour = {"OPEN": "#2a2", "CLOSING": "#c80", "CLOSED": "#888", "CONNECTING": "#48c"}[self.state.value]
        rec = self._recorder
        frames = f"{rec.total} frames recorded" if rec is not None else "recording off"
        bits = [
            f"<b style='color:{colour}'>{self.state.value}</b>",
            html.escape(self.url),
            frames,
            f"{len(self._queue)} waiting in incoming",
        ]
        if self.subprotocol:
            bits.append(f"subprotocol {html.escape(self.subprotocol)}")
        if self.close_reason is not None:
            bits.append(html.escape(f"close {self.close_reason.code} {self.close_reason.message!r}"))
        if self._reading_paused:
            bits.append("<b>reading paused (incoming full)</b>")
        return "<div class='rawws-session'>RawSession: " + " · ".join(bits) + "</div>"

    # -- sending --------------------------------------------------------------------

    def _require_transport(self) -> asyncio.Transport:
        transport = self._transport
        if transport is None or self.state is SessionState.CLOSED or transport.is_closing():
            raise self._end_exception()
        return transport

    def _end_exception(self) -> SessionClosed:
        end = self.incoming._end
        if end is not None:
            return end
        return SessionClosed(self.close_reason or CloseReason(1006, ""), detail="the connection is closed")

    def _send_frame(self, frame: Frame | str | bytes) -> None:
        cls = type(frame)
        if cls is str:
            frame = make_frame(Text, frame.encode("utf-8"))  # type: ignore[union-attr]
            cls = Text
        elif cls is bytes or cls is bytearray or cls is memoryview:
            frame = make_frame(Binary, bytes(frame))  # type: ignore[arg-type]
            cls = Binary
        elif not isinstance(frame, Frame):
            raise TypeError(f"send() takes a Frame, str or bytes, not {cls.__name__}")
        self._require_transport()
        opcode = cls.type  # type: ignore[union-attr]
        payload = frame.data  # type: ignore[union-attr]
        fin = frame.fin  # type: ignore[union-attr]
        if self._close_sent is not None:
            raise InvalidSend("a Close frame was already sent; use send_raw to send frames after it")
        if opcode < 8:
            current = self._tx_msg_cls
            if current is None:
                wire = opcode
            elif current is cls:
                wire = 0
            else:
                raise InvalidSend(
                    f"a fragmented {current.type.name} message is unfinished: send {current.__name__} frames "
                    "until fin=True (or use send_raw)"
                )
            self._tx_msg_cls = None if fin else cls
        else:
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
                    reason = payload[2:].decode("utf-8", "replace")
                else:
                    code, reason = 1005, ""
                self._close_sent = CloseReason(code, reason)
                if self.state is SessionState.OPEN:
                    self.state = SessionState.CLOSING
            wire = opcode
        b0 = (0x80 if fin else 0) | wire
        if frame.rsv1 or frame.rsv2 or frame.rsv3:  # type: ignore[union-attr]
            b0 |= frame.rsv1 << 6 | frame.rsv2 << 5 | frame.rsv3 << 4  # type: ignore[union-attr]
        stamp = self._cork is None  # the first write of this loop turn
        self._write_frame(b0, payload)
        rec = self._recorder
        if rec is not None:
            # Recorder.stage_tx, inlined: this is the send path's only recording cost.
            if stamp:
                rec._tpos.append(len(rec._stage))
                rec._tval.append(_time_ns())
            n = len(payload)
            rec._stage.append(n << 16 | b0)
            kept = rec._payload
            kept.append(payload if n <= rec.payload_cap or opcode >= 8 else payload[: rec.payload_cap])
            if len(kept) > rec.capacity:
                rec._trim()
        if opcode == 8:
            self._after_close_sent()

    def _write_frame(self, b0: int, payload: bytes) -> None:
        n = len(payload)
        write = self._write
        if self.client:
            pos = self._mask_pos
            if pos >= _MASK_POOL:
                self._mask_pool = os.urandom(_MASK_POOL)
                pos = 0
            self._mask_pos = pos + 4
            mask = self._mask_pool[pos : pos + 4]
            if n < 126:
                head = bytes((b0, 0x80 | n)) + mask
            elif n < 65536:
                head = bytes((b0, 254, n >> 8, n & 0xFF)) + mask
            else:
                head = bytes((b0, 255)) + n.to_bytes(8, "big") + mask
            if n <= _MASK_SLICE:
                write(apply_mask(payload, mask, head))
            else:
                # Mask and write slice by slice (each starts at a multiple of 4, so the
                # same key applies): the first bytes are on the wire while the rest is
                # still being masked.
                view = memoryview(payload)
                write(apply_mask(view[:_MASK_SLICE], mask, head))
                for start in range(_MASK_SLICE, n, _MASK_SLICE):
                    write(apply_mask(view[start : start + _MASK_SLICE], mask))
        else:
            if n < 126:
                head = bytes((b0, n))
            elif n < 65536:
                head = bytes((b0, 126, n >> 8, n & 0xFF))
            else:
                head = bytes((b0, 127)) + n.to_bytes(8, "big")
            if n < 65536:
                write(head + payload)
            else:
                write(head)
                write(payload)

    def _write(self, data: bytes | memoryview) -> None:
        """Write to the transport, batching: the first write of a loop turn goes out at
        once (no added latency), later ones in the same turn are joined and written at
        the next turn, or as soon as they reach `_CORK_LIMIT` bytes (so the transport's
        flow control, `pause_writing`, still sees them). Large writes are never copied
        into the batch."""
        cork = self._cork
        if cork is None:
            self._transport.write(data)  # type: ignore[union-attr]
            self._cork = []
            self._cork_bytes = 0
            self._loop.call_soon(self._uncork)
        elif len(data) >= _DIRECT_WRITE:
            if cork:
                self._transport.write(b"".join(cork))  # type: ignore[union-attr]
                cork.clear()
                self._cork_bytes = 0
            self._transport.write(data)  # type: ignore[union-attr]
        else:
            cork.append(data)  # type: ignore[arg-type]
            self._cork_bytes += len(data)
            if self._cork_bytes >= _CORK_LIMIT:
                self._transport.write(b"".join(cork))  # type: ignore[union-attr]
                cork.clear()
                self._cork_bytes = 0

    def _uncork(self) -> None:
        cork = self._cork
        self._cork = None
        if cork:
            transport = self._transport
            if transport is not None and not transport.is_closing():
                transport.write(cork[0] if len(cork) == 1 else b"".join(cork))

    def _close_transport(self) -> None:
        """Close the TCP connection after everything written so far."""
        self._uncork()
        if self._transport is not None:
            self._transport.close()

    def _record_raw(self, data: bytes) -> None:
        """Record crafted bytes frame by frame, without judging them."""
        rec = self._recorder
        assert rec is not None
        t = _time_ns()
        pos, end = 0, len(data)
        while pos < end:
            b0 = data[pos]
            if end - pos < 2:
                rec.add_error(t, TX | b0, data[pos:], end - pos, None, "send_raw: incomplete frame header")
                return
            b1 = data[pos + 1]
            length, head = b1 & 0x7F, 2
            if length == 126:
                length, head = int.from_bytes(data[pos + 2 : pos + 4], "big"), 4
            elif length == 127:
                length, head = int.from_bytes(data[pos + 2 : pos + 10], "big"), 10
            key = None
            if b1 & 0x80:
                key = data[pos + head : pos + head + 4]
                head += 4
            body = data[pos + head : pos + head + length]
            if key is not None and len(key) == 4:
                body = bytes(apply_mask(body, key))
            if pos + head + length > end or pos + head > end:
                rec.add_error(
                    t, TX | b0, body, length, None, f"send_raw: incomplete frame ({end - pos} bytes sent)"
                )
                return
            rec.add(t, TX | b0, body)
            pos += head + length

    def _pause_writing(self) -> None:
        self._write_paused = True

    def _resume_writing(self) -> None:
        self._write_paused = False
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._drain_waiters.clear()

    async def _wait_drain(self) -> None:
        if self.state is SessionState.CLOSED:
            raise self._end_exception()
        waiter = self._loop.create_future()
        self._drain_waiters.append(waiter)
        await waiter

    # -- receiving ------------------------------------------------------------------

    def _attach(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self.state = SessionState.OPEN

    def _on_data(self, data: bytes) -> None:
        reader = self._reader
        frames, codes, violation = reader.feed(data)
        if frames:
            queue = self._queue
            if self._recorder is not None:
                self._recorder.stage_rx(_time_ns(), codes, frames)
            if reader.controls:
                for code, frame in zip(codes, frames, strict=True):
                    if code & 8:
                        self._on_control(code & 0x0F, frame)
                    queue.append(frame)
            else:
                queue.extend(frames)
            if self.incoming._waiters:
                self.incoming._wake()
            if len(queue) >= self.max_queue and not self._reading_paused:
                self._pause_reading()
        if violation is not None:
            self._fail(violation)

    def _on_control(self, wire: int, frame: Frame) -> None:
        if wire == 10:
            waiters = self._ping_waiters.get(frame.data)
            if waiters:
                now = _perf()
                for future, start in waiters:
                    if not future.done():
                        future.set_result(now - start)
        elif wire == 8:
            self._on_close_frame(frame)  # type: ignore[arg-type]

    def _on_close_frame(self, frame: Close) -> None:
        if self._close_received:
            return
        self._close_received = True
        self.close_reason = frame.read_reason() or CloseReason(1005, "")
        if self.state is SessionState.OPEN:
            self.state = SessionState.CLOSING
        if not self._peer_close.done():
            self._peer_close.set_result(None)
        if self._close_sent is not None:
            self._handshake_complete()

    def _after_close_sent(self) -> None:
        if self._close_received:
            self._handshake_complete()
        elif self._reading_paused:
            self._resume_reading()  # the peer's Close must be able to arrive

    def _handshake_complete(self) -> None:
        """Both Close frames are exchanged: the server closes TCP; the client waits for
        that, at most `close_timeout`."""
        transport = self._transport
        if transport is None:
            return
        if not self.client:
            self._close_transport()
        elif self.close_timeout is not None and self._abort_handle is None:
            self._abort_handle = self._loop.call_later(self.close_timeout, transport.abort)

    def _pause_reading(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._reading_paused = True
            self._transport.pause_reading()

    def _resume_reading(self) -> None:
        self._reading_paused = False
        if self._transport is not None and not self._transport.is_closing():
            self._transport.resume_reading()

    def _fail(self, violation: Violation) -> None:
        """A peer violation (RFC 6455 7.1.7), recorded now.

        Invalid UTF-8 (1007) fails the connection at once: the message it belongs to is
        invalid, so nothing should answer its earlier fragments. Framing violations
        (1002, 1009) fail when the consumer reaches them in `incoming`, so the frames
        that came before are delivered and can still be answered (or after
        `close_timeout` if nobody reads)."""
        self._violation = violation
        if self._recorder is not None:
            op = violation.opcode if violation.opcode is not None else 0
            code = RX | (op & 0x0F) | (0x80 if violation.fin else 0) | ((violation.rsv & 7) << 4)
            self._recorder.add_error(
                _time_ns(),
                code,
                violation.payload,
                violation.length or 0,
                None,
                f"{violation.reason} (failing with {violation.code})",
            )
        exc_cls = MessageTooBig if violation.code == 1009 else PeerProtocolError
        self._failure = exc_cls(
            CloseReason(violation.code, violation.reason), clean=False, detail="peer protocol violation"
        )
        if self._queue and violation.code != 1007:
            self._queue.append(_FAILURE)  # type: ignore[arg-type]
            self._fail_handle = self._loop.call_later(self.close_timeout or 0, self._fail_now)
        else:
            self._fail_now()

    def _fail_now(self) -> None:
        """Fail the connection: send Close with the violation's code, close TCP."""
        failure = self._failure
        if failure is None or self._failed:
            return
        self._failed = True
        if self._fail_handle is not None:
            self._fail_handle.cancel()
        self.incoming._finish(failure)
        transport = self._transport
        if self._close_sent is None and transport is not None and not transport.is_closing():
            reason = failure.reason.message.encode("utf-8")[:123].decode("utf-8", "ignore")
            try:
                self._send_frame(Close(CloseReason(failure.code, reason)))
            except SessionClosed:
                pass
        self._close_transport()

    def _connection_lost(self, exc: BaseException | None) -> None:
        self.state = SessionState.CLOSED
        if self._abort_handle is not None:
            self._abort_handle.cancel()
        partial = self._reader.partial() if self._violation is None else None
        if partial is not None and self._recorder is not None:
            op = partial.opcode or 0
            code = RX | op | (0x80 if partial.fin else 0) | (partial.rsv << 4)
            self._recorder.add_error(
                _time_ns(), code, partial.payload, partial.length or 0, None, partial.reason
            )
        if self._fail_handle is not None:
            self._fail_handle.cancel()
        if self._failure is not None:
            end = self._failure
            self._failed = True
        elif self._close_received:
            end = SessionClosed(self.close_reason or CloseReason(1005, ""), clean=True)
        else:
            why = "connection dropped without a Close frame"
            if exc is not None:
                why += f": {exc}"
            if self.close_reason is None:
                self.close_reason = CloseReason(1006, why)
            end = SessionClosed(CloseReason(1006, why), clean=False)
        self.incoming._finish(end)
        if not self._lost.done():
            self._lost.set_result(None)
        if not self._peer_close.done():
            self._peer_close.set_result(None)
        for waiters in self._ping_waiters.values():
            for future, _ in waiters:
                if not future.done():
                    future.set_exception(self.incoming._end or end)
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_exception(self.incoming._end or end)
        self._drain_waiters.clear()
        for task in list(self._tasks):
            task.cancel()

    async def _finish_close(self) -> None:
        transport = self._transport
        if transport is None:
            return
        try:
            async with asyncio.timeout(self.close_timeout):
                await asyncio.shield(self._peer_close)
                if self.client:
                    await asyncio.shield(self._lost)
        except TimeoutError:
            transport.abort()
        if not transport.is_closing():
            self._close_transport()
        try:
            async with asyncio.timeout(1.0):
                await asyncio.shield(self._lost)
        except TimeoutError:
            transport.abort()


class _SessionProtocol(asyncio.Protocol):
    """Adapter from asyncio's callbacks to a `RawSession` (after the handshake)."""

    def __init__(self, session: RawSession) -> None:
        self.session = session
        self.data_received = session._on_data  # type: ignore[method-assign]

    def connection_lost(self, exc: BaseException | None) -> None:
        self.session._connection_lost(exc)

    def eof_received(self) -> bool | None:
        return None

    def pause_writing(self) -> None:
        self.session._pause_writing()

    def resume_writing(self) -> None:
        self.session._resume_writing()
