#!/usr/bin/env bash
# Set up the Autobahn|Testsuite (autobahntestsuite, Python 2 code) in a CPython 2.7
# virtualenv at .autobahn/venv (git-ignored). Idempotent: does nothing when the right
# version is already installed. See shared/recipes/autobahn.md.
#
# Environment:
#   PYTHON2      CPython 2.7 interpreter (default: pyenv's 2.7.18, else python2.7 on PATH)
#   PYTHON3      Python 3 used for the helper venv that holds virtualenv<20.22 (default: python3)
#   AUTOBAHN_DIR where to put the venvs (default: <repo>/.autobahn)
set -euo pipefail

ATS_VERSION="25.10.1"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DIR="${AUTOBAHN_DIR:-$ROOT/.autobahn}"
VENV="$DIR/venv"
HELPER="$DIR/helper-venv"
STAMP="$VENV/.autobahntestsuite-$ATS_VERSION"

log() { echo "[autobahn setup] $*" >&2; }

# pip with the machine's own configuration, minus one warning per package about index
# directories configured here that do not exist.
quiet_pip() {
    "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; } >&2
    return "${PIPESTATUS[0]}"
}

installed() {
    [[ -f "$STAMP" && -x "$VENV/bin/python" && -x "$VENV/bin/wstest" ]] || return 1
    "$VENV/bin/python" - "$ATS_VERSION" <<'PY' >/dev/null 2>&1
import sys
import pkg_resources
assert pkg_resources.get_distribution("autobahntestsuite").version == sys.argv[1]
import autobahntestsuite.wstest, autobahntestsuite.fuzzing  # noqa: F401
PY
}

if installed; then
    log "autobahntestsuite $ATS_VERSION already in $VENV"
    exit 0
fi

# CPython 2.7
PY2="${PYTHON2:-}"
if [[ -z "$PY2" ]]; then
    for cand in "$HOME/.pyenv/versions/2.7.18/bin/python2.7" "$(command -v python2.7 || true)" "$(command -v python2 || true)"; do
        if [[ -n "$cand" && -x "$cand" ]]; then PY2="$cand"; break; fi
    done
fi
if [[ -z "$PY2" ]] || ! "$PY2" -c 'import sys; assert sys.version_info[:2] == (2, 7)' 2>/dev/null; then
    log "no CPython 2.7 found (set PYTHON2=/path/to/python2.7)"
    exit 2
fi
PY3="${PYTHON3:-python3}"

mkdir -p "$DIR"
# Keep the directory out of git even if the repo's .gitignore does not list it.
[[ -f "$DIR/.gitignore" ]] || echo '*' > "$DIR/.gitignore"

# Helper Python 3 venv with the last virtualenv that still creates 2.7 environments.
if ! "$HELPER/bin/python" -c 'import virtualenv' 2>/dev/null; then
    log "creating helper venv $HELPER (virtualenv<20.22)"
    rm -rf "$HELPER"
    "$PY3" -m venv "$HELPER"
    quiet_pip "$HELPER/bin/python" -m pip install --quiet --disable-pip-version-check 'virtualenv<20.22'
fi

log "creating Python 2.7 venv $VENV with $PY2"
rm -rf "$VENV"
"$HELPER/bin/python" -m virtualenv --quiet -p "$PY2" "$VENV"
quiet_pip "$VENV/bin/python" -m pip install --quiet \
    --disable-pip-version-check --no-python-version-warning \
    "autobahntestsuite==$ATS_VERSION"
touch "$STAMP"

if ! installed; then
    log "autobahntestsuite $ATS_VERSION did not install correctly in $VENV"
    exit 1
fi
log "autobahntestsuite $ATS_VERSION ready in $VENV"
