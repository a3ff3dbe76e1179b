"""The codec's fast paths: a small, exact compiler from construct `Struct`s to Python
functions built on `struct`.

construct's own `.compile()` is fast but not exact on bad input: compiled
`PascalString`, `Bytes`, `Padding` and `Flag` accept truncated data without an error
(construct 2.10.70). This module compiles the common subset instead (format fields,
`Flag`, `Bytes(n)`, `Enum`, `Default`, `Const`, `Padding`, Pascal/C/greedy strings and
bytes, nested `Struct`, `Array`, `PrefixedArray`, `If`, and `Check` over fields in
scope), merging runs of fixed-size fields into one precompiled `struct.Struct`. Anything
else raises `Unsupported` and the caller uses plain construct.

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

import ast
import codecs
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import construct as cs

from .fields import pascal_prefix, prefixed_array, unwrap
from .varint import VarIntError, encode_varint, read_varint

__all__ = [
    "DECODE_MISSES",
    "ENCODE_MISSES",
    "CompiledPayload",
    "FramedCodec",
    "FusedCodec",
    "HeaderLayout",
    "HeaderLeaf",
    "HeaderSpec",
    "Miss",
    "ResultTemplate",
    "Unsupported",
    "compile_framed",
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
#: a fused decoder, a message of another length), `IndexError` (a framed decoder given
#: fewer bytes than its header), `UnicodeDecodeError` (a string that does not decode).
DECODE_MISSES: tuple[type[Exception], ...] = (Miss, struct.error, IndexError, UnicodeDecodeError)

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

    `decode(data, start, end, ctx=None)` returns the fields of `data[start:end]` as a
    dict; `encode(fields, ctx=None)` returns the payload bytes (`ctx`: the header fields
    conditions read, see `compile_payload`); `size` is set for fixed-size payloads;
    `source` is the generated Python code. Both functions raise only `DECODE_MISSES` /
    `ENCODE_MISSES` for input they do not take.
    """

    decode: Callable[..., dict[str, Any]]  # (data, start, end, ctx=None)
    encode: Callable[..., bytes]  # (fields, ctx=None)
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
    plain: bool = True  # the value in Python is the value construct's context holds (no Enum mapping)


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
        # Field name -> variable, per struct level: what `this.<name>` in a condition reads.
        self.scopes: list[dict[str, str]] = [{}]
        # Set while generating the last field of the payload's top-level Struct.
        self.at_end = False

    @property
    def scope(self) -> dict[str, str]:
        return self.scopes[-1]

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
        sub.plain = False
        return sub
    if isinstance(inner, cs.Mapping):
        sub = _atom(inner.subcon, gen, name)
        if sub is None or sub.code not in _INT_CODES or sub.dec or sub.enc:
            return None
        dm = gen.const(dict(inner.decmapping), "dm")
        em = gen.const(dict(inner.encmapping), "em")
        sub.dec = [f"if {{v}} not in {dm}: raise Miss", f"{{v}} = {dm}[{{v}}]"]
        sub.enc = [f"{{v}} = {em}[{{v}}]"]  # KeyError, TypeError: not a mapped value
        sub.plain = False
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
    optional = [sc.name for sc in struct_.subcons if sc.name and _optional(sc)]
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
            if atom.plain and atom.has_value:
                gen.scope[atom.name] = v
        out.append(v)
    return out


