"""The quick-start notebook in JupyterLab, in a real (headless, Debian) chromium.

Run twice: with the project's own kernel (ipykernel 7.4 in .venv) and JupyterLab's default
settings, where widget messages go over kernel subshells (commsOverSubshells
"perCommTarget"), and with a kernel whose ipykernel is 7.0.1 (Binder's image), where every
widget callback runs on a subshell thread with its own event loop, so the hand-off to the
session's loop is exercised for real. Each run: open the notebook, wait for its kernel,
Run All, check every cell ran without error, type a message in the SendPanel, click Send,
wait for the tx row and the rx echo in the TimelinePanel, press "ping now", wait for a
round trip in the LatencyPanel. Screenshots, console and JupyterLab logs and a summary go
to test-artifacts/browser/.
"""

from __future__ import annotations

import ast
import contextlib
import json
import re
import time
from pathlib import Path

import pytest

from .conftest import KERNEL701_DISPLAY, KERNEL701_NAME, notebook_runs
from .lab import (
    PROBE_INSTALL,
    ROOT,
    code_cell_prompts,
    code_sources,
    copy_notebook,
    error_outputs,
    open_with_probe,
    run_all_and_wait,
    scroll_to_end,
)

QUICKSTART = ROOT / "notebooks" / "01-quickstart.ipynb"

RUNS = notebook_runs("01-quickstart")


def _shot(page, artifacts: Path, run: str, step: str, target=None) -> Path:
    path = artifacts / f"quickstart-{run}-{step}.png"
    if target is not None:
        target.scroll_into_view_if_needed()
    page.screenshot(path=str(path))
    return path


@pytest.mark.timeout(300)  # includes building .venv-kernel701 on a first run
@pytest.mark.parametrize("run", list(RUNS))
def test_quickstart_dashboard_in_jupyterlab(chromium, lab, page, artifacts: Path, run: str) -> None:
    rel_path, kernel_name = RUNS[run]
    served = lab.root_dir / "notebooks" / QUICKSTART.name  # the server's copy of notebooks/01
    if kernel_name is not None:
        copy_notebook(served, lab.root_dir / rel_path, kernel_name, KERNEL701_DISPLAY)
    expected_kernel = kernel_name or json.loads(served.read_text())["metadata"]["kernelspec"]["name"]
    summary: dict = {"run": run, "notebook": rel_path, "timings_s": {}}
    t0 = time.monotonic()

    def mark(step: str) -> None:
        summary["timings_s"][step] = round(time.monotonic() - t0, 2)

    # 1. Open the notebook; a second, silent client on its kernel checks what ran.
    session, probe = open_with_probe(page, lab, rel_path, expected_kernel)
    mark("kernel ready")
    try:
        # 2. Run all cells: the kernel must run exactly the notebook's code cells, none
        #    raising, and the page must show no error output.
        run_all_and_wait(page, probe, code_sources(served))
        mark("all cells ran")
        dashboard = scroll_to_end(page, ".rawws-dashboard")
        send = dashboard.locator(".rawws-send")
        send.locator(".rawws-send-button").wait_for(timeout=30_000)
        summary["visible_prompts"] = [p.strip() for p in code_cell_prompts(page)]
        errors = error_outputs(page)
        assert not errors, "error output in the notebook:\n" + "\n".join(errors)

        # Which thread will handle the clicks: hook every rawws button in the kernel.
        probe.eval(PROBE_INSTALL, {})
        info = ast.literal_eval(probe.eval("", {"p": "_rawws_probe"})["p"])
        assert info["buttons"] >= 2, f"rawws buttons found in the kernel: {info['buttons']}"
        summary["kernel"] = {"ipykernel": info["ipykernel"], "ipywidgets": info["ipywidgets"]}
        if kernel_name == KERNEL701_NAME:
            assert info["ipykernel"] == "7.0.1"
        _shot(page, artifacts, run, "1-run-all", dashboard)

        # 3. Type a message in the SendPanel and click Send: the tx row and the rx echo
        #    (the embedded server's /echo) appear in the TimelinePanel.
        message = f"hello from chromium ({run})"
        send.locator(".rawws-send-payload textarea").fill(message)
        send.locator(".rawws-send-button").click()
        rows = dashboard.locator(".rawws-timeline-rows")
        for arrow in ("→ tx", "← rx"):
            rows.locator("option", has_text=message).filter(has_text=arrow).first.wait_for(
                state="attached", timeout=15_000
            )
        mark("tx and rx echo shown")
        summary["send_status"] = send.locator(".rawws-send-status").inner_text().strip()
        _shot(page, artifacts, run, "2-sent-and-echoed", rows)

        # 4. "ping now": the LatencyPanel shows a round trip in ms.
        dashboard.locator(".rawws-ping-now").click()
        stats = dashboard.locator(".rawws-latency-stats")
        stats.filter(has_text=re.compile(r"last\s+[\d.]+\s*ms")).wait_for(timeout=15_000)
        summary["latency_stats"] = stats.inner_text().strip()
        mark("ping round trip shown")
        _shot(page, artifacts, run, "3-ping", stats)
        dashboard.screenshot(path=str(artifacts / f"quickstart-{run}-dashboard.png"))

        calls = ast.literal_eval(probe.eval("", {"c": "_rawws_probe['calls']"})["c"])
        summary["callback_threads"] = [{"button": k, "thread": t, "main": m} for k, t, m in calls]
        kinds = {k for k, _, _ in calls}
        assert {"rawws-send-button", "rawws-ping-now"} <= kinds, calls
        if kernel_name == KERNEL701_NAME:
            # As on Binder: every callback on a subshell thread, so the panels' work went
            # through the hand-off to the session's loop (and it arrived: rows and RTT).
            assert all(not main and thread.startswith("subshell-") for _, thread, main in calls), calls
    except BaseException:
        page.screenshot(path=str(artifacts / f"quickstart-{run}-FAILED.png"))
        raise
    finally:
        mark("done")
        probe.close()
        (artifacts / f"quickstart-{run}.json").write_text(json.dumps(summary, indent=1) + "\n")
        with contextlib.suppress(OSError):  # free the kernel for the next run
            lab.api(f"sessions/{session['id']}", method="DELETE")
