"""Every notebook in notebooks/ runs top to bottom offline, in a fresh kernel each, and is
committed with its outputs cleared. A cell that raises fails the test (nbclient's
CellExecutionError names the cell); a cell that runs longer than CELL_TIMEOUT fails too.

The executed copies (with outputs) go to test-artifacts/notebooks/ for inspection; the
files in notebooks/ are never written. The kernel is the notebook's own kernelspec
(`python3`: this environment's ipykernel, found before any user-wide one), started with
notebooks/ as its working dir, as JupyterLab and Binder do.
"""

from __future__ import annotations

from pathlib import Path

import nbclient
import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
ARTIFACTS = ROOT / "test-artifacts" / "notebooks"
CELL_TIMEOUT = 60  # seconds, per cell
NOTEBOOK_TIMEOUT = 180  # seconds, per notebook (pytest-timeout)


def _texts(nb: nbformat.NotebookNode) -> list[str]:
    return [
        str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", ""))
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
    ]


def _check_04(outputs: list[str]) -> None:
    text = "\n".join(outputs)
    assert "error(code='bad_message'" in text  # the message broken on purpose
    assert "CANNOT_ACCEPT" in text  # the version mismatch
    assert "say+say" in text  # two messages in one frame, decoded in the timeline


def _check_05(outputs: list[str]) -> None:
    text = "\n".join(outputs)
    assert "Part 1 Part 2 Part 3" in text and "snow☃man" in text  # messages() reassembled
    assert "<Figure size" in text  # the latency plot
    assert "(True,\n 'ws://127.0.0.1" in text  # Parquet round trip equal, metadata back
    assert outputs[-2:] == ["True", "(15, np.True_)"]  # HAR round trip equal; replayed pings answered


def _check_09(outputs: list[str]) -> None:
    text = "\n".join(outputs)
    assert "[1800 bytes, rsv1=True] compressed: True" in text and "[1800 bytes] compressed: False" in text
    assert "rsv1: False compressed: True" in text  # a continuation of a compressed message
    lengths = [line for line in text.splitlines() if line.startswith("no takeover [")]
    assert len(lengths) == 1 and len(set(lengths[0][len("no takeover ") :].strip("[]").split(", "))) == 1
    assert "1002 (PROTOCOL_ERROR)" in text and "rsv1 set on a control frame" in text


def _check_06(outputs: list[str]) -> None:
    text = "\n".join(outputs)
    assert "client sent:         ['my cat says hello', 'a secret the relay drops', 'plain message']" in text
    assert "server received:     ['my cat says hello', 'plain message']" in text  # dropped on the way up
    assert "client was sent:     ['my dog says hello', 'plain message', 'injected by the relay']" in text
    assert "dropped by the hook: ['a secret the relay drops']" in text
    assert "pcapng connections: 2" in text  # one per leg
    assert "CloseReason(1000 (NORMAL), ''), CloseReason(1000 (NORMAL), '')" in text  # both legs closed cleanly


def _check_07(outputs: list[str]) -> None:
    text = "\n".join(outputs)
    assert "'problems'" not in text or "[])" in text  # the capture read with no problems
    assert "True" in outputs  # a session to pcapng and back: the same frames
    assert "compression" in text and "rtt" in text  # summary() and latency() on a capture


def _check_08(outputs: list[str]) -> None:
    text = "\n".join(outputs)
    assert "suback(packet_id=1, return_codes=[1])" in text and "puback(packet_id=7)" in text
    assert "publish(dup=False, qos=1, retain=False, topic='lab/oven/temp'" in text  # delivered to the subscriber
    assert "00110011 {'dup': False, 'qos': 1, 'retain': True" in text  # the header bits
    assert "varint longer than 4 bytes" in text and "subscribe.flags" in text  # malformed input
    assert "topic='lab/panel/temp'" in text and "pingresp()" in text  # the send panel's publish; keep-alive


# What some notebooks must show, beyond running without an error.
CONTENT_CHECKS = {
    "04-binary-protocol": _check_04,
    "05-timeline-analysis": _check_05,
    "06-intercept-a-browser": _check_06,
    "07-analyse-a-capture": _check_07,
    "08-mqtt-over-websocket": _check_08,
    "09-compression": _check_09,
}


@pytest.fixture(autouse=True)
def _this_environments_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    # Find `python3` in this environment (sys.prefix/share/jupyter) before any user-wide
    # kernelspec of the same name that might point at another Python.
    monkeypatch.setenv("JUPYTER_PREFER_ENV_PATH", "1")


def test_there_are_notebooks() -> None:
    assert NOTEBOOKS, "no notebooks found in notebooks/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_committed_clean(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", (
        "metadata.kernelspec.name must be python3 (without one JupyterLab asks for a kernel)"
    )
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, f"code cells with outputs or execution counts (clear them): {dirty}"


@pytest.mark.timeout(NOTEBOOK_TIMEOUT)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=CELL_TIMEOUT,
        kernel_name=nb.metadata.get("kernelspec", {}).get("name", "python3"),
        allow_errors=False,
        record_timing=True,
        resources={"metadata": {"path": str(path.parent)}},
    )
    try:
        client.execute()  # a fresh kernel, shut down at the end
    finally:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, ARTIFACTS / path.name)
    errors = [
        (i, o.get("ename"), o.get("evalue"))
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code"
        for o in c.outputs
        if o.get("output_type") == "error"
    ]
    assert not errors, errors
    ran = [c.execution_count for c in nb.cells if c.cell_type == "code"]
    assert all(n is not None for n in ran), f"cells that did not run: {ran}"
    check = CONTENT_CHECKS.get(path.stem)
    if check is not None:
        check(_texts(nb))
