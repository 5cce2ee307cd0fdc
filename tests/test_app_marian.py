"""AppTest of the app on a Hugging Face Marian model (a tiny random one built here): Translate (a long sentence
drawn as one image), the Models page's Hugging Face field, Steps, and Compare with one of our models."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pyarrow as pa
import pytest
import torch
from streamlit.testing.v1 import AppTest

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from app_fixtures import write_tiny_checkpoint  # noqa: E402
from marian_fixtures import ENGLISH, make_marian  # noqa: E402

from core import load_checkpoint, translate  # noqa: E402
from ui.results import row_cap  # noqa: E402

APP = str(Path(__file__).resolve().parents[1] / "app.py")
SENTENCE = ENGLISH[0]


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> tuple[Path, Path]:
    """(a checkpoints folder holding only a Marian model, a folder holding our tiny.pt); both 2 layers x 2 heads."""
    marian_dir = tmp_path_factory.mktemp("marian_models")
    make_marian(marian_dir / "opus-mt-en-it", heads=2, positions=600)
    ours = tmp_path_factory.mktemp("ours")
    write_tiny_checkpoint(ours / "tiny.pt")
    return marian_dir, ours


def opened(folder: Path, monkeypatch, page: str | None = None, **params) -> AppTest:
    monkeypatch.setenv("ATTN_CHECKPOINT_DIR", str(folder))
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params.update({k: str(v) for k, v in params.items()})
    (at.switch_page(page) if page else at).run()
    assert not at.exception, at.exception
    return at


def rows_of(at: AppTest, index: int = 0):
    chart = at.get("vega_lite_chart")[index]
    return [pa.ipc.open_stream(d.data.data).read_all().to_pandas() for d in chart.proto.datasets], json.loads(
        chart.proto.spec
    )


def test_translate_page_shows_a_marian_models_maps_and_pieces(folders, monkeypatch):
    marian_dir, _ = folders
    bundle = load_checkpoint(marian_dir / "opus-mt-en-it")
    at = opened(marian_dir, monkeypatch, sentence=SENTENCE)
    result = translate(bundle, SENTENCE, max_len=row_cap(bundle, SENTENCE))  # as the page decodes
    assert len(result.target_tokens) < bundle.config.seq_len  # a random model never stops: the page's cap did
    assert any("opus-mt-en-it" in m.value for m in at.sidebar.markdown)
    # it opens on the head with the largest mean row peak on a word: Marian's source ends with </s> and has no start
    peaks = result.attention.cross[:, :, :, :-1].amax(dim=-1).mean(dim=-1)
    layer, head = divmod(int(peaks.argmax()), bundle.config.n_heads)
    assert (at.slider(key="layer").value, at.slider(key="head").value) == (layer + 1, head + 1)
    want = result.attention.cross[layer, head]
    (cells,), spec = rows_of(at)
    assert len(cells) == want.numel() and spec["mark"]["type"] == "rect"
    got = torch.zeros_like(want)
    got[cells["qi"].to_numpy().astype("int64"), cells["ki"].to_numpy().astype("int64")] = torch.tensor(
        cells["weight"].to_numpy().copy()
    )
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)
    assert list(dict.fromkeys(cells["key_token"]))[-1].endswith("·</s>")
    assert list(dict.fromkeys(cells["query_token"]))[0] == "0·<pad>"


def test_a_long_sentence_is_drawn_as_one_image(folders, monkeypatch):
    marian_dir, _ = folders
    long = " ".join(ENGLISH * 4)  # about 200 pieces: a map of 10,000 cells and more
    bundle = load_checkpoint(marian_dir / "opus-mt-en-it")
    reference = " ".join(["il gatto dorme"] * 30)
    result = translate(bundle, long, reference=reference)
    assert len(result.source_tokens) * len(result.target_tokens) > 10_000
    at = opened(marian_dir, monkeypatch, sentence=long, reference=reference)
    datasets, spec = rows_of(at)
    assert "layer" in spec and spec["layer"][0]["mark"]["type"] == "image"
    assert len(datasets[0]) == len(result.target_tokens)  # one tooltip band per row


def test_the_models_page_opens_a_hugging_face_folder_for_the_session(folders, monkeypatch):
    marian_dir, ours = folders
    at = opened(ours, monkeypatch, "pages/models.py")
    at.text_input(key="hf_source").input(str(marian_dir / "opus-mt-en-it"))
    at.button(key="hf_go").click().run()
    assert not at.exception and any("Opened" in s.value for s in at.success)
    assert any("marian format" in m.value for m in at.sidebar.markdown)
    assert any("en → it" in str(t.value) for t in at.markdown) or any("en → it" in str(t) for t in at.get("table"))
    at.text_input(key="hf_source").input(str(ours))  # a folder that is not a model: one line, the model stays
    at.button(key="hf_go").click().run()
    assert not at.exception and "not a Hugging Face model folder" in at.error[0].value
    assert any("marian format" in m.value for m in at.sidebar.markdown)


def test_steps_and_compare_with_our_model_word_by_word(folders, monkeypatch, tmp_path):
    marian_dir, ours = folders
    both = tmp_path / "both"
    both.mkdir()
    (both / "tiny.pt").symlink_to(ours / "tiny.pt")
    (both / "opus-mt-en-it").symlink_to(marian_dir / "opus-mt-en-it", target_is_directory=True)
    at = opened(both, monkeypatch, "pages/steps.py", sentence=SENTENCE)
    assert at.get("vega_lite_chart")
    at = opened(
        both, monkeypatch, "pages/compare.py", a="tiny.pt", b="opus-mt-en-it", sentence="the cat sat on the mat"
    )
    assert not at.warning and any("word by word" in i.value for i in at.info)
