"""Field metadata for forms and docs (`FieldInfo`), and plain values from construct results.

`field_infos(struct)` reads a construct `Struct` and describes each named field: its
name, construct type name, kind (int, str, enum, ...), whether it is required, its
default, enum choices, bounds and sizes. A send panel builds a form from this; the
property tests build random valid messages from it.
"""

from __future__ import annotations

import copy
import dataclasses
import struct as _struct
from dataclasses import dataclass
from typing import Any, TypedDict

import construct as cs

from .varint import BoundedVarInt

__all__ = [
    "FieldInfo",
    "field_info",
    "field_infos",
    "pascal_prefix",
    "prefixed_array",
    "to_plain",
    "type_name",
    "unwrap",
]

# Module-level singletons of construct (Int32ub, Float64l, Flag, VarInt...) by identity.
_SINGLETON_NAMES: dict[int, str] = {}
for _name, _obj in vars(cs).items():
    if isinstance(_obj, cs.Construct) and not _name.startswith("_"):
        _SINGLETON_NAMES.setdefault(id(_obj), _name)


@dataclass(frozen=True)
class FieldInfo:
    """One field of a message type.

    `type` is the construct spelling (`Int32ub`, `PascalString(Int16ub, 'utf8')`,
    `Enum(Int8ub)`), `kind` one of int, float, bool, bytes, str, enum, flags, struct,
    array, const, padding, other. `default` is None when there is none (then `required`
    is True unless the construct builds from nothing). `choices` holds enum or flag
    names; `children` the fields of a nested struct; `item` the element of an array.
    `size` is the fixed byte size (None for bit fields: `bits` is their width),
    `max_length` the most bytes a prefixed string or byte field can hold; `min`/`max`
    bound integers. `condition` is the construct expression of a field under
    `If`/`IfThenElse` (`(this['qos'] > 0)`): such a field may be left out when it is
    false, so it is not `required`; the rest describes its "then" branch.
    """

    name: str
    type: str
    kind: str
    required: bool = True
    default: Any = None
    choices: tuple[str, ...] = ()
    size: int | None = None
    min: int | None = None
    max: int | None = None
    encoding: str | None = None
    max_length: int | None = None
    count: int | None = None
    children: tuple[FieldInfo, ...] = ()
    item: FieldInfo | None = None
    doc: str = ""
    condition: str | None = None
    bits: int | None = None

    @property
    def initial(self) -> Any:
        """A valid starting value for a form: the default, else a zero of the right kind."""
        if self.default is not None:
            return copy.deepcopy(self.default)
        if self.kind == "const":
            return None
        zeros: dict[str, Any] = {"int": 0, "float": 0.0, "bool": False, "str": "", "padding": None}
        if self.kind == "bytes":
            return bytes(self.size or 0)
        if self.kind == "enum":
            return self.choices[0] if self.choices else 0
        if self.kind == "flags":
            return {c: False for c in self.choices}
        if self.kind == "struct":
            return {c.name: c.initial for c in self.children}
        if self.kind == "array":
            item = self.item.initial if self.item is not None else None
            return [item] * (self.count or 0)
        return zeros.get(self.kind)


def unwrap(c: cs.Construct) -> tuple[cs.Construct, str | None, str]:
    """Strip `Renamed` layers: (inner construct, name, docs)."""
    name, docs = getattr(c, "name", None), ""
    while isinstance(c, cs.Renamed):
        docs = docs or (c.docs or "")
        c = c.subcon
    return c, name, docs


def _int_bounds(fmt: str) -> tuple[int, int] | None:
    code = fmt[-1]
    if code not in "bBhHiIlLqQnN":
        return None
    bits = 8 * _struct.calcsize(fmt)
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if code.islower() else (0, (1 << bits) - 1)


def pascal_prefix(c: cs.Construct) -> cs.Construct | None:
    """The length field of `Prefixed(lengthfield, GreedyBytes)` (the body of construct's
    `PascalString` and of prefixed bytes), else None."""
    if isinstance(c, cs.Prefixed) and unwrap(c.subcon)[0] is cs.GreedyBytes and not c.includelength:
        return c.lengthfield
    return None


