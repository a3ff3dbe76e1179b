"""The codec's fast paths: a small, exact compiler from construct `Struct`s to Python
functions built on `struct`.

construct's own `.compile()` is fast but not exact on bad input: compiled
`PascalString`, `Bytes`, `Padding` and `Flag` accept truncated data without an error
(construct 2.10.70). This module compiles the common subset instead (format fields,
`Flag`, `Bytes(n)`, `Enum`, `Default`, `Const`, `Padding`, Pascal/C/greedy strings and
bytes, nested `Struct`, `Array`, `PrefixedArray`), merging runs of fixed-size fields
into one precompiled `struct.Struct`. Anything else raises `Unsupported` and the caller
uses plain construct.

- `compile_payload(struct)` -> `CompiledPayload`: `decode(data, start, end)` and
  `encode(fields)` of one payload;
- `compile_fused(struct, header, code, template)` -> `FusedCodec`: for a fixed header
  (`HeaderSpec`) and a fixed-size payload, whole messages with one `struct` call each way.

Compiled functions never report errors themselves. They raise one of `DECODE_MISSES` /
`ENCODE_MISSES` (`Miss` for what they check explicitly, and what `struct`, `str.encode`
/ `bytes.decode` and the value lookups raise on data or values that do not fit) to mean
"not this way": the caller then asks plain construct, which is the reference for values
and error text. Any other exception is a bug and propagates. The property tests check
that both paths agree on random valid messages, random bytes and broken values.
"""

from __future__ import annotations

import codecs
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import construct as cs

from .fields import pascal_prefix, prefixed_array, unwrap

__all__ = [
    "DECODE_MISSES",
    "ENCODE_MISSES",
    "CompiledPayload",
    "FusedCodec",
    "HeaderSpec",
    "Miss",
    "ResultTemplate",
    "Unsupported",
    "compile_fused",
    "compile_payload",
]


class Unsupported(Exception):
    """The construct is outside the compiled subset."""


class Miss(Exception):
    """Raised by compiled functions, and by fast paths built on them: this input is not
    for the fast path; let the reference path (plain construct) decide."""


#: What a compiled decoder raises for data it does not take: `Miss` (a failed length,
#: constant or terminator check), `struct.error` (data shorter than the caller said; for
#: a fused decoder, a message of another length), `UnicodeDecodeError` (a string that
#: does not decode).
DECODE_MISSES: tuple[type[Exception], ...] = (Miss, struct.error, UnicodeDecodeError)

#: What a compiled encoder raises for values it does not take: `Miss` (unknown keys, a
#: value of another type than the fast path packs, a wrong constant or array length),
#: `KeyError` (a missing field), `TypeError` (an unhashable enum value, an array value
#: without a length), `struct.error` (an int out of range, a value of the wrong type),
#: `OverflowError` (a float too large for its format), `UnicodeEncodeError`.
ENCODE_MISSES: tuple[type[Exception], ...] = (
    Miss,
    KeyError,
    TypeError,
    struct.error,
    OverflowError,
    UnicodeEncodeError,
)

_R = TypeVar("_R", bound=tuple[Any, ...])


@dataclass(frozen=True)
class HeaderSpec:
    """A fixed header in front of the payload: `fmt` without byte order, the fields
    it holds in order (`type`, `length` and nothing else) and the byte order."""

    order: str
    fmt: str
    names: tuple[str, ...]

    @property
    def size(self) -> int:
        return struct.calcsize(self.order + self.fmt)


@dataclass(frozen=True)
class CompiledPayload:
    """Compiled codec of one payload `Struct`.

    `decode(data, start, end)` returns the fields of `data[start:end]` as a dict;
    `encode(fields)` returns the payload bytes; `size` is set for fixed-size payloads;
    `source` is the generated Python code. Both functions raise only `DECODE_MISSES` /
    `ENCODE_MISSES` for input they do not take.
    """

    decode: Callable[[bytes, int, int], dict[str, Any]]
    encode: Callable[[dict[str, Any]], bytes]
    size: int | None
    source: str


