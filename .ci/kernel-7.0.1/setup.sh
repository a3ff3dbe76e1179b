#!/usr/bin/env bash
# Build .venv-kernel701: a kernel environment like Binder's (ipykernel 7.0.1,
# ipywidgets 8.1.7, Python 3.12 when available) with the project installed editable.
# Idempotent: does nothing while requirements.txt and pyproject.toml are unchanged.
# The browser test registers it as a kernelspec in its own throwaway Jupyter data dir
# (never in the user's global Jupyter dirs).
#
#   .ci/kernel-7.0.1/setup.sh            # prints the kernel's python on the last line
#   KERNEL701_VENV=/tmp/k .ci/kernel-7.0.1/setup.sh
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
VENV=${KERNEL701_VENV:-$ROOT/.venv-kernel701}

# Binder's runtime.txt says python-3.12: use a 3.12 when there is one.
pick_python() {
  if [ -n "${KERNEL701_PYTHON:-}" ]; then echo "$KERNEL701_PYTHON"; return; fi
  # (a pyenv shim can exist and still fail: try each one)
  for c in python3.12 "$HOME"/.pyenv/versions/3.12*/bin/python3.12 python3; do
    if "$c" -c 'import venv' >/dev/null 2>&1; then "$c" -c 'import sys; print(sys.executable)'; return; fi
  done
  echo "no python3 found" >&2; exit 1
}

HASH=$(cat "$HERE/requirements.txt" "$ROOT/pyproject.toml" | cksum | cut -d' ' -f1)
STAMP="$VENV/.installed-$HASH"
# One build at a time (two test runs may start together).
exec 9>"${TMPDIR:-/tmp}/rawws-kernel701-$(echo "$VENV" | cksum | cut -d' ' -f1).lock"
command -v flock >/dev/null 2>&1 && flock 9
if [ ! -f "$STAMP" ]; then
  PY=$(pick_python)
  echo "kernel-7.0.1: building $VENV with $("$PY" -V 2>&1) ($PY)" >&2
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >&2
  (cd "$ROOT" && "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$HERE/requirements.txt") >&2
  "$VENV/bin/python" -m pip check >&2
  "$VENV/bin/python" -c "import ipykernel, ipywidgets, rawws_nb; assert ipykernel.__version__ == '7.0.1', ipykernel.__version__" >&2
  rm -f "$VENV"/.installed-*
  touch "$STAMP"
fi
echo "$VENV/bin/python"
