"""Notebook 06 (intercept a browser's WebSocket) in JupyterLab, in a real (headless,
Debian) chromium: the browser that shows JupyterLab is the relay's client.

Run on the kernels test_quickstart_browser.py covers (the project's ipykernel 7.4 and
Binder's ipykernel 7.0.1). Each run: open the notebook, wait for its kernel, Run All,
and check that every code cell ran without error. The page that cell 3 renders in its
output area runs its JavaScript in this chromium and opens its WebSocket through
`rw.relay(...)` to the embedded server; then:

* the page's own DOM shows what it received: the rewritten echo, the plain echo, the
  injected frame (never the dropped one) and the close the relay forwarded;
* the kernel (a second, silent client on it) says the flow came from this chromium (its
  User-Agent and the JupyterLab page's Origin), not from the notebook's Python stand-in,
  and its `relay.timeline` has both legs, the dropped message on the client leg only,
  the rewrite on the way down, the injected frame on the client leg only;
* the notebook, saved from JupyterLab, holds the outputs the analysis cells printed
  (the same content checks as the headless nbclient run, plus "the browser connected").

A third run is Binder's path: JupyterLab opened as http://notebook06.binder.test:PORT
(a name this chromium maps to 127.0.0.1), so the page is not on loopback and connects
through jupyter-server-proxy's /proxy/PORT/ on JupyterLab's own host, as it does on
Binder. There the browser's leg to the proxy is uncompressed (tornado's), and the proxy
passes the page's Close on without a status code.

The both-legs timeline printout, a summary, screenshots and the saved notebook go to
test-artifacts/browser/ (notebook06-*).
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.notebooks.test_notebooks import _check_06

from .conftest import KERNEL701_DISPLAY, notebook_runs
from .lab import (
    CHROMIUM,
    CHROMIUM_ARGS,
    ROOT,
    JupyterLab,
    KernelProbe,
    code_sources,
    console_lines,
    copy_notebook,
    error_outputs,
    open_with_probe,
    run_all_and_wait,
    scroll_to_end,
    wait_until,
)

NOTEBOOK06 = ROOT / "notebooks" / "06-intercept-a-browser.ipynb"

RUNS = notebook_runs("06-intercept-a-browser")

SENT = ["my cat says hello", "a secret the relay drops", "plain message"]
FORWARDED = ["my cat says hello", "plain message"]  # the secret dropped on the way up
TO_BROWSER = ["my dog says hello", "plain message", "injected by the relay"]  # "cat" rewritten on the way down
TIMELINE_COLUMNS = ["flow", "leg", "dir", "opcode", "length", "text"]

# Evaluated in the kernel after Run All (the relay is closed by then; its timeline stays).
KERNEL_FACTS = {
    "stand_in": "stand_in is None",
    "flows": "[(f.id, f.path, f.request.header('user-agent'), f.request.header('origin')) for f in relay.flows]",
    "extensions": "(flow.client.extensions, flow.upstream.extensions)",
    "rows": (
        "relay.timeline[relay.timeline.error.isna()]"
        "[['flow', 'leg', 'dir', 'opcode', 'length', 'compressed', 'text', 'close_code']]"
        ".to_json(orient='records')"
    ),
    "printout": f"relay.timeline[{TIMELINE_COLUMNS!r}].to_string()",
    "legs": "{' '.join(k): v for k, v in legs.items()}",
    "dropped": "sorted(dropped)",
    "saved": "(len(back), back.leg.value_counts().to_dict(), len(relay.timeline))",
    "closes": "[(f.id, f.client.close_reason.code, f.upstream.close_reason.code) for f in relay.flows]",
}


def _facts(probe: KernelProbe) -> dict[str, Any]:
    got = probe.eval("", KERNEL_FACTS)
    facts = {key: ast.literal_eval(value) for key, value in got.items()}
    facts["rows"] = json.loads(facts["rows"])  # to_json: NA as null, numpy values as plain ones
    return facts


def _save_and_read(page: Any, path: Path, timeout: float = 20.0) -> dict[str, Any]:
    """Save the notebook from JupyterLab (Ctrl+S in command mode) and read back the file
    once every code cell in it has an execution count: the outputs JupyterLab shows."""
    before = path.stat().st_mtime_ns
    page.keyboard.press("Escape")  # command mode (a cell editor may have focus)
    page.keyboard.press("Control+s")

    def saved() -> dict[str, Any] | None:
        if path.stat().st_mtime_ns == before:
            return None
        with contextlib.suppress(ValueError):  # caught in the middle of the write
            nb = json.loads(path.read_text())
            if all(c.get("execution_count") for c in nb["cells"] if c["cell_type"] == "code"):
                return nb
        return None

    return wait_until(saved, timeout, f"JupyterLab to save {path.name} with every cell's outputs")


def _output_texts(nb: dict[str, Any]) -> list[str]:
    """The same flattening as tests/notebooks/test_notebooks.py's `_texts`."""
    join = lambda s: "".join(s) if isinstance(s, list) else str(s)  # noqa: E731
    return [
        join(o.get("text", "")) + join(o.get("data", {}).get("text/plain", ""))
        for c in nb["cells"]
        if c["cell_type"] == "code"
        for o in c.get("outputs", [])
    ]


