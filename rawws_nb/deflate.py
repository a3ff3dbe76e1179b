"""permessage-deflate (RFC 7692), sans-IO: negotiation, and per-direction compression.

Nothing is offered unless asked for (`compression="deflate"` or a `Deflate(...)` on an
entry point): a raw session shows what is on the wire, and compression is part of the
wire. When negotiated, the core compresses the data messages `send` sends (per message;
fragments continue the compressed stream) and inflates received compressed messages
frame by frame, as each frame arrives, with `max_message_size` applied to the inflated
size while inflating (bounded output per step: a decompression bomb fails with 1009).

What is NOT automatic: nothing chooses to compress a control frame (never allowed), and
`send_raw` sends bytes as given: broken compression (rsv1 on a control frame or a
continuation, a corrupt stream) stays possible on purpose, with `Deflater` to make
payloads with a context of one's choosing.

Window bits: zlib cannot make a raw deflate compressor with an 8-bit window. When this
side must compress with 8 bits, it compresses with zlib's run-length strategy (matches
of distance 1 only), which is a valid stream for any window; received streams are
always inflated with a 15-bit window, which accepts any window the peer used.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from typing import Any, ClassVar

__all__ = [
    "EXTENSION_NAME",
    "Deflate",
    "DeflateParams",
    "Deflater",
    "InflateError",
    "Inflater",
    "NegotiationFailed",
    "PerMessageDeflate",
    "RawInflater",
    "TooBig",
    "accept_offer",
    "check_response",
    "parse_extensions",
]

EXTENSION_NAME = "permessage-deflate"
_TAIL = b"\x00\x00\xff\xff"
_WINDOW_BITS = range(8, 16)
_PARAMS = (
    "server_no_context_takeover",
    "client_no_context_takeover",
    "server_max_window_bits",
    "client_max_window_bits",
)


class NegotiationFailed(ValueError):
    """An extension header that RFC 7692 does not allow (the handshake fails with this text)."""


class InflateError(ValueError):
    """A compressed message that does not inflate (the connection fails with 1002)."""


class TooBig(ValueError):
    """A message that inflates past the limit (the connection fails with 1009)."""


@dataclass(frozen=True, slots=True)
class Deflate:
    """What to offer (a client) or accept (a server) for permessage-deflate.

    `client_max_window_bits`: True offers the parameter without a value (the server may
    pick 8-15; this is what browsers send), an int offers that limit, None leaves it out.
    `server_max_window_bits`: None leaves it out; an int asks the server to use at most
    that window. The `*_no_context_takeover` flags ask for a fresh compression context
    per message in that direction. `level` and `mem_level` tune this side's compressor.
    """

    client_max_window_bits: int | bool | None = True
    server_max_window_bits: int | None = None
    client_no_context_takeover: bool = False
    server_no_context_takeover: bool = False
    level: int = 6
    mem_level: int = 8

    def __post_init__(self) -> None:
        for name in ("client_max_window_bits", "server_max_window_bits"):
            bits = getattr(self, name)
            if isinstance(bits, int) and not isinstance(bits, bool) and bits not in _WINDOW_BITS:
                raise ValueError(f"{name} must be 8..15, not {bits}")
        if not 0 <= self.level <= 9 or not 1 <= self.mem_level <= 9:
            raise ValueError("level must be 0..9 and mem_level 1..9")

    def offer(self) -> str:
        """The `Sec-WebSocket-Extensions` value a client sends."""
        parts = [EXTENSION_NAME]
        if self.server_no_context_takeover:
            parts.append("server_no_context_takeover")
        if self.client_no_context_takeover:
            parts.append("client_no_context_takeover")
        if self.server_max_window_bits is not None:
            parts.append(f"server_max_window_bits={self.server_max_window_bits}")
        if self.client_max_window_bits is True:
            parts.append("client_max_window_bits")
        elif isinstance(self.client_max_window_bits, int) and self.client_max_window_bits is not False:
            parts.append(f"client_max_window_bits={self.client_max_window_bits}")
        return "; ".join(parts)


@dataclass(frozen=True, slots=True)
class DeflateParams:
    """What both sides agreed (from the server's response): the window each side
    compresses with (default 15) and whether each side resets its context per message."""

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: int = 15
    client_max_window_bits: int = 15

    def response(self, with_client_bits: bool = True) -> str:
        """The `Sec-WebSocket-Extensions` value a server answers with."""
        parts = [EXTENSION_NAME]
        if self.server_no_context_takeover:
            parts.append("server_no_context_takeover")
        if self.client_no_context_takeover:
            parts.append("client_no_context_takeover")
        if self.server_max_window_bits != 15:
            parts.append(f"server_max_window_bits={self.server_max_window_bits}")
        if with_client_bits and self.client_max_window_bits != 15:
            parts.append(f"client_max_window_bits={self.client_max_window_bits}")
        return "; ".join(parts)


# -- header parsing (RFC 6455 9.1: extension-list = 1#extension; params token or quoted) ------

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_PARAM = re.compile(rf'\s*({_TOKEN})\s*(?:=\s*({_TOKEN}|"(?:[^"\\]|\\.)*"))?\s*')


def parse_extensions(values: list[str]) -> list[tuple[str, list[tuple[str, str | None]]]]:
    """`Sec-WebSocket-Extensions` header values -> [(name, [(param, value or None)])].
    Raises `NegotiationFailed` for a malformed header."""
    out: list[tuple[str, list[tuple[str, str | None]]]] = []
    for value in values:
        for item in _split_outside_quotes(value, ","):
            if not item.strip():
                continue
            pieces = _split_outside_quotes(item, ";")
            name = pieces[0].strip()
            if not re.fullmatch(_TOKEN, name):
                raise NegotiationFailed(f"malformed extension {item.strip()!r}")
            params: list[tuple[str, str | None]] = []
            for piece in pieces[1:]:
                match = _PARAM.fullmatch(piece)
                if match is None:
                    raise NegotiationFailed(f"malformed extension parameter {piece.strip()!r} in {item.strip()!r}")
                key, raw = match.group(1), match.group(2)
                if raw is not None and raw.startswith('"'):
                    raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
                params.append((key, raw))
            out.append((name, params))
    return out


def _split_outside_quotes(text: str, sep: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for ch in text:
        if escaped:
            escaped = False
        elif ch == "\\" and quoted:
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == sep and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return parts


def _params(items: list[tuple[str, str | None]], where: str) -> dict[str, str | None]:
    seen: dict[str, str | None] = {}
    for key, value in items:
        if key not in _PARAMS:
            raise NegotiationFailed(f"unknown permessage-deflate parameter {key!r} in the {where}")
        if key in seen:
            raise NegotiationFailed(f"permessage-deflate parameter {key!r} given twice in the {where}")
        if key.endswith("no_context_takeover") and value is not None:
            raise NegotiationFailed(f"{key} takes no value (got {value!r}) in the {where}")
        seen[key] = value
    return seen


def _bits(value: str | None, key: str, where: str) -> int:
    if value is None or not value.isdigit() or int(value) not in _WINDOW_BITS or value != str(int(value)):
        raise NegotiationFailed(f"{key} must be an integer 8..15, not {value!r}, in the {where}")
    return int(value)


def check_response(offer: Deflate, params: list[tuple[str, str | None]]) -> DeflateParams:
    """The client side: validate the server's answer to `offer` (RFC 7692 7.1) and return
    what was agreed; `NegotiationFailed` says what is wrong."""
    where = "server's response"
    got = _params(params, where)
    if offer.server_no_context_takeover and "server_no_context_takeover" not in got:
        raise NegotiationFailed("the client asked for server_no_context_takeover; the server's response lacks it")
    server_bits = 15
    if "server_max_window_bits" in got:
        server_bits = _bits(got["server_max_window_bits"], "server_max_window_bits", where)
        if offer.server_max_window_bits is not None and server_bits > offer.server_max_window_bits:
            raise NegotiationFailed(
                f"server_max_window_bits={server_bits} in the response exceeds the offered "
                f"{offer.server_max_window_bits}"
            )
    elif offer.server_max_window_bits is not None:
        raise NegotiationFailed(
            f"the client offered server_max_window_bits={offer.server_max_window_bits}; the response lacks it"
        )
    client_bits = 15
    if "client_max_window_bits" in got:
        if offer.client_max_window_bits is None or offer.client_max_window_bits is False:
            raise NegotiationFailed("client_max_window_bits in the response, but the client did not offer it")
        client_bits = _bits(got["client_max_window_bits"], "client_max_window_bits", where)
        limit = offer.client_max_window_bits
        if limit is not True and client_bits > int(limit):
            raise NegotiationFailed(f"client_max_window_bits={client_bits} in the response exceeds the offered {limit}")
    elif isinstance(offer.client_max_window_bits, int) and offer.client_max_window_bits is not True:
        client_bits = int(offer.client_max_window_bits)  # the server did not lower the client's own limit
    return DeflateParams(
        server_no_context_takeover="server_no_context_takeover" in got,
        client_no_context_takeover="client_no_context_takeover" in got or offer.client_no_context_takeover,
        server_max_window_bits=server_bits,
        client_max_window_bits=client_bits,
    )


def accept_offer(policy: Deflate, params: list[tuple[str, str | None]]) -> tuple[DeflateParams, str] | None:
    """The server side: answer one permessage-deflate offer under `policy` (the server's
    own wishes: its no_context_takeover flags, its maximum windows). Returns the agreed
    parameters and the response header value, or None to decline a malformed offer."""
    where = "client's offer"
    try:
        got = _params(params, where)
        offered_client = "client_max_window_bits" in got
        client_bits = 15
        if offered_client and got["client_max_window_bits"] is not None:
            client_bits = _bits(got["client_max_window_bits"], "client_max_window_bits", where)
        server_bits = 15
        if "server_max_window_bits" in got:
            server_bits = _bits(got["server_max_window_bits"], "server_max_window_bits", where)
    except NegotiationFailed:
        return None
    if policy.server_max_window_bits is not None:
        server_bits = min(server_bits, policy.server_max_window_bits)
    want = policy.client_max_window_bits
    if offered_client and isinstance(want, int) and not isinstance(want, bool):
        client_bits = min(client_bits, want)  # only an offered client limit may be lowered
    agreed = DeflateParams(
        server_no_context_takeover="server_no_context_takeover" in got or policy.server_no_context_takeover,
        client_no_context_takeover="client_no_context_takeover" in got or policy.client_no_context_takeover,
        server_max_window_bits=server_bits,
        client_max_window_bits=client_bits,
    )
    header = agreed.response(with_client_bits=offered_client)
    if "server_max_window_bits" in got and "server_max_window_bits" not in header:
        header += f"; server_max_window_bits={server_bits}"  # an offered limit is always answered
    return agreed, header


# -- compression ----------------------------------------------------------------------------


class Deflater:
    """Compress message payloads as permessage-deflate does: `compress(data, fin)` for
    each fragment of a message in order (the final one without the 00 00 ff ff tail).
    With `no_context_takeover` each message starts a fresh context. Usable on its own to
    craft frames for `send_raw`."""

    __slots__ = ("_level", "_mem_level", "_obj", "_strategy", "_wbits", "no_context_takeover")
    _obj: Any

    def __init__(
        self, window_bits: int = 15, no_context_takeover: bool = False, level: int = 6, mem_level: int = 8
    ) -> None:
        if window_bits not in _WINDOW_BITS:
            raise ValueError(f"window_bits must be 8..15, not {window_bits}")
        # zlib has no raw 8-bit-window compressor: run-length matches (distance 1) are
        # valid for any window, so an 8-bit agreement is kept exactly.
        self._wbits = -max(window_bits, 9)
        self._strategy = zlib.Z_RLE if window_bits == 8 else zlib.Z_DEFAULT_STRATEGY
        self._level = level
        self._mem_level = mem_level
        self.no_context_takeover = no_context_takeover
        self._obj = self._new()

    def _new(self) -> Any:
        return zlib.compressobj(self._level, zlib.DEFLATED, self._wbits, self._mem_level, self._strategy)

    def compress(self, data: bytes, fin: bool = True) -> bytes:
        out: bytes = self._obj.compress(data) + self._obj.flush(zlib.Z_SYNC_FLUSH)
        if fin:
            if out.endswith(_TAIL):
                out = out[:-4]
            if self.no_context_takeover:
                self._obj = self._new()
        return out


class Inflater:
    """Inflate a compressed message frame by frame: `inflate(payload, fin, limit)`
    returns the bytes of this frame's share of the message; `limit` bounds the output
    (raises `TooBig` past it, having produced at most `limit + 1` bytes); `InflateError`
    for a stream that does not inflate."""

    __slots__ = ("_obj", "no_context_takeover")
    _obj: Any
    raw: ClassVar[bool] = False  # True for `RawInflater`: payloads stay compressed

    def __init__(self, no_context_takeover: bool = False) -> None:
        self.no_context_takeover = no_context_takeover
        self._obj = zlib.decompressobj(-15)

    def inflate(self, payload: bytes, fin: bool, limit: int | None = None) -> bytes:
        data = payload + _TAIL if fin else payload
        obj = self._obj
        out: bytes
        try:
            if limit is None:
                out = obj.decompress(data)
            else:
                out = obj.decompress(data, limit + 1)
                if len(out) > limit:
                    raise TooBig(f"inflates to more than {limit} bytes")
        except zlib.error as exc:
            self._obj = zlib.decompressobj(-15)
            raise InflateError(f"invalid compressed data: {exc}") from None
        if fin and (self.no_context_takeover or obj.eof):
            self._obj = zlib.decompressobj(-15)  # a fresh context (or after a final block)
        return out


class RawInflater(Inflater):
    """Passthrough (not automatic: a relay asks for it): rsv1 is accepted where
    permessage-deflate puts it, but nothing is inflated: `inflate` returns the payload
    as it came, compressed, for a relay to forward untouched. Nothing checks what is
    inside (the UTF-8 of compressed text is the far peer's to check)."""

    __slots__ = ()
    raw: ClassVar[bool] = True

    def inflate(self, payload: bytes, fin: bool, limit: int | None = None) -> bytes:
        return payload


class PerMessageDeflate:
    """The extension's state on one connection side: this side's `Deflater` and the
    `Inflater` for what the peer sends, from the agreed parameters."""

    __slots__ = ("deflater", "inflater", "params")

    def __init__(self, params: DeflateParams, client: bool, level: int = 6, mem_level: int = 8) -> None:
        self.params = params
        if client:
            bits, local_reset, remote_reset = (
                params.client_max_window_bits,
                params.client_no_context_takeover,
                params.server_no_context_takeover,
            )
        else:
            bits, local_reset, remote_reset = (
                params.server_max_window_bits,
                params.server_no_context_takeover,
                params.client_no_context_takeover,
            )
        self.deflater = Deflater(bits, local_reset, level, mem_level)
        self.inflater = Inflater(remote_reset)
