"""The architecture, checked: no module imports the package root from inside, and none
reaches into another module's private names or another object's private attributes.
(The layer order itself is import-linter's job: `make lint`, contracts in pyproject.toml.)"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("rawws_nb", "protocols")
# Underscore names that are public protocols: namedtuple's methods, IPython's display hooks.
ALLOWED_ATTRIBUTES = {"_replace", "_fields", "_asdict", "_make", "_repr_html_", "_repr_mimebundle_"}


def _modules() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package.pop()
    base = package[: len(package) - node.level + 1]
    return ".".join([*base, node.module] if node.module else base)


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _is_module(dotted: str) -> bool:
    target = ROOT.joinpath(*dotted.split("."))
    return target.with_suffix(".py").exists() or (target / "__init__.py").exists()


def _problems(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    me = _module_name(path)
    here = f"{path.relative_to(ROOT)}"
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            source = _resolve(path, node)
            for alias in node.names:
                if source == "rawws_nb" and me != "rawws_nb" and not _is_module(f"rawws_nb.{alias.name}"):
                    out.append(f"{here}:{node.lineno} imports {alias.name!r} from the package root")
                if _private(alias.name) and not _is_module(f"{source}.{alias.name}"):
                    out.append(f"{here}:{node.lineno} imports the private name {source}.{alias.name}")
            private_module = next((part for part in source.split(".") if _private(part)), None)
            if private_module is not None:
                owner = source.rsplit(".", 1)[0]
                if not me.startswith(owner + ".") and me != owner:
                    out.append(f"{here}:{node.lineno} imports the private module {source} from outside its package")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "rawws_nb" and me != "rawws_nb":
                    out.append(f"{here}:{node.lineno} imports the package root")
        elif isinstance(node, ast.Attribute) and _private(node.attr) and node.attr not in ALLOWED_ATTRIBUTES:
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                continue
            out.append(f"{here}:{node.lineno} touches the private attribute .{node.attr} of {ast.unparse(owner)}")
    return out


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_root_imports_and_no_private_reach(path: Path) -> None:
    assert _problems(path) == []