def _texts_on(rows: list[dict[str, Any]], leg: str, direction: str) -> list[str]:
    return [r["text"] for r in rows if r["leg"] == leg and r["dir"] == direction and r["opcode"] == "text"]


def _check_run(
    page: Any, lab: JupyterLab, artifacts: Path, run: str, rel_path: str, expected_kernel: str, proxied: bool
) -> None:
    """Open notebook 06 at `rel_path` on `lab`, Run All and check both sides (see the
    module docstring). `proxied`: the page is served from a host name that is not
    loopback, so it takes the Binder path, jupyter-server-proxy's /proxy/PORT/."""
    (artifacts / f"notebook06-{run}-FAILED.png").unlink(missing_ok=True)  # from an earlier run
    summary: dict[str, Any] = {"run": run, "notebook": rel_path, "lab": lab.url, "timings_s": {}}
    t0 = time.monotonic()

    def mark(step: str) -> None:
        summary["timings_s"][step] = round(time.monotonic() - t0, 2)

    session, probe = open_with_probe(page, lab, rel_path, expected_kernel)
    mark("kernel ready")
    try:
        # 1. Run All: exactly the notebook's code cells, in order, none raising.
        run_all_and_wait(page, probe, code_sources(lab.root_dir / rel_path))
        mark("all cells ran")
        errors = error_outputs(page)
        assert not errors, "error output in the notebook:\n" + "\n".join(errors)

        # 2. The kernel side: the flow is this chromium's, and both legs are recorded.
        facts = _facts(probe)
        summary["kernel"] = {k: v for k, v in facts.items() if k not in ("rows", "printout")}
        printout = facts["printout"]
        (artifacts / f"notebook06-{run}-timeline.txt").write_text(printout + "\n")
        assert facts["stand_in"] is True, "the notebook's Python stand-in ran: the page never connected"
        assert len(facts["flows"]) == 1, facts["flows"]
        flow_id, path, user_agent, origin = facts["flows"][0]
        assert (flow_id, path) == (1, "/echo")
        assert user_agent and "Chrome/" in user_agent, user_agent  # the browser, not a Python client
        assert origin == lab.url, origin  # from the JupyterLab page itself (forwarded by the proxy)
        client_ext, upstream_ext = facts["extensions"]
        if not proxied:  # Chromium's own offer (through the proxy, tornado's leg decides)
            assert "permessage-deflate" in client_ext and "permessage-deflate" in upstream_ext

        rows = facts["rows"]
        assert {r["leg"] for r in rows} == {"client", "upstream"}
        assert _texts_on(rows, "client", "rx") == SENT  # what the page sent
        assert _texts_on(rows, "upstream", "tx") == FORWARDED  # the secret never left the relay
        assert _texts_on(rows, "upstream", "rx") == FORWARDED  # the server's echo, "cat" as sent
        assert _texts_on(rows, "client", "tx") == TO_BROWSER  # rewritten, then the injected frame
        secret = [r for r in rows if r["text"] == SENT[1]]
        assert [(r["leg"], r["dir"]) for r in secret] == [("client", "rx")]  # one leg only
        injected = [r for r in rows if r["text"] == TO_BROWSER[2]]
        assert [(r["leg"], r["dir"]) for r in injected] == [("client", "tx")]  # the server never sent it
        if not proxied:
            data = [r for r in rows if r["opcode"] == "text"]
            assert all(r["compressed"] for r in data), data  # each leg inflated what came compressed
        closes = sorted((r["leg"], r["dir"], r["close_code"]) for r in rows if r["opcode"] == "close")
        # The page's Close forwarded up, the server's reply forwarded down: on both legs.
        # (jupyter-server-proxy passes the page's Close on with no status code.)
        up_code = None if proxied else 1000
        assert closes == [
            ("client", "rx", up_code),
            ("client", "tx", 1000),
            ("upstream", "rx", 1000),
            ("upstream", "tx", up_code),
        ], closes

        # The analysis cells' values in the kernel.
        assert facts["legs"] == {
            "client rx": SENT,
            "client tx": TO_BROWSER,
            "upstream rx": FORWARDED,
            "upstream tx": FORWARDED,
        }
        assert facts["dropped"] == [SENT[1]]
        n_saved, per_leg, n_rows = facts["saved"]
        assert n_rows == len(rows) == 14  # 10 Text and 4 Close frames, no relay notes
        assert n_saved == n_rows and per_leg == {"client": 8, "upstream": 6}
        assert facts["closes"] == ([(1, 1005, 1000)] if proxied else [(1, 1000, 1000)])
        mark("kernel checked")

        # 3. The page in the output area: what it shows it received, from its own DOM.
        box = scroll_to_end(page, ".rawws-relay-page")
        log = box.locator("ul li")
        wait_until(lambda: log.count() >= len(TO_BROWSER) + 1, 15, "the page's log to show the close")
        received = [t.strip() for t in log.all_inner_texts()]
        state = box.locator("span").first.inner_text().strip()
        summary["page"] = {"state": state, "log": received}
        host = lab.url.removeprefix("http://")
        want = f"open: ws://{host}/proxy/" if proxied else "open: ws://127.0.0.1:"
        assert state.startswith(want) and state.split(" (")[0].endswith("/echo"), state
        if not proxied:
            assert "permessage-deflate" in state, state
        assert received == [f"received: {t}" for t in TO_BROWSER] + ["closed: 1000 (clean)"]
        page.screenshot(path=str(artifacts / f"notebook06-{run}-page.png"))
        box.screenshot(path=str(artifacts / f"notebook06-{run}-page-output.png"))
        mark("page checked")

        # 4. The outputs JupyterLab shows, saved from JupyterLab: the analysis cells printed
        #    the same numbers as in the headless run, and the browser (not the stand-in) connected.
        saved_nb = _save_and_read(page, lab.root_dir / rel_path)
        (artifacts / f"notebook06-{run}.ipynb").write_text(json.dumps(saved_nb, indent=1))
        outputs = _output_texts(saved_nb)
        text = "\n".join(outputs)
        assert "the browser connected" in text and "stand-in" not in text
        if proxied:
            # The client leg's Close came with no status code (1005), the rest as without
            # the proxy: check that, then the same content checks as the headless run.
            assert "[(1, CloseReason(1005, ''), CloseReason(1000 (NORMAL), ''))]" in outputs
            outputs = [o.replace("CloseReason(1005, '')", "CloseReason(1000 (NORMAL), '')") for o in outputs]
        _check_06(outputs)
        mark("saved outputs checked")
    except BaseException:
        page.screenshot(path=str(artifacts / f"notebook06-{run}-FAILED.png"))
        raise
    finally:
        mark("done")
        probe.close()
        (artifacts / f"notebook06-{run}.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
        with contextlib.suppress(OSError):  # free the kernel for the next run
            lab.api(f"sessions/{session['id']}", method="DELETE")


@pytest.mark.timeout(300)  # includes building .venv-kernel701 on a first run
@pytest.mark.parametrize("run", list(RUNS))
def test_notebook06_intercepts_jupyterlabs_own_browser(chromium, lab, page, artifacts: Path, run: str) -> None:
    rel_path, kernel_name = RUNS[run]
    served = lab.root_dir / "notebooks" / NOTEBOOK06.name  # the server's copy of notebook 06
    if kernel_name is not None:
        copy_notebook(served, lab.root_dir / rel_path, kernel_name, KERNEL701_DISPLAY)
    expected_kernel = kernel_name or json.loads(served.read_text())["metadata"]["kernelspec"]["name"]
    _check_run(page, lab, artifacts, run, rel_path, expected_kernel, proxied=False)


# -- as on Binder: the page is not on loopback, so it goes through jupyter-server-proxy --

PROXY_HOST = "notebook06.binder.test"  # mapped to 127.0.0.1 in this chromium only


@pytest.fixture(scope="module")
def proxied_lab(tmp_path_factory: pytest.TempPathFactory, artifacts: Path):
    """A JupyterLab (the same Python as `lab`) that the browser opens as
    http://notebook06.binder.test:PORT: JupyterLab accepts the name as a local host
    name, and jupyter-server-proxy (a test dependency, as on Binder) serves /proxy/PORT/."""
    python = os.environ.get("RAWWS_LAB_PYTHON") or sys.executable
    check = subprocess.run([python, "-c", "import jupyter_server_proxy"], capture_output=True, text=True)
    if check.returncode:
        pytest.fail(
            f"jupyter-server-proxy is missing in {python} (the JupyterLab server's environment): "
            "it is a test dependency (pyproject.toml [test]; `make venv` installs it).",
            pytrace=False,
        )
    base = tmp_path_factory.mktemp("lab-proxied")
    root = base / "root"
    (root / "notebooks").mkdir(parents=True)
    shutil.copyfile(NOTEBOOK06, root / "notebooks" / NOTEBOOK06.name)
    server = JupyterLab(
        home=base / "home",
        root_dir=root,
        log_path=artifacts / "jupyterlab-proxied.log",
        python=python,
        url_host=PROXY_HOST,
    )
    with server:
        yield server


@pytest.fixture
def proxied_page(browser, artifacts: Path):
    """A second chromium, resolving PROXY_HOST to 127.0.0.1 (nothing else changes)."""
    b = browser.browser_type.launch(
        executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, f"--host-resolver-rules=MAP {PROXY_HOST} 127.0.0.1"]
    )
    context = b.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    lines = console_lines(pg)
    yield pg
    (artifacts / "notebook06-binder-proxy.console.log").write_text("\n".join(lines) + "\n")
    context.close()
    b.close()


@pytest.mark.timeout(300)
def test_notebook06_through_jupyter_server_proxy(chromium, proxied_lab, proxied_page, artifacts: Path) -> None:
    rel_path = f"notebooks/{NOTEBOOK06.name}"
    expected_kernel = json.loads(NOTEBOOK06.read_text())["metadata"]["kernelspec"]["name"]
    _check_run(proxied_page, proxied_lab, artifacts, "binder-proxy", rel_path, expected_kernel, proxied=True)
