"""`StreamDecoder`: whole messages out of a stream of frame payloads."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, Protocol

from ..frames import Frame
from .errors import DecodeError
from .framing import Framing
from .message import Message, Version

__all__ = ["StreamCodec", "StreamDecoder"]


class StreamCodec(Protocol):
    """What a `StreamDecoder` takes from a protocol at one version: its framing, to find
    where each message ends, and its `decode`. A `rawws_nb.codec.ProtocolVersion` is one
    (`ProtocolVersion.stream()` makes the decoder)."""

    framing: Framing
    version: Version

    @property
    def name(self) -> str: ...

    def decode(self, data: bytes | bytearray | memoryview | Frame) -> Message: ...


class StreamDecoder:
    """Feed it frame payloads (or `Frame`s); it returns the messages they complete.

    A message may span several frames and a frame may carry several messages; partial
    data is kept until the rest arrives (`pending` bytes).

    Errors: a message whose framing is intact but whose payload does not decode raises
    `DecodeError` from `feed` (or, with `errors="skip"`, is dropped and recorded in
    `skipped`). Its bytes are consumed; `exc.messages` holds the messages completed
    before it in that call, and the bytes after it stay buffered for the next `feed`
    (`feed(b"")` resumes). A framing error (a declared length over `max_payload`) loses
    the message boundaries: the decoder is then `broken` and every `feed` raises it.
    """

    def __init__(self, codec: StreamCodec, *, errors: Literal["raise", "skip"] = "raise") -> None:
        if errors not in ("raise", "skip"):
            raise ValueError("errors must be 'raise' or 'skip'")
        self.codec = codec
        self.errors = errors
        self.skipped: list[DecodeError] = []
        self._split = codec.framing.split
        self._decode = codec.decode
        self._buffer = bytearray()
        self._consumed = 0
        self._broken: DecodeError | None = None

    @property
    def pending(self) -> int:
        """Bytes received but not yet part of a whole message."""
        return len(self._buffer)

    @property
    def broken(self) -> bool:
        return self._broken is not None

    @property
    def offset(self) -> int:
        """Stream offset of the first pending byte (bytes consumed so far)."""
        return self._consumed

    def feed(self, data: bytes | bytearray | memoryview | Frame) -> list[Message]:
        """Add bytes; return the messages completed by them, in order."""
        if self._broken is not None:
            raise self._broken
        buf = self._buffer
        buf += data.data if isinstance(data, Frame) else data
        view = bytes(buf)  # one copy per feed; splitting and slicing work on it
        out: list[Message] = []
        pos = 0
        try:
            while True:
                try:
                    split = self._split(view, pos, False)
                except DecodeError as exc:
                    self._broken = self._annotate(exc, pos, out)
                    raise
                if split is None:
                    return out
                end = split[3]
                raw = view[pos:end]
                at = pos
                pos = end
                try:
                    out.append(self._decode(raw))
                except DecodeError as exc:
                    self._annotate(exc, at, out)
                    if self.errors == "skip":
                        self.skipped.append(exc)
                        continue
                    raise
        finally:
            if pos:
                del buf[:pos]
                self._consumed += pos

    def _annotate(self, exc: DecodeError, at: int, out: list[Message]) -> DecodeError:
        exc.messages = list(out)
        exc.stream_offset = self._consumed + at
        return exc

    def feed_all(self, chunks: Iterable[bytes | bytearray | memoryview | Frame]) -> list[Message]:
        """Feed several chunks; return all the messages (errors raise as in `feed`)."""
        out: list[Message] = []
        for chunk in chunks:
            out.extend(self.feed(chunk))
        return out

    def close(self) -> None:
        """End of stream: raise `DecodeError` if a partial message is still pending."""
        if self._buffer and self._broken is None:
            try:
                self._split(self._buffer, 0, True)
            except DecodeError as exc:
                exc.stream_offset = self._consumed
                raise
            # Whole messages left after a `feed` that raised: they were never decoded.
            pending = DecodeError(
                f"{len(self._buffer)} bytes pending at end of stream, not yet decoded (feed(b'') decodes them)",
                offset=0,
                data=bytes(self._buffer),
            )
            pending.stream_offset = self._consumed
            raise pending

    def reset(self) -> None:
        """Drop pending bytes and any framing error."""
        self._buffer.clear()
        self._broken = None

    def __repr__(self) -> str:
        state = "broken" if self._broken else f"{self.pending} bytes pending"
        return f"<StreamDecoder {self.codec.name} v{self.codec.version[0]}.{self.codec.version[1]}: {state}>"
