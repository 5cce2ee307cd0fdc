"""notebooks/attention.ipynb runs top to bottom on the shipped model and draws what translate() returns.

Executed with nbclient on the `python3` kernel, which ipykernel (requirements-dev.txt) provides for the
interpreter running the tests, so a fresh virtual environment needs no `ipykernel install`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from core import charts, load_checkpoint, translate
from core.attention import KIND_LABELS

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "attention.ipynb"
CHECKPOINT = ROOT / "checkpoints" / "default.pt"
SENTENCE = "The cat is sleeping on the chair."  # the notebook's sentence


def test_the_committed_notebook_has_no_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code)


@pytest.mark.skipif(not CHECKPOINT.is_file(), reason="checkpoints/default.pt is not there")
def test_the_notebook_runs_and_draws_each_kind_of_the_models_attention(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    ).execute()  # raises CellExecutionError on the first failing cell
    html = [
        out["data"]["text/html"]
        for cell in notebook.cells
        if cell.cell_type == "code"
        for out in cell.outputs
        if "text/html" in out.get("data", {})
    ]
    text = "".join(out.get("text", "") for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs)
    result = translate(load_checkpoint(CHECKPOINT), SENTENCE)
    assert result.translation in text
    head_charts = html[: len(KIND_LABELS)]  # the first charts: one head of each kind, in KIND_LABELS order
    assert len(head_charts) == len(KIND_LABELS) == 3, len(html)
    for kind, chart in zip(KIND_LABELS, head_charts):
        # The query axis is labelled with this kind's own tokens ("3·gatto"), as the app labels it: the axis
        # is the data's label column, so every label is among the chart's data.
        assert re.search(r'"field":\s*"query_token"', chart)
        assert all(json.dumps(label) in chart for label in charts.labels(result.attention.queries(kind)))
        assert json.dumps(KIND_LABELS[kind])[1:-1] in chart
    # every layer x head, for each kind: one image of tiles, titled by its kind
    grids = [chart for chart in html if re.search(r'"type":\s*"image"', chart)]
    assert len(grids) >= len(KIND_LABELS) + 1  # the layers x heads grids and the layer's heads
