"""Message types (declarations) and decoded messages (values)."""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, NamedTuple, TypeVar

import construct as cs

from ..frames import Frame
from .errors import CONSTRUCT_BUILD_ERRORS, DecodeError, EncodeError, construct_error_path, construct_error_reason
from .fastpath import (
    DECODE_MISSES,
    ENCODE_MISSES,
    CompiledPayload,
    FusedCodec,
    HeaderSpec,
    ResultTemplate,
    Unsupported,
    compile_fused,
    compile_payload,
)
from .fields import FieldInfo, field_info, field_infos, to_plain, unwrap

__all__ = ["Message", "MessageType", "Version"]

Version = tuple[int, int]

_R = TypeVar("_R", bound=tuple[Any, ...])


@dataclass(frozen=True)
class MessageType:
    """One message of a protocol: a `name`, a type `code` and a construct `Struct` for
    its payload (`Struct()` for a message without fields).

    >>> MessageType("chat", 2, Struct("id" / Int32ub, "text" / PascalString(Int16ub, "utf8")))

    `header` redeclares header fields of the framing for this message type (framings
    with header fields, `FieldFraming`): MQTT's PUBLISH declares its `flags` nibble as
    `Struct("dup" / Flag, "qos" / BitsInteger(2), "retain" / Flag)` (bit-level
    constructs for a bit field), SUBSCRIBE as `Const(0b0010, Nibble)`. The named parts of
    a redeclared field (`dup`, `qos`, `retain`), or the field itself when it is not a
    `Struct`, are fields of the message, before the payload's; `Const`s are checked and
    written, not reported. Conditions in the payload may read them (`If(this.qos > 0,
    Int16ub)`).

    Field names must not start with `_` (construct uses those for its own bookkeeping).
    """

    name: str
    code: int
    struct: cs.Construct = field(default_factory=cs.Struct)
    doc: str = ""
    header: Mapping[str, cs.Construct] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError("a message type needs a non-empty name")
        if not isinstance(self.code, int) or isinstance(self.code, bool) or self.code < 0:
            raise ValueError(f"{self.name}: type code must be a non-negative int, got {self.code!r}")
        inner = unwrap(self.struct)[0]
        if not isinstance(inner, cs.Struct):
            raise TypeError(f"{self.name}: payload must be a construct Struct, got {type(inner).__name__}")
        for sc in inner.subcons:
            if sc.name and sc.name.startswith("_"):
                raise ValueError(f"{self.name}: field names must not start with '_' ({sc.name!r})")
        if not isinstance(self.header, Mapping):
            raise TypeError(f"{self.name}: header must map header field names to constructs")
        for key, c in self.header.items():
            if not isinstance(key, str) or not key or key.startswith("_") or key in ("type", "length", "payload"):
                raise ValueError(f"{self.name}: cannot redeclare header field {key!r}")
            if not isinstance(c, cs.Construct):
                raise TypeError(f"{self.name}: header field {key!r} must be a construct, got {type(c).__name__}")
        clash = set(self.header_names) & {sc.name for sc in inner.subcons if sc.name}
        if clash:
            raise ValueError(f"{self.name}: header and payload both have field {sorted(clash)[0]!r}")

    @cached_property
    def header_names(self) -> tuple[str, ...]:
        """The fields the `header` redeclarations add to the message, in wire order."""
        return tuple(info.name for info in self.header_fields)

    @cached_property
    def header_fields(self) -> tuple[FieldInfo, ...]:
        """Metadata of the header fields this message type declares (constants left out)."""
        out: list[FieldInfo] = []
        for key, c in self.header.items():
            out += _header_infos(c, key)
        return tuple(out)

    @cached_property
    def fields(self) -> tuple[FieldInfo, ...]:
        """Metadata of each named field, in wire order (for forms, docs and tests):
        header fields first, then the payload's."""
        return self.header_fields + field_infos(self.struct)

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def example(self) -> dict[str, Any]:
        """Valid starting values for every field that needs one (defaults, zeros)."""
        return {f.name: f.initial for f in self.fields if f.required or f.default is not None}

    @cached_property
    def codec(self) -> PayloadCodec:
        """The payload codec (compiled when possible, construct as the reference)."""
        return PayloadCodec(self)

    def __repr__(self) -> str:
        fields = ", ".join(f"{f.name}: {f.type}" for f in self.fields)
        return f"MessageType({self.name!r}, {self.code}, {{{fields}}})"


