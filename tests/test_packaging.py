"""`pip install` builds the compiled fast path when it can, and falls back when it can't."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _wheel(tmp_path: Path, **env: str) -> Path:
    out = tmp_path / "wheel"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (wheel,) = out.glob("*.whl")
    return wheel


@pytest.mark.timeout(300)
def test_without_a_compiler_the_wheel_is_pure_python(tmp_path: Path) -> None:
    wheel = _wheel(tmp_path, CC="/nonexistent/cc")
    assert wheel.name.endswith("-py3-none-any.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "rawws_nb/wire.py" in names and not [n for n in names if n.endswith((".so", ".pyd"))]


@pytest.mark.timeout(300)
def test_with_a_compiler_the_wheel_carries_the_fast_path(tmp_path: Path) -> None:
    wheel = _wheel(tmp_path)
    assert "-py3-none-any" not in wheel.name  # a platform wheel
    names = zipfile.ZipFile(wheel).namelist()
    assert len([n for n in names if n.startswith("rawws_nb/_speedups") and n.endswith(".so")]) == 1