def _dec_struct(struct_: cs.Struct, gen: _Gen, target: str) -> None:
    top = len(gen.scopes) == 1
    parts = _runs(struct_.subcons, gen)
    for i, part in enumerate(parts):
        if isinstance(part, tuple):
            _dec_run(part[0], gen, target)
        else:
            v = gen.var()
            gen.at_end = top and i == len(parts) - 1
            _dec_value(part, gen, v)
            gen.at_end = False
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
    if isinstance(inner, cs.Check):  # a failed check is construct's to report
        gen.emit(f"if not {_condition(inner.func, gen)}: raise Miss")
        gen.emit(f"{var} = None")
        return
    atom = _atom(inner, gen, None)
    if atom is not None:
        (v,) = _dec_run([atom], gen, None)
        gen.emit(f"{var} = {v}")
        return
    if isinstance(inner, cs.Struct):
        gen.emit(f"{var} = {{}}")
        gen.scopes.append({})
        _dec_struct(inner, gen, var)
        gen.scopes.pop()
        return
    if isinstance(inner, cs.IfThenElse):
        gen.emit(f"if {_condition(inner.condfunc, gen)}:")
        for branch in (inner.thensubcon, None, inner.elsesubcon):
            if branch is None:
                gen.emit("else:")
                continue
            gen.depth += 1
            if unwrap(branch)[0] is cs.Pass:
                gen.emit(f"{var} = None")
            else:
                _dec_value(branch, gen, var)
            gen.depth -= 1
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
    if isinstance(inner, cs.GreedyRange) and not inner.discard and gen.at_end:
        # Items up to the end of the payload (a GreedyRange elsewhere is construct's job:
        # it stops at the first item that does not parse, which only construct knows).
        e, start = gen.var("e"), gen.var("s")
        gen.emit(f"{var} = []")
        gen.emit("while pos < end:")
        gen.depth += 1
        gen.emit(f"{start} = pos")
        gen.scopes.append({})
        _dec_value(inner.subcon, gen, e)
        gen.scopes.pop()
        gen.emit(f"if pos == {start}: raise Miss")
        gen.emit(f"{var}.append({e})")
        gen.depth -= 1
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


def _optional(sc: cs.Construct) -> bool:
    """A field that may be left out of the values: it builds from None, or it is under
    `If`/`IfThenElse` (left out when its condition is false)."""
    return bool(sc.flagbuildnone) or isinstance(unwrap(sc)[0], cs.IfThenElse)


def _fetch(src: str, sc: cs.Construct) -> str:
    return f"{src}.get({sc.name!r})" if _optional(sc) else f"{src}[{sc.name!r}]"


_THIS = re.compile(r"this\[('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")\]")


def _condition(cond: Any, gen: _Gen) -> str:
    """Python source for an `If`/`IfThenElse` condition: a constant, or a construct
    expression (`this.qos > 0`) over fields already in scope. A lambda, or a name not
    in scope (a later field, `this._`), is `Unsupported`."""
    if isinstance(cond, bool):
        return repr(cond)
    if not isinstance(cond, cs.ExprMixin):
        raise Unsupported(f"condition {cond!r}")
    scope = gen.scope

    def variable(match: re.Match[str]) -> str:
        name = ast.literal_eval(match.group(1))
        if name not in scope:
            raise Unsupported(f"condition reads {name!r}, which is not in scope")
        return scope[name]

    source = _THIS.sub(variable, repr(cond))
    try:
        code = compile(source, "<condition>", "eval")
    except SyntaxError:
        raise Unsupported(f"condition {cond!r}") from None
    if not set(code.co_names) <= set(scope.values()):
        raise Unsupported(f"condition {cond!r} uses {sorted(set(code.co_names) - set(scope.values()))}")
    return f"({source})"


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
        if atom.name and atom.plain:
            gen.scope[atom.name] = v
        args.append(v)
    if not args:
        return gen.const(struct.pack(fmt), "pad")
    pack = gen.const(struct.Struct(fmt).pack, "p")
    return f"{pack}({', '.join(args)})"


def _enc_struct(struct_: cs.Struct, gen: _Gen, src: str, write: str) -> None:
    top = len(gen.scopes) == 1
    parts = _runs(struct_.subcons, gen)
    for i, part in enumerate(parts):
        if isinstance(part, tuple):
            atoms, subs = part
            sources = [_fetch(src, sc) if sc.name else None for sc in subs]
            gen.emit(f"{write}({_enc_run(atoms, gen, sources)})")
        else:
            v = gen.var()
            gen.emit(f"{v} = {_fetch(src, part)}")
            gen.at_end = top and i == len(parts) - 1
            _enc_value(part, gen, v, write)
            gen.at_end = False


