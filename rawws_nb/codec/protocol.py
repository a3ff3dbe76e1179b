"""`Protocol`: a named binary protocol with versions, each a set of message types.

```python
chat = MessageType("chat", 2, Struct("id" / Int32ub, "text" / PascalString(Int16ub, "utf8")))
ack = MessageType("ack", 3, Struct("id" / Int32ub))
proto = Protocol("demo", {(1, 0): [chat, ack], (2, 0): [chat, ack, ...]})

data = proto.encode("chat", id=1, text="hi")     # bytes, newest version
proto.frame("chat", id=1, text="hi")             # Frame.Binary
msg = proto.decode(data)                          # Message(name, code, fields, raw, version)
v1 = proto.for_version((1, 0))                    # the same API, version 1.0's message set
```

Choosing a version: `protocol.for_version(v)` returns a `ProtocolVersion` with the same
methods; the `Protocol`'s own methods use its newest version. After negotiation,
`session.protocol.for_version(session.protocol_version)` is the codec both peers use.

Errors: bytes that do not form a message raise `DecodeError`, fields that do not encode
`EncodeError` (both `ValueError`s and `rawws_nb.RawWsError`s). Encoding and decoding
first try compiled fast paths (`fastpath`), then plain construct, which decides and
reports. An exception that is neither construct's nor one of the fast paths' declared
misses (say, a `RuntimeError` from a custom adapter) is a bug and propagates as it is.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import construct as cs

from ..frames import Frame
from .errors import DecodeError, EncodeError
from .fastpath import DECODE_MISSES, ENCODE_MISSES, HeaderLayout, Miss, ResultTemplate, Unsupported, compile_framed
from .framing import FieldFraming, Framing, HeaderFraming, make_framing
from .message import Message, MessageType, Version

if TYPE_CHECKING:
    import pandas as pd

    from .stream import StreamDecoder

__all__ = [
    "Protocol",
    "ProtocolVersion",
    "Version",
    "VersionLike",
    "decode_for_timeline",
    "format_version",
    "parse_version",
]

VersionLike = tuple[int, int] | Sequence[int] | str | int

_V = TypeVar("_V", bound=VersionLike)
_Encoder = Callable[[dict[str, Any]], bytes]
_Decoder = Callable[[bytes], Message]

_new_tuple = tuple.__new__
_DEFAULT_MAX_PAYLOAD = 1 << 24


def parse_version(version: VersionLike) -> Version:
    """`(2, 0)`, `[2, 0]`, `"2.0"`, `"2"` or `2` -> `(2, 0)`; each part 0..255 (one byte
    on the wire)."""
    if isinstance(version, bool):
        raise TypeError(f"not a version: {version!r}")
    if isinstance(version, int):
        parts: tuple[Any, ...] = (version, 0)
    elif isinstance(version, str):
        try:
            parts = tuple(int(p) for p in version.strip().lstrip("v").split("."))
        except ValueError:
            raise ValueError(f"not a version: {version!r}") from None
        if len(parts) == 1:
            parts = (parts[0], 0)
    else:
        parts = tuple(version)
    if len(parts) != 2 or not all(isinstance(p, int) and not isinstance(p, bool) and 0 <= p <= 255 for p in parts):
        raise ValueError(f"a version is (major, minor) with each part in 0..255, got {version!r}")
    return (parts[0], parts[1])


def format_version(version: Version) -> str:
    return f"{version[0]}.{version[1]}"


def _as_bytes(data: object) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, Frame):
        return data.data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"expected bytes or a Frame, got {type(data).__name__}")


class ProtocolVersion:
    """A protocol at one version: encode, decode and stream-decode its message set."""

    def __init__(self, protocol: Protocol, version: Version, message_types: Iterable[MessageType]) -> None:
        self.protocol = protocol
        self.version = version
        self.framing: Framing = protocol.framing
        self._by_name: dict[str, MessageType] = {}
        self._by_code: dict[int, MessageType] = {}
        #: Per message type, its header layout (framings with header fields only).
        self.layouts: dict[str, HeaderLayout] = {}
        where = f"{protocol.name} v{format_version(version)}"
        for mt in message_types:
            if not isinstance(mt, MessageType):
                raise TypeError(f"{where}: expected MessageType, got {type(mt).__name__}")
            mt = self._with_header(mt, where)
            if mt.name in self._by_name:
                raise ValueError(f"{where}: two message types named {mt.name!r}")
            if mt.code in self._by_code:
                other = self._by_code[mt.code].name
                raise ValueError(f"{where}: type code {mt.code} used by {other!r} and {mt.name!r}")
            self.framing.check_code(mt.code)
            self._by_name[mt.name] = mt
            self._by_code[mt.code] = mt
        # Fast paths per message type (compiled payloads behind a fixed header); each
        # raises one of fastpath's ENCODE_MISSES/DECODE_MISSES for input it does not take.
        self._encoders: dict[str, _Encoder] = {}
        self._decoders: dict[int, _Decoder] = {}
        self._fast_decode: set[str] = set()
        for mt in self._by_name.values():
            self._compile(mt)

    def _with_header(self, mt: MessageType, where: str) -> MessageType:
        """`mt` with its header layout checked (and the framing's own header fields
        that it does not redeclare added to its `header`, so they are message fields)."""
        framing = self.framing
        if not isinstance(framing, FieldFraming):
            if mt.header:
                raise ValueError(f"{where}: {mt.name} redeclares header fields, but the framing has none")
            return mt
        missing = {n: framing.field_construct(n) for n in framing.header_names if n not in mt.header}
        if missing:
            mt = dataclasses.replace(mt, header={**missing, **mt.header})
        try:
            layout = framing.layout_for(dict(mt.header))
        except ValueError as exc:
            raise ValueError(f"{where}: {mt.name}: {exc}") from None
        clash = set(layout.field_names) & set(mt.codec.names)
        if clash:
            raise ValueError(f"{where}: {mt.name}: header and payload both have field {sorted(clash)[0]!r}")
        self.layouts[mt.name] = layout
        return mt

    def _compile_framed(self, mt: MessageType, framing: FieldFraming) -> None:
        layout = self.layouts[mt.name]
        if mt.codec.compiled is None:
            return
        template = ResultTemplate(Message, (mt.name, mt.code), (self.version,))
        try:
            framed = compile_framed(mt.struct, layout, mt.code, framing.max_payload, template)
        except Unsupported:
            return
        self._encoders[mt.name] = framed.encode
        if framing.type_first_byte:
            leaf = next(leaf for leaf in layout.leaves if leaf.name == "type")
            for first in range(256):
                if (first >> leaf.shift) & leaf.mask == mt.code:
                    self._decoders[first] = framed.decode
            self._fast_decode.add(mt.name)

    def _compile(self, mt: MessageType) -> None:
        codec = mt.codec
        compiled = codec.compiled
        framing = self.framing
        if isinstance(framing, FieldFraming):
            self._compile_framed(mt, framing)
            return
        if compiled is None or not isinstance(framing, HeaderFraming):
            return
        fused = codec.compile_fused(framing.header, ResultTemplate(Message, (mt.name, mt.code), (self.version,)))
        if fused is not None and fused.size <= framing.max_payload:
            self._encoders[mt.name] = fused.encode
            if framing.type_first_byte:
                self._decoders[mt.code] = fused.decode
                self._fast_decode.add(mt.name)
            return
        payload_encode, payload_decode = compiled.encode, compiled.decode
        pack, code, limit = framing.pack, mt.code, framing.max_payload

        def encode(fields: dict[str, Any]) -> bytes:
            payload = payload_encode(fields)
            if len(payload) > limit:
                raise Miss
            try:
                return pack(code, payload)
            except EncodeError:  # the length does not fit the header: the general path says so
                raise Miss from None

        self._encoders[mt.name] = encode
        if not framing.type_first_byte:
            return
        unpack_header, size, li = framing.unpack_header, framing.size, framing.length_index
        name, version = mt.name, self.version

        def decode(data: bytes) -> Message:
            end = len(data)
            if unpack_header(data)[li] != end - size or end - size > limit:
                raise Miss
            return _new_tuple(Message, (name, code, payload_decode(data, size, end), data, version))

        self._decoders[mt.code] = decode
        self._fast_decode.add(mt.name)

    def fast_paths(self, key: str | int) -> tuple[bool, bool]:
        """Whether message type `key` (name or code) encodes, and decodes, through a
        compiled fast path in this version (else plain construct does the work)."""
        mt = self.message_type(key)
        return mt.name in self._encoders, mt.name in self._fast_decode

    # -- the registry

    @property
    def name(self) -> str:
        return self.protocol.name

    @property
    def message_types(self) -> tuple[MessageType, ...]:
        return tuple(self._by_name.values())

    def message_type(self, key: str | int) -> MessageType:
        """The message type with this name or type code (KeyError if none)."""
        found = self._by_code.get(key) if isinstance(key, int) else self._by_name.get(key)
        if found is None:
            raise KeyError(f"{self.protocol.name} v{format_version(self.version)} has no message type {key!r}")
        return found

    def __contains__(self, key: object) -> bool:
        return key in self._by_name or key in self._by_code

    def __iter__(self) -> Iterator[MessageType]:
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    def __repr__(self) -> str:
        names = ", ".join(f"{m.name}={m.code}" for m in self._by_name.values())
        return f"<{self.protocol.name} v{format_version(self.version)}: {names}>"

    # -- encoding

    def encode(self, name: str, /, **fields: Any) -> bytes:
        """The bytes of message `name` with these fields, framing included."""
        try:
            return self._encoders[name](fields)
        except ENCODE_MISSES:  # KeyError included: no fast path for `name`, or a missing field
            return self._encode_general(name, fields)

    def encode_fields(self, name: str, fields: Mapping[str, Any]) -> bytes:
        """`encode` with the fields as a mapping (for names that are not identifiers)."""
        return self.encode(name, **dict(fields))

    def frame(self, name: str, /, **fields: Any) -> Frame:
        """The message as a `Frame.Binary`, ready for `session.send`."""
        return Frame.Binary(self.encode(name, **fields))

    def _encode_general(self, name: str, fields: dict[str, Any]) -> bytes:
        mt = self._by_name.get(name)
        if mt is None:
            known = ", ".join(self._by_name) or "none"
            raise EncodeError(
                f"no message type {name!r} in {self.protocol.name} v{format_version(self.version)} (has: {known})",
                path=str(name),
            )
        framing = self.framing
        if isinstance(framing, FieldFraming):
            return self._encode_with_header(mt, framing, fields)
        payload = mt.codec.encode(fields)
        if len(payload) > self.framing.max_payload:
            raise EncodeError(
                f"payload of {len(payload)} bytes exceeds max_payload={self.framing.max_payload}",
                path=name,
                msg_type=name,
            )
        try:
            return self.framing.pack(mt.code, payload)
        except EncodeError as exc:
            exc.msg_type = name
            raise

    def _encode_with_header(self, mt: MessageType, framing: FieldFraming, fields: dict[str, Any]) -> bytes:
        layout = self.layouts[mt.name]
        names = {leaf.name for leaf in layout.leaves if leaf.name and leaf.name != "type"}
        header = {k: v for k, v in fields.items() if k in names}
        rest = {k: v for k, v in fields.items() if k not in names}
        try:
            head, ctx = framing.encode_header(layout, mt.code, header)
        except EncodeError as exc:
            raise EncodeError(exc.reason, path=f"{mt.name}.{exc.path}", msg_type=mt.name) from None
        payload = mt.codec.encode(rest, ctx)
        try:
            length = framing.encode_length(len(payload))
        except EncodeError as exc:
            raise EncodeError(exc.reason, path=mt.name, msg_type=mt.name) from None
        return head + length + payload

    # -- decoding

    def decode(self, data: bytes | bytearray | memoryview | Frame) -> Message:
        """One whole message (a `Frame.Binary` or its payload) -> `Message`.

        Raises `DecodeError` for truncated or over-long data, unknown type codes and
        fields that do not parse (`TypeError` for something that is not bytes or a frame).
        """
        if data.__class__ is not bytes:
            data = _as_bytes(data)
        try:
            fast = self._decoders[data[0]]
        except (IndexError, KeyError):  # empty, or a type code without a fast path
            return self.decode_general(data)
        try:
            return fast(data)
        except DECODE_MISSES:
            return self.decode_general(data)

    def decode_general(self, data: bytes) -> Message:
        """`decode` without the per-type fast paths: the framing splits the message, then
        the message type's payload codec decodes it. The same result as `decode`
        (`check_roundtrip` compares them)."""
        code, start, end, stop = self.framing.split(data, 0, final=True)
        if stop != len(data):
            raise DecodeError(
                f"{len(data) - stop} bytes after the end of the message (several messages? use decoder())",
                offset=stop,
                data=data,
                msg_type=self._by_code[code].name if code in self._by_code else None,
            )
        mt = self._by_code.get(code)
        if mt is None:
            known = ", ".join(f"{m.name}={m.code}" for m in self._by_name.values())
            raise DecodeError(
                f"unknown type code {code} in {self.protocol.name} v{format_version(self.version)} ({known})",
                offset=self.framing.type_offset,
                path="type",
                data=data,
            )
        framing = self.framing
        if isinstance(framing, FieldFraming):
            try:
                header = framing.decode_header(self.layouts[mt.name], data)
            except DecodeError as exc:
                raise DecodeError(
                    exc.reason, offset=exc.offset, path=f"{mt.name}.{exc.path}", msg_type=mt.name, data=data
                ) from None
            fields = {**header, **mt.codec.decode(data, start, end, header)}
        else:
            fields = mt.codec.decode(data, start, end)
        return _new_tuple(Message, (mt.name, code, fields, data, self.version))

    def decode_payload(self, key: str | int, payload: bytes) -> dict[str, Any]:
        """Just the fields of a payload of message type `key` (no framing)."""
        data = _as_bytes(payload)
        mt = self.message_type(key)
        if mt.codec.context:
            raise ValueError(f"{mt.name}: its payload depends on header fields; decode the whole message")
        return mt.codec.decode(data, 0, len(data))

    def decoder(self, *, errors: Literal["raise", "skip"] = "raise") -> StreamDecoder:
        """A `StreamDecoder` for this version: feed it frame payloads, get whole messages."""
        from .stream import StreamDecoder

        return StreamDecoder(self, errors=errors)

    # -- description

    def timeline_decoder(
        self, version: VersionLike | None = None
    ) -> Callable[[bytes], tuple[str | None, dict[str, Any] | None, str | None]]:
        """The decoder timelines use for this protocol: `decode_for_timeline` bound to it
        and `version` (negotiation frames and several messages per frame recognised).
        The recorder and `df.rawws.decode` find it duck-typed: they import no codec."""
        return functools.partial(decode_for_timeline, self, version)

    def describe(self) -> pd.DataFrame:
        """One row per field (one per message type without fields)."""
        return _describe([self])


class Protocol:
    """A binary protocol: a name, a framing and, per version, a set of `MessageType`s.

    `versions` maps versions (`(1, 0)`, `"1.0"`, ...) to message types; a plain list of
    message types is version 1.0. `framing` is a construct `Struct` with a `type` and a
    `payload` field (default: `"type"/Int8ub, "length"/Int32ub, "payload"/Bytes(this.length)`).
    `max_payload` bounds declared lengths (a stream decoder never buffers more).

    Encoding and decoding methods use the newest version; `for_version(v)` gives the
    same methods for another one.
    """

    def __init__(
        self,
        name: str,
        versions: Mapping[_V, Iterable[MessageType]] | Iterable[MessageType],
        *,
        framing: cs.Construct | None = None,
        max_payload: int = _DEFAULT_MAX_PAYLOAD,
        doc: str = "",
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError("a protocol needs a name")
        self.name = name
        self.doc = doc
        self.framing = make_framing(framing, max_payload)
        table: list[tuple[VersionLike, Iterable[MessageType]]] = (
            list(versions.items()) if isinstance(versions, Mapping) else [((1, 0), versions)]
        )
        if not table:
            raise ValueError(f"{name}: at least one version is needed")
        by_version: dict[Version, ProtocolVersion] = {}
        for key, types in table:
            version = parse_version(key)
            if version in by_version:
                raise ValueError(f"{name}: version {format_version(version)} given twice")
            by_version[version] = ProtocolVersion(self, version, list(types))
        self._versions = dict(sorted(by_version.items()))
        self._latest = self._versions[max(self._versions)]
        self._lookup: dict[object, ProtocolVersion] = dict(self._versions.items())
        # Hot paths: the newest version's bound methods, so `proto.encode(...)` costs no
        # extra call. The methods below document them; a subclass that overrides one keeps it.
        for method in ("encode", "decode", "frame"):
            if getattr(type(self), method) is getattr(Protocol, method):
                setattr(self, method, getattr(self._latest, method))

    @property
    def versions(self) -> tuple[Version, ...]:
        """Every version, oldest first."""
        return tuple(self._versions)

    @property
    def latest(self) -> Version:
        return self._latest.version

    @property
    def default(self) -> ProtocolVersion:
        """The newest version's codec (what this object's own methods use)."""
        return self._latest

    def for_version(self, version: VersionLike | None = None) -> ProtocolVersion:
        """The codec of one version (the newest for None); ValueError if unknown."""
        if version is None:
            return self._latest
        try:
            return self._lookup[version]
        except (KeyError, TypeError):  # another spelling ("2.0", [2, 0]), or not hashable
            pass
        parsed = parse_version(version)
        found = self._versions.get(parsed)
        if found is None:
            known = ", ".join(format_version(v) for v in self._versions)
            raise ValueError(f"{self.name} has no version {format_version(parsed)} (has {known})")
        return found

    def supports(self, version: VersionLike) -> bool:
        try:
            return parse_version(version) in self._versions
        except (TypeError, ValueError):
            return False

    @property
    def message_types(self) -> tuple[MessageType, ...]:
        return self._latest.message_types

    def message_type(self, key: str | int) -> MessageType:
        return self._latest.message_type(key)

    def encode(self, name: str, /, **fields: Any) -> bytes:
        """`encode` with the newest version (see `ProtocolVersion.encode`)."""
        return self._latest.encode(name, **fields)

    def encode_fields(self, name: str, fields: Mapping[str, Any]) -> bytes:
        return self._latest.encode_fields(name, fields)

    def frame(self, name: str, /, **fields: Any) -> Frame:
        return self._latest.frame(name, **fields)

    def decode(self, data: bytes | bytearray | memoryview | Frame) -> Message:
        return self._latest.decode(data)

    def decoder(self, *, errors: Literal["raise", "skip"] = "raise") -> StreamDecoder:
        return self._latest.decoder(errors=errors)

    def timeline_decoder(
        self, version: VersionLike | None = None
    ) -> Callable[[bytes], tuple[str | None, dict[str, Any] | None, str | None]]:
        """The decoder timelines use for this protocol: `decode_for_timeline` bound to it
        and `version` (negotiation frames and several messages per frame recognised).
        The recorder and `df.rawws.decode` find it duck-typed: they import no codec."""
        return functools.partial(decode_for_timeline, self, version)

    def describe(self) -> pd.DataFrame:
        """One row per (version, message type, field)."""
        return _describe(list(self._versions.values()))

    def __repr__(self) -> str:
        versions = ", ".join(format_version(v) for v in self._versions)
        return f"<Protocol {self.name!r} versions {versions}>"


_COLUMNS = ["version", "message", "code", "field", "type", "kind", "required", "default", "choices", "size", "doc"]


def _describe(codecs: list[ProtocolVersion]) -> pd.DataFrame:
    import pandas as pd

    rows = []
    for pv in codecs:
        for mt in pv.message_types:
            base = {"version": format_version(pv.version), "message": mt.name, "code": mt.code}
            if not mt.fields:
                rows.append({**base, "doc": mt.doc})
            for f in mt.fields:
                rows.append(
                    {
                        **base,
                        "field": f.name,
                        "type": f.type,
                        "kind": f.kind,
                        "required": f.required,
                        "default": f.default,
                        "choices": ", ".join(f.choices) or None,
                        "size": f.size,
                        "doc": f.doc or mt.doc,
                    }
                )
    frame = pd.DataFrame(rows, columns=_COLUMNS)
    return frame.astype({"code": "int64", "size": "Int64", "required": "boolean"})


def decode_for_timeline(
    protocol: Protocol | ProtocolVersion | None,
    version: VersionLike | None,
    payload: bytes,
) -> tuple[str | None, dict[str, Any] | None, str | None]:
    """`(msg_type, fields, error)` for one Binary frame's payload; never raises.

    `version` None means no version was negotiated (yet): the protocol's newest version
    decodes, and a payload that is not a message but has the shape of a negotiation
    frame (`[major, minor]` pairs naming a version of the protocol) gives
    `("negotiation", {"versions": ["2.0", "1.0"]}, None)`. A payload holding several
    whole messages gives `("say+ack", {"messages": [{"name": "say", "fields": {...}},
    ...]}, None)`. A payload that does not decode gives `(type name if known, None,
    error text)`.
    """
    if protocol is None:
        return None, None, None
    try:
        if isinstance(protocol, ProtocolVersion):
            codec = protocol if version is None else protocol.protocol.for_version(version)
        else:
            codec = protocol.for_version(version)
        msg = codec.decode(payload)
    except DecodeError as exc:
        several = _several_messages(codec, payload)
        if several is not None:
            return several
        if version is None:
            versions = _negotiation_versions(codec.protocol, payload)
            if versions is not None:
                return "negotiation", {"versions": versions}, None
        return exc.msg_type, None, str(exc)
    except (ValueError, TypeError) as exc:  # a version the protocol lacks; a payload that is not bytes
        return None, None, f"{type(exc).__name__}: {exc}"
    return msg.name, msg.fields, None


def _negotiation_versions(protocol: Protocol, payload: bytes) -> list[str] | None:
    """The versions of an offer or answer payload, if it looks like one for `protocol`."""
    if not isinstance(payload, bytes) or not payload or len(payload) % 2 or len(payload) > 64:
        return None
    pairs = [(payload[i], payload[i + 1]) for i in range(0, len(payload), 2)]
    if not any(protocol.supports(v) for v in pairs):
        return None
    return [format_version(v) for v in pairs]


def _several_messages(codec: ProtocolVersion, payload: bytes) -> tuple[str, dict[str, Any], None] | None:
    """`("a+b", {"messages": [...]}, None)` when `payload` is two or more whole messages."""
    decoder = codec.decoder()
    try:
        messages = decoder.feed(payload)
    except DecodeError:
        return None
    if len(messages) < 2 or decoder.pending:
        return None
    found = [{"name": m.name, "fields": m.fields} for m in messages]
    return "+".join(m.name for m in messages), {"messages": found}, None
