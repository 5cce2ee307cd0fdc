"""AppTest of the Timeline and Compare pages, and of the Translate page's links to them, with tiny checkpoints."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from urllib.parse import parse_qs

import numpy as np
import pyarrow as pa
import pytest
import torch
from streamlit.testing.v1 import AppTest

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from app_fixtures import tiny_bundle_parts, write_tiny_checkpoint, write_tutorial_run  # noqa: E402

from core import charts, load_checkpoint, save_checkpoint  # noqa: E402
from core.comparison import compare_models  # noqa: E402
from core.runs import follow_sentence, runs_in_folder  # noqa: E402
from core.tokenizer import build_tokenizer  # noqa: E402
from ui import md_text  # noqa: E402

torch.set_num_threads(1)
APP = str(Path(__file__).resolve().parents[1] / "app.py")
SENTENCE = "the cat sat on the mat"


@pytest.fixture(scope="module")
def ckpt_dir(tmp_path_factory) -> Path:
    """tiny.pt (the active model), a run of three epochs in run/, and zz_other_vocab.pt with its own tokenizer."""
    folder = tmp_path_factory.mktemp("checkpoints")
    write_tiny_checkpoint(folder / "tiny.pt")
    for epoch in range(3):
        model, src, tgt = tiny_bundle_parts(seed=10 + epoch)
        save_checkpoint(folder / "run" / f"tmodel_{epoch:02d}.pt", model, src, tgt)
    model, _, tgt = tiny_bundle_parts(seed=5)
    other = build_tokenizer(["completely other words", "for an english side", "of twenty one tokens or so"], 1)
    bad = type(model)(model.config.__class__(**{**model.config.to_dict(), "src_vocab_size": other.get_vocab_size()}))
    save_checkpoint(folder / "zz_other_vocab.pt", bad.eval(), other, tgt)
    return folder


@pytest.fixture
def open_page(ckpt_dir, monkeypatch):
    monkeypatch.setenv("ATTN_CHECKPOINT_DIR", str(ckpt_dir))

    def opened(page: str, **params) -> AppTest:
        at = AppTest.from_file(APP, default_timeout=120)
        at.query_params.update({k: str(v) for k, v in params.items()})
        at.switch_page(page).run()
        assert not at.exception, at.exception
        return at

    return opened


def chart_rows(at: AppTest, index: int):
    chart = at.get("vega_lite_chart")[index]
    return pa.ipc.open_stream(chart.proto.datasets[0].data.data).read_all().to_pandas(), json.loads(chart.proto.spec)


def matrix_of(rows, shape) -> np.ndarray:
    got = np.zeros(shape, dtype=np.float32)
    got[rows["qi"].to_numpy().astype(int), rows["ki"].to_numpy().astype(int)] = rows["weight"].to_numpy()
    return got


def test_timeline_from_a_link_shows_every_epoch_and_the_slider_moves_the_map(open_page, ckpt_dir):
    at = open_page("pages/timeline.py", run="run/tmodel_", sentence=SENTENCE, kind="cross", layer=2, head=1)
    (run,) = runs_in_folder(ckpt_dir / "run")
    expected = follow_sentence(run, SENTENCE)
    table = at.dataframe[0].value
    assert list(table["checkpoint"]) == ["epoch 00", "epoch 01", "epoch 02"]
    assert list(table["translation"]) == [e.translation for e in expected.epochs]
    assert at.slider(key="timeline_epoch").value == 1
    for epoch in (1, 3):
        at.slider(key="timeline_epoch").set_value(epoch).run()
        rows, spec = chart_rows(at, 0)
        want = charts.head_matrix(expected.epochs[epoch - 1].attention, "cross", 2, 1)
        np.testing.assert_allclose(matrix_of(rows, want.shape), want, atol=1e-6)
        (title,) = set(rows["title"])  # the heatmap's title comes with its data (charts.TITLE_EXPR)
        assert f"epoch {epoch - 1:02d}" in title and spec["title"]["text"] == {"expr": charts.TITLE_EXPR}
        assert at.query_params["epoch"] == [str(epoch)] or at.query_params["epoch"] == str(epoch)
    # the statistic lines hold one value per epoch; the last is the decoder input's log-probability
    rows, _ = chart_rows(at, 4)
    assert sorted(rows["value"].round(4)) == sorted(round(e.log_probability, 4) for e in expected.epochs)


def test_timeline_opens_on_the_last_checkpoints_sharpest_cross_head(tmp_path, monkeypatch):
    """No head in the link: the cross-attention head of the last checkpoint with the largest mean row peak on a
    source word (its checkpoint has no card), with a line saying what to watch. The last checkpoint's layer 2
    head 2 is made sharp (its queries scaled up), so the answer is not the slider's own default."""
    for epoch in range(2):
        model, src, tgt = tiny_bundle_parts(seed=10 + epoch)
        if epoch == 1:
            with torch.no_grad():
                model.decoder.layers[1].cross_attention_block.w_q.weight[model.config.d_model // 2 :] *= 30
        save_checkpoint(tmp_path / "run" / f"tmodel_{epoch:02d}.pt", model, src, tgt)
    monkeypatch.setenv("ATTN_CHECKPOINT_DIR", str(tmp_path))
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params["sentence"] = SENTENCE
    at.switch_page("pages/timeline.py").run()
    assert not at.exception
    (run,) = runs_in_folder(tmp_path / "run")
    last = follow_sentence(run, SENTENCE).epochs[-1].attention
    peaks = last.cross[:, :, :, 1:-1].amax(dim=-1).mean(dim=-1)
    layer, head = divmod(int(peaks.argmax()), last.n_heads)
    assert (layer, head) == (1, 1)
    assert at.radio(key="kind").value == "cross"
    assert (at.slider(key="layer").value, at.slider(key="head").value) == (2, 2)
    assert any("Move the checkpoint slider to watch it form" in c.value for c in at.caption)


def test_timeline_from_a_link_naming_another_kind_and_no_head_opens_that_kind(open_page):
    at = open_page("pages/timeline.py", run="run/tmodel_", sentence=SENTENCE, kind="decoder")
    assert at.radio(key="kind").value == "decoder"
    assert at.query_params["kind"] in ("decoder", ["decoder"])  # the link keeps it


def test_timeline_reference_is_fed_to_every_epoch(open_page):
    at = open_page("pages/timeline.py", sentence=SENTENCE, reference="il gatto era sul tappeto")
    captions = " ".join(c.value for c in at.caption)
    assert "decoder is fed the reference" in captions and "`1·il` `2·gatto`" in captions


def test_timeline_without_a_run_says_how_to_open_one(open_page, tmp_path, monkeypatch):
    write_tiny_checkpoint(tmp_path / "only.pt")
    monkeypatch.setenv("ATTN_CHECKPOINT_DIR", str(tmp_path))
    at = AppTest.from_file(APP, default_timeout=60)
    at.switch_page("pages/timeline.py").run()
    assert not at.exception
    assert "ATTN_CHECKPOINT_DIR=~/opus_books_weights streamlit run app.py" in at.info[0].value


def test_compare_a_model_with_itself_says_so_instead_of_drawing_zeros(open_page, ckpt_dir):
    at = open_page("pages/compare.py", a="tiny.pt", b="tiny.pt", sentence=SENTENCE)
    assert any("the same model" in i.value for i in at.info)
    assert not at.get("vega_lite_chart") and not at.dataframe
    # another file with the same weights: computed, found identical, said so
    (ckpt_dir / "copy.pt").write_bytes((ckpt_dir / "tiny.pt").read_bytes())
    try:
        at = open_page("pages/compare.py", a="tiny.pt", b="copy.pt", sentence=SENTENCE)
        assert any("attend identically" in i.value for i in at.info) and not at.get("vega_lite_chart")
    finally:
        (ckpt_dir / "copy.pt").unlink()


def test_compare_opens_on_a_runs_first_and_last_checkpoints(open_page, ckpt_dir):
    """No choice and no link: the active model (tiny.pt) is in no run, so A and B are the run's last and first
    checkpoints (A's translation feeds both: the trained end's), a caption says what to look for, and the
    divergence is not zero."""
    at = open_page("pages/compare.py", sentence=SENTENCE)
    assert (at.selectbox(key="compare_a").value, at.selectbox(key="compare_b").value) == (
        "run/tmodel_02.pt",
        "run/tmodel_00.pt",
    )
    assert any("last checkpoint of a training run (epoch 02), B its first (epoch 00)" in c.value for c in at.caption)
    rows, _ = chart_rows(at, 0)
    assert rows["divergence"].max() > 0
    at.text_input(key="sentence").input("the house is big").run()  # still the pair it opened on: still said
    assert any("last checkpoint of a training run" in c.value for c in at.caption)
    at.selectbox(key="compare_b").set_value("run/tmodel_01.pt").run()  # a choice: the caption no longer applies
    assert not any("last checkpoint of a training run" in c.value for c in at.caption)


def test_compare_two_epochs_shows_their_divergence_and_a_minus_b(open_page, ckpt_dir):
    at = open_page(
        "pages/compare.py",
        a="run/tmodel_00.pt",
        b="run/tmodel_02.pt",
        sentence=SENTENCE,
        kind="encoder",
        layer=2,
        head=2,
    )
    a, b = load_checkpoint(ckpt_dir / "run/tmodel_00.pt"), load_checkpoint(ckpt_dir / "run/tmodel_02.pt")
    expected = compare_models(a, b, SENTENCE)
    for index, kind in enumerate(("encoder", "decoder", "cross")):
        rows, _ = chart_rows(at, index)
        grid = np.zeros((2, 2))
        grid[rows["layer"] - 1, rows["head"] - 1] = rows["divergence"]
        np.testing.assert_allclose(grid, expected.divergence[kind], atol=1e-9)
    shape = (len(expected.attention_a.source_tokens),) * 2
    head_a, head_b = expected.attention_a.encoder[1, 1].numpy(), expected.attention_b.encoder[1, 1].numpy()
    np.testing.assert_allclose(matrix_of(chart_rows(at, 3)[0], shape), head_a, atol=1e-6)
    np.testing.assert_allclose(matrix_of(chart_rows(at, 4)[0], shape), head_b, atol=1e-6)
    diff_rows, diff_spec = chart_rows(at, 5)
    np.testing.assert_allclose(matrix_of(diff_rows, shape), head_a - head_b, atol=1e-6)
    assert diff_spec["encoding"]["color"]["scale"]["domain"] == [-1, 1]
    top = at.dataframe[0].value
    assert top["divergence (bits)"].iloc[0] == pytest.approx(
        max(g.max() for g in expected.divergence.values()), abs=1e-4
    )
    texts = [t.value for t in at.text]
    assert any(expected.translation_a in t for t in texts) and any(expected.translation_b in t for t in texts)
    assert at.query_params["a"] in ("run/tmodel_00.pt", ["run/tmodel_00.pt"])


def test_compare_different_tokenizers_word_by_word(open_page, ckpt_dir):
    at = open_page("pages/compare.py", a="tiny.pt", b="zz_other_vocab.pt", sentence=SENTENCE)
    assert not at.warning and any("word by word" in i.value for i in at.info)
    expected = compare_models(
        load_checkpoint(ckpt_dir / "tiny.pt"), load_checkpoint(ckpt_dir / "zz_other_vocab.pt"), SENTENCE
    )
    assert expected.level == "word"
    rows, _ = chart_rows(at, 3)  # after the three divergence grids: model A's map of the head on view, over words
    assert set(rows["key_token"]) == {f"{i}·{w}" for i, w in enumerate(SENTENCE.split())}


def test_translate_links_open_the_same_head(open_page):
    at = open_page("pages/translate.py", sentence=SENTENCE, kind="encoder", layer=2, head=2)
    links = {link.proto.page: parse_qs(link.proto.query_string) for link in at.get("page_link")}
    for page in ("compare", "timeline"):
        assert {k: v[0] for k, v in links[page].items() if k in ("sentence", "kind", "layer", "head")} == {
            "sentence": SENTENCE,
            "kind": "encoder",
            "layer": "2",
            "head": "2",
        }
    assert links["compare"]["a"] == ["tiny.pt"]
    assert links["timeline"]["run"] == ["run/tmodel_"]
    at = open_page("pages/compare.py", **{k: v[0] for k, v in links["compare"].items()})
    view = at.session_state["view"]
    assert (view["compare_a"], view["kind"], view["layer"], view["head"]) == ("tiny.pt", "encoder", 2, 2)


def test_a_tutorial_folder_opens_with_one_environment_variable(tmp_path, monkeypatch):
    """ATTN_CHECKPOINT_DIR=~/opus_books_weights streamlit run app.py: the newest epoch translates, the folder is a run."""
    folder = write_tutorial_run(tmp_path, [0, 1, 2])
    monkeypatch.setenv("ATTN_CHECKPOINT_DIR", str(folder))
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params["sentence"] = SENTENCE
    at.run()
    assert not at.exception
    assert md_text("tmodel_02.pt") in " ".join(
        m.value for m in at.sidebar.markdown
    )  # the newest epoch is the active model
    assert any("Translation:" in m.value for m in at.markdown)
    at.switch_page("pages/timeline.py").run()
    assert not at.exception
    assert list(at.dataframe[0].value["checkpoint"]) == ["epoch 00", "epoch 01", "epoch 02"]
    assert at.selectbox(key="timeline_run").value == "./tmodel_"