@dataclass(frozen=True)
class ResultTemplate(Generic[_R]):
    """What a fused decoder returns: `cls(*head, fields, data, *tail)`, made with
    `tuple.__new__` (so `cls` is a tuple class such as a `NamedTuple`; its `__new__`
    does not run)."""

    cls: type[_R]
    head: tuple[Any, ...] = ()
    tail: tuple[Any, ...] = ()


@dataclass(frozen=True)
class FusedCodec(Generic[_R]):
    """A fixed header and a fixed-size payload, one `struct` call each way.

    `encode(fields)` returns the whole message (header included); `decode(data)` takes
    one whole message and returns the template's result. They raise only
    `ENCODE_MISSES` / `DECODE_MISSES` for input they do not take (data of another
    length, a header length that is not the payload size). `size` is the payload size.
    """

    encode: Callable[[dict[str, Any]], bytes]
    decode: Callable[[bytes], _R]
    size: int
    source: str


@dataclass
class _Atom:
    """A fixed-size scalar inside a run: struct code, byte order, value conversions."""

    name: str | None
    code: str
    order: str | None
    has_value: bool = True
    dec: list[str] = field(default_factory=list)  # statements on `{v}`
    enc: list[str] = field(default_factory=list)  # statements on `{v}`


_ONE_BYTE = set("bB?")
_INT_CODES = set("bBhHiIlLqQ")
_FORMAT_CODES = _INT_CODES | set("efd?")  # what construct's FormatField allows


class _Gen:
    def __init__(self) -> None:
        self.ns: dict[str, Any] = {
            "Miss": Miss,
            "_bytes": bytes,
            "_bytearray": bytearray,
            "_dict": dict,
            "_BYTES_TYPES": (bytes, bytearray),
        }
        self.lines: list[str] = []
        self.count = 0
        self.depth = 1

    def var(self, prefix: str = "v") -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def const(self, value: Any, prefix: str = "k") -> str:
        name = self.var("_" + prefix)
        self.ns[name] = value
        return name

    def emit(self, line: str) -> None:
        self.lines.append("    " * self.depth + line)

    def run(self, filename: str) -> str:
        """Execute the generated code into `ns`; return its source."""
        source = "\n".join(self.lines) + "\n"
        exec(compile(source, filename, "exec"), self.ns)
        return source


def _atom(c: cs.Construct, gen: _Gen, name: str | None) -> _Atom | None:
    """`c` as a fixed-size scalar, or None when it is not one."""
    inner, _, _ = unwrap(c)
    if isinstance(inner, cs.FormatField):
        fmt = inner.fmtstr
        if len(fmt) != 2 or fmt[0] not in "<>=" or fmt[1] not in _FORMAT_CODES:
            return None
        order = None if fmt[1] in _ONE_BYTE else fmt[0]
        return _Atom(name, fmt[1], order)
    if inner is cs.Flag:
        return _Atom(name, "?", None)
    if isinstance(inner, cs.Bytes) and isinstance(inner.length, int) and inner.length >= 0:
        n = inner.length
        return _Atom(
            name,
            f"{n}s",
            None,
            enc=[f"if {{v}}.__class__ not in _BYTES_TYPES or len({{v}}) != {n}: raise Miss"],
        )
    if isinstance(inner, cs.Enum):
        sub = _atom(inner.subcon, gen, name)
        if sub is None or sub.code not in _INT_CODES or sub.dec or sub.enc:
            return None
        dm = gen.const({int(k): str(v) for k, v in inner.decmapping.items()}, "dm")
        em = gen.const({str(k): int(v) for k, v in inner.encmapping.items()}, "em")
        sub.dec = [f"{{v}} = {dm}.get({{v}}, {{v}})"]
        sub.enc = [f"{{v}} = {em}.get({{v}}, {{v}})"]
        return sub
    if isinstance(inner, cs.Default):
        if callable(inner.value):
            return None
        sub = _atom(inner.subcon, gen, name)
        if sub is None:
            return None
        k = gen.const(inner.value, "d")
        sub.enc = [f"if {{v}} is None: {{v}} = {k}", *sub.enc]
        return sub
    if isinstance(inner, cs.Const):
        sub = _atom(inner.subcon, gen, name)
        if sub is None:
            return None
        k = gen.const(inner.value, "c")
        sub.dec = [*sub.dec, f"if {{v}} != {k}: raise Miss"]
        sub.enc = [f"if {{v}} is not None and {{v}} != {k}: raise Miss", f"{{v}} = {k}", *sub.enc]
        return sub
    if isinstance(inner, cs.Padded) and inner.subcon is cs.Pass and isinstance(inner.length, int):
        if inner.pattern != b"\x00" or inner.length < 0:
            return None
        return _Atom(name, f"{inner.length}x", None, has_value=False)
    return None


