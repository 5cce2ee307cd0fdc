"""AppTest of the Heads page (measures, roles, the summary line, pruning) and of the Translate page's role line,
"switch heads off" and relevance views."""

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
from app_fixtures import EN, IT, write_tiny_checkpoint  # noqa: E402

from core import load_checkpoint, translate  # noqa: E402
from core.analysis.attribution import METHODS  # noqa: E402
from core.analysis.head_report import reference_attentions  # noqa: E402
from core.analysis.head_roles import describe_counts, head_roles, role_names  # noqa: E402
from core.analysis.importance import ablation, importance_order  # noqa: E402
from core.data import read_tsv  # noqa: E402
from core.heads_off import HeadsOff  # noqa: E402

torch.set_num_threads(1)
APP = str(Path(__file__).resolve().parents[1] / "app.py")
SENTENCE = "the cat sat on the mat"
PAIRS = list(zip(EN, IT)) + [("the cat is big", "il gatto è grande"), ("a dog", "un cane")]
TSV = "".join(f"{en}\t{it}\n" for en, it in PAIRS).encode("utf-8")


@pytest.fixture(scope="module")
def ckpt_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("heads_checkpoints")
    write_tiny_checkpoint(folder / "tiny.pt", layers=2, heads=2, seed=4)
    return folder


@pytest.fixture(scope="module")
def bundle(ckpt_dir):
    return load_checkpoint(ckpt_dir / "tiny.pt")


@pytest.fixture
def app(ckpt_dir, monkeypatch) -> AppTest:
    monkeypatch.setenv("ATTN_CHECKPOINT_DIR", str(ckpt_dir))
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not at.exception
    return at


def chart_rows(at: AppTest, index: int):
    chart = at.get("vega_lite_chart")[index]
    return pa.ipc.open_stream(chart.proto.datasets[0].data.data).read_all().to_pandas(), json.loads(chart.proto.spec)


def grid_values(at: AppTest) -> np.ndarray:
    rows, _ = chart_rows(at, 0)
    values = np.zeros((int(rows["layer"].max()), int(rows["head"].max())))
    values[rows["layer"].to_numpy() - 1, rows["head"].to_numpy() - 1] = rows["value"].to_numpy()
    return values


def open_heads_with_upload(app: AppTest) -> AppTest:
    app.switch_page("pages/heads.py").run()
    app.radio(key="heads_source").set_value("upload").run()
    app.file_uploader(key="heads_upload").upload("pairs.tsv", TSV, "text/tab-separated-values").run()
    assert not app.exception
    return app


def test_heads_page_grid_shows_each_measure_of_each_kind(app, bundle):
    open_heads_with_upload(app)
    deltas, _, _ = ablation(bundle, PAIRS)
    np.testing.assert_allclose(grid_values(app), deltas["cross"], atol=1e-6)  # default: cross, ablation
    _, spec = chart_rows(app, 0)
    assert spec["params"][0]["select"]["fields"] == ["layer", "head"]  # a click picks a head
    assert any(t.get("field") == "value" for t in spec["encoding"]["tooltip"])
    app.radio(key="heads_kind").set_value("encoder").run()
    app.selectbox(key="heads_measure").set_value("entropy").run()
    assert not app.exception
    # Each sentence's mean row entropy of each encoder head, -sum w log w in nats, then the mean over sentences
    maps = [translate(bundle, en, reference=it).attention.encoder.double().numpy() for en, it in PAIRS]
    entropies = [-(w * np.log(np.where(w > 0, w, 1.0))).sum(-1).mean(-1) for w in maps]  # (L, H) each
    assert len({m.shape[-1] for m in maps}) > 1  # sentences of different lengths, each weighing the same
    np.testing.assert_allclose(grid_values(app), np.mean(entropies, axis=0), atol=1e-5)
    table = app.dataframe[0].value
    assert len(table) == 4 and {"layer", "head", "entropy", "gradient_importance", "open"} <= set(table.columns)
    link = table["open"].iloc[0]
    assert link.startswith("/?sentence=") and "kind=encoder" in link
    assert len(app.get("vega_lite_chart")) == 2  # the grid and the pruning curve


