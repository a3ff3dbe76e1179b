"""Every notebook in notebooks/ runs top to bottom offline, in a fresh kernel each, and is
committed with its outputs cleared. A cell that raises fails the test (nbclient's
CellExecutionError names the cell); a cell that runs longer than CELL_TIMEOUT fails too.

The executed copies (with outputs) go to test-artifacts/notebooks/ for inspection; the
files in notebooks/ are never written. The kernel is the notebook's own kernelspec
(`python3`: this environment's ipykernel, found before any user-wide one), started with
notebooks/ as its working dir, as JupyterLab and Binder do.
"""

from __future__ import annotations

from pathlib import Path

import nbclient
import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
ARTIFACTS = ROOT / "test-artifacts" / "notebooks"
CELL_TIMEOUT = 60  # seconds, per cell
NOTEBOOK_TIMEOUT = 180  # seconds, per notebook (pytest-timeout)


@pytest.fixture(autouse=True)
def _this_environments_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    # Find `python3` in this environment (sys.prefix/share/jupyter) before any user-wide
    # kernelspec of the same name that might point at another Python.
    monkeypatch.setenv("JUPYTER_PREFER_ENV_PATH", "1")


def test_there_are_notebooks() -> None:
    assert NOTEBOOKS, "no notebooks found in notebooks/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_committed_clean(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", (
        "metadata.kernelspec.name must be python3 (without one JupyterLab asks for a kernel)"
    )
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, f"code cells with outputs or execution counts (clear them): {dirty}"


@pytest.mark.timeout(NOTEBOOK_TIMEOUT)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=CELL_TIMEOUT,
        kernel_name=nb.metadata.get("kernelspec", {}).get("name", "python3"),
        allow_errors=False,
        record_timing=True,
        resources={"metadata": {"path": str(path.parent)}},
    )
    try:
        client.execute()  # a fresh kernel, shut down at the end
    finally:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, ARTIFACTS / path.name)
    errors = [
        (i, o.get("ename"), o.get("evalue"))
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code"
        for o in c.outputs
        if o.get("output_type") == "error"
    ]
    assert not errors, errors
    ran = [c.execution_count for c in nb.cells if c.cell_type == "code"]
    assert all(n is not None for n in ran), f"cells that did not run: {ran}"