def type_name(c: cs.Construct) -> str:
    """Construct's own spelling of `c` (`Int32ub`, `PascalString(Int8ub, 'utf8')`, ...)."""
    c, _, _ = unwrap(c)
    known = _SINGLETON_NAMES.get(id(c))
    if known is not None:
        return known
    if isinstance(c, cs.FormatField):
        return f"FormatField({c.fmtstr[:1]!r}, {c.fmtstr[1:]!r})"
    if isinstance(c, cs.Bytes):
        return f"Bytes({c.length if isinstance(c.length, int) else '…'})"
    if isinstance(c, cs.StringEncoded):
        sub = unwrap(c.subcon)[0]
        prefix = pascal_prefix(sub)
        if prefix is not None:
            return f"PascalString({type_name(prefix)}, {c.encoding!r})"
        if sub is cs.GreedyBytes:
            return f"GreedyString({c.encoding!r})"
        if isinstance(sub, cs.NullTerminated):
            return f"CString({c.encoding!r})"
        if isinstance(sub, cs.FixedSized):
            return f"PaddedString({sub.length}, {c.encoding!r})"
        return f"StringEncoded({c.encoding!r})"
    if isinstance(c, cs.Prefixed) and pascal_prefix(c) is not None:
        return f"Prefixed({type_name(c.lengthfield)}, GreedyBytes)"
    if isinstance(c, (cs.Enum, cs.FlagsEnum)):
        return f"{type(c).__name__}({type_name(c.subcon)})"
    if isinstance(c, cs.Default):
        return type_name(c.subcon)
    if isinstance(c, cs.Const):
        return f"Const({c.value!r})"
    if isinstance(c, cs.Padded) and c.subcon is cs.Pass:
        return f"Padding({c.length})"
    if isinstance(c, cs.BitsInteger) and isinstance(c.length, int):
        return f"BitsInteger({c.length}{', signed=True' if c.signed else ''})"
    if isinstance(c, BoundedVarInt):
        return repr(c)
    if isinstance(c, cs.IfThenElse):
        cond = repr(c.condfunc) if isinstance(c.condfunc, (cs.ExprMixin, bool)) else "…"
        if unwrap(c.elsesubcon)[0] is cs.Pass:
            return f"If({cond}, {type_name(c.thensubcon)})"
        return f"IfThenElse({cond}, {type_name(c.thensubcon)}, {type_name(c.elsesubcon)})"
    if _is_bitstruct(c):
        return "BitStruct"
    if isinstance(c, cs.GreedyRange):
        return f"GreedyRange({type_name(c.subcon)})"
    if isinstance(c, cs.Array):
        return f"Array({c.count if isinstance(c.count, int) else '…'}, {type_name(c.subcon)})"
    pa = prefixed_array(c)
    if pa is not None:
        return f"PrefixedArray({type_name(pa[0])}, {type_name(pa[1])})"
    return type(c).__name__


def prefixed_array(c: cs.Construct) -> tuple[cs.Construct, cs.Construct] | None:
    """(count field, item) when `c` is construct's `PrefixedArray` macro, else None."""
    if not isinstance(c, cs.FocusedSeq) or len(c.subcons) != 2 or c.parsebuildfrom != "items":
        return None
    count, items = c.subcons
    count_inner = unwrap(count)[0]
    items_inner = unwrap(items)[0]
    if count.name != "count" or items.name != "items":
        return None
    if not isinstance(count_inner, cs.Rebuild) or not isinstance(items_inner, cs.Array):
        return None
    return count_inner.subcon, items_inner.subcon


class _Base(TypedDict):
    """The `FieldInfo` arguments every kind of field has."""

    name: str
    type: str
    required: bool
    doc: str