def _enc_value(c: cs.Construct, gen: _Gen, v: str, write: str) -> None:
    inner, _, _ = unwrap(c)
    if isinstance(inner, cs.Check):  # a failed check is construct's to report
        gen.emit(f"if not {_condition(inner.func, gen)}: raise Miss")
        return
    atom = _atom(inner, gen, None)
    if atom is not None:
        gen.emit(f"{write}({_enc_run([atom], gen, [v])})")
        return
    if isinstance(inner, cs.Struct):
        gen.emit(f"if {v} is None: {v} = {{}}")
        gen.emit(f"if not isinstance({v}, _dict): raise Miss")
        gen.scopes.append({})
        _enc_struct(inner, gen, v, write)
        gen.scopes.pop()
        return
    if isinstance(inner, cs.IfThenElse):
        gen.emit(f"if {_condition(inner.condfunc, gen)}:")
        for branch in (inner.thensubcon, None, inner.elsesubcon):
            if branch is None:
                gen.emit("else:")
                continue
            gen.depth += 1
            if unwrap(branch)[0] is cs.Pass:
                gen.emit("pass")
            else:
                _enc_value(branch, gen, v, write)
            gen.depth -= 1
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
    if isinstance(inner, cs.GreedyRange) and not inner.discard and gen.at_end:
        gen.emit(f"if {v}.__class__ is not list: raise Miss")
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


def compile_payload(struct_: cs.Construct, context: tuple[str, ...] = ()) -> CompiledPayload:
    """Compile a payload `Struct`; raise `Unsupported` outside the subset.

    `context` names values from outside the payload (a framing's header fields) that
    conditions may read (`If(this.qos > 0, ...)`): the compiled functions then take them
    as a mapping, `decode(data, pos, end, ctx)` and `encode(fields, ctx)`."""
    inner = _struct_of(struct_)
    gen = _Gen()
    names, optional = _required_names(inner)

    def prologue() -> None:
        gen.scopes = [{}]
        for name in context:
            var = gen.var("c")
            gen.emit(f"{var} = ctx[{name!r}]")
            gen.scope[name] = var

    gen.lines.append("def decode(data, pos, end, ctx=None):")
    prologue()
    gen.emit("out = {}")
    _dec_struct(inner, gen, "out")
    gen.emit("if pos != end: raise Miss")
    gen.emit("return out")

    gen.lines.append("def encode(f, ctx=None):")
    prologue()
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


@dataclass(frozen=True)
class HeaderLeaf:
    """One value in a framing's fixed header, as a field of one message type.

    It sits in the header group of `nbytes` bytes at `byte` (an unsigned integer, big
    endian unless `order` is "<"), `width` bits wide, `shift` bits above the group's
    least significant bit. `name` is the message field ("type" for the type code, ""
    for padding and unnamed constants; `part` names the header field they are in);
    `flag` marks a construct `Flag` (a bool); `const` is the value a `Const` requires
    (then it is checked and written, not reported); `default` the value of a `Default`
    (`has_default`).
    """

    name: str
    byte: int
    nbytes: int
    shift: int
    width: int
    order: str = ">"
    flag: bool = False
    const: int | None = None
    default: Any = None
    has_default: bool = False
    part: str = ""  # the framing's header field this leaf is (part of): where errors point

    @property
    def mask(self) -> int:
        return (1 << self.width) - 1

    @property
    def reported(self) -> bool:
        """A field of the message (not the type code, a constant or padding)."""
        return bool(self.name) and self.name != "type" and self.const is None


