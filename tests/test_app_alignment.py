"""AppTest of the word-alignment view (Translate page) and the alignment head on the Models page."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
from streamlit.testing.v1 import AppTest

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from app_fixtures import tiny_bundle_parts  # noqa: E402

from core import load_checkpoint, save_checkpoint, translate  # noqa: E402

torch.set_num_threads(1)
APP = str(Path(__file__).resolve().parents[1] / "app.py")
SENTENCE, REFERENCE = "the cat sat on the mat", "il gatto era sul tappeto"
CARD = {"alignment": {"method": "L2mean-predict-threshold", "aer": 0.42, "threshold": 0.3, "data": "toy gold *pairs*"}}


@pytest.fixture(scope="module")
def ckpt_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("checkpoints")
    model, src, tgt = tiny_bundle_parts(layers=2, heads=2)
    save_checkpoint(folder / "aligned.pt", model, src, tgt, metadata={"model_card": CARD})
    return folder


@pytest.fixture(scope="module")
def bundle(ckpt_dir):
    return load_checkpoint(ckpt_dir / "aligned.pt")


@pytest.fixture
def app(ckpt_dir, monkeypatch) -> AppTest:
    monkeypatch.setenv("ATTN_CHECKPOINT_DIR", str(ckpt_dir))
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    return at


def open_view(at: AppTest, reference: str = REFERENCE) -> AppTest:
    at.text_input(key="sentence").input(SENTENCE)
    at.text_input(key="reference").input(reference)
    at.button(key="go").click().run()
    at.toggle(key="align_on").set_value(True).run()
    assert not at.exception
    return at


def focused(at: AppTest) -> tuple[int, int]:
    """The (layer, head) the Translate page shows: the page picks the one it opens on."""
    return at.slider(key="layer").value, at.slider(key="head").value


def expected_links(bundle, layer: int, head: int | None, rows: str) -> set[tuple[int, int]]:
    """Argmax links computed here from the model's own cross-attention: every toy word is one token."""
    cross = translate(bundle, SENTENCE, reference=REFERENCE).attention.cross[layer - 1].numpy()  # (H, T, S)
    cross = cross.mean(0) if head is None else cross[head - 1]
    read = cross[:-1, 1:-1] if rows == "predict" else cross[1:, 1:-1]  # target words x source words
    return {(int(s), t) for t, s in enumerate(read.argmax(-1))}


def alignment_chart(at: AppTest):
    charts = [c for c in at.get("vega_lite_chart") if "Italian word" in c.proto.spec]
    assert len(charts) == 1
    tables = [pa.ipc.open_stream(d.data.data).read_all().to_pandas() for d in charts[0].proto.datasets]
    return json.loads(charts[0].proto.spec), tables


def y_labels(spec: dict) -> str:
    return spec["layer"][0]["encoding"]["y"]["axis"]["labelExpr"]


def model_links(at: AppTest) -> set[tuple[int, int]]:
    text = at.code[0].value
    return set() if text == "(none)" else {tuple(map(int, link.split("-"))) for link in text.split()}


def test_links_of_the_chosen_head_are_drawn_and_listed(app, bundle):
    open_view(app)
    app.radio(key="align_source").set_value("chosen").run()
    app.slider(key="layer").set_value(2).run()
    app.slider(key="head").set_value(1).run()
    assert model_links(app) == expected_links(bundle, 2, 1, "predict")
    app.radio(key="align_rows").set_value("input").run()
    assert model_links(app) == expected_links(bundle, 2, 1, "input")
    spec, tables = alignment_chart(app)
    links = next(t for t in tables if "by" in t.columns)
    assert {(int(s), int(t)) for s, t in zip(links["si"], links["ti"])} == expected_links(bundle, 2, 1, "input")
    assert json.dumps([f"{i}·{w}" for i, w in enumerate(REFERENCE.split())]) in y_labels(spec)  # reference words


def test_gold_links_give_this_sentences_aer(app, bundle):
    open_view(app)
    app.radio(key="align_source").set_value("chosen").run()
    found = sorted(expected_links(bundle, *focused(app), "predict"))
    gold = found[:2] + [(5, 0), (4, 4)]  # two links the model finds, two others (unless it finds them too)
    app.text_input(key="gold_links").input(" ".join(f"{i}-{j}" for i, j in gold)).run()
    assert not app.exception and not app.error
    hits = len(set(found) & set(gold))
    want = 1 - 2 * hits / (len(found) + len(set(gold)))
    assert any(f"AER **{want:.3f}**" in m.value for m in app.markdown)
    _, tables = alignment_chart(app)
    marks = next(t for t in tables if "by" in t.columns)
    assert (marks["by"] == "gold").sum() == len(set(gold))


@pytest.mark.parametrize(
    "text, message", [("0-0 x", "is not a link"), ("9-0", "outside the sentences"), ("**bold**-1", r"\*\*bold\*\*")]
)
def test_bad_gold_links_get_a_message(app, text, message):
    open_view(app)
    app.text_input(key="gold_links").input(text).run()
    assert not app.exception
    assert len(app.error) == 1 and message in app.error[0].value
    assert not any("This sentence" in m.value for m in app.markdown)


def test_the_model_cards_method_is_offered_and_used(app, bundle):
    open_view(app)
    assert app.radio(key="align_source").value == "card"
    assert any("L2mean-predict-threshold" in c.value for c in app.caption)
    cross = translate(bundle, SENTENCE, reference=REFERENCE).attention.cross[1].numpy().mean(0)[:-1, 1:-1]
    shares = cross / cross.sum(-1, keepdims=True)
    assert model_links(app) == {(int(s), int(t)) for t, s in zip(*np.nonzero(shares >= 0.3))}


def test_without_a_reference_the_generated_tokens_are_aligned_and_no_gold_box(app, bundle):
    open_view(app, reference="")
    assert "gold_links" not in [w.key for w in app.text_input]
    spec, _ = alignment_chart(app)
    tokens = translate(bundle, SENTENCE).target_tokens[1:]
    assert json.dumps([f"{i}·{t}" for i, t in enumerate(tokens)]) in y_labels(spec)


def test_models_page_shows_the_alignment_head_and_its_aer(app):
    app.switch_page("pages/models.py").run()
    assert not app.exception
    text = " ".join(m.value for m in app.markdown)
    assert "**Alignment head**" in text and "L2mean-predict-threshold" in text and "AER **0.420**" in text
    assert r"toy gold \*pairs\*" in text  # card text shown as text, not Markdown


def test_without_a_recorded_method_the_chosen_head_is_used(tmp_path, monkeypatch):
    model, src, tgt = tiny_bundle_parts(layers=2, heads=2)
    save_checkpoint(tmp_path / "plain.pt", model, src, tgt, metadata={"model_card": {"data": "toy"}})
    monkeypatch.setenv("ATTN_CHECKPOINT_DIR", str(tmp_path))
    at = open_view(AppTest.from_file(APP, default_timeout=60).run())
    assert "align_source" not in [r.key for r in at.radio]
    assert model_links(at) == expected_links(load_checkpoint(tmp_path / "plain.pt"), *focused(at), "predict")
    at.switch_page("pages/models.py").run()
    assert not at.exception and not any("Alignment head" in m.value for m in at.markdown)
