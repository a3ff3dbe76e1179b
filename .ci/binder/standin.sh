#!/usr/bin/env bash
# Local stand-in for a Binder (repo2docker) build of this repository (Docker is not
# needed): a fresh venv with the Python that binder/runtime.txt names, then what
# repo2docker does with binder/ (pip install -r binder/requirements.txt from the
# repository root, binder/postBuild if there is one), then checks:
#   1. pip check;
#   2. every notebooks/*.ipynb executed top to bottom with the stand-in's own nbclient
#      and kernel (executed copies in test-artifacts/binder/notebooks/);
#   3. the real-browser tests (tests/browser) with the stand-in's JupyterLab server
#      (RAWWS_LAB_PYTHON), so "default-kernel" is Binder's pair: JupyterLab 4.4.9 +
#      ipykernel 7.0.1 (screenshots in test-artifacts/binder/browser/). Needs the
#      project's .venv (playwright) and /usr/bin/chromium: `make venv browser-deps`.
#      STANDIN_BROWSER=0 skips it.
# The venv is .venv-binder (git-ignored), rebuilt from scratch on every run.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
VENV=${BINDER_VENV:-$ROOT/.venv-binder}
OUT=$ROOT/test-artifacts/binder
cd "$ROOT"

runtime=$(tr -d '[:space:]' < binder/runtime.txt)   # e.g. python-3.12
ver=${runtime#python-}
PY=""
for c in "python$ver" "$HOME"/.pyenv/versions/"$ver"*/bin/"python$ver"; do
  if "$c" -c 'import venv' >/dev/null 2>&1; then PY=$("$c" -c 'import sys; print(sys.executable)'); break; fi
done
[ -n "$PY" ] || { echo "binder stand-in: no Python $ver found (binder/runtime.txt says $runtime)" >&2; exit 1; }

t0=$(date +%s)
echo "== fresh venv $VENV with $("$PY" -V) ($PY)"
rm -rf "$VENV"
"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
echo "== pip install -r binder/requirements.txt (from the repository root)"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -r binder/requirements.txt
if [ -f binder/postBuild ]; then
  echo "== binder/postBuild"
  (export PATH="$VENV/bin:$PATH" CONDA_DIR="$VENV" NB_PYTHON_PREFIX="$VENV" KERNEL_PYTHON_PREFIX="$VENV"; bash binder/postBuild)
fi
echo "== pip check"
"$VENV/bin/python" -m pip check
"$VENV/bin/python" - <<'PY'
from importlib.metadata import version
print("   " + ", ".join(f"{p} {version(p)}" for p in
      ("jupyterlab", "notebook", "ipykernel", "ipywidgets", "jupyterlab_widgets", "rawws-nb", "pandas", "matplotlib")))
PY
echo "   build: $(( $(date +%s) - t0 )) s"

echo "== every notebook, executed with the stand-in's nbclient and python3 kernel"
mkdir -p "$OUT/notebooks"
JUPYTER_PREFER_ENV_PATH=1 "$VENV/bin/python" - "$OUT/notebooks" notebooks/*.ipynb <<'PY'
import sys, time
from pathlib import Path
import nbformat
from nbclient import NotebookClient

out = Path(sys.argv[1])
failed = []
for name in sys.argv[2:]:
    path = Path(name)
    nb = nbformat.read(path, as_version=4)
    t = time.monotonic()
    try:
        NotebookClient(nb, timeout=60, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
        status = "ok"
    except Exception as exc:  # CellExecutionError, timeouts, dead kernel
        status = f"FAILED: {type(exc).__name__}: {str(exc)[-1500:]}"
        failed.append(path.name)
    nbformat.write(nb, out / path.name)
    print(f"   {path.name}: {status} ({time.monotonic() - t:.1f} s)", flush=True)
sys.exit(1 if failed else 0)
PY

if [ "${STANDIN_BROWSER:-1}" != 0 ]; then
  echo "== browser tests with the stand-in's JupyterLab"
  RAWWS_LAB_PYTHON="$VENV/bin/python" RAWWS_BROWSER_ARTIFACTS="$OUT/browser" \
    "$ROOT/.venv/bin/python" -m pytest tests/browser -q -p no:cacheprovider
fi
echo "== binder stand-in OK ($(( $(date +%s) - t0 )) s)"