def _fmt(atoms: list[_Atom]) -> str:
    orders = {a.order for a in atoms if a.order}
    order = orders.pop() if orders else ">"
    return order + "".join(a.code for a in atoms)


_Run = tuple[list[_Atom], list[cs.Construct]]


def _runs(subcons: list[cs.Construct], gen: _Gen) -> list[_Run | cs.Construct]:
    """Split a struct's fields into runs of atoms of one byte order, `(atoms, subcons)`,
    and the other fields (their constructs)."""
    out: list[_Run | cs.Construct] = []
    run: list[_Atom] = []
    subs: list[cs.Construct] = []
    order: str | None = None
    for sc in subcons:
        atom = _atom(sc, gen, sc.name)
        if atom is None or (atom.order and order and atom.order != order):
            if run:
                out.append((run, subs))
            run, subs, order = [], [], None
            if atom is None:
                out.append(sc)
                continue
        order = order or atom.order
        run.append(atom)
        subs.append(sc)
    if run:
        out.append((run, subs))
    return out


def _required_names(struct_: cs.Struct) -> tuple[list[str], list[str]]:
    names = [sc.name for sc in struct_.subcons if sc.name]
    optional = [sc.name for sc in struct_.subcons if sc.name and sc.flagbuildnone]
    return names, optional


# -- decoding ----------------------------------------------------------------------------


def _dec_run(run: list[_Atom], gen: _Gen, target: str | None) -> list[str]:
    """Emit the decoding of a run; store named values into dict `target`, or return the
    variable holding the single value when `target` is None."""
    fmt = _fmt(run)
    size = struct.calcsize(fmt)
    unpack = gen.const(struct.Struct(fmt).unpack_from, "u")
    gen.emit(f"if pos + {size} > end: raise Miss")
    values = [gen.var() for a in run if a.has_value]
    if values:
        gen.emit(f"{', '.join(values)}{',' if len(values) == 1 else ''} = {unpack}(data, pos)")
    gen.emit(f"pos += {size}")
    it = iter(values)
    out: list[str] = []
    for atom in run:
        v = next(it) if atom.has_value else "None"
        for stmt in atom.dec:
            gen.emit(stmt.format(v=v))
        if target is not None and atom.name:
            gen.emit(f"{target}[{atom.name!r}] = {v}")
        out.append(v)
    return out


def _dec_struct(struct_: cs.Struct, gen: _Gen, target: str) -> None:
    for part in _runs(struct_.subcons, gen):
        if isinstance(part, tuple):
            _dec_run(part[0], gen, target)
        else:
            v = gen.var()
            _dec_value(part, gen, v)
            if part.name:
                gen.emit(f"{target}[{part.name!r}] = {v}")


def _dec_count(lengthfield: cs.Construct, gen: _Gen, var: str) -> None:
    atom = _atom(lengthfield, gen, None)
    if atom is None or atom.code not in _INT_CODES or atom.dec or atom.enc:
        raise Unsupported(f"length field {lengthfield}")
    (v,) = _dec_run([atom], gen, None)
    gen.emit(f"{var} = {v}")
    gen.emit(f"if {var} < 0 or pos + {var} > end: raise Miss")


def _string_kind(inner: cs.Construct) -> tuple[str, Any]:
    """('pascal', lengthfield) | ('greedy', None) | ('cstring', None) for string/bytes bodies."""
    prefix = pascal_prefix(inner)
    if prefix is not None:
        return "pascal", prefix
    if inner is cs.GreedyBytes:
        return "greedy", None
    if (
        isinstance(inner, cs.NullTerminated)
        and unwrap(inner.subcon)[0] is cs.GreedyBytes
        and inner.term == b"\x00"
        and not inner.include
        and inner.consume
        and inner.require
    ):
        return "cstring", None
    raise Unsupported(type(inner).__name__)