def test_heads_page_names_each_heads_role(app, bundle):
    """The role column, the grid coloured by role, the one-line summary of the most important heads and the roles
    each pruning step switched off, against the roles of the same pairs' attention (from translate) and the
    ablation."""
    open_heads_with_upload(app)
    attentions = [translate(bundle, en, reference=it).attention for en, it in PAIRS]
    roles = head_roles(attentions)
    deltas, _, _ = ablation(bundle, PAIRS)
    for kind in ("cross", "encoder", "decoder"):
        app.radio(key="heads_kind").set_value(kind).run()
        assert not app.exception
        table = app.dataframe[0].value.sort_values(["layer", "head"])
        assert table["role"].tolist() == role_names(roles[kind]).reshape(-1).tolist()
        assert table["evidence"].tolist() == [r.evidence for row in roles[kind] for r in row]
        by_importance = np.argsort(deltas[kind].reshape(-1), kind="stable")  # most needed (most negative) first
        top = [role_names(roles[kind]).reshape(-1)[i] for i in by_importance]
        summary = next(m.value for m in app.markdown if "most important" in m.value)
        assert summary.endswith(f"(by ablation): {describe_counts(top)}.") and "The 4 most important" in summary
    app.selectbox(key="heads_measure").set_value("role").run()
    assert not app.exception
    rows, spec = chart_rows(app, 0)
    assert rows.sort_values(["layer", "head"])["role"].tolist() == role_names(roles["decoder"]).reshape(-1).tolist()
    assert spec["encoding"]["color"]["field"] == "role"
    assert spec["params"][0]["select"]["fields"] == ["layer", "head"]  # a click still picks a head
    curve, _ = chart_rows(app, 1)
    order = importance_order({kind: -deltas[kind] for kind in deltas})
    first = curve.sort_values("heads_off").iloc[1]
    off = order[: int(first["heads_off"])]
    assert first["roles_off"] == describe_counts(roles[k][layer - 1][head - 1].role for k, layer, head in off)


def test_the_translate_page_names_the_focused_heads_role_once_the_sample_is_analysed(app, bundle):
    app.switch_page("pages/heads.py").run()  # the shipped sample (computed once per model, then cached)
    assert not app.exception
    app.switch_page("pages/translate.py").run()
    translate_in(app, SENTENCE)
    app.radio(key="kind").set_value("decoder").run()
    app.slider(key="layer").set_value(2).run()
    app.slider(key="head").set_value(1).run()
    assert not app.exception
    sample = read_tsv(Path(APP).parent / "checkpoints" / "heads_sample.en-it.tsv")
    expected = head_roles(reference_attentions(bundle, sample), kinds=["decoder"])["decoder"][1][0]
    line = [c.value for c in app.caption if c.value.startswith("Role over the shipped sample")]
    assert line == [f"Role over the shipped sample: **{expected.role}** — {expected.evidence}"]
    app.toggle(key="avg").set_value(True).run()  # the mean of the layer's heads has no role
    assert not any(c.value.startswith("Role over") for c in app.caption)


def test_before_the_sample_is_analysed_the_translate_page_links_to_the_heads_page(tmp_path, monkeypatch):
    write_tiny_checkpoint(tmp_path / "fresh.pt", layers=2, heads=2, seed=11)  # a model no report has seen
    monkeypatch.setenv("ATTN_CHECKPOINT_DIR", str(tmp_path))
    at = AppTest.from_file(APP, default_timeout=120).run()
    translate_in(at, SENTENCE)
    assert not at.exception
    assert not any(c.value.startswith("Role over") for c in at.caption)
    links = [link.proto for link in at.get("page_link") if link.proto.page.endswith("heads")]
    assert len(links) == 1 and "role" in links[0].label


def test_a_picked_head_opens_on_the_translate_page(app):
    open_heads_with_upload(app)
    app.radio(key="heads_kind").set_value("decoder").run()
    sentence = app.selectbox(key="heads_sentence").value
    app.session_state["_open_head"] = (2, 1)  # what a click on the grid stores (a real click: test_browser)
    app.run()
    assert not app.exception
    assert app.text_input(key="sentence").value == sentence
    assert app.radio(key="kind").value == "decoder"
    assert app.slider(key="layer").value == 2 and app.slider(key="head").value == 1


