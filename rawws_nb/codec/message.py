"""Message types (declarations) and decoded messages (values)."""

from __future__ import annotations

import io
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
from .fields import FieldInfo, field_infos, to_plain, unwrap

__all__ = ["Message", "MessageType", "Version"]

Version = tuple[int, int]

_R = TypeVar("_R", bound=tuple[Any, ...])


@dataclass(frozen=True)
class MessageType:
    """One message of a protocol: a `name`, a type `code` and a construct `Struct` for
    its payload (`Struct()` for a message without fields).

    >>> MessageType("chat", 2, Struct("id" / Int32ub, "text" / PascalString(Int16ub, "utf8")))

    Field names must not start with `_` (construct uses those for its own bookkeeping).
    """

    name: str
    code: int
    struct: cs.Construct = field(default_factory=cs.Struct)
    doc: str = ""

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

    @cached_property
    def fields(self) -> tuple[FieldInfo, ...]:
        """Metadata of each named field, in wire order (for forms, docs and tests)."""
        return field_infos(self.struct)

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


class PayloadCodec:
    """Encodes and decodes one message type's payload.

    The compiled functions (see `fastpath`) handle the common case; for input they do
    not take (one of `fastpath.DECODE_MISSES`/`ENCODE_MISSES`), the reference path
    (plain construct) decides, and produces the error with offset, path and hex context.
    """

    def __init__(self, message_type: MessageType) -> None:
        self.message_type = message_type
        self.struct = unwrap(message_type.struct)[0]
        self.subcons = list(self.struct.subcons)
        self.names = frozenset(sc.name for sc in self.subcons if sc.name)
        self.required = tuple(sc.name for sc in self.subcons if sc.name and not sc.flagbuildnone)
        self._prefixes: list[cs.Struct] = []
        self.compiled: CompiledPayload | None
        try:
            self.compiled = compile_payload(self.struct)
        except Unsupported:  # plain construct does the work
            self.compiled = None

    def compile_fused(self, header: HeaderSpec, template: ResultTemplate[_R]) -> FusedCodec[_R] | None:
        """Whole-message functions with a fixed `header` in front (see
        `fastpath.compile_fused`), or None when the payload is not compiled or not fixed-size."""
        if self.compiled is None:
            return None
        return compile_fused(self.struct, header, self.message_type.code, template)

    # -- encoding

    def encode(self, fields: dict[str, Any]) -> bytes:
        if self.compiled is not None:
            try:
                return self.compiled.encode(fields)
            except ENCODE_MISSES:
                pass
        return self.encode_reference(fields)

    def encode_reference(self, fields: dict[str, Any]) -> bytes:
        """Plain construct, after checking field names; raises `EncodeError`."""
        name = self.message_type.name
        unknown = [k for k in fields if k not in self.names]
        if unknown:
            known = ", ".join(sorted(self.names)) or "none"
            raise EncodeError(
                f"unknown field {unknown[0]!r} (fields: {known})", path=f"{name}.{unknown[0]}", msg_type=name
            )
        missing = [k for k in self.required if k not in fields]
        if missing:
            before = self._built_before(missing[0], fields)
            raise EncodeError(
                f"missing field {missing[0]!r}",
                path=f"{name}.{missing[0]}",
                msg_type=name,
                offset=None if before is None else len(before),
                data=before or b"",
            )
        stream = io.BytesIO()
        try:
            self.struct.build_stream(fields, stream)
        except CONSTRUCT_BUILD_ERRORS as exc:
            path = construct_error_path(exc)
            raise EncodeError(
                construct_error_reason(exc),
                offset=stream.tell(),
                path=f"{name}.{path}" if path else name,
                msg_type=name,
                data=stream.getvalue(),
            ) from None
        return stream.getvalue()

    def _built_before(self, missing: str, fields: dict[str, Any]) -> bytes | None:
        """The bytes of the fields before `missing` (where it would start), if they build."""
        at = next(i for i, sc in enumerate(self.subcons) if sc.name == missing)
        try:
            before: bytes = cs.Struct(*self.subcons[:at]).build(fields)
        except CONSTRUCT_BUILD_ERRORS:
            return None
        return before

    # -- decoding

    def decode(self, data: bytes, start: int, end: int) -> dict[str, Any]:
        if self.compiled is not None:
            try:
                return self.compiled.decode(data, start, end)
            except DECODE_MISSES:
                pass
        return self.decode_reference(data, start, end)

    def decode_reference(self, data: bytes, start: int, end: int, base: int = 0) -> dict[str, Any]:
        """Plain construct on `data[start:end]`; raises `DecodeError` whose offsets count
        from `base` (the message start) and whose excerpt shows `data[base:]`."""
        name = self.message_type.name
        payload = bytes(data[start:end])
        stream = io.BytesIO(payload)
        try:
            obj = self.struct.parse_stream(stream)
        except cs.ConstructError as exc:
            field_start, field_name = self._locate(payload)
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
        return fields

    def _locate(self, payload: bytes) -> tuple[int, str]:
        """Offset and name of the first top-level field that fails to parse."""
        if not self._prefixes:
            self._prefixes = [cs.Struct(*self.subcons[: i + 1]) for i in range(len(self.subcons))]
        start = 0
        for sc, prefix in zip(self.subcons, self._prefixes, strict=True):
            stream = io.BytesIO(payload)
            try:
                prefix.parse_stream(stream)
            except cs.ConstructError:
                return start, sc.name or ""
            start = stream.tell()
        return start, ""