def _encoding(inner: cs.Construct, kind: str) -> str:
    """The encoding of a `StringEncoded`, when the fast path can use it: a known codec
    and, for C strings, one whose NUL is one 0 byte and never inside a character."""
    encoding = inner.encoding
    if not isinstance(encoding, str):
        raise Unsupported(f"encoding {encoding!r}")
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise Unsupported(f"unknown encoding {encoding!r}") from None
    if kind == "cstring" and ("".encode(encoding) != b"" or "\0".encode(encoding) != b"\x00"):
        raise Unsupported(f"encoding {encoding} for a C string")
    return encoding


def _dec_value(c: cs.Construct, gen: _Gen, var: str) -> None:
    inner, _, _ = unwrap(c)
    atom = _atom(inner, gen, None)
    if atom is not None:
        (v,) = _dec_run([atom], gen, None)
        gen.emit(f"{var} = {v}")
        return
    if isinstance(inner, cs.Struct):
        gen.emit(f"{var} = {{}}")
        _dec_struct(inner, gen, var)
        return
    if isinstance(inner, cs.StringEncoded):
        kind, prefix = _string_kind(unwrap(inner.subcon)[0])
        enc = _encoding(inner, kind)
        _dec_bytes(kind, prefix, gen, var)
        gen.emit(f"{var} = {var}.decode({enc!r})")
        return
    if isinstance(inner, cs.Prefixed) or inner is cs.GreedyBytes:
        kind, prefix = _string_kind(inner)
        _dec_bytes(kind, prefix, gen, var)
        return
    if isinstance(inner, cs.Array) and isinstance(inner.count, int) and not inner.discard:
        _dec_loop(str(inner.count), inner.subcon, gen, var)
        return
    pa = prefixed_array(inner)
    if pa is not None:
        count_field, item = pa
        n = gen.var("n")
        atom = _atom(count_field, gen, None)
        if atom is None or atom.code not in _INT_CODES or atom.dec or atom.enc:
            raise Unsupported("PrefixedArray count")
        (v,) = _dec_run([atom], gen, None)
        gen.emit(f"{n} = {v}")
        gen.emit(f"if {n} < 0: raise Miss")
        _dec_loop(n, item, gen, var)
        return
    raise Unsupported(type(inner).__name__)


def _dec_bytes(kind: str, prefix: Any, gen: _Gen, var: str) -> None:
    if kind == "pascal":
        n = gen.var("n")
        _dec_count(prefix, gen, n)
        gen.emit(f"{var} = data[pos:pos + {n}]")
        gen.emit(f"pos += {n}")
    elif kind == "greedy":
        gen.emit(f"{var} = data[pos:end]")
        gen.emit("pos = end")
    else:
        i = gen.var("i")
        gen.emit(f"{i} = data.find(b'\\x00', pos, end)")
        gen.emit(f"if {i} < 0: raise Miss")
        gen.emit(f"{var} = data[pos:{i}]")
        gen.emit(f"pos = {i} + 1")


def _dec_loop(count: str, item: cs.Construct, gen: _Gen, var: str) -> None:
    e = gen.var("e")
    gen.emit(f"{var} = []")
    gen.emit(f"for _ in range({count}):")
    gen.depth += 1
    _dec_value(item, gen, e)
    gen.emit(f"{var}.append({e})")
    gen.depth -= 1


# -- encoding ----------------------------------------------------------------------------


def _fetch(src: str, sc: cs.Construct) -> str:
    return f"{src}.get({sc.name!r})" if sc.flagbuildnone else f"{src}[{sc.name!r}]"


def _enc_run(run: list[_Atom], gen: _Gen, sources: list[str | None]) -> str:
    """Emit conversions of a run's values; return the pack call expression."""
    fmt = _fmt(run)
    args = []
    for atom, src in zip(run, sources, strict=True):
        if not atom.has_value:
            continue
        v = gen.var()
        gen.emit(f"{v} = {src if src is not None else 'None'}")
        for stmt in atom.enc:
            gen.emit(stmt.format(v=v))
        args.append(v)
    if not args:
        return gen.const(struct.pack(fmt), "pad")
    pack = gen.const(struct.Struct(fmt).pack, "p")
    return f"{pack}({', '.join(args)})"