def field_info(c: cs.Construct, name: str | None = None) -> FieldInfo:
    """Describe one construct as a `FieldInfo` (see the class for the attributes)."""
    inner, own_name, doc = unwrap(c)
    name = name if name is not None else (own_name or "")
    base = _Base(name=name, type=type_name(inner), required=not c.flagbuildnone, doc=doc)
    if isinstance(inner, cs.Default):
        sub = field_info(inner.subcon, name)
        value = inner.value
        default = None if callable(value) else to_plain(value)
        return dataclasses.replace(sub, required=False, default=default, doc=doc or sub.doc)
    if isinstance(inner, cs.FormatField):
        bounds = _int_bounds(inner.fmtstr)
        code = inner.fmtstr[-1]
        kind = "int" if bounds else "float" if code in "efd" else "bool" if code == "?" else "other"
        lo, hi = bounds if bounds else (None, None)
        return FieldInfo(**base, kind=kind, size=inner.length, min=lo, max=hi)
    if inner is cs.Flag:
        return FieldInfo(**base, kind="bool", size=1)
    if isinstance(inner, cs.BytesInteger) and isinstance(inner.length, int):
        bits = 8 * inner.length
        lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if inner.signed else (0, (1 << bits) - 1)
        return FieldInfo(**base, kind="int", size=inner.length, min=lo, max=hi)
    if inner is cs.VarInt:
        return FieldInfo(**base, kind="int", min=0)
    if isinstance(inner, BoundedVarInt):
        return FieldInfo(**base, kind="int", min=0, max=inner.max_value)
    if isinstance(inner, cs.BitsInteger) and isinstance(inner.length, int):
        bits = inner.length
        lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if inner.signed else (0, (1 << bits) - 1)
        return FieldInfo(**base, kind="int", min=lo, max=hi, bits=bits)
    if _is_bitstruct(inner):
        sub = unwrap(inner.subcon)[0]
        return FieldInfo(**base, kind="struct", children=field_infos(sub), size=int(inner.decodeamount))
    if isinstance(inner, cs.Mapping):
        keys = list(inner.encmapping)
        sub = field_info(inner.subcon, name)
        if keys and all(isinstance(k, bool) for k in keys):
            return FieldInfo(**base, kind="bool", size=sub.size)
        return FieldInfo(**base, kind="enum", choices=tuple(str(k) for k in keys), size=sub.size)
    if isinstance(inner, cs.GreedyRange) and not inner.discard:
        return FieldInfo(**base, kind="array", item=field_info(inner.subcon, "item"))
    if isinstance(inner, cs.IfThenElse):
        then = field_info(inner.thensubcon, name)
        cond = inner.condfunc
        text = repr(cond) if isinstance(cond, (cs.ExprMixin, bool)) else "a function"
        return dataclasses.replace(then, required=False, condition=text, doc=doc or then.doc)
    if isinstance(inner, cs.Enum):
        sub = field_info(inner.subcon, name)
        choices = tuple(str(k) for k in inner.encmapping)
        return FieldInfo(**base, kind="enum", choices=choices, size=sub.size, min=sub.min, max=sub.max)
    if isinstance(inner, cs.FlagsEnum):
        sub = unwrap(inner.subcon)[0]
        size = sub.length if isinstance(sub, cs.FormatField) else None
        return FieldInfo(**base, kind="flags", choices=tuple(inner.flags), size=size)
    if isinstance(inner, cs.Bytes):
        size = inner.length if isinstance(inner.length, int) else None
        return FieldInfo(**base, kind="bytes", size=size, max_length=size)
    if inner is cs.GreedyBytes:
        return FieldInfo(**base, kind="bytes")
    prefix = pascal_prefix(inner)
    if prefix is not None:
        return FieldInfo(**base, kind="bytes", max_length=_prefix_max(prefix))
    if isinstance(inner, cs.StringEncoded):
        sub = unwrap(inner.subcon)[0]
        prefix = pascal_prefix(sub)
        max_length = _prefix_max(prefix) if prefix is not None else None
        size = sub.length if isinstance(sub, cs.FixedSized) and isinstance(sub.length, int) else None
        return FieldInfo(**base, kind="str", encoding=inner.encoding, max_length=max_length or size, size=size)
    if isinstance(inner, cs.Const):
        base["required"] = False
        size = field_info(inner.subcon).size
        return FieldInfo(**base, kind="const", default=to_plain(inner.value), size=size)
    if isinstance(inner, cs.Padded) and inner.subcon is cs.Pass:
        base["required"] = False
        size = inner.length if isinstance(inner.length, int) else None
        return FieldInfo(**base, kind="padding", size=size)
    if isinstance(inner, cs.Struct):
        # Unnamed fields (a bare Padding) are not children, but their bytes count in the size.
        sizes = [field_info(sc).size for sc in inner.subcons]
        known = [s for s in sizes if s is not None]
        size = sum(known) if len(known) == len(sizes) else None
        return FieldInfo(**base, kind="struct", children=field_infos(inner), size=size)
    if isinstance(inner, cs.Array):
        count = inner.count if isinstance(inner.count, int) else None
        return FieldInfo(**base, kind="array", item=field_info(inner.subcon, "item"), count=count)
    pa = prefixed_array(inner)
    if pa is not None:
        count_field, item = pa
        return FieldInfo(**base, kind="array", item=field_info(item, "item"), max_length=_prefix_max(count_field))
    return FieldInfo(**base, kind="other")


def _is_bitstruct(c: cs.Construct) -> bool:
    return (
        isinstance(c, cs.Transformed) and c.decodefunc is cs.bytes2bits and isinstance(unwrap(c.subcon)[0], cs.Struct)
    )


def _prefix_max(prefix: cs.Construct) -> int | None:
    inner = unwrap(prefix)[0]
    if isinstance(inner, cs.FormatField):
        bounds = _int_bounds(inner.fmtstr)
        return bounds[1] if bounds else None
    return None


def field_infos(struct: cs.Construct) -> tuple[FieldInfo, ...]:
    """`FieldInfo`s of the named fields of a `Struct`, in wire order. Unnamed fields
    (such as bare `Padding(2)`) take bytes but are not fields, so they are left out;
    their bytes still count in the parent's `size`."""
    inner = unwrap(struct)[0]
    if not isinstance(inner, cs.Struct):
        raise TypeError(f"expected a construct Struct, got {type_name(inner)}")
    return tuple(field_info(sc) for sc in inner.subcons if sc.name)


def to_plain(value: Any) -> Any:
    """A construct result as plain Python: `Container` -> dict (construct's private
    `_io`-style keys dropped), `ListContainer` -> list, enum strings -> str, enum
    integers -> int. Other values are returned as they are."""
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items() if not (isinstance(k, str) and k.startswith("_"))}
    if isinstance(value, list):
        return [to_plain(v) for v in value]
    if isinstance(value, str) and type(value) is not str:
        return str(value)
    if isinstance(value, int) and type(value) is not int and not isinstance(value, bool):
        return int(value)
    return value
