"""`RawSession`: one WebSocket connection where nothing happens behind your back.

The session is the asyncio front end of the sans-IO core (`rawws_nb.connection`): the
core holds the protocol's rules and state; the session adds the transport, back-pressure,
futures, timers, `incoming` and recording, on the event loop that opened it (it keeps
reading while no cell runs). What it does NOT do, on purpose:

* no automatic Pong: a peer's Ping is delivered to `incoming` and recorded, nothing more;
* no automatic Ping or keep-alive of any kind;
* no automatic Close reply: a peer's Close is delivered; answer it with `close()`.

What it does do: validate what the peer sends (RFC 6455) and fail the connection on a
violation (1002/1007/1009, recorded in the timeline, raised from `incoming`), bound
`incoming` (at `max_queue` frames waiting it stops parsing and pauses reading: TCP
back-pressure), mask what a client sends, record every frame both ways.

Front ends hand a connected transport over with `attach(transport, data)` once the
opening handshake is done (see `rawws_nb.connect` and `rawws_nb.server`).
"""

from __future__ import annotations

import asyncio
import asyncio.selector_events
import importlib
import os
import time
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any

from .connection import DEFAULT_MAX_MESSAGE_SIZE, Connection, State
from .deflate import DeflateParams, PerMessageDeflate
from .errors import InvalidSend, SessionClosed
from .frames import (
    AUTOMATIC,
    FRAME_CLASSES,
    RX,
    TX,
    Close,
    CloseReason,
    Frame,
    FrameType,
    Ping,
    Pong,
    header_code,
    is_valid_close_code,
)
from .handshake_info import HandshakeInfo
from .loops import run_sync
from .timeline.recorder import DEFAULT_CAPACITY, DEFAULT_PAYLOAD_CAP, Recorder, codec_decoder
from .wire import Violation, split_frames

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "DEFAULT_CLOSE_TIMEOUT",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "DEFAULT_MAX_QUEUE",
    "Incoming",
    "RawSession",
    "SessionState",
]

SessionState = State  # CONNECTING, OPEN, CLOSING, CLOSED: the core's state, read as is

DEFAULT_MAX_QUEUE = 256  # frames waiting in `incoming` before reading pauses
DEFAULT_CLOSE_TIMEOUT = 10.0

_time_ns = time.time_ns
_perf = time.perf_counter
_DIRECT_WRITE = 16384  # a frame this large is written at once, never joined into a batch
_CORK_LIMIT = 4096  # a batch of small frames is written once it reaches this size (the peer starts early)

_LANE_MAX_SEND = 65535  # the largest message the compiled lane sends itself (the rest: `_send_nowait`)

# The compiled per-frame path (`rawws_nb._speedups.Lane`), when built and not turned off.
_Lane: Any = None
if not os.environ.get("RAWWS_NB_PURE"):
    try:
        _Lane = importlib.import_module("rawws_nb._speedups").Lane
    except (ImportError, AttributeError):
        pass
# asyncio's own plain TCP transport: the lane writes straight to its socket, as it would.
_PLAIN_TCP: Any = getattr(asyncio.selector_events, "_SelectorSocketTransport", None)

_FAILURE: Any = object()  # marks, in `incoming`, where a peer violation was detected


class _Feed:
    """What a session and its `Incoming` share: the queue of received frames, the
    consumers waiting, how the session ended, and the hooks a consumer calls."""

    __slots__ = ("end", "fail_now", "paused", "queue", "resume_at", "take_more", "waiters")

    def __init__(self, resume_at: int, take_more: Callable[[], None], fail_now: Callable[[], None]) -> None:
        self.queue: deque[Frame] = deque()
        self.waiters: list[asyncio.Future[None]] = []
        self.end: SessionClosed | None = None
        self.paused = False  # reading paused because `incoming` is full
        self.resume_at = resume_at
        self.take_more = take_more  # called when the queue fell to `resume_at` while paused
        self.fail_now = fail_now  # called when the consumer reaches a violation

    def wake(self) -> None:
        for waiter in self.waiters:
            if not waiter.done():
                waiter.set_result(None)
        self.waiters.clear()

    def finish(self, end: SessionClosed) -> None:
        if self.end is None:
            self.end = end
        self.wake()


