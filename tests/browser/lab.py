"""Helpers for the real-browser tests: a throwaway JupyterLab server and a few Playwright
steps (open a notebook, wait for its kernel, run all cells, check they ran).

Nothing here touches the user's Jupyter dirs: every Jupyter config/data/runtime/settings
dir points into a temporary folder, and kernelspecs are registered there.
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import queue
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from playwright.sync_api import TimeoutError as PlaywrightTimeout

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("RAWWS_BROWSER_ARTIFACTS") or ROOT / "test-artifacts" / "browser")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]

# User settings for the throwaway server. Everything else stays at JupyterLab's defaults
# (in particular commsOverSubshells: "perCommTarget", widget messages over subshells).
LAB_SETTINGS = {
    # No "get notified about official Jupyter news?" toast over the widgets.
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false"},
    # No "Select Kernel" dialog on a fresh profile: start the notebook's kernel.
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"autoStartDefaultKernel": True},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class JupyterLab:
    """`jupyter lab` on 127.0.0.1 with a token, a temporary root dir and throwaway
    Jupyter dirs under `home`. Use as a context manager; the log goes to `log_path`.

    `url_host` is the host name the browser's URLs use (`url`, `notebook_url`): another
    name than 127.0.0.1 (one the browser maps to 127.0.0.1) makes the page look served
    from elsewhere, as on Binder; the server then accepts it as a local host name. The
    REST calls always go to 127.0.0.1. `extra_args` go to `jupyter lab` as they are."""

    def __init__(
        self,
        home: Path,
        root_dir: Path,
        log_path: Path,
        python: str = sys.executable,
        settings: dict[str, Any] | None = None,
        startup_timeout: float = 60.0,
        url_host: str = "127.0.0.1",
        extra_args: list[str] | None = None,
    ) -> None:
        self.home = Path(home)
        self.root_dir = Path(root_dir)
        self.log_path = Path(log_path)
        self.python = python
        self.settings = LAB_SETTINGS if settings is None else settings
        self.startup_timeout = startup_timeout
        self.url_host = url_host
        self.extra_args = list(extra_args or [])
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.proc: subprocess.Popen | None = None
        self.dirs = {
            "JUPYTER_CONFIG_DIR": self.home / "config",
            "JUPYTER_DATA_DIR": self.home / "data",
            "JUPYTER_RUNTIME_DIR": self.home / "runtime",
            "JUPYTERLAB_SETTINGS_DIR": self.home / "lab-settings",
            "JUPYTERLAB_WORKSPACES_DIR": self.home / "lab-workspaces",
            "IPYTHONDIR": self.home / "ipython",
        }

    # -- set-up --------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.url_host}:{self.port}"

    @property
    def runtime_dir(self) -> Path:
        return self.dirs["JUPYTER_RUNTIME_DIR"]

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({k: str(v) for k, v in self.dirs.items()})
        env.pop("JUPYTER_PATH", None)
        env.pop("JUPYTER_PREFER_ENV_PATH", None)
        # Kernels import the code under test (this checkout), not whatever checkout the
        # environment's editable install points at (a worktree shares the main .venv).
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
        return env

    def add_kernelspec(self, name: str, python: str, display_name: str) -> Path:
        """Register a kernel running `python` in the throwaway data dir (not the user's)."""
        spec_dir = self.dirs["JUPYTER_DATA_DIR"] / "kernels" / name
        spec_dir.mkdir(parents=True, exist_ok=True)
        spec = {
            "argv": [python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": display_name,
            "language": "python",
            "metadata": {"debugger": True},
        }
        (spec_dir / "kernel.json").write_text(json.dumps(spec, indent=1))
        return spec_dir

    def _write_settings(self) -> None:
        for rel, values in self.settings.items():
            path = self.dirs["JUPYTERLAB_SETTINGS_DIR"] / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values, indent=1))

    def start(self) -> JupyterLab:
        for d in self.dirs.values():
            d.mkdir(parents=True, exist_ok=True)
        self._write_settings()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        cmd = [
            self.python,
            "-m",
            "jupyter",
            "lab",
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={self.port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root_dir}",
            "--ServerApp.open_browser=False",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ]
        if self.url_host not in ("127.0.0.1", "localhost"):
            cmd.append(f"--ServerApp.local_hostnames={json.dumps(['localhost', self.url_host])}")
        cmd += self.extra_args
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.append("--allow-root")
        self._log = open(self.log_path, "wb")  # closed in stop()
        self.proc = subprocess.Popen(
            cmd,
            cwd=self.root_dir,
            env=self.env(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                self.api("status")
                return self
            except (OSError, urllib.error.URLError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"JupyterLab did not answer within {self.startup_timeout} s:\n{self.log_tail()}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # the server shuts its kernels down
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: the server and its kernels
                self.proc.wait(5)
        self._log.close()
        self.proc = None

    def __enter__(self) -> JupyterLab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    # -- REST ----------------------------------------------------------------------------

    def api(self, path: str, method: str = "GET", body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/api/{path}",
            data=data,
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=5) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None

    def notebook_url(self, rel_path: str) -> str:
        # `reset`: start from an empty workspace (no tabs restored from an earlier page).
        return f"{self.url}/lab/tree/{rel_path}?reset&token={self.token}"

    def session_for(self, rel_path: str) -> dict[str, Any] | None:
        for s in self.api("sessions"):
            if s.get("path") == rel_path:
                return s
        return None

    def connection_file(self, kernel_id: str) -> Path:
        return self.runtime_dir / f"kernel-{kernel_id}.json"


def copy_notebook(src: Path, dest: Path, kernel_name: str | None = None, display_name: str | None = None) -> Path:
    """Copy a notebook, optionally pointing its metadata.kernelspec at another kernel."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if kernel_name is None:
        shutil.copyfile(src, dest)
        return dest
    nb = json.loads(Path(src).read_text())
    nb.setdefault("metadata", {})["kernelspec"] = {
        "name": kernel_name,
        "display_name": display_name or kernel_name,
        "language": "python",
    }
    dest.write_text(json.dumps(nb, indent=1))
    return dest


def launch_chromium(playwright: Any) -> Any:
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)


# -- notebook steps (Playwright, sync API) ------------------------------------------------


def wait_until(cond: Any, timeout: float, what: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


NOTEBOOK = ".jp-NotebookPanel:visible"  # the notebook in the current tab


def notebook(page: Any) -> Any:
    return page.locator(NOTEBOOK)


def open_notebook(page: Any, lab: JupyterLab, rel_path: str, timeout: float = 60.0) -> None:
    page.goto(lab.notebook_url(rel_path))
    page.wait_for_selector(f"{NOTEBOOK} .jp-Notebook .jp-Cell", timeout=timeout * 1000)
    dismiss_dialogs(page)


def dismiss_dialogs(page: Any) -> None:
    """Close a "Select Kernel" dialog or a news toast if one shows up anyway."""
    dialog = page.locator(".jp-Dialog")
    if dialog.count():
        # "Select" keeps the preselected (the notebook's) kernel.
        accept = dialog.locator("button.jp-mod-accept")
        if accept.count():
            accept.first.click()
    toast = page.locator(".Toastify__toast:has-text('news') button:has-text('No')")
    if toast.count():
        toast.first.click()


def wait_kernel_ready(page: Any, lab: JupyterLab, rel_path: str, timeout: float = 60.0) -> dict[str, Any]:
    """Wait until the server has the notebook's kernel idle with a client connected, and
    the page says so (toolbar kernel status idle). Returns the server's session model."""

    def ready() -> dict[str, Any] | None:
        dismiss_dialogs(page)
        try:
            s = lab.session_for(rel_path)
        except OSError:
            return None
        if not s or not s.get("kernel"):
            return None
        k = s["kernel"]
        if k.get("execution_state") != "idle" or not k.get("connections"):
            return None
        # The page: the kernel status indicator in the notebook toolbar.
        status = notebook(page).locator(".jp-Notebook-ExecutionIndicator")
        if status.count() and status.first.get_attribute("data-status") not in (None, "idle"):
            return None
        return s

    what = f"the kernel of {rel_path} to be idle and connected"
    try:
        return wait_until(ready, timeout / 2, what, interval=0.3)
    except AssertionError:
        # The page's first kernel WebSocket sometimes fails (a 500 before JupyterLab
        # reconnects) and the kernel then never shows a connected client: reload once.
        page.reload()
        page.wait_for_selector(f"{NOTEBOOK} .jp-Notebook .jp-Cell", timeout=timeout * 1000)
        return wait_until(ready, timeout, what + " (after one page reload)", interval=0.3)


def open_with_probe(
    page: Any, lab: JupyterLab, rel_path: str, expected_kernel: str
) -> tuple[dict[str, Any], KernelProbe]:
    """Open `rel_path`, wait until its kernel is idle and connected (the first kernel
    WebSocket can fail with a 500 before JupyterLab reconnects), check it is
    `expected_kernel`; returns the session and a second, silent client on that kernel (to
    check what ran, and on which thread)."""
    open_notebook(page, lab, rel_path)
    session = wait_kernel_ready(page, lab, rel_path)
    assert session["kernel"]["name"] == expected_kernel
    return session, KernelProbe(lab.connection_file(session["kernel"]["id"]))


def console_lines(page: Any) -> list[str]:
    """The page's console messages and uncaught errors, collected as they come."""
    lines: list[str] = []
    page.on("console", lambda m: lines.append(f"[{m.type}] {m.text}"))
    page.on("pageerror", lambda e: lines.append(f"[pageerror] {e}"))
    return lines


def run_all_cells(page: Any) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-item:visible .lm-Menu-itemLabel", has_text="Run All Cells").first.click()


def code_cell_prompts(page: Any) -> list[str]:
    # textContent, not innerText: cells scrolled out of view may not be rendered
    # (JupyterLab's windowing uses content-visibility), and innerText depends on rendering.
    return notebook(page).locator(".jp-Notebook .jp-CodeCell .jp-InputPrompt").all_text_contents()


def error_outputs(page: Any) -> list[str]:
    """Error outputs among the cells in the DOM (a windowed notebook may not render all)."""
    selector = ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']"
    return notebook(page).locator(selector).all_inner_texts()


def code_sources(path: Path) -> list[str]:
    """The sources of a notebook file's code cells, in order."""
    nb = json.loads(Path(path).read_text())
    return [
        "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
        for c in nb["cells"]
        if c["cell_type"] == "code"
    ]


def run_all_and_wait(
    page: Any, probe: KernelProbe, sources: list[str], timeout: float = 90.0, start_timeout: float = 15.0
) -> list[str]:
    """Run all cells (Run menu) and wait until the kernel has executed every code cell.

    Checked in the kernel, not in the page: JupyterLab's windowed notebook keeps only the
    visible cells in the DOM (JupyterLab 4.4 renders nothing off-screen), so prompts
    can't be counted there. The kernel's input history must be exactly the notebook's
    code cells, in order (a cell that raises stops "Run All", so a short history also
    catches errors), and no cell may have raised. If nothing started (the kernel's first
    WebSocket can fail with a 500, and a "Run All" then runs nothing), run all again once.
    Returns the kernel's history."""
    run_all_cells(page)
    t0 = time.monotonic()
    retried = False
    last_error = "repr(getattr(__import__('sys'), 'last_value', None))"
    while True:
        # A silent request from the probe waits behind the cells already queued.
        try:
            got = probe.eval("", {"n": "len(In) - 1", "e": last_error}, timeout=timeout)
        except KernelAborted:  # queued behind a cell that raised: ask again, to say which
            got = probe.eval("", {"n": "len(In) - 1", "e": last_error}, timeout=timeout)
        n = int(got["n"])
        # A cell that raises stops "Run All": fail now, saying which cell and what.
        assert got["e"] == "'None'", f"code cell {n} of {len(sources)} raised {ast.literal_eval(got['e'])}"
        if n >= len(sources):
            break
        elapsed = time.monotonic() - t0
        if n == 0 and not retried and elapsed > start_timeout:
            dismiss_dialogs(page)
            run_all_cells(page)
            retried = True
        if elapsed > timeout:
            raise AssertionError(f"after {timeout} s the kernel has run {n} of {len(sources)} code cells")
        time.sleep(0.3)
    got = probe.eval("", {"h": "In[1:]", "e": last_error})
    history = ast.literal_eval(got["h"])
    assert got["e"] == "'None'", f"a code cell raised {ast.literal_eval(got['e'])}"
    assert [h.strip() for h in history] == [src.strip() for src in sources], (
        "the kernel did not run exactly the notebook's code cells in order:\n" + "\n---\n".join(history)
    )
    return history


def scroll_to_end(page: Any, selector: str, timeout: float = 30.0) -> Any:
    """Scroll the current notebook until `selector` is visible, and return its locator.

    JupyterLab's notebook windowing renders (or makes visible) only the cells near the
    view: an element can be in the DOM and still hidden when its cell is off-screen
    (after Run All the notebook sits at its last cell, and a widget in an earlier cell
    is then hidden). `scroll_into_view_if_needed` cannot scroll to a hidden element, so
    this walks the notebook's scroller from the top, most of a view at a time, until the
    element is visible (the flakiness `make binder-check` saw: "element is not visible")."""
    nb = notebook(page)
    target = nb.locator(selector).first
    outer = nb.locator(".jp-WindowedPanel-outer").first
    deadline = time.monotonic() + timeout
    outer.evaluate("el => { el.scrollTop = 0; }")
    while True:
        if target.count() and target.is_visible():
            try:
                target.scroll_into_view_if_needed(timeout=2_000)
                return target
            except PlaywrightTimeout:
                # Visible a moment ago, hidden again by the time Playwright acted (the
                # windowing re-laid the cells out while they rendered): keep walking.
                pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{selector} did not become visible in the notebook within {timeout} s")
        at_end = outer.evaluate(
            "el => { const before = el.scrollTop; el.scrollTop = before + el.clientHeight * 0.6; "
            "return el.scrollTop === before; }"
        )
        time.sleep(0.15)
        if at_end:  # the whole notebook walked: the widget may still be rendering; again from the top
            time.sleep(0.3)
            outer.evaluate("el => { el.scrollTop = 0; }")


class KernelAborted(AssertionError):
    """ipykernel aborts the requests queued behind a cell that raised (stop_on_error)."""


class KernelProbe:
    """A second client on a kernel the browser started (through the connection file in
    the server's throwaway runtime dir), to ask the kernel things silently: the
    ipykernel version, and which thread runs the widget callbacks."""

    def __init__(self, connection_file: Path) -> None:
        from jupyter_client import BlockingKernelClient

        self.client = BlockingKernelClient(connection_file=str(connection_file))
        self.client.load_connection_file()
        self.client.start_channels()

    def eval(self, code: str, expressions: dict[str, str], timeout: float = 20.0) -> dict[str, Any]:
        """Run `code` silently (no output, no execution count), then return the repr of
        each expression."""
        msg_id = self.client.execute(code, silent=True, store_history=False, user_expressions=expressions)
        deadline = time.monotonic() + timeout
        while True:
            try:
                reply = self.client.get_shell_msg(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"the kernel did not answer the probe within {timeout} s (busy?)") from None
            if reply["parent_header"].get("msg_id") == msg_id:
                break
        content = reply["content"]
        if content["status"] == "aborted":
            raise KernelAborted("the kernel aborted the probe's request (a cell before it raised)")
        if content["status"] != "ok":
            raise AssertionError(f"probe code failed in the kernel: {content.get('ename')}: {content.get('evalue')}")
        out = {}
        for key, value in content["user_expressions"].items():
            if value.get("status") != "ok":
                raise AssertionError(f"probe expression {key!r} failed: {value.get('ename')}: {value.get('evalue')}")
            out[key] = value["data"]["text/plain"]
        return out

    def close(self) -> None:
        self.client.stop_channels()


# Installed in the kernel after "Run All": one more on_click handler on every rawws button
# (found by CSS class, so the probe does not depend on attribute names), recording the
# thread each click is handled on. It runs after the panel's own handler.
PROBE_INSTALL = """
import gc as _gc, threading as _threading, ipykernel as _ipk, ipywidgets as _ipw
_rawws_probe = {"ipykernel": _ipk.__version__, "ipywidgets": _ipw.__version__, "calls": [], "buttons": 0}
def _rawws_probe_hook(kind):
    def hook(_button):
        t = _threading.current_thread()
        _rawws_probe["calls"].append((kind, t.name, t is _threading.main_thread()))
    return hook
for _o in _gc.get_objects():
    if isinstance(_o, _ipw.Button):
        for _css in ("rawws-send-button", "rawws-ping-now"):
            if _css in _o._dom_classes:
                _o.on_click(_rawws_probe_hook(_css))
                _rawws_probe["buttons"] += 1
del _o
"""
