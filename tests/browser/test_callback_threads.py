"""Which thread runs ipywidgets callbacks in this browser set-up, with a plain Button and a
ToggleButton (no rawws code involved): a check of the premise of the ipykernel 7.0.1 run
of the quick-start test (every callback on a subshell thread), and a record, in
test-artifacts/browser/callback-threads-<kernel>.json, of what the project's own kernel does.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from .conftest import KERNEL701_NAME
from .lab import KernelProbe, notebook, open_notebook, run_all_and_wait, scroll_to_end, wait_kernel_ready

PROBE_CELL = """\
import json, threading, ipykernel, ipywidgets as w
seen = []
out = w.Label(); out.add_class("probe-out")
def record(kind):
    t = threading.current_thread()
    seen.append([kind, t.name, t is threading.main_thread()])
    out.value = json.dumps({"ipykernel": ipykernel.__version__, "calls": seen})
button = w.Button(description="probe"); button.add_class("probe-button")
button.on_click(lambda _b: record("Button"))
toggle = w.ToggleButton(description="toggle"); toggle.add_class("probe-toggle")
toggle.observe(lambda _change: record("ToggleButton"), "value")
w.VBox([button, toggle, out])
"""

CLICKS = 3


def _probe_notebook(kernel_name: str) -> dict:
    return {
        "cells": [
            {
                "cell_type": "code",
                "execution_count": None,
                "id": "probe",
                "metadata": {},
                "outputs": [],
                "source": PROBE_CELL,
            }
        ],
        "metadata": {"kernelspec": {"name": kernel_name, "display_name": kernel_name, "language": "python"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }


@pytest.mark.timeout(300)  # includes building .venv-kernel701 on a first run
@pytest.mark.parametrize("kernel_name", ["python3", KERNEL701_NAME])
def test_widget_callback_threads(chromium, lab, page, artifacts: Path, kernel_name: str) -> None:
    rel_path = f"probe/callback-threads-{kernel_name}.ipynb"
    (lab.root_dir / "probe").mkdir(exist_ok=True)
    (lab.root_dir / rel_path).write_text(json.dumps(_probe_notebook(kernel_name)))

    open_notebook(page, lab, rel_path)
    session = wait_kernel_ready(page, lab, rel_path)
    probe = KernelProbe(lab.connection_file(session["kernel"]["id"]))
    try:
        run_all_and_wait(page, probe, [PROBE_CELL])
        scroll_to_end(page, ".probe-out")
        nb = notebook(page)
        out = nb.locator(".probe-out")
        for selector in (".probe-button", ".probe-toggle"):
            for _ in range(CLICKS):
                before = out.inner_text()
                nb.locator(selector).click()
                deadline = time.monotonic() + 10
                while out.inner_text() == before:  # each click is seen before the next
                    assert time.monotonic() < deadline, f"no callback after clicking {selector}"
                    time.sleep(0.05)
        result = json.loads(out.inner_text())
        calls = [{"widget": k, "thread": t, "main": m} for k, t, m in result["calls"]]
        (artifacts / f"callback-threads-{kernel_name}.json").write_text(
            json.dumps({"kernel": kernel_name, "ipykernel": result["ipykernel"], "calls": calls}, indent=1) + "\n"
        )
        assert len(calls) == 2 * CLICKS
        if kernel_name == KERNEL701_NAME:
            assert result["ipykernel"] == "7.0.1"
            assert all(not c["main"] and c["thread"].startswith("subshell-") for c in calls), calls
    finally:
        probe.close()
        lab.api(f"sessions/{session['id']}", method="DELETE")