def _enc_struct(struct_: cs.Struct, gen: _Gen, src: str, write: str) -> None:
    for part in _runs(struct_.subcons, gen):
        if isinstance(part, tuple):
            atoms, subs = part
            sources = [_fetch(src, sc) if sc.name else None for sc in subs]
            gen.emit(f"{write}({_enc_run(atoms, gen, sources)})")
        else:
            v = gen.var()
            gen.emit(f"{v} = {_fetch(src, part)}")
            _enc_value(part, gen, v, write)


def _enc_value(c: cs.Construct, gen: _Gen, v: str, write: str) -> None:
    inner, _, _ = unwrap(c)
    atom = _atom(inner, gen, None)
    if atom is not None:
        gen.emit(f"{write}({_enc_run([atom], gen, [v])})")
        return
    if isinstance(inner, cs.Struct):
        gen.emit(f"if {v} is None: {v} = {{}}")
        gen.emit(f"if not isinstance({v}, _dict): raise Miss")
        _enc_struct(inner, gen, v, write)
        return
    if isinstance(inner, cs.StringEncoded):
        kind, prefix = _string_kind(unwrap(inner.subcon)[0])
        enc = _encoding(inner, kind)
        gen.emit(f"if not isinstance({v}, str): raise Miss")
        gen.emit(f"{v} = {v}.encode({enc!r})")
        _enc_bytes(kind, prefix, gen, v, write)
        return
    if isinstance(inner, cs.Prefixed) or inner is cs.GreedyBytes:
        kind, prefix = _string_kind(inner)
        gen.emit(f"if {v}.__class__ is _bytearray: {v} = _bytes({v})")
        gen.emit(f"if {v}.__class__ is not _bytes: raise Miss")
        _enc_bytes(kind, prefix, gen, v, write)
        return
    if isinstance(inner, cs.Array) and isinstance(inner.count, int) and not inner.discard:
        gen.emit(f"if len({v}) != {inner.count}: raise Miss")
        _enc_loop(inner.subcon, gen, v, write)
        return
    pa = prefixed_array(inner)
    if pa is not None:
        count_field, item = pa
        atom = _atom(count_field, gen, None)
        if atom is None or atom.code not in _INT_CODES or atom.dec or atom.enc:
            raise Unsupported("PrefixedArray count")
        gen.emit(f"{write}({_enc_run([atom], gen, [f'len({v})'])})")
        _enc_loop(item, gen, v, write)
        return
    raise Unsupported(type(inner).__name__)


def _enc_bytes(kind: str, prefix: Any, gen: _Gen, v: str, write: str) -> None:
    if kind == "pascal":
        atom = _atom(prefix, gen, None)
        if atom is None or atom.code not in _INT_CODES or atom.dec or atom.enc:
            raise Unsupported("length field")
        gen.emit(f"{write}({_enc_run([atom], gen, [f'len({v})'])})")
        gen.emit(f"{write}({v})")
    elif kind == "greedy":
        gen.emit(f"{write}({v})")
    else:
        gen.emit(f"{write}({v} + b'\\x00')")


def _enc_loop(item: cs.Construct, gen: _Gen, v: str, write: str) -> None:
    e = gen.var("e")
    gen.emit(f"for {e} in {v}:")
    gen.depth += 1
    _enc_value(item, gen, e, write)
    gen.depth -= 1


# -- entry point -------------------------------------------------------------------------


def _top_check(gen: _Gen, names: list[str], optional: list[str]) -> None:
    """Reject unknown top-level keys (construct would ignore them); missing keys raise KeyError."""
    if optional:
        names_const = gen.const(frozenset(names), "names")
        gen.emit(f"if not {names_const}.issuperset(f): raise Miss")
    else:
        gen.emit(f"if len(f) != {len(names)}: raise Miss")


def _fixed_run(inner: cs.Struct, gen: _Gen) -> list[_Atom] | None:
    """The atoms of a struct made only of fixed-size scalars (one byte order), else None."""
    parts = _runs(inner.subcons, gen)
    if not parts:
        return []
    first = parts[0]
    if len(parts) == 1 and isinstance(first, tuple):
        atoms: list[_Atom] = first[0]
        return atoms
    return None


