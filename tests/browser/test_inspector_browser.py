"""The inspector (the Dashboard's TimelinePanel) in JupyterLab in a real chromium, at
1024x768 with the file browser open, with both kernels (the project's, ipykernel 7.4,
and ipykernel 7.0.1 as on Binder, where every widget callback runs on a subshell thread).

Each run: a notebook opens a session on the embedded server's /echo, sends text frames
and a Binary frame `ca fe 01 02`, shows a Dashboard; the test clicks the Binary frame's
row and checks the detail pane's hex dump, types a regex in the filter and checks the
rows, then takes screenshots in the light and the dark theme (test-artifacts/browser/
inspector-<run>-light.png and -dark.png, plus the detail pane alone).
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path

import pytest

from .conftest import KERNEL701_DISPLAY, KERNEL701_NAME
from .lab import KernelProbe, open_notebook, run_all_and_wait, scroll_to_end, wait_kernel_ready

CELLS = [
    "import rawws_nb as rw\n"
    "from rawws_nb.widgets import Dashboard\n"
    "server = await rw.serve()\n"
    'session = await rw.web_socket_raw_session(server.url + "/echo")',
    'for word in ["alpha-1", "beta-22", "gamma-333", "beta-4444"]:\n'
    "    await session.send(word)\n"
    'await session.send(rw.Frame.Binary(bytes.fromhex("cafe0102")))\n'
    'await session.ping(b"inspect", timeout=5)',
    "dash = Dashboard(session, drain=True)\ndash",
]

RUNS = {"default-kernel": None, "ipykernel701": KERNEL701_NAME}


def _notebook(kernel: str, display: str) -> dict:
    return {
        "cells": [
            {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": src}
            for src in CELLS
        ],
        "metadata": {"kernelspec": {"name": kernel, "display_name": display, "language": "python"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def _set_theme(page, name: str) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text="Settings").first.click()
    page.locator(".lm-Menu-item:visible .lm-Menu-itemLabel", has_text="Theme").first.hover()
    page.locator(".lm-Menu-item:visible .lm-Menu-itemLabel", has_text=name).first.click()
    light = name == "JupyterLab Light"
    page.wait_for_function(
        "light => document.body.dataset.jpThemeLight === String(light)", arg=light, timeout=15_000
    )
    page.wait_for_selector("#jupyterlab-splash", state="detached", timeout=15_000)  # the theme's splash
    page.wait_for_timeout(300)  # let the theme's CSS settle before a screenshot


@pytest.mark.timeout(300)
@pytest.mark.parametrize("run", list(RUNS))
def test_inspector_click_filter_and_themes(chromium, lab, browser, artifacts: Path, run: str) -> None:
    kernel = RUNS[run] or "python3"
    display = KERNEL701_DISPLAY if RUNS[run] else "Python 3 (ipykernel)"
    rel = f"inspector-{run}.ipynb"
    nb_path = lab.root_dir / rel
    nb_path.write_text(json.dumps(_notebook(kernel, display), indent=1))
    context = browser.new_context(viewport={"width": 1024, "height": 768})
    page = context.new_page()
    console: list[str] = []
    page.on("console", lambda m: console.append(f"[{m.type}] {m.text}"))
    summary: dict = {"run": run}
    session = None
    probe = None
    try:
        open_notebook(page, lab, rel)
        session = wait_kernel_ready(page, lab, rel)
        probe = KernelProbe(lab.connection_file(session["kernel"]["id"]))
        run_all_and_wait(page, probe, CELLS)
        file_browser = page.locator(".jp-FileBrowser")
        summary["file_browser_open"] = file_browser.count() > 0 and file_browser.first.is_visible()
        dash = scroll_to_end(page, ".rawws-dashboard")
        timeline = dash.locator(".rawws-timeline")
        rows = timeline.locator(".rawws-timeline-rows select")
        rows.locator("option", has_text="ca fe 01 02").first.wait_for(state="attached", timeout=30_000)

        # 1. Click the received Binary frame's row: the detail pane shows its hex.
        option = rows.locator("option", has_text="← rx binary").first
        option.scroll_into_view_if_needed()
        option.click()
        hexdump = timeline.locator(".rawws-detail-hexdump")
        hexdump.filter(has_text="ca fe 01 02").wait_for(timeout=15_000)
        detail = timeline.locator(".rawws-detail").inner_text()
        assert "opcode" in detail and "binary (0x2)" in detail and "mask" in detail
        summary["detail"] = detail
        timeline.locator(".rawws-detail-pane").screenshot(path=str(artifacts / f"inspector-{run}-detail.png"))

        # 2. A regex filter: only the frames whose preview matches.
        timeline.locator(".rawws-timeline-regex input").check()
        search = timeline.locator(".rawws-timeline-search input")
        search.fill(r"^beta-\d+$")
        search.press("Enter")

        def labels() -> list[str]:
            return rows.locator("option").all_inner_texts()

        page.wait_for_function(
            "sel => { const o = document.querySelectorAll(sel); return o.length === 4; }",
            arg=".rawws-dashboard .rawws-timeline-rows select option",
            timeout=15_000,
        )
        shown = labels()
        assert len(shown) == 4 and all(re.search(r"'beta-\d+'", line) for line in shown), shown
        # The counters are their own widget: their update may land a moment after the rows'.
        counters = timeline.locator(".rawws-timeline-counters")
        counters.filter(has_text="4 match the filters").wait_for(timeout=15_000)
        assert "showing 4" in counters.inner_text()
        summary["filtered_rows"] = shown

        # 3. Screenshots at 1024x768, light then dark.
        dash.scroll_into_view_if_needed()
        page.screenshot(path=str(artifacts / f"inspector-{run}-light.png"))
        _set_theme(page, "JupyterLab Dark")
        dash.scroll_into_view_if_needed()
        page.screenshot(path=str(artifacts / f"inspector-{run}-dark.png"))
        # The latency chart's axis uses currentColor: readable on the dark background.
        colour = dash.locator(".rawws-latency").evaluate("el => getComputedStyle(el).color")
        summary["dark_text_colour"] = colour
        _set_theme(page, "JupyterLab Light")
    except BaseException:
        page.screenshot(path=str(artifacts / f"inspector-{run}-FAILED.png"))
        raise
    finally:
        (artifacts / f"inspector-{run}.json").write_text(json.dumps(summary, indent=1) + "\n")
        (artifacts / f"inspector-{run}.console.log").write_text("\n".join(console) + "\n")
        if probe is not None:
            probe.close()
        if session is not None:
            with contextlib.suppress(OSError):
                lab.api(f"sessions/{session['id']}", method="DELETE")
        context.close()
