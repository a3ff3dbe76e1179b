"""notebooks/05-timeline-analysis.ipynb runs top to bottom against the embedded server."""

from __future__ import annotations

from pathlib import Path

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "05-timeline-analysis.ipynb"


def test_timeline_analysis_notebook_runs():
    import nbclient
    import nbformat
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert nb.metadata["kernelspec"] == {"name": "python3", "display_name": "Python 3", "language": "python"}
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code")
    client = nbclient.NotebookClient(
        nb, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    client.execute()
    outputs = [
        str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", ""))
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
    ]
    text = "\n".join(outputs)
    assert "Part 1 Part 2 Part 3" in text and "snow☃man" in text  # messages() reassembled
    assert "<Figure size" in text  # the latency plot
    assert "(True,\n 'ws://127.0.0.1" in text  # Parquet round trip equal, metadata back
    assert outputs[-2:] == ["True", "(15, np.True_)"]  # HAR round trip equal; replayed pings answered