class Incoming:
    """The frames received, in order: `await receive()`, or `async for frame in ...`.

    Bounded: when `max_queue` frames wait here, the session stops taking frames and
    reading the socket until you consume (TCP back-pressure on the peer;
    `session.reading_paused` says so). When the session ends, the frames already
    received are still delivered; then `receive()` raises `SessionClosed` (or
    `PeerProtocolError` after a violation), and `async for` ends quietly after a clean
    close and raises otherwise.
    """

    __slots__ = ("_feed", "_loop", "_queue")

    def __init__(self, feed: _Feed, loop: asyncio.AbstractEventLoop) -> None:
        self._feed = feed
        self._queue = feed.queue
        self._loop = loop

    def __len__(self) -> int:
        """Frames waiting (the marker of a pending peer violation is not a frame)."""
        queue = self._queue
        return len(queue) - (1 if queue and queue[-1] is _FAILURE else 0)

    @property
    def closed(self) -> bool:
        """True once the session ended and every received frame was consumed."""
        return self._feed.end is not None and not self._queue

    async def receive(self) -> Frame:
        """The next frame; waits for one."""
        queue = self._queue
        feed = self._feed
        while not queue:
            if feed.end is not None:
                raise feed.end
            waiter = self._loop.create_future()
            feed.waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in feed.waiters:
                    feed.waiters.remove(waiter)
        frame = queue.popleft()  # what `_take` does, inlined: the per-frame hot path
        if frame is _FAILURE:
            feed.fail_now()
            assert feed.end is not None
            raise feed.end
        if feed.paused and len(queue) <= feed.resume_at:
            feed.take_more()
        return frame

    async def receive_batch(self, max_frames: int | None = None) -> list[Frame]:
        """Every frame waiting in `incoming` (at most `max_frames`), in order; waits for
        one when none is. For consumers that take
        frames in bulk (a flood): one call and one wake-up per batch instead of per frame.
        A peer violation still comes after the frames before it: the batch stops there,
        and the next call raises. Raises as `receive` does once the session ended and
        every frame was consumed."""
        if max_frames is not None and max_frames < 1:
            raise ValueError("max_frames must be at least 1 (or None: every waiting frame)")
        frames = [await self.receive()]
        queue = self._queue
        if queue and queue[0] is not _FAILURE:
            take = len(queue) - (queue[-1] is _FAILURE)  # a violation's marker is always last
            if max_frames is not None:
                take = min(take, max_frames - 1)
            if take == len(queue):
                frames.extend(queue)
                queue.clear()
            else:
                frames.extend([queue.popleft() for _ in range(take)])
            feed = self._feed
            if feed.paused and len(queue) <= feed.resume_at:
                feed.take_more()  # what the core kept back waits for the next call (at most max_queue)
        return frames

    def receive_nowait(self) -> Frame | None:
        """The next frame if one is waiting, else None (raises once the session ended)."""
        if self._queue:
            return self._take()
        if self._feed.end is not None:
            raise self._feed.end
        return None

    def _take(self) -> Frame:
        feed = self._feed
        frame = self._queue.popleft()
        if frame is _FAILURE:
            feed.fail_now()
            assert feed.end is not None
            raise feed.end
        if feed.paused and len(self._queue) <= feed.resume_at:
            feed.take_more()
        return frame

    def __aiter__(self) -> Incoming:
        return self

    async def __anext__(self) -> Frame:
        try:
            return await self.receive()
        except SessionClosed as exc:
            if exc.clean:
                raise StopAsyncIteration from None
            raise


class _SessionProtocol(asyncio.Protocol):
    """asyncio's transport callbacks, bound to a session's handlers."""

    def __init__(
        self,
        on_data: Callable[[bytes], None],
        on_lost: Callable[[BaseException | None], None],
        on_pause: Callable[[], None],
        on_resume: Callable[[], None],
    ) -> None:
        # Bound straight to the handlers: no extra call per read on the hot path.
        _bind(self, on_data, on_lost, on_pause, on_resume)

    def eof_received(self) -> bool | None:
        return None  # close the transport: the connection is over


class _SessionIntoProtocol(asyncio.BufferedProtocol):
    """The same callbacks, and a buffered protocol's, while the rest of a large frame is
    read straight into its payload buffer (`FrameReader.receive_buffer`): the transport
    calls `get_buffer` and `buffer_updated`. `data_received` stays: a transport that was
    delivering data when the protocol changed may deliver the rest of it as data
    (asyncio's TLS transport does), and the reader takes it as usual. (Not a subclass of
    `_SessionProtocol`: uvloop takes any `asyncio.Protocol` for a plain one.)"""

    def __init__(
        self,
        get_buffer: Callable[[int], memoryview],
        on_filled: Callable[[int], None],
        on_data: Callable[[bytes], None],
        on_lost: Callable[[BaseException | None], None],
        on_pause: Callable[[], None],
        on_resume: Callable[[], None],
    ) -> None:
        self.get_buffer = get_buffer  # type: ignore[method-assign,assignment]
        self.buffer_updated = on_filled  # type: ignore[method-assign,assignment]
        _bind(self, on_data, on_lost, on_pause, on_resume)

    def eof_received(self) -> bool | None:
        return None