@dataclass(frozen=True)
class HeaderLayout:
    """A fixed header of `size` bytes made of `leaves`, then the length (`varint`
    bytes at most, or the unsigned `length_fmt` struct format), then the payload."""

    size: int
    leaves: tuple[HeaderLeaf, ...]
    varint: int | None = None
    length_fmt: str | None = None

    @property
    def groups(self) -> list[tuple[int, int, str]]:
        """(byte, nbytes, order) of each header group, in order."""
        seen: dict[int, tuple[int, int, str]] = {}
        for leaf in self.leaves:
            seen.setdefault(leaf.byte, (leaf.byte, leaf.nbytes, leaf.order))
        return sorted(seen.values())

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(leaf.name for leaf in self.leaves if leaf.reported)


@dataclass(frozen=True)
class FramedCodec(Generic[_R]):
    """Whole messages for a `HeaderLayout` (bit fields, a varint length) and one message
    type: `encode(fields)` (header fields and payload fields in one mapping) and
    `decode(data)` (one whole message, the template's result). They raise only
    `ENCODE_MISSES` / `DECODE_MISSES` for input they do not take."""

    encode: Callable[[dict[str, Any]], bytes]
    decode: Callable[[bytes], _R]
    source: str


def _varint_miss(data: bytes, pos: int, max_bytes: int) -> tuple[int, int]:
    try:
        return read_varint(data, pos, max_bytes)
    except VarIntError:
        raise Miss from None


