"""What importing the timeline costs: the recorder (on every session's path) loads neither
pandas nor pyarrow; the package's other names load lazily; `import rawws_nb` registers
the `.rawws` accessor. Each check runs in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# `import rawws_nb.timeline.recorder` runs `rawws_nb/__init__.py` first, which imports the
# front ends and registers the accessor (pandas). To see what the timeline itself imports,
# the parent package is stood in for by an empty module with the same path.
BARE_PARENT = f"""
import sys, types
parent = types.ModuleType("rawws_nb")
parent.__path__ = [{str(ROOT / "rawws_nb")!r}]
sys.modules["rawws_nb"] = parent
"""


def run(code: str) -> None:
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


EXPECTED = ["rawws_nb.frames", "rawws_nb.timeline", "rawws_nb.timeline._plain", "rawws_nb.timeline.recorder"]


@pytest.mark.parametrize("module", ["rawws_nb.timeline.recorder", "rawws_nb.timeline"])
def test_the_recorder_imports_neither_pandas_nor_pyarrow(module):
    run(
        BARE_PARENT
        + "import " + module + "\n"
        + """
heavy = sorted(m for m in ("pandas", "pyarrow") if m in sys.modules)
assert not heavy, heavy
# (the optional compiled extension, rawws_nb._speedups, imports nothing itself)
loaded = sorted(m for m in sys.modules if m.startswith("rawws_nb.") and m != "rawws_nb._speedups")
assert loaded == EXPECTED, loaded
""".replace("EXPECTED", repr(EXPECTED))
    )


def test_every_exported_name_imports():
    run(
        BARE_PARENT
        + """
import rawws_nb.timeline as tl
for name in tl.__all__:
    exec(f"from rawws_nb.timeline import {name}")
    assert getattr(tl, name) is not None, name
assert set(tl.__all__) <= set(dir(tl))
assert "replay" not in tl.__all__ and not hasattr(tl, "replay")
try:
    tl.no_such_name
except AttributeError as exc:
    assert "no_such_name" in str(exc)
else:
    raise AssertionError("no AttributeError")
import pandas as pd
assert hasattr(pd.DataFrame, "rawws")  # TimelineAccessor, loaded above, registered it
"""
    )


def test_import_rawws_nb_registers_the_accessor():
    run(
        """
import rawws_nb, pandas as pd
assert hasattr(pd.DataFrame, "rawws")
from rawws_nb.replay import tx_frames
assert callable(rawws_nb.replay)
"""
    )