def _header_infos(c: cs.Construct, name: str) -> list[FieldInfo]:
    inner = unwrap(c)[0]
    if isinstance(inner, cs.Const) or not name:
        return []
    if isinstance(inner, cs.Transformed) and isinstance(unwrap(inner.subcon)[0], cs.Struct):  # a BitStruct
        inner = unwrap(inner.subcon)[0]
    if isinstance(inner, cs.Struct):
        out: list[FieldInfo] = []
        for sc in inner.subcons:
            out += _header_infos(sc, sc.name or "")
        return out
    if isinstance(inner, cs.Padded) and inner.subcon is cs.Pass:
        return []
    return [field_info(c, name)]


class Message(NamedTuple):
    """A decoded message: `name`, type `code`, `fields` (a plain dict), the `raw` bytes
    of the whole message (framing included) and the protocol `version` it was read with.

    A named tuple rather than a dataclass: decoding creates one per message, and a tuple
    is the cheapest immutable value to create.
    """

    name: str
    code: int
    fields: dict[str, Any]
    raw: bytes
    version: Version

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.fields.items())
        return f"{self.name}({fields}) [v{self.version[0]}.{self.version[1]}, {len(self.raw)} bytes]"

    def get(self, key: str, default: Any = None) -> Any:
        """A field's value, or `default`."""
        return self.fields.get(key, default)

    def frame(self) -> Frame:
        """The message as a `Frame.Binary`."""
        return Frame.Binary(self.raw)


def _from_params(name: str) -> Callable[[Any], Any]:
    """A `Computed` function: the value `name` given to construct's parse/build as a keyword."""

    def value(context: Any) -> Any:
        return context["_params"][name]

    return value


