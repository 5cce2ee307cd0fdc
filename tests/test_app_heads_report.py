"""AppTest: the Heads page opens at once on the shipped model and sample, from checkpoints/heads_report.json, and so
does the Translate page's role line; another model or sample is computed as before; a damaged file is ignored."""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
from streamlit.testing.v1 import AppTest

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from app_fixtures import write_tiny_checkpoint  # noqa: E402

import ui.sections.head_report as section  # noqa: E402
from core.analysis.report_file import load_report, sha256_file  # noqa: E402

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]
APP, MODEL, SAMPLE = str(REPO / "app.py"), REPO / "checkpoints" / "default.pt", section.SAMPLE
pytestmark = pytest.mark.skipif(not MODEL.is_file(), reason="checkpoints/default.pt is not there")
UPLOAD = b"the cat sat on the mat\til gatto era sul tappeto\na dog runs in the park\tun cane corre nel parco\n"


@pytest.fixture(scope="module")
def shipped():
    """The file's report, read here on its own (4 x 8 heads for today's model; the file says)."""
    document = json.loads(section.REPORT_FILE.read_text(encoding="utf-8"))
    layers = len(document["report"]["kinds"]["cross"]["entropy"])
    heads = len(document["report"]["kinds"]["cross"]["entropy"][0])
    return load_report(section.REPORT_FILE, sha256_file(MODEL), sha256_file(SAMPLE), layers, heads)


@pytest.fixture
def computed(monkeypatch):
    """Every report the page computes, by model key; computing goes on as before (the real cached_report)."""
    calls, real = [], section.cached_report

    def recorded(model_key, pairs_key, bundle, pairs):
        calls.append(model_key)
        return real(model_key, pairs_key, bundle, pairs)

    monkeypatch.setattr(section, "cached_report", recorded)
    monkeypatch.setattr(section, "KNOWN_ROLES", section.KnownRoles())  # no role known from earlier tests
    return calls


def fresh_app(monkeypatch, folder: Path | None = None) -> AppTest:
    if folder is None:
        monkeypatch.delenv("ATTN_CHECKPOINT_DIR", raising=False)  # checkpoints/, default.pt first
    else:
        monkeypatch.setenv("ATTN_CHECKPOINT_DIR", str(folder))
    at = AppTest.from_file(APP, default_timeout=180).run()
    assert not at.exception
    return at


def chart_rows(at: AppTest, index: int):
    chart = at.get("vega_lite_chart")[index]
    return pa.ipc.open_stream(chart.proto.datasets[0].data.data).read_all().to_pandas()


def grid_values(at: AppTest) -> np.ndarray:
    rows = chart_rows(at, 0)
    values = np.zeros((int(rows["layer"].max()), int(rows["head"].max())))
    values[rows["layer"].to_numpy() - 1, rows["head"].to_numpy() - 1] = rows["value"].to_numpy()
    return values


def ahead(at: AppTest) -> bool:
    return any(c.value.startswith("Analysed ahead of time") for c in at.caption)


def test_the_shipped_model_and_sample_open_from_the_file_without_computing(monkeypatch, computed, shipped):
    at = fresh_app(monkeypatch)
    at.switch_page("pages/heads.py").run()
    assert not at.exception and computed == [] and ahead(at)
    np.testing.assert_allclose(grid_values(at), shipped.measures["cross"]["ablation_delta_logprob"], atol=1e-9)
    curve = chart_rows(at, 1).sort_values("heads_off")
    assert curve["chrf"].tolist() == pytest.approx([p["chrf"] for p in shipped.pruning_curve])
    at.radio(key="heads_kind").set_value("encoder").run()
    at.selectbox(key="heads_measure").set_value("role").run()
    table = at.dataframe[0].value.sort_values(["layer", "head"])
    assert table["role"].tolist() == [r.role for row in shipped.roles["encoder"] for r in row]
    assert not at.exception and computed == []


def test_the_translate_page_names_the_shipped_models_roles_before_the_heads_page_runs(monkeypatch, computed, shipped):
    at = fresh_app(monkeypatch)
    at.text_input(key="sentence").input("the cat is sleeping on the chair")
    at.button(key="go").click().run()
    at.radio(key="kind").set_value("cross").run()
    at.slider(key="layer").set_value(2).run()
    at.slider(key="head").set_value(3).run()
    assert not at.exception and computed == []
    role = shipped.roles["cross"][1][2]
    assert [c.value for c in at.caption if c.value.startswith("Role over")] == [
        f"Role over the shipped sample: **{role.role}** — {role.evidence}"
    ]


def test_the_same_weights_under_another_name_open_from_the_file_too(tmp_path, monkeypatch, computed):
    (tmp_path / "mine.pt").symlink_to(MODEL)  # the file is keyed by the model file's bytes, not its name
    at = fresh_app(monkeypatch, tmp_path)
    at.switch_page("pages/heads.py").run()
    assert not at.exception and computed == [] and ahead(at)


def test_another_model_or_another_sample_is_computed(tmp_path, monkeypatch, computed):
    at = fresh_app(monkeypatch)  # the shipped model, on an upload
    at.switch_page("pages/heads.py").run()
    at.radio(key="heads_source").set_value("upload").run()
    at.file_uploader(key="heads_upload").upload("pairs.tsv", UPLOAD, "text/tab-separated-values").run()
    assert not at.exception and len(computed) == 1 and not ahead(at)
    assert any("2 sentence pairs" in c.value for c in at.caption)
    write_tiny_checkpoint(tmp_path / "tiny.pt", layers=2, heads=2, seed=21)  # another model, on the sample
    at = fresh_app(monkeypatch, tmp_path)
    at.switch_page("pages/heads.py").run()
    assert not at.exception and len(computed) == 2 and "tiny.pt" in computed[1] and not ahead(at)
    assert grid_values(at).shape == (2, 2)


def damaged_files(tmp_path: Path) -> dict[str, str]:
    """Each damage and the reason the server log gives."""
    document = json.loads(section.REPORT_FILE.read_text(encoding="utf-8"))
    cut = json.loads(json.dumps(document))
    cut["report"]["kinds"]["cross"]["ablation_delta_logprob"].pop()
    return {
        "not JSON": section.REPORT_FILE.read_text(encoding="utf-8")[:5000],
        "layers x": json.dumps(cut),
        "not a JSON object": "[]",
    }


def test_a_damaged_file_is_ignored_and_the_report_computed(tmp_path, monkeypatch, caplog, shipped):
    stand_in = dataclasses.replace(shipped, sentences=123)  # what the computation returns here (the real one: a minute)
    calls = []
    monkeypatch.setattr(section, "cached_report", lambda *args: calls.append(args[0]) or stand_in)
    for reason, text in damaged_files(tmp_path).items():
        path = tmp_path / f"{len(calls)}.json"
        path.write_text(text, encoding="utf-8")
        monkeypatch.setattr(section, "REPORT_FILE", path)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger=section.__name__):
            at = fresh_app(monkeypatch)
            at.switch_page("pages/heads.py").run()
        assert not at.exception and not ahead(at), reason
        assert any("123 sentence pairs" in c.value for c in at.caption)  # the computed report is drawn
        assert any(reason in record.getMessage() and str(path) in record.getMessage() for record in caplog.records)
    assert len(calls) == 3