def _bind(
    protocol: asyncio.BaseProtocol,
    on_data: Callable[[bytes], None],
    on_lost: Callable[[BaseException | None], None],
    on_pause: Callable[[], None],
    on_resume: Callable[[], None],
) -> None:
    protocol.data_received = on_data  # type: ignore[attr-defined]
    protocol.connection_lost = on_lost  # type: ignore[method-assign,assignment]
    protocol.pause_writing = on_pause  # type: ignore[method-assign]
    protocol.resume_writing = on_resume  # type: ignore[method-assign]


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
        auto_pong: bool = False,
        ping_interval: float | None = None,
    ) -> None:
        self._loop = loop or asyncio.get_running_loop()
        # Opt-in keep-alive (off by default: raw). Frames sent this way are recorded with
        # the timeline's `automatic` column set; every received frame still reaches `incoming`.
        self.auto_pong = auto_pong  # answer each Ping with a Pong carrying its payload
        if ping_interval is not None and ping_interval <= 0:
            raise ValueError("ping_interval must be a positive number of seconds (or None)")
        self.ping_interval = ping_interval  # send a Ping every this many seconds
        self.client = client
        self.url = url
        self.subprotocol: str | None = None
        self.request_headers: list[tuple[str, str]] = []
        self.response_headers: list[tuple[str, str]] = []
        self.extensions: list[str] = []  # what the handshake agreed, e.g. ["permessage-deflate"]
        # The opening handshake as it went (heads as sent and received, step timings);
        # set by the client connect path, None for server-side sessions.
        self.handshake: HandshakeInfo | None = None
        self.max_queue = max(1, int(max_queue))
        self.close_timeout = close_timeout
        self._conn = Connection(client=client, max_message_size=max_message_size, max_frame_size=max_frame_size)
        self._reader = self._conn.reader  # what the last receive_data read (counts, joined payloads)
        self.started_at = _time_ns()
        self._recorder: Recorder | None = (
            Recorder(timeline_capacity, payload_cap, t0=self.started_at) if record else None
        )
        if self._recorder is not None:
            # The reader joins small frames' payloads for the recorder (in C when built).
            self._reader.join_max = self._recorder.join_max
        self._feed = _Feed(self.max_queue // 4, self._take_more, self._fail_now)
        self._queue = self._feed.queue
        self.incoming = Incoming(self._feed, self._loop)
        self._transport: asyncio.Transport | None = None
        # What `send` and `send_nowait` call: `_send_nowait`, or the compiled lane's
        # (`attach`), which sends the plain case itself and hands the rest to it.
        self._send_now: Callable[[Any, bool], None] = self._send_nowait
        self._lane: Any = None
        # The transport's callbacks: data as it comes, or (a large frame's payload) read
        # straight into its buffer (`_read_into`).
        self._protocol = _SessionProtocol(
            self._on_data, self._connection_lost, self._pause_writing, self._resume_writing
        )
        self._into_protocol: _SessionIntoProtocol | None = None  # made at the first large frame
        self._reading_into = False  # the transport has `_into_protocol`
        # Write batching: `_corked` once something was written and nothing since showed a
        # new loop turn (data received, or `_uncork` ran); `_uncork_pending` while later
        # writes wait for the next turn (see `_written`).
        self._corked = False
        self._uncork_pending = False
        self._peer_close: asyncio.Future[None] = self._loop.create_future()
        self._lost: asyncio.Future[None] = self._loop.create_future()
        self._write_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._ping_waiters: dict[bytes, list[tuple[asyncio.Future[float], float]]] = {}
        self._ping_seq = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._fail_handle: asyncio.TimerHandle | None = None
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
    def state(self) -> State:
        """CONNECTING, OPEN, CLOSING (a Close was sent or received) or CLOSED."""
        return self._conn.state

    @property
    def close_reason(self) -> CloseReason | None:
        """How the session is ending or ended: the peer's Close (1005 when it had no
        code), the code this side failed the connection with after a peer violation,
        or 1006 when the connection dropped without a Close; None while open."""
        return self._conn.close_reason

    @property
    def reading_paused(self) -> bool:
        """True while reading is paused because `incoming` is full (back-pressure)."""
        return self._feed.paused

    @property
    def transport(self) -> asyncio.Transport | None:
        """The asyncio transport (None until the opening handshake is done). For
        inspection (`get_extra_info`, `get_write_buffer_size`); write through the session."""
        return self._transport

    @property
    def writing_paused(self) -> bool:
        """True while the transport's write buffer is full (`await drain()` waits)."""
        return self._write_paused

    @property
    def timeline(self) -> pd.DataFrame:
        """Every frame so far, both directions, as a DataFrame (built now)."""
        if self._recorder is None:
            from .timeline.schema import empty_timeline

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
        from .timeline.persist import save_timeline

        return save_timeline(self, path, **options)

    def set_protocol(self, protocol: Any, version: Any = None) -> None:
        """Decode Binary frames in the timeline with a codec `Protocol` from now on."""
        self.protocol = protocol
        self._protocol_version = version
        self._set_decoder()

    def _set_decoder(self) -> None:
        if self._recorder is not None:
            protocol = self.protocol
            self._recorder.set_decoder(None if protocol is None else codec_decoder(protocol, self._protocol_version))

    @property
    def protocol_version(self) -> Any:
        """The negotiated codec version (set by `rawws_nb.codec.negotiate`)."""
        return self._protocol_version

    @protocol_version.setter
    def protocol_version(self, version: Any) -> None:
        self._protocol_version = version
        if version is not None and self.protocol is not None:
            self._set_decoder()

    async def send(self, frame: Frame | str | bytes | bytearray | memoryview, compress: bool = True) -> None:
        """Send one frame as given (`str` -> Text, `bytes` -> Binary).

        Data frames continue an unfinished message as CONTINUATION frames; control
        frames must be whole and at most 125 bytes, Close codes must be valid: for
        anything invalid on purpose, use `send_raw`. With permessage-deflate negotiated,
        data messages are compressed (`compress=False`: this message is sent as is; the
        choice is made at a message's first frame). Waits only while the transport's
        write buffer is full.
        """
        self._send_now(frame, compress)
        if self._write_paused:
            await self._wait_drain()

    def send_nowait(self, frame: Frame | str | bytes | bytearray | memoryview, compress: bool = True) -> None:
        """`send` without waiting when the write buffer is full (check `writing_paused`
        and `await drain()` to respect the transport's flow control)."""
        self._send_now(frame, compress)

    def _send_nowait(self, frame: Frame | str | bytes | bytearray | memoryview, compress: bool = True) -> None:
        kind = type(frame)
        if kind is str:
            opcode, payload = 1, frame.encode("utf-8")  # type: ignore[union-attr]
        elif kind is bytes:
            opcode, payload = 2, frame
        elif isinstance(frame, (bytearray, memoryview)):
            opcode, payload = 2, bytes(frame)
        elif isinstance(frame, Frame):
            self._send_frame(frame, compress)
            return
        else:
            raise TypeError(f"send() takes a Frame, str or bytes, not {kind.__name__}")
        # A whole Text or Binary message: the core writes it without a Frame object.
        transport = self._transport
        if transport is not None and transport.is_closing():
            raise self._end_exception()
        stamp = not self._uncork_pending  # the first write of a loop turn carries the timestamp
        code = self._conn.send_data(opcode, payload, compress)
        self._written(code)
        rec = self._recorder
        if rec is not None:
            rec.stage_tx(_time_ns() if stamp else None, code, payload)

    def _send_frame(self, frame: Frame, compress: bool) -> None:
        transport = self._transport
        if transport is not None and transport.is_closing():
            raise self._end_exception()
        stamp = not self._uncork_pending
        code = self._conn.send(frame, compress)
        self._written(code)
        rec = self._recorder
        if rec is not None:
            rec.stage_tx(_time_ns() if stamp else None, code, frame.data)
        if code & 0x0F == 8:
            self._after_close_sent()

    @property
    def deflate(self) -> DeflateParams | None:
        """The permessage-deflate parameters agreed in the handshake, or None."""
        deflate = self._conn.deflate
        return None if deflate is None else deflate.params

    def deflate_payload(self, data: bytes, fin: bool = True) -> bytes:
        """`data` compressed with this session's own compression context, as `send` would
        compress it: for crafting frames for `send_raw` (e.g. with rsv1 where it is not
        allowed). The context moves on, as if the message had been sent."""
        return self._conn.deflate_payload(data, fin)

    async def drain(self) -> None:
        """Wait until the transport's write buffer is below its high-water mark."""
        if self._write_paused:
            await self._wait_drain()

    async def send_raw(self, data: bytes) -> None:
        """Write `data` to the socket as-is (crafted frames, valid or not) and record
        the frames it contains (best effort: a partial frame is recorded as such).
        Nothing is checked and the session's state does not change."""
        transport = self._transport
        if transport is not None and transport.is_closing():
            raise self._end_exception()
        data = bytes(data)
        self._conn.send_raw(data)
        self._written(len(data) << 16)
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
            self.send_nowait(Ping(payload))
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
        if self.state is State.CLOSED:
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
        if self.state is State.CLOSED:
            return
        # A launched task that closes the session is not cancelled by the end it causes.
        current = asyncio.current_task()
        if current is not None:
            self._tasks.discard(current)
        conn = self._conn
        if conn.close_sent is None and self._transport is not None:
            if reason is None:
                peer = conn.close_received
                reason = (
                    CloseReason(peer.code)
                    if peer is not None and is_valid_close_code(peer.code)
                    else CloseReason(CloseReason.Codes.NORMAL)
                )
            try:
                self.send_nowait(Close(reason))
            except SessionClosed:
                pass
        await self._finish_close()

    async def wait_closed(self) -> CloseReason | None:
        """Wait until the connection has ended; returns `close_reason`."""
        await asyncio.shield(self._lost)
        return self.close_reason

    def drop_connection(self, abort: bool = False) -> None:
        """End the TCP connection now, without a Close frame: what was sent so far is
        written first (`abort=True`: discarded, the connection is reset). The peer sees
        the connection drop; this session ends with 1006 unless it had closed."""
        transport = self._transport
        if transport is None:
            return
        if abort:
            transport.abort()
        else:
            self._close_transport()

    # -- the sync facade (rawws_nb.sync): for callbacks and scripts that don't await ----

    def send_sync(self, frame: Frame | str | bytes, timeout: float | None = None) -> None:
        """`send` from any thread (see `rawws_nb.sync`)."""
        run_sync(self, self.send(frame), timeout, what="send_sync()")

    def send_raw_sync(self, data: bytes, timeout: float | None = None) -> None:
        """`send_raw` from any thread."""
        run_sync(self, self.send_raw(data), timeout, what="send_raw_sync()")

    def receive_sync(self, timeout: float | None = None) -> Frame:
        """`incoming.receive()` from any thread."""
        return run_sync(self, self.incoming.receive(), timeout, what="receive_sync()")

    def ping_sync(self, payload: bytes | str | None = None, timeout: float | None = 5.0) -> float:
        """`ping` from any thread."""
        margin = None if timeout is None else timeout + 1.0
        return run_sync(self, self.ping(payload, timeout), margin, what="ping_sync()")

    def close_sync(self, reason: CloseReason | None = None, timeout: float | None = None) -> None:
        """`close` from any thread."""
        run_sync(self, self.close(reason), timeout, what="close_sync()")

    def __repr__(self) -> str:
        role = "client" if self.client else "server"
        extra = ""
        if self.close_reason is not None:
            extra = f" close={self.close_reason.code}"
        if self._feed.paused:
            extra += " reading-paused"
        return f"<RawSession {role} {self.url} {self.state.value} queued={len(self.incoming)}{extra}>"

    def _repr_html_(self) -> str:
        import html

        colour = {"OPEN": "#2a2", "CLOSING": "#c80", "CLOSED": "#888", "CONNECTING": "#48c"}[self.state.value]
        rec = self._recorder
        frames = f"{rec.total} frames recorded" if rec is not None else "recording off"
        bits = [
            f"<b style='color:{colour}'>{self.state.value}</b>",
            html.escape(self.url),
            frames,
            f"{len(self.incoming)} waiting in incoming",
        ]
        if self.subprotocol:
            bits.append(f"subprotocol {html.escape(self.subprotocol)}")
        if self.extensions:
            bits.append("extensions " + html.escape(", ".join(self.extensions)))
        if self.close_reason is not None:
            bits.append(html.escape(f"close {self.close_reason.code} {self.close_reason.message!r}"))
        if self._feed.paused:
            bits.append("<b>reading paused (incoming full)</b>")
        out = "<div class='rawws-session'>RawSession: " + " · ".join(bits) + "</div>"
        if self.handshake is not None:
            out += f"<details><summary>opening handshake</summary>{self.handshake._repr_html_()}</details>"
        return out

    # -- the transport --------------------------------------------------------------------

    def attach(
        self,
        transport: asyncio.Transport,
        data: bytes = b"",
        *,
        extensions: list[str] | None = None,
        deflate: PerMessageDeflate | None = None,
        passthrough: bool = False,
    ) -> None:
        """Take over `transport` once the opening handshake is done (front ends call
        this): the session becomes OPEN, receives what the transport reads from now on,
        and first `data`, the bytes read after the handshake. `extensions`: what the
        handshake agreed (header values); `deflate`: the permessage-deflate state when
        it was negotiated; `passthrough`: negotiated but not applied (`Connection.opened`)."""
        if self._transport is not None:
            raise RuntimeError("this session already has a transport")
        self._transport = transport
        self.extensions = list(extensions or [])
        self._conn.opened(deflate, passthrough)
        if _Lane is not None:
            self._lane = self._make_lane(transport)
            self._protocol.data_received = self._lane.data_received  # type: ignore[method-assign]
            self._send_now = self._lane.send_nowait
        transport.set_protocol(self._protocol)
        if data:
            self._on_data(data)
        if self.ping_interval is not None:
            self.launch(self._keepalive(self.ping_interval))

    def _make_lane(self, transport: asyncio.Transport) -> Any:
        """The compiled per-frame path for this session: `_on_data` and `_send_nowait`
        for plain frames (`rawws_nb/_speedups.c`, `Lane`, says exactly which), everything
        else handed to them."""
        rec = self._recorder
        fd = -1
        if _PLAIN_TCP is not None and type(transport) is _PLAIN_TCP:
            sock = transport.get_extra_info("socket")
            fd = -1 if sock is None else sock.fileno()
        reader = self._reader
        return _Lane(
            session=self,
            conn=self._conn,
            reader=reader,
            feed=self._feed,
            queue=self._queue,
            waiters=self._feed.waiters,
            stage_tx=None if rec is None else rec.stage_tx,
            stage_rx=None if rec is None else rec.stage_rx,
            text=FRAME_CLASSES[FrameType.TEXT],
            binary=FRAME_CLASSES[FrameType.BINARY],
            open_state=State.OPEN,
            transport=transport,
            fd=fd,
            client=self.client,
            tag=reader.tag,
            max_send=_LANE_MAX_SEND,
            slow_data=self._on_data,
            slow_send=self._send_nowait,
            urandom=os.urandom,
            time_ns=_time_ns,
            call_soon=self._loop.call_soon,
            uncork=self._uncork,
            write_out=self._write_out,
            direct_write=_DIRECT_WRITE,
            cork_limit=_CORK_LIMIT,
        )

    async def _keepalive(self, interval: float) -> None:
        """`ping_interval`: a Ping every `interval` seconds while the session is open."""
        count = 0
        while True:
            await asyncio.sleep(interval)
            if self.state is not State.OPEN:
                return
            count += 1
            try:
                self._send_automatic(Ping(b"keepalive-%d" % count))
            except SessionClosed:
                return

    def _send_automatic(self, frame: Frame) -> None:
        """Send a frame on the session's own account (opted in): recorded as automatic."""
        transport = self._transport
        if transport is None or transport.is_closing():
            raise self._end_exception()
        stamp = not self._uncork_pending
        code = self._conn.send(frame) | AUTOMATIC
        self._written(code)
        if self._recorder is not None:
            self._recorder.stage_tx(_time_ns() if stamp else None, code, frame.data)

    def _end_exception(self) -> SessionClosed:
        return self._feed.end or self._conn.end_exception()

    def _written(self, code: int) -> None:
        """Write what the core has to send, batching: a write goes out at once (no added
        latency) unless another one went out since the loop last showed a new turn (data
        received, or the previous batch flushed); then it and the writes after it in the
        same turn go at the next turn, or as soon as they reach `_CORK_LIMIT` bytes (so the
        transport's flow control, `pause_writing`, still sees them, and a pipelining peer
        starts early) or a frame is large. A request-response exchange thus writes each
        request at once and schedules nothing."""
        if not self._corked:
            self._write_out()
            self._corked = True
        elif not self._uncork_pending:
            self._uncork_pending = True
            self._loop.call_soon(self._uncork)
            if code >> 16 >= _DIRECT_WRITE:
                self._write_out()
        elif code >> 16 >= _DIRECT_WRITE or self._conn.bytes_to_send >= _CORK_LIMIT:
            self._write_out()

    def _write_out(self) -> None:
        out = self._conn.data_to_send()
        transport = self._transport
        if not out or transport is None or transport.is_closing():
            return
        if len(out) == 1:
            transport.write(out[0])
        elif sum(map(len, out)) <= _CORK_LIMIT + _DIRECT_WRITE:
            transport.write(b"".join(out))
        else:
            for chunk in out:  # large buffers are never copied into a join
                transport.write(chunk)

    def _uncork(self) -> None:
        self._corked = self._uncork_pending = False
        if self._conn.bytes_to_send:
            self._write_out()

    def _close_transport(self) -> None:
        """Close the TCP connection after everything written so far."""
        self._write_out()
        if self._transport is not None:
            self._transport.close()

    def _record_raw(self, data: bytes) -> None:
        """Record crafted bytes frame by frame, without judging them."""
        rec = self._recorder
        assert rec is not None
        t = _time_ns()
        for raw in split_frames(data):
            code = TX | raw.b0
            if raw.error is not None:
                rec.add_error(t, code, raw.payload, raw.length, None, f"send_raw: {raw.error} sent")
            else:
                rec.add(t, code, raw.payload)

    def _pause_writing(self) -> None:
        self._write_paused = True

    def _resume_writing(self) -> None:
        self._write_paused = False
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._drain_waiters.clear()

    async def _wait_drain(self) -> None:
        if self.state is State.CLOSED:
            raise self._end_exception()
        waiter = self._loop.create_future()
        self._drain_waiters.append(waiter)
        await waiter

    # -- receiving ------------------------------------------------------------------

    def _on_data(self, data: bytes) -> None:
        if not self._uncork_pending:
            self._corked = False  # a new loop turn: the next write may go out at once
        queue = self._queue
        frames, codes, violation = self._conn.receive_data(data, self.max_queue - len(queue))
        if frames:
            self._deliver(frames, codes)
        if violation is not None:
            self._on_violation(violation)
        elif len(queue) >= self.max_queue and not self._feed.paused:
            self._pause_reading()
        if self._reader.receiving_large is not self._reading_into:
            self._read_into(self._reader.receiving_large)

    def _read_into(self, into: bool) -> None:
        """While a large frame's payload is coming, read the rest straight into its buffer
        (no copy after the socket's: `_get_buffer`, `_on_filled`); then data as it comes
        (also after a violation: a failure that waits for the consumer keeps reading)."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        self._reading_into = into
        if not into:
            transport.set_protocol(self._protocol)
            return
        if self._into_protocol is None:
            self._into_protocol = _SessionIntoProtocol(
                self._get_buffer,
                self._on_filled,
                self._on_data,
                self._connection_lost,
                self._pause_writing,
                self._resume_writing,
            )
        transport.set_protocol(self._into_protocol)

    def _get_buffer(self, sizehint: int) -> memoryview:
        return self._reader.receive_buffer()  # only while receiving_large (`_read_into`)

    def _on_filled(self, n: int) -> None:
        if not self._uncork_pending:
            self._corked = False
        # `_on_data`'s steps, for bytes read into the buffer (written out twice on purpose:
        # a shared helper cost the per-read path of a round trip about 100 ns).
        queue = self._queue
        frames, codes, violation = self._conn.received_into(n, self.max_queue - len(queue))
        if frames:
            self._deliver(frames, codes)
        if violation is not None:
            self._on_violation(violation)
        elif len(queue) >= self.max_queue and not self._feed.paused:
            self._pause_reading()
        if not self._reader.receiving_large:
            self._read_into(False)  # back to data_received for what follows (a violation too)

    def _deliver(self, frames: list[Frame], codes: Sequence[int]) -> None:
        reader = self._reader
        rec = self._recorder
        if rec is not None:
            rec.stage_rx(_time_ns(), codes, frames, reader.compressed, reader.joined)
        self._queue.extend(frames)
        if reader.controls:
            self._on_controls(frames, codes)
        if self._feed.waiters:
            self._feed.wake()

    def _on_controls(self, frames: list[Frame], codes: Sequence[int]) -> None:
        for code, frame in zip(codes, frames, strict=True):
            if code & 0x0F == 9 and self.auto_pong and self._conn.close_sent is None:
                try:
                    self._send_automatic(Pong(frame.data))
                except (SessionClosed, InvalidSend):
                    pass  # closing: the Ping stays unanswered, as without auto_pong
            elif code & 0x0F == 10:
                waiters = self._ping_waiters.get(frame.data)
                if waiters:
                    now = _perf()
                    for future, start in waiters:
                        if not future.done():
                            future.set_result(now - start)
        conn = self._conn
        if conn.close_received is not None and not self._peer_close.done():
            self._peer_close.set_result(None)
            self._after_close_exchange()

    def _after_close_sent(self) -> None:
        self._after_close_exchange()
        if self._feed.paused:
            self._take_more()  # the peer's Close must be able to arrive

    def _after_close_exchange(self) -> None:
        """Both Close frames are exchanged: the server closes TCP; the client waits for
        that, at most `close_timeout`."""
        conn = self._conn
        transport = self._transport
        if transport is None or not conn.closing_handshake_done:
            return
        if conn.should_close_transport:
            self._close_transport()
        elif self.close_timeout is not None and self._abort_handle is None:
            self._abort_handle = self._loop.call_later(self.close_timeout, transport.abort)

    def _pause_reading(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._feed.paused = True
            self._transport.pause_reading()

    def _take_more(self) -> None:
        """The consumer made room: take the frames the core kept back, then read again
        (unless `incoming` filled up again)."""
        conn = self._conn
        queue = self._queue
        if conn.limited:
            frames, codes, violation = conn.receive_data(b"", self.max_queue - len(queue))
            if frames:
                self._deliver(frames, codes)
            if violation is not None:
                self._on_violation(violation)
                return
            if conn.limited and conn.close_sent is None:
                return  # still full: stay paused
        self._feed.paused = False
        if self._transport is not None and not self._transport.is_closing():
            self._transport.resume_reading()

    def _on_violation(self, violation: Violation) -> None:
        """A peer violation (RFC 6455 7.1.7), recorded now; the connection fails at once
        or, when the core allows it, when the consumer reaches it in `incoming` (so the
        frames before it can still be answered), or after `close_timeout` if nobody
        reads (never, with `close_timeout=None`)."""
        if self._recorder is not None:
            op = violation.opcode if violation.opcode is not None else 0
            code = header_code(op, bool(violation.fin), violation.rsv, direction=RX)
            self._recorder.add_error(
                _time_ns(),
                code,
                violation.payload,
                violation.length or 0,
                None,
                f"{violation.reason} (failing with {violation.code})",
            )
        if self._queue and self._conn.failure_can_wait:
            self._queue.append(_FAILURE)
            if self.close_timeout is not None:
                self._fail_handle = self._loop.call_later(self.close_timeout, self._fail_now)
        else:
            self._fail_now()

    def _fail_now(self) -> None:
        """Fail the connection: send Close with the violation's code, close TCP."""
        conn = self._conn
        if conn.failure_error is None:
            return
        if self._fail_handle is not None:
            self._fail_handle.cancel()
            self._fail_handle = None
        self._feed.finish(conn.failure_error)
        sent = conn.fail()
        if sent is not None and self._recorder is not None:
            self._recorder.stage_tx(_time_ns(), header_code(8, length=len(sent.data)), sent.data)
        self._close_transport()

    def _connection_lost(self, exc: BaseException | None) -> None:
        conn = self._conn
        if conn.limited and conn.failure is None:
            # Frames kept back by the bound were received: deliver them too.
            frames, codes, violation = conn.receive_data(b"")
            if frames:
                self._deliver(frames, codes)
            if violation is not None:
                self._on_violation(violation)
        partial = conn.receive_eof(str(exc) if exc is not None else "")
        if self._abort_handle is not None:
            self._abort_handle.cancel()
        if partial is not None and self._recorder is not None:
            code = header_code(partial.opcode or 0, bool(partial.fin), partial.rsv, direction=RX)
            self._recorder.add_error(_time_ns(), code, partial.payload, partial.length or 0, None, partial.reason)
        if self._fail_handle is not None:
            self._fail_handle.cancel()
        end = conn.end
        assert end is not None
        self._feed.finish(end)
        end = self._feed.end or end
        if not self._lost.done():
            self._lost.set_result(None)
        if not self._peer_close.done():
            self._peer_close.set_result(None)
        for waiters in self._ping_waiters.values():
            for future, _ in waiters:
                if not future.done():
                    future.set_exception(end)
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_exception(end)
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