def _sources(inner: cs.Struct) -> list[str | None]:
    """Where each top-level field's value comes from in generated encoders (`f`)."""
    return [_fetch("f", sc) if sc.name else None for sc in inner.subcons]


def _struct_of(struct_: cs.Construct) -> cs.Struct:
    inner = unwrap(struct_)[0]
    if not isinstance(inner, cs.Struct):
        raise Unsupported("not a Struct")
    return inner


def compile_payload(struct_: cs.Construct) -> CompiledPayload:
    """Compile a payload `Struct`; raise `Unsupported` outside the subset."""
    inner = _struct_of(struct_)
    gen = _Gen()
    names, optional = _required_names(inner)

    gen.lines.append("def decode(data, pos, end):")
    gen.emit("out = {}")
    _dec_struct(inner, gen, "out")
    gen.emit("if pos != end: raise Miss")
    gen.emit("return out")

    gen.lines.append("def encode(f):")
    _top_check(gen, names, optional)
    fixed_run = _fixed_run(inner, gen)
    if fixed_run is not None:
        gen.emit(f"return {_enc_run(fixed_run, gen, _sources(inner))}" if fixed_run else "return b''")
    else:
        gen.emit("parts = []")
        _enc_struct(inner, gen, "f", "parts.append")
        gen.emit("return b''.join(parts)")
    size = None if fixed_run is None else struct.calcsize(_fmt(fixed_run))

    source = gen.run(f"<rawws_nb.codec: {inner}>")
    return CompiledPayload(decode=gen.ns["decode"], encode=gen.ns["encode"], size=size, source=source)


def compile_fused(
    struct_: cs.Construct, header: HeaderSpec, code: int, template: ResultTemplate[_R]
) -> FusedCodec[_R] | None:
    """Whole-message functions for `header` (type code `code`) then payload `struct_`;
    None unless the payload is fixed-size in the header's byte order. Raise
    `Unsupported` outside the compiled subset."""
    inner = _struct_of(struct_)
    gen = _Gen()
    run = _fixed_run(inner, gen)
    if run is None:
        return None
    orders = {a.order for a in run if a.order} | {header.order}
    if len(orders) != 1:
        return None
    names, optional = _required_names(inner)
    size = struct.calcsize(_fmt(run))
    fmt = header.order + header.fmt + "".join(a.code for a in run)
    head = {"type": repr(code), "length": repr(size)}

    gen.lines.append("def encode(f):")
    _top_check(gen, names, optional)
    args = [head[n] for n in header.names]
    for atom, src in zip(run, _sources(inner), strict=True):
        if atom.has_value:
            v = gen.var()
            gen.emit(f"{v} = {src if src is not None else 'None'}")
            for stmt in atom.enc:
                gen.emit(stmt.format(v=v))
            args.append(v)
    gen.emit(f"return {gen.const(struct.Struct(fmt).pack, 'fp')}({', '.join(args)})")

    gen.lines.append("def decode(data):")
    targets = [f"_h_{n}" for n in header.names] + [gen.var() for a in run if a.has_value]
    unpack = gen.const(struct.Struct(fmt).unpack, "fu")
    gen.emit(f"{', '.join(targets)}{',' if len(targets) == 1 else ''} = {unpack}(data)")
    gen.emit(f"if _h_length != {size}: raise Miss")
    values = iter(targets[len(header.names) :])
    items = []
    for atom in run:
        v = next(values) if atom.has_value else "None"
        for stmt in atom.dec:
            gen.emit(stmt.format(v=v))
        if atom.name:
            items.append(f"{atom.name!r}: {v}")
    new, cls = gen.const(tuple.__new__, "new"), gen.const(template.cls, "cls")
    parts = [gen.const(v, "m") for v in template.head] + [f"{{{', '.join(items)}}}", "data"]
    parts += [gen.const(v, "m") for v in template.tail]
    gen.emit(f"return {new}({cls}, ({', '.join(parts)}))")

    source = gen.run(f"<rawws_nb.codec, fused: {inner}>")
    return FusedCodec(encode=gen.ns["encode"], decode=gen.ns["decode"], size=size, source=source)