def test_bad_uploads_get_a_message(app):
    app.switch_page("pages/heads.py").run()
    app.radio(key="heads_source").set_value("upload").run()
    app.file_uploader(key="heads_upload").upload("x.tsv", b"\xff\xfe not utf8", "text/plain").run()
    assert not app.exception and "not UTF-8" in app.warning[0].value
    app.file_uploader(key="heads_upload").upload("y.tsv", b"no tab\n", "text/plain").run()
    assert not app.exception and "expected 'source<TAB>target'" in app.warning[0].value
    long = (" ".join(["cat"] * 40) + "\tgatto\n").encode()
    app.file_uploader(key="heads_upload").upload("z.tsv", long, "text/plain").run()
    assert not app.exception and "none of the sentence pairs fits" in app.warning[0].value


def test_the_shipped_sample_runs_with_its_attribution(app):
    app.switch_page("pages/heads.py").run()
    assert not app.exception
    captions = " ".join(c.value for c in app.caption)
    assert "CC BY 2.0 FR" in captions and "200 sentence pairs" in captions


def translate_in(at: AppTest, sentence: str) -> AppTest:
    at.text_input(key="sentence").input(sentence)
    return at.button(key="go").click().run()


def test_switch_heads_off_shows_both_translations_and_the_changed_maps(app, bundle):
    translate_in(app, SENTENCE)
    app.slider(key="layer").set_value(2).run()
    app.multiselect(key="heads_off").set_value(["c1.1", "e2.2"]).run()
    assert not app.exception
    off = HeadsOff(frozenset({("cross", 1, 1), ("encoder", 2, 2)}))
    plain, masked = translate(bundle, SENTENCE), translate(bundle, SENTENCE, head_mask=off)
    assert [t.value for t in app.text][:2] == [plain.translation, masked.translation]
    assert app.query_params["off"] in ("e2.2,c1.1", ["e2.2,c1.1"])
    charts = app.get("vega_lite_chart")
    # focused head, heads of the layer (the all-layers grid is closed), then original and switched-off maps of
    # cross layer 2, the focused head
    head = app.slider(key="head").value
    for index, result in ((2, plain), (3, masked)):
        rows, _ = chart_rows(app, index)
        want = result.attention.cross[1, head - 1]
        got = torch.zeros_like(want)
        got[rows["qi"].to_numpy().astype("int64"), rows["ki"].to_numpy().astype("int64")] = torch.tensor(
            rows["weight"].to_numpy().copy()
        )
        torch.testing.assert_close(got, want)
    assert len(charts) == 4


def test_the_link_keeps_the_switched_off_heads(ckpt_dir, monkeypatch):
    monkeypatch.setenv("ATTN_CHECKPOINT_DIR", str(ckpt_dir))
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params.update(sentence=SENTENCE, kind="cross", layer="1", head="2", off="c1.2,d2.1")
    at.run()
    assert not at.exception
    assert at.multiselect(key="heads_off").value == ["d2.1", "c1.2"]
    assert at.query_params["off"] in ("d2.1,c1.2", ["d2.1,c1.2"])
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params.update(sentence=SENTENCE, off="c9.9,nonsense")  # a broken link shows every head on
    at.run()
    assert not at.exception and at.multiselect(key="heads_off").value == []


def test_where_each_word_came_from_shows_each_method(app, bundle):
    """The attribution view (computed only when asked for) draws each method's (T, S) scores, as
    core.analysis.attribution computes them, and for the methods that split a prediction its source share."""
    from core.analysis.attribution import attribute

    translate_in(app, SENTENCE)
    result = translate(bundle, SENTENCE)
    assert len(app.get("vega_lite_chart")) == 2  # computed only when asked for
    app.toggle(key="relevance_on").set_value(True).run()
    for method in ("attention", "rollout", "gradient", "alti", "value-zeroing"):
        app.selectbox(key="relevance").set_value(method).run()
        assert not app.exception
        titles = [  # a heatmap's title comes with its data (charts.TITLE_EXPR)
            set(chart_rows(app, i)[0].get("title", [])) for i in range(len(app.get("vega_lite_chart")))
        ]
        index = next(i for i, t in enumerate(titles) if METHODS[method].label in t)
        rows, _ = chart_rows(app, index)
        want = attribute(bundle, result, method).source.float()
        got = torch.zeros_like(want)
        got[rows["qi"].to_numpy().astype("int64"), rows["ki"].to_numpy().astype("int64")] = torch.tensor(
            rows["weight"].to_numpy().copy()
        )
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
        shares = [c for c in app.get("vega_lite_chart") if "from the source" in c.proto.spec]
        assert bool(shares) == METHODS[method].splits