def compile_framed(
    struct_: cs.Construct, layout: HeaderLayout, code: int, max_payload: int, template: ResultTemplate[_R]
) -> FramedCodec[_R]:
    """Whole-message functions for a message type with payload `struct_` and type code
    `code` behind the fixed header `layout`; header fields come first in the decoded
    fields and conditions in the payload may read them. Raise `Unsupported` outside the
    compiled subset."""
    inner = _struct_of(struct_)
    gen = _Gen()
    gen.ns["_rv"] = _varint_miss
    gen.ns["_ev"] = encode_varint
    gen.ns["_from_bytes"] = int.from_bytes
    header_names = layout.field_names
    names, optional = _required_names(inner)
    if set(header_names) & set(names):
        raise Unsupported("a header field and a payload field share a name")
    after = layout.size
    groups = layout.groups

    # -- decode
    gen.lines.append("def decode(data):")
    gvars: dict[int, str] = {}
    for byte, nbytes, order in groups:
        g = gvars[byte] = gen.var("g")
        if nbytes == 1:
            gen.emit(f"{g} = data[{byte}]")
        else:
            gen.emit(f"{g} = _from_bytes(data[{byte}:{byte + nbytes}], {'little' if order == '<' else 'big'!r})")
    header_vars: list[tuple[str, str]] = []
    for leaf in layout.leaves:
        if not leaf.name and leaf.const is None:
            continue
        g = gvars[leaf.byte]
        bits = f"({g} >> {leaf.shift}) & {leaf.mask}" if leaf.shift else f"{g} & {leaf.mask}"
        if leaf.name == "type":
            gen.emit(f"if {bits} != {code}: raise Miss")
        elif leaf.const is not None:
            gen.emit(f"if {bits} != {leaf.const}: raise Miss")
        else:
            v = gen.var()
            gen.emit(f"{v} = ({bits}) != 0" if leaf.flag else f"{v} = {bits}")
            header_vars.append((leaf.name, v))
            gen.scope[leaf.name] = v
    if layout.varint is not None:
        gen.emit(f"n = data[{after}]")
        gen.emit(f"if n < 128: pos = {after + 1}")
        gen.emit(f"else: n, pos = _rv(data, {after}, {layout.varint})")
    else:
        fmt = layout.length_fmt or ">I"
        gen.emit(f"n, = {gen.const(struct.Struct(fmt).unpack_from, 'ul')}(data, {after})")
        gen.emit(f"pos = {after + struct.calcsize(fmt)}")
    gen.emit(f"if n > {max_payload}: raise Miss")
    gen.emit("end = pos + n")
    gen.emit("if end != len(data): raise Miss")
    gen.emit("out = {" + ", ".join(f"{name!r}: {v}" for name, v in header_vars) + "}")
    _dec_struct(inner, gen, "out")
    gen.emit("if pos != end: raise Miss")
    new, cls = gen.const(tuple.__new__, "new"), gen.const(template.cls, "cls")
    parts = [gen.const(v, "m") for v in template.head] + ["out", "data"]
    parts += [gen.const(v, "m") for v in template.tail]
    gen.emit(f"return {new}({cls}, ({', '.join(parts)}))")

    # -- encode
    gen.scopes = [{}]
    gen.lines.append("def encode(f):")
    all_names = [*header_names, *names]
    all_optional = [*optional, *(leaf.name for leaf in layout.leaves if leaf.reported and leaf.has_default)]
    _top_check(gen, all_names, all_optional)
    terms: dict[int, list[str]] = {byte: [] for byte, _, _ in groups}
    fixed: dict[int, int] = dict.fromkeys(terms, 0)
    for leaf in layout.leaves:
        if leaf.name == "type":
            fixed[leaf.byte] |= code << leaf.shift
        elif leaf.const is not None:
            fixed[leaf.byte] |= leaf.const << leaf.shift
        elif leaf.name:
            v = gen.var()
            if leaf.has_default:
                gen.emit(f"{v} = f.get({leaf.name!r})")
                gen.emit(f"if {v} is None: {v} = {gen.const(leaf.default, 'd')}")
            else:
                gen.emit(f"{v} = f[{leaf.name!r}]")
            gen.scope[leaf.name] = v
            if leaf.flag:
                bit = gen.var("b")
                gen.emit(f"{bit} = 1 if {v} else 0")
            else:
                bit = v
                gen.emit(f"if {v}.__class__ is not int or not 0 <= {v} <= {leaf.mask}: raise Miss")
            terms[leaf.byte].append(f"({bit} << {leaf.shift})" if leaf.shift else bit)
    gvals: dict[int, str] = {}
    for byte, _nbytes, _order in groups:
        expr = " | ".join([str(fixed[byte]), *terms[byte]]) if terms[byte] else str(fixed[byte])
        g = gvals[byte] = gen.var("g")
        gen.emit(f"{g} = {expr}")
    fixed_run = _fixed_run(inner, gen)
    if fixed_run is not None:
        gen.emit(f"payload = {_enc_run(fixed_run, gen, _sources(inner))}" if fixed_run else "payload = b''")
    else:
        gen.emit("parts = []")
        _enc_struct(inner, gen, "f", "parts.append")
        gen.emit("payload = b''.join(parts)")
    gen.emit("n = len(payload)")
    gen.emit(f"if n > {max_payload}: raise Miss")
    one_byte = all(nbytes == 1 for _, nbytes, _ in groups) and [b for b, _, _ in groups] == list(range(len(groups)))
    if one_byte:
        head = ", ".join(gvals[b] for b, _, _ in groups)
        head_expr = f"_bytes(({head},))"
    else:
        head_expr = " + ".join(f"{gvals[b]}.to_bytes({n}, {'little' if o == '<' else 'big'!r})" for b, n, o in groups)
    if layout.varint is not None:
        if one_byte:
            gen.emit(f"if n < 128: return _bytes(({head}, n)) + payload")
        gen.emit(f"if n > {(1 << (7 * layout.varint)) - 1}: raise Miss")
        gen.emit(f"return {head_expr} + _ev(n) + payload")
    else:
        pack = gen.const(struct.Struct(layout.length_fmt or ">I").pack, "pl")
        gen.emit(f"return {head_expr} + {pack}(n) + payload")

    source = gen.run(f"<rawws_nb.codec, framed: {inner}>")
    return FramedCodec(encode=gen.ns["encode"], decode=gen.ns["decode"], source=source)


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
