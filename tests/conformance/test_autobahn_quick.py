"""The quick part of the Autobahn|Testsuite conformance run, inside `make test`.

Sections 1-7, 9 (limits and performance: messages up to 16 MiB) and 10 and seven
permessage-deflate cases of sections 12 and 13 (308 cases, about 30 s); `make
conformance` runs all 517 (adding the rest of 12 and 13). The summary table goes to the terminal
(even with output capture on) and to test-artifacts/conformance.md.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from . import run

ARTIFACT = run.ROOT / "test-artifacts" / "conformance.md"


def _python27_available() -> bool:
    candidates = [
        os.environ.get("PYTHON2"),
        str(Path.home() / ".pyenv/versions/2.7.18/bin/python2.7"),
        shutil.which("python2.7"),
        shutil.which("python2"),
    ]
    return any(c and os.access(c, os.X_OK) for c in candidates) or run.VENV_PYTHON.exists()


@pytest.mark.timeout(300)
def test_autobahn_quick(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if not _python27_available():
        # A failure, not a skip: the machine image provides pyenv's CPython 2.7.18.
        pytest.fail("the Autobahn|Testsuite needs CPython 2.7 (set PYTHON2=/path/to/python2.7)")
    try:
        run.ensure_suite()
    except subprocess.CalledProcessError as exc:
        pytest.fail(f".ci/autobahn/setup.sh failed with exit code {exc.returncode}")

    result = run.run_conformance(
        cases=run.QUICK_CASES,
        agent="rawws_nb",
        outdir=tmp_path / "autobahn",
        setup=False,
        log=lambda *_: None,
    )
    text = result.markdown()
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    ARTIFACT.write_text(text)
    with capsys.disabled():
        print("\n\n" + text)

    expected = 247 + 54 + len(run.QUICK_COMPRESSION)
    got = len(result.cases)
    assert got == expected, f"expected {expected} cases (1-7, 9, 10, compression), got {got}"
    compressed = [c for c in result.cases if c.id.startswith(("12.", "13."))]
    assert len(compressed) == len(run.QUICK_COMPRESSION) and all(c.behavior == "OK" for c in compressed)
    assert not result.failed, "Autobahn cases FAILED or without result:\n" + "\n".join(
        run.describe_case(c) for c in result.failed
    )