class PayloadCodec:
    """Encodes and decodes one message type's payload.

    The compiled functions (see `fastpath`) handle the common case; for input they do
    not take (one of `fastpath.DECODE_MISSES`/`ENCODE_MISSES`), the reference path
    (plain construct) decides, and produces the error with offset, path and hex context.
    """

    def __init__(self, message_type: MessageType, context: tuple[str, ...] | None = None) -> None:
        self.message_type = message_type
        #: Header fields the payload's conditions may read (`this.qos`): given to `decode`
        #: and `encode` as `ctx`, and to construct as `Computed` fields ahead of the payload's.
        self.context = message_type.header_names if context is None else context
        own = list(unwrap(message_type.struct)[0].subcons)
        self.names = frozenset(sc.name for sc in own if sc.name)
        self.required = tuple(
            sc.name for sc in own if sc.name and not sc.flagbuildnone and not isinstance(unwrap(sc)[0], cs.IfThenElse)
        )
        self.conditional = tuple(sc.name for sc in own if sc.name and isinstance(unwrap(sc)[0], cs.IfThenElse))
        computed = [n / cs.Computed(_from_params(n)) for n in self.context]
        self.struct = cs.Struct(*computed, *own) if computed else unwrap(message_type.struct)[0]
        self.subcons = list(self.struct.subcons)
        self._prefixes: list[cs.Struct] = []
        self.compiled: CompiledPayload | None
        try:
            own_struct = unwrap(message_type.struct)[0]
            self.compiled = compile_payload(own_struct, self.context) if self.context else compile_payload(own_struct)
        except Unsupported:  # plain construct does the work
            self.compiled = None

    def compile_fused(self, header: HeaderSpec, template: ResultTemplate[_R]) -> FusedCodec[_R] | None:
        """Whole-message functions with a fixed `header` in front (see
        `fastpath.compile_fused`), or None when the payload is not compiled or not fixed-size."""
        if self.compiled is None or self.context:
            return None
        return compile_fused(self.struct, header, self.message_type.code, template)

    def _ctx(self, ctx: Mapping[str, Any] | None) -> dict[str, Any]:
        if not self.context:
            return {}
        ctx = ctx or {}
        return {n: ctx.get(n) for n in self.context}

    # -- encoding

    def encode(self, fields: dict[str, Any], ctx: Mapping[str, Any] | None = None) -> bytes:
        """The payload bytes; `ctx` holds the header fields conditions read."""
        if self.compiled is not None:
            try:
                return self.compiled.encode(fields, self._ctx(ctx))
            except ENCODE_MISSES:
                pass
        return self.encode_reference(fields, ctx)

    def encode_reference(self, fields: dict[str, Any], ctx: Mapping[str, Any] | None = None) -> bytes:
        """Plain construct, after checking field names; raises `EncodeError`. Fields under
        `If`/`IfThenElse` may be left out (they build as None: nothing, when their
        condition is false)."""
        context = self._ctx(ctx)
        name = self.message_type.name
        unknown = [k for k in fields if k not in self.names]
        if unknown:
            known = ", ".join(sorted(self.names)) or "none"
            raise EncodeError(
                f"unknown field {unknown[0]!r} (fields: {known})", path=f"{name}.{unknown[0]}", msg_type=name
            )
        missing = [k for k in self.required if k not in fields]
        if missing:
            before = self._built_before(missing[0], fields, context)
            raise EncodeError(
                f"missing field {missing[0]!r}",
                path=f"{name}.{missing[0]}",
                msg_type=name,
                offset=None if before is None else len(before),
                data=before or b"",
            )
        left_out = [k for k in self.conditional if k not in fields]
        if left_out:
            fields = {**fields, **dict.fromkeys(left_out)}
        stream = io.BytesIO()
        try:
            self.struct.build_stream(fields, stream, **context)
        except CONSTRUCT_BUILD_ERRORS as exc:
            path = construct_error_path(exc)
            top = path.split(".", 1)[0]
            reason = construct_error_reason(exc)
            if top in left_out:
                sc = next(sc for sc in self.subcons if sc.name == top)
                reason = f"missing field {top!r}: its condition {unwrap(sc)[0].condfunc!r} is true ({reason})"
            raise EncodeError(
                reason,
                offset=stream.tell(),
                path=f"{name}.{path}" if path else name,
                msg_type=name,
                data=stream.getvalue(),
            ) from None
        return stream.getvalue()

    def _built_before(self, missing: str, fields: dict[str, Any], context: dict[str, Any]) -> bytes | None:
        """The bytes of the fields before `missing` (where it would start), if they build."""
        at = next(i for i, sc in enumerate(self.subcons) if sc.name == missing)
        try:
            before: bytes = cs.Struct(*self.subcons[:at]).build(fields, **context)
        except CONSTRUCT_BUILD_ERRORS:
            return None
        return before

    # -- decoding

    def decode(self, data: bytes, start: int, end: int, ctx: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The payload fields of `data[start:end]`; `ctx` holds the header fields
        conditions read."""
        if self.compiled is not None:
            try:
                return self.compiled.decode(data, start, end, self._ctx(ctx))
            except DECODE_MISSES:
                pass
        return self.decode_reference(data, start, end, ctx=ctx)

    def decode_reference(
        self, data: bytes, start: int, end: int, base: int = 0, ctx: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Plain construct on `data[start:end]`; raises `DecodeError` whose offsets count
        from `base` (the message start) and whose excerpt shows `data[base:]`."""
        name = self.message_type.name
        payload = bytes(data[start:end])
        stream = io.BytesIO(payload)
        context = self._ctx(ctx)
        try:
            obj = self.struct.parse_stream(stream, **context)
        except cs.ConstructError as exc:
            field_start, field_name = self._locate(payload, context)
            path = construct_error_path(exc) or field_name
            raise DecodeError(
                construct_error_reason(exc),
                offset=start - base + field_start,
                path=f"{name}.{path}" if path else name,
                msg_type=name,
                data=bytes(data[base:]),
            ) from None
        used = stream.tell()
        if used != len(payload):
            raise DecodeError(
                f"{len(payload) - used} bytes left after the last field",
                offset=start - base + used,
                path=name,
                msg_type=name,
                data=bytes(data[base:]),
            )
        fields: dict[str, Any] = to_plain(obj)
        for n in self.context:
            fields.pop(n, None)
        return fields

    def _locate(self, payload: bytes, context: dict[str, Any]) -> tuple[int, str]:
        """Offset and name of the first top-level field that fails to parse."""
        if not self._prefixes:
            self._prefixes = [cs.Struct(*self.subcons[: i + 1]) for i in range(len(self.subcons))]
        start = 0
        for sc, prefix in zip(self.subcons, self._prefixes, strict=True):
            stream = io.BytesIO(payload)
            try:
                prefix.parse_stream(stream, **context)
            except cs.ConstructError:
                return start, sc.name or ""
            start = stream.tell()
        return start, ""
