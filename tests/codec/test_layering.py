"""The codec layer's place in the package: its error root, what it imports, how it catches.

Static checks over the source of `rawws_nb/codec` and `protocols/` (DESIGN.md, "Layers"):
the codec imports only `rawws_nb.frames`, `rawws_nb.errors`, construct and the stdlib;
`protocols/` only the codec, frames and errors; no module imports another module's
private names; no broad `except Exception` or bare `except` hides a bug.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import rawws_nb.codec as codec_pkg
from rawws_nb.codec import (
    CodecError,
    DecodeError,
    EncodeError,
    NegotiationError,
    NegotiationTimeout,
)
from rawws_nb.errors import RawWsError

ROOT = Path(__file__).resolve().parents[2]
CODEC = sorted((ROOT / "rawws_nb" / "codec").glob("*.py"))
PROTOCOLS = sorted((ROOT / "protocols").glob("*.py"))
STDLIB = sys.stdlib_module_names


# -- one error root ---------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [CodecError, DecodeError, EncodeError])
def test_codec_errors_are_rawws_errors_and_value_errors(cls):
    assert issubclass(cls, RawWsError) and issubclass(cls, ValueError)


def test_negotiation_errors_are_rawws_errors():
    assert issubclass(NegotiationError, RawWsError)
    assert issubclass(NegotiationTimeout, NegotiationError)
    assert issubclass(NegotiationTimeout, TimeoutError)


def test_every_public_codec_exception_is_a_rawws_error():
    exported = [getattr(codec_pkg, name) for name in codec_pkg.__all__]
    exceptions = [obj for obj in exported if isinstance(obj, type) and issubclass(obj, BaseException)]
    assert {e.__name__ for e in exceptions} >= {"CodecError", "DecodeError", "EncodeError", "NegotiationError"}
    assert all(issubclass(e, RawWsError) for e in exceptions), exceptions


def test_a_raised_decode_error_is_caught_as_a_rawws_error():
    from protocols import tlv

    with pytest.raises(RawWsError):
        tlv.PROTOCOL.decode(b"\x09")


# -- imports ----------------------------------------------------------------------------------


def _imports(path: Path, package: str) -> list[tuple[str, list[str], int]]:
    """(absolute module, imported names, line) for each import in `path`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((alias.name, [], node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            out.append((module, [alias.name for alias in node.names], node.lineno))
    return out


def _allowed(module: str, allowed: tuple[str, ...]) -> bool:
    top = module.split(".")[0]
    return top == "__future__" or top in STDLIB or any(module == a or module.startswith(a + ".") for a in allowed)


def _eager_lines(path: Path) -> set[int]:
    """Lines of the imports that run when the module is imported (not in a function or
    under `if TYPE_CHECKING:`)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    lines: set[int] = set()
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            lines.add(node.lineno)
    return lines


@pytest.mark.parametrize("path", CODEC, ids=lambda p: p.name)
def test_codec_imports_only_frames_errors_construct_and_the_stdlib(path):
    eager = _eager_lines(path)
    for module, names, line in _imports(path, "rawws_nb.codec"):
        # pandas only lazily, for `describe()`, which returns a DataFrame
        lazy_ok = ("pandas",) if line not in eager else ()
        assert _allowed(module, ("rawws_nb.codec", "rawws_nb.frames", "rawws_nb.errors", "construct", *lazy_ok)), (
            f"{path.name}:{line} imports {module}"
        )
        # `from .. import X` is an import of the package root
        assert module != "rawws_nb", f"{path.name}:{line} imports the package root ({names})"


@pytest.mark.parametrize("path", PROTOCOLS, ids=lambda p: p.name)
def test_protocols_import_only_the_codec_frames_and_errors(path):
    for module, names, line in _imports(path, "protocols"):
        assert _allowed(module, ("protocols", "rawws_nb.codec", "rawws_nb.frames", "rawws_nb.errors", "construct")), (
            f"{path.name}:{line} imports {module}"
        )
        assert module != "rawws_nb", f"{path.name}:{line} imports the package root ({names})"


@pytest.mark.parametrize("path", CODEC + PROTOCOLS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_private_names_are_imported(path):
    package = "rawws_nb.codec" if path in CODEC else "protocols"
    for module, names, line in _imports(path, package):
        private = [n for n in names if n.startswith("_")]
        assert not private, f"{path.name}:{line} imports private names {private} from {module}"
        last = module.split(".")[-1]
        if last.startswith("_") and last != "__future__":
            # a package-private helper module is only for its own package
            assert module.rsplit(".", 1)[0] == package, f"{path.name}:{line} imports the private module {module}"
    if path in CODEC:
        assert all(not m.split(".")[-1].startswith("_") or m == "__future__" for m, _, _ in _imports(path, package))


# -- no broad except --------------------------------------------------------------------------


def _broad_handlers(path: Path) -> list[int]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ExceptHandler):
            names = node.type.elts if isinstance(node.type, ast.Tuple) else [node.type]
            if node.type is None or any(
                isinstance(n, ast.Name) and n.id in ("Exception", "BaseException") for n in names
            ):
                lines.append(node.lineno)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "suppress":
            if any(isinstance(a, ast.Name) and a.id in ("Exception", "BaseException") for a in node.args):
                lines.append(node.lineno)
    return lines


@pytest.mark.parametrize("path", CODEC + PROTOCOLS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_broad_except(path):
    assert _broad_handlers(path) == [], f"{path.name}: broad except at lines {_broad_handlers(path)}"


def _private_attributes(path: Path) -> list[tuple[int, str]]:
    """`obj._name` where `obj` is not `self` or `cls` (dunders aside): another object's
    private attribute."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            if not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                found.append((node.lineno, ast.unparse(node)))
    return found


@pytest.mark.parametrize("path", CODEC + PROTOCOLS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_private_attributes_of_other_objects(path):
    assert _private_attributes(path) == []
