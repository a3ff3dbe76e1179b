"""Fixtures for the real-browser tests (marker `browser`): Debian's chromium, the second
kernel environment (ipykernel 7.0.1, as on Binder), a throwaway JupyterLab server and a
headless browser.

`make test` installs chromium (target `browser-deps`); these tests never download a
browser. Everything they write goes to test-artifacts/browser/ (git-ignored).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .lab import ARTIFACTS, CHROMIUM, ROOT, JupyterLab, console_lines, launch_chromium

KERNEL701_SETUP = ROOT / ".ci" / "kernel-7.0.1" / "setup.sh"
KERNEL701_NAME = "rawws-ipykernel701"
KERNEL701_DISPLAY = "Python 3 (ipykernel 7.0.1)"


def notebook_runs(stem: str) -> dict[str, tuple[str, str | None]]:
    """A notebook's runs on both kernels: name -> (notebook path under the server's root,
    kernelspec name to set, or None to keep the file's)."""
    return {
        "default-kernel": (f"notebooks/{stem}.ipynb", None),
        "ipykernel701": (f"notebooks/{stem}-ipykernel701.ipynb", KERNEL701_NAME),
    }

HERE = Path(__file__).parent


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "browser: drives JupyterLab in a real (headless, Debian) chromium; needs /usr/bin/chromium"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def chromium() -> str:
    """The system chromium. Missing is a failure, not a skip: `make test` installs it."""
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests need Debian's chromium. "
            "Run `make browser-deps` (apt-get install chromium; `make test` does it), "
            "or deselect these tests with -m 'not browser'. Never `playwright install`.",
            pytrace=False,
        )
    return CHROMIUM


@pytest.fixture(scope="session")
def kernel701_python() -> str:
    """The Binder-like kernel environment (.venv-kernel701), built from the project's own
    files by .ci/kernel-7.0.1/setup.sh if missing or outdated (about 30 s the first time)."""
    proc = subprocess.run(["bash", str(KERNEL701_SETUP)], cwd=ROOT, capture_output=True, text=True, timeout=900)
    if proc.returncode:
        pytest.fail(f"{KERNEL701_SETUP} failed ({proc.returncode}):\n{proc.stderr[-4000:]}", pytrace=False)
    python = proc.stdout.strip().splitlines()[-1]
    assert os.access(python, os.X_OK), python
    return python


# The server and the browser live as long as the tests of this package (scope "package"):
# Playwright's sync API keeps an asyncio loop running on the main thread while it is
# started, which would break every asyncio test that pytest runs after it.


@pytest.fixture(scope="package")
def lab(tmp_path_factory: pytest.TempPathFactory, artifacts: Path, kernel701_python: str):
    """One JupyterLab for the browser tests: a temporary root dir holding a copy of
    notebooks/ (so nothing autosaves outputs into the repository), throwaway Jupyter dirs
    and settings, and the ipykernel 7.0.1 kernelspec registered in its own data dir.

    RAWWS_LAB_PYTHON=/path/to/python runs the server from another environment (for example
    the Binder stand-in venv, JupyterLab 4.4.9)."""
    base = tmp_path_factory.mktemp("lab")
    root = base / "root"
    shutil.copytree(ROOT / "notebooks", root / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    server = JupyterLab(
        home=base / "home",
        root_dir=root,
        log_path=artifacts / "jupyterlab.log",
        python=os.environ.get("RAWWS_LAB_PYTHON") or sys.executable,
    )
    server.add_kernelspec(KERNEL701_NAME, kernel701_python, KERNEL701_DISPLAY)
    with server:
        yield server


@pytest.fixture(scope="package")
def browser(chromium: str):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = launch_chromium(p)
        yield b
        b.close()


@pytest.fixture
def page(browser, artifacts: Path, request: pytest.FixtureRequest):
    """A fresh browser context and page; the browser console goes to test-artifacts."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    lines = console_lines(pg)
    yield pg
    name = request.node.name.replace("/", "_").replace("[", "-").rstrip("]")
    (artifacts / f"{name}.console.log").write_text("\n".join(lines) + "\n")
    context.close()
