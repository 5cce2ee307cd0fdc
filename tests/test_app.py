"""AppTest tests of every page with a tiny checkpoint made here: translate, sliders, kinds, steps, uploads."""

from __future__ import annotations

import io
import json
import re
import sys
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
from streamlit.testing.v1 import AppTest

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from app_fixtures import IT, write_tiny_checkpoint, write_tutorial_files  # noqa: E402

import ui  # noqa: E402
from core import load_checkpoint, save_checkpoint, translate  # noqa: E402
from core.tokenizer import build_tokenizer  # noqa: E402
from ui import EXAMPLES, md_text  # noqa: E402
from ui.results import row_cap  # noqa: E402

torch.set_num_threads(1)
APP = str(Path(__file__).resolve().parents[1] / "app.py")
SENTENCE = "the cat sat on the mat"


@pytest.fixture(scope="module")
def ckpt_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("checkpoints")
    write_tiny_checkpoint(folder / "tiny.pt")
    return folder


@pytest.fixture
def app(ckpt_dir, monkeypatch) -> AppTest:
    monkeypatch.setenv("ATTN_CHECKPOINT_DIR", str(ckpt_dir))
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    return at


@pytest.fixture(scope="module")
def bundle(ckpt_dir):
    return load_checkpoint(ckpt_dir / "tiny.pt")


def chart_rows(at: AppTest, index: int = 0):
    """(rows as a DataFrame, spec dict) of the index-th Vega-Lite chart on the page."""
    chart = at.get("vega_lite_chart")[index]
    table = pa.ipc.open_stream(chart.proto.datasets[0].data.data).read_all().to_pandas()
    return table, json.loads(chart.proto.spec)


def translate_in(at: AppTest, sentence: str, reference: str = "") -> AppTest:
    at.text_input(key="sentence").input(sentence)
    at.text_input(key="reference").input(reference)
    return at.button(key="go").click().run()


def expected_matrix(result, kind: str, layer: int, head: int | None):
    maps = {"cross": result.attention.cross, "encoder": result.attention.encoder, "decoder": result.attention.decoder}[
        kind
    ][layer - 1]
    return maps.mean(0) if head is None else maps[head - 1]


def assert_focus_matches(at: AppTest, result, kind: str, layer: int, head: int | None) -> None:
    rows, spec = chart_rows(at, 0)
    want = expected_matrix(result, kind, layer, head)
    got = torch.zeros_like(want)
    got[rows["qi"].to_numpy().astype("int64"), rows["ki"].to_numpy().astype("int64")] = torch.tensor(
        rows["weight"].to_numpy().copy()
    )
    assert len(rows) == want.numel()
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)
    queries = result.source_tokens if kind == "encoder" else result.target_tokens
    assert spec["encoding"]["y"]["field"] == "query_token"  # the row labels, in the data's order
    assert list(dict.fromkeys(rows["query_token"])) == [f"{i}·{t}" for i, t in enumerate(queries)]
    for row in rows.itertuples():  # each cell's labels are its own row's and column's
        assert row.query_token.startswith(f"{row.qi}·") and row.key_token.startswith(f"{row.ki}·")


def chart_datasets(at: AppTest, index: int) -> list:
    """Every dataset of the index-th chart (a layered chart has one per layer) as DataFrames."""
    chart = at.get("vega_lite_chart")[index]
    return [pa.ipc.open_stream(d.data.data).read_all().to_pandas() for d in chart.proto.datasets]


def assert_tiles_show(at: AppTest, index: int, weights, causal: bool) -> None:
    """The index-th chart is the all-layers grid: one panel per (layer, head) and an image whose tiles are
    those maps, pixel for pixel in the chart's colours (grey where the decoder cannot look)."""
    import base64

    import numpy as np
    from PIL import Image

    from core.charts import MASK_COLOR, weight_colors

    frames = chart_datasets(at, index)
    image = next(f for f in frames if "url" in f.columns)
    panels = next(f for f in frames if "head" in f.columns)
    n_layers, n_heads, tq, tk = weights.shape
    assert sorted(zip(panels["layer"], panels["head"])) == [
        (la, h) for la in range(1, n_layers + 1) for h in range(1, n_heads + 1)
    ]
    png = base64.b64decode(image["url"][0].split(",", 1)[1])
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    for _, p in panels.iterrows():
        tile = pixels[int(p["y"]) : int(p["y2"]), int(p["x"]) : int(p["x2"])]
        want = weight_colors(weights[int(p["layer"]) - 1, int(p["head"]) - 1].numpy())
        if causal:
            want[np.triu(np.ones((tq, tk), dtype=bool), 1)] = [int(MASK_COLOR[i : i + 2], 16) for i in (1, 3, 5)]
        assert np.array_equal(tile, want)


def active_label(at: AppTest) -> str:
    """The active model as shown: the sidebar (AppTest keeps it only after a session's first run) or the model card."""
    return " ".join([m.value for m in at.markdown if "format" in m.value] + [h.value for h in at.subheader])


def sharpest_cross_head(attention) -> tuple[int, int]:
    """(layer, head), 1-based: the largest mean over rows of a row's largest weight on a source word."""
    words = attention.cross[:, :, :, 1:-1].numpy()
    layer, head = np.unravel_index(words.max(axis=-1).mean(axis=-1).argmax(), words.shape[:2])
    return int(layer) + 1, int(head) + 1


def test_translate_page_shows_translation_tokens_and_charts(app, bundle):
    assert "tiny.pt" in active_label(app) and "2 × 2" in " ".join(m.value for m in app.sidebar.markdown)
    # a model without an alignment head in its card opens on the sharpest cross-attention head of the first sentence
    first = app.session_state["view"]["sentence"]
    opened = sharpest_cross_head(translate(bundle, first, max_len=row_cap(bundle, first)).attention)
    assert (app.slider(key="layer").value, app.slider(key="head").value) == opened
    assert any(
        f"Layer {opened[0]}, head {opened[1]} is the head that looks most sharply" in c.value for c in app.caption
    )
    translate_in(app, SENTENCE)
    assert not app.exception
    result = translate(bundle, SENTENCE)
    assert any(m.value == f"**Translation:** {md_text(result.translation)}" for m in app.markdown)
    assert "5·the" in " ".join(c.value for c in app.caption)  # repeated 'the' keeps its own position label
    assert len(app.get("vega_lite_chart")) == 2  # focused head, heads of the layer (the grid waits to be opened)
    assert (app.slider(key="layer").value, app.slider(key="head").value) == opened  # a new sentence keeps the head
    assert_focus_matches(app, result, "cross", *opened)


def test_all_layers_grid_is_built_only_while_its_expander_is_open(app, bundle):
    translate_in(app, SENTENCE)
    grid = next(e for e in app.expander if e.label == "All layers × heads")
    assert not grid.children and len(app.get("vega_lite_chart")) == 2  # closed: nothing built or sent
    app.session_state["view"]["grid"] = True  # what opening it stores (its on_change)
    app.run()
    assert not app.exception and len(app.get("vega_lite_chart")) == 3
    assert_tiles_show(app, 2, translate(bundle, SENTENCE).attention.weights("cross"), False)
    assert app.query_params["grid"] in ("1", ["1"])  # a copied link opens it too
    linked = AppTest.from_file(APP, default_timeout=60)
    linked.query_params.update(sentence=SENTENCE, grid="1")
    linked.run()
    assert not linked.exception and len(linked.get("vega_lite_chart")) == 3


@pytest.mark.parametrize("kind", ["encoder", "decoder"])
def test_a_link_naming_another_kind_and_no_head_opens_that_kind(ckpt_dir, monkeypatch, bundle, kind):
    """The page opens on its telling cross-attention head only when the link names no kind (or cross)."""
    monkeypatch.setenv("ATTN_CHECKPOINT_DIR", str(ckpt_dir))
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params.update(sentence=SENTENCE, kind=kind)
    at.run()
    assert not at.exception and at.radio(key="kind").value == kind
    assert_focus_matches(
        at, translate(bundle, SENTENCE), kind, at.slider(key="layer").value, at.slider(key="head").value
    )


@pytest.mark.parametrize("kind", ["cross", "encoder", "decoder"])
def test_kinds_and_sliders_show_the_models_attention(app, bundle, kind):
    app.session_state["view"]["grid"] = True  # the all-layers grid open, to check its tiles too
    translate_in(app, SENTENCE)
    result = translate(bundle, SENTENCE)
    app.radio(key="kind").set_value(kind).run()
    for layer, head in [(1, 2), (2, 1), (2, 2)]:
        app.slider(key="layer").set_value(layer).run()
        app.slider(key="head").set_value(head).run()
        assert not app.exception
        assert_focus_matches(app, result, kind, layer, head)
    app.toggle(key="avg").set_value(True).run()
    assert_focus_matches(app, result, kind, 2, None)
    assert_tiles_show(app, 2, result.attention.weights(kind), kind == "decoder")
    assert app.query_params["kind"] in (kind, [kind]) and app.query_params["layer"] in ("2", ["2"])


def test_slider_change_does_not_rerun_the_model(app, monkeypatch):
    import ui

    calls = []
    real = ui.results.translate
    monkeypatch.setattr(ui.results, "translate", lambda *a, **k: calls.append(a[1]) or real(*a, **k))
    translate_in(app, "a dog runs in the green park")
    assert calls == ["a dog runs in the green park"]
    app.slider(key="layer").set_value(2).run()
    app.slider(key="head").set_value(2).run()
    app.radio(key="kind").set_value("encoder").run()
    assert not app.exception and len(calls) == 1


def test_reference_translation_feeds_the_decoder(app, bundle):
    translate_in(app, SENTENCE, reference=IT[0])
    assert not app.exception
    result = translate(bundle, SENTENCE, reference=IT[0])
    assert result.target_tokens == ["[SOS]", *IT[0].split()]
    assert any(m.value.startswith("**Reference (teacher-forced):**") for m in app.markdown)
    assert_focus_matches(app, result, "cross", app.slider(key="layer").value, app.slider(key="head").value)


def test_reference_is_flagged_cleared_by_a_button_and_dropped_for_an_example(app, bundle):
    translate_in(app, SENTENCE, reference=IT[0])
    assert app.info[0].value.startswith("The decoder is fed your reference translation, not its own output")
    app.button(key="clear_reference").click().run()
    assert not app.exception and app.text_input(key="reference").value == ""
    assert any(m.value == f"**Translation:** {md_text(translate(bundle, SENTENCE).translation)}" for m in app.markdown)
    translate_in(app, SENTENCE, reference=IT[0])
    app.selectbox(key="example").set_value(EXAMPLES[2]).run()  # a new sentence: the old reference goes
    assert not app.exception and app.text_input(key="reference").value == ""
    assert any(m.value.startswith("**Translation:**") for m in app.markdown) and not app.info


def test_a_rerun_sends_the_sentence_box_nothing_unless_the_view_changed(app):
    """The box's value goes to the browser (set_value) only when the page changed it: a plain rerun that sent
    it would put it over what the user is typing while that rerun finishes."""
    translate_in(app, SENTENCE)
    app.slider(key="head").set_value(2).run()  # a fragment rerun
    app.button(key="go").click().run()  # a full rerun, the same sentence
    assert not app.exception and not app.text_input(key="sentence").proto.set_value
    app.selectbox(key="example").set_value(EXAMPLES[3]).run()  # the page puts the example in the box
    box = app.text_input(key="sentence")
    assert box.proto.set_value and box.value == EXAMPLES[3]
    app.button(key="go").click().run()
    assert not app.text_input(key="sentence").proto.set_value and app.text_input(key="sentence").value == EXAMPLES[3]
    app.switch_page("pages/steps.py").run()  # a new box on another page starts from the view
    assert app.text_input(key="sentence").proto.set_value and app.text_input(key="sentence").value == EXAMPLES[3]


def test_link_follows_what_the_page_shows(app):
    translate_in(app, SENTENCE)
    app.toggle(key="avg").set_value(True).run()
    assert app.query_params["avg"] in ("1", ["1"])
    translate_in(app, " ".join(["cat"] * 40))  # refused: the link names this sentence, not the last good one
    assert app.query_params["sentence"] in (" ".join(["cat"] * 40), [" ".join(["cat"] * 40)])
    translate_in(app, "  ")
    assert "sentence" not in app.query_params


def test_url_query_parameters_restore_the_view(ckpt_dir, monkeypatch, bundle):
    monkeypatch.setenv("ATTN_CHECKPOINT_DIR", str(ckpt_dir))
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params.update(sentence="i like green tea", kind="encoder", layer="2", head="2")
    at.run()
    assert not at.exception
    assert at.text_input(key="sentence").value == "i like green tea"
    assert at.radio(key="kind").value == "encoder" and at.slider(key="head").value == 2
    assert_focus_matches(at, translate(bundle, "i like green tea"), "encoder", 2, 2)
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params.update(sentence="i like green tea", kind="cross", layer="2", avg="1")
    at.run()
    assert at.toggle(key="avg").value is True
    assert_focus_matches(at, translate(bundle, "i like green tea"), "cross", 2, None)


def test_empty_and_overlong_input_give_messages_not_tracebacks(app):
    translate_in(app, "   ")
    assert not app.exception and app.info
    translate_in(app, " ".join(["cat"] * 40))
    assert not app.exception
    assert "at most" in app.warning[0].value


def test_steps_page(app, bundle):
    translate_in(app, SENTENCE)
    app.switch_page("pages/steps.py").run()
    assert not app.exception
    assert app.text_input(key="sentence").value == SENTENCE  # the sentence follows the user across pages
    result = translate(bundle, SENTENCE)
    app.button(key="next").click().run()
    app.button(key="next").click().run()
    app.button(key="prev").click().run()
    assert app.slider(key="step").value == 2
    app.slider(key="step").set_value(4).run()
    app.slider(key="step_layer").set_value(2).run()
    assert not app.exception
    cross, _ = chart_rows(app, 0)
    want = result.attention.cross[1, :, 3]  # layer 2, decoder row of step 4: (H, S)
    got = torch.zeros_like(want)
    got[cross["head"].to_numpy().astype("int64") - 1, cross["ki"].to_numpy().astype("int64")] = torch.tensor(
        cross["weight"].to_numpy().copy()
    )
    torch.testing.assert_close(got, want)
    self_rows, _ = chart_rows(app, 1)
    assert len(self_rows) == 2 * 4  # heads x decoder inputs read so far
    top, _ = chart_rows(app, 2)
    torch.testing.assert_close(torch.tensor(top["probability"].to_numpy(), dtype=torch.float32), result.top_probs[3])


def test_no_checkpoint_explains_how_to_get_one(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTN_CHECKPOINT_DIR", str(tmp_path))
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert "No model yet" in at.info[0].value and "upload" in at.info[0].value.lower()
    for page in ("pages/steps.py", "pages/models.py"):
        at.switch_page(page).run()
        assert not at.exception


PAGE_FILES = sorted((Path(APP).parent / "pages").glob("*.py"))


@pytest.mark.parametrize("page_file", PAGE_FILES, ids=[p.stem for p in PAGE_FILES])
def test_a_page_file_run_alone_is_routed_through_app(page_file, ckpt_dir, monkeypatch):
    """What Streamlit's legacy pages/ mode does with a fresh server's first deep link: run the page file alone.
    Every page must then hand over to app.py's router (sidebar, layout, navigation) instead of rendering bare."""
    monkeypatch.setenv("ATTN_CHECKPOINT_DIR", str(ckpt_dir))
    at = AppTest.from_file(str(page_file), default_timeout=60).run()
    assert not at.exception
    assert [h.value for h in at.sidebar.subheader] == ["Active model"]  # drawn by app.py's main(), once
    assert len(at.title) == 1  # one page rendered, not the bare file and the routed page both


# ---- Models page: uploads ---------------------------------------------------------------------------------


def open_models(app: AppTest) -> AppTest:
    return app.switch_page("pages/models.py").run()


def upload(app: AppTest, data: bytes, name: str = "model.pt", tutorial: tuple | None = None, heads: int = 2) -> AppTest:
    if tutorial is not None:
        app.radio(key="up_kind").set_value(app.radio(key="up_kind").options[1]).run()
        for key, (fname, content) in zip(("up_src", "up_tgt"), tutorial):
            if content is not None:
                app.file_uploader(key=key).upload(fname, content, "application/json")
        app.number_input(key="up_heads").set_value(heads)
    app.file_uploader(key="up_ckpt").upload(name, data, "application/octet-stream").run()
    return app.button(key="up_go").click().run()


def test_models_page_shows_the_model_card(app):
    open_models(app)
    assert not app.exception
    assert "tiny untrained test model" in " ".join(m.value for m in app.markdown)
    assert "Layers × heads  \n**2 × 2**" in [m.value for m in app.markdown]
    tables = [table.value for table in app.table]  # scores per test set: one row each, not raw JSON
    assert any("bleu" in t.columns and t.loc["toy_test", "bleu"] == 12.5 for t in tables)


def test_upload_native_checkpoint_is_used_by_this_session_only(app, tmp_path, ckpt_dir, monkeypatch):
    path = write_tiny_checkpoint(tmp_path / "other.pt", layers=1, heads=4, seed=3)
    upload(open_models(app), path.read_bytes(), "other.pt")
    assert not app.exception and not app.error
    assert "other.pt" in app.success[0].value and "other.pt" in active_label(app)
    app.switch_page("pages/translate.py").run()
    assert not app.exception and len(app.get("vega_lite_chart")) == 2  # 1 layer: no layer slider, no crash
    other = AppTest.from_file(APP, default_timeout=60).run()  # another browser session
    assert "tiny.pt" in active_label(other) and "other.pt" not in active_label(other)


def test_upload_store_keeps_its_budget_with_many_sessions_at_once(ckpt_dir):
    """20 sessions (threads) each put their own model; the store never holds more than its budget."""
    size = ui.model_bytes(load_checkpoint(ckpt_dir / "tiny.pt"))
    store = ui.UploadStore(budget_bytes=3 * size)  # room for three tiny models
    loaded = [load_checkpoint(ckpt_dir / "tiny.pt") for _ in range(20)]
    peaks = []

    def session(i: int) -> None:
        store.put(f"upload:{i}", loaded[i])
        peaks.append((len(store), store.total_bytes()))

    threads = [threading.Thread(target=session, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert max(n for n, _ in peaks) <= 3 and max(b for _, b in peaks) <= 3 * size
    assert len(store) == 3 and sum(store.get(f"upload:{i}") is not None for i in range(20)) == 3


def test_upload_store_drops_the_least_recently_used(ckpt_dir):
    size = ui.model_bytes(load_checkpoint(ckpt_dir / "tiny.pt"))
    store = ui.UploadStore(budget_bytes=2 * size)
    a, b, c = (load_checkpoint(ckpt_dir / "tiny.pt") for _ in range(3))
    store.put("a", a)
    store.put("b", b)
    assert store.get("a") is a  # a is now the most recently used
    store.put("c", c)
    assert store.get("b") is None and store.get("a") is a and store.get("c") is c
    big = ui.UploadStore(budget_bytes=size // 2)  # a model over the whole budget is still kept, alone
    big.put("a", a)
    big.put("b", b)
    assert len(big) == 1 and big.get("b") is b


def test_sessions_uploading_past_the_budget_are_told_to_upload_again(ckpt_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("ATTN_CHECKPOINT_DIR", str(ckpt_dir))
    size = ui.model_bytes(load_checkpoint(ckpt_dir / "tiny.pt"))
    monkeypatch.setenv("ATTN_UPLOAD_BUDGET_MB", str(2.5 * size / 2**20))  # room for two uploads
    sessions = []
    for i in range(5):
        data = write_tiny_checkpoint(tmp_path / f"u{i}.pt", seed=10 + i).read_bytes()
        at = upload(open_models(AppTest.from_file(APP, default_timeout=60).run()), data, f"u{i}.pt")
        assert not at.exception and f"u{i}.pt" in active_label(at)
        store = ui.upload_store(ui.upload_budget_mb())
        assert len(store) <= 2 and store.total_bytes() <= 2.5 * size
        sessions.append(at)
    first = sessions[0].run()  # its upload was dropped to make room for the later ones
    assert not first.exception
    assert any("u0.pt" in e.value and "Upload it again" in e.value for e in first.sidebar.error)
    assert "tiny.pt" in active_label(first)
    last = sessions[-1].run()
    assert "u4.pt" in active_label(last) and not last.sidebar.error


def test_upload_tutorial_checkpoint_with_tokenizers(app, tmp_path):
    ckpt, src, tgt = write_tutorial_files(tmp_path / "tut")
    upload(
        open_models(app),
        ckpt.read_bytes(),
        "tmodel_00.pt",
        tutorial=(("tokenizer_en.json", src.read_bytes()), ("tokenizer_it.json", tgt.read_bytes())),
    )
    assert not app.exception and not app.error
    assert "tmodel_00.pt" in active_label(app)
    notes = " ".join(i.value for i in app.info)
    assert "Head count: 2, assumed" in notes and "does not record it" in notes  # the card says what was assumed
    checked = [c.value for c in app.caption if c.value.startswith("Head-count check")] + [w.value for w in app.warning]
    assert len(checked) == 1 and "heads:" in checked[0]  # the check ran and says what it measured
    assert "Heads (not in the file)" in [n.label for n in app.number_input]
    app.switch_page("pages/translate.py").run()
    open_models(app)  # the Kind choice and head count survive a page switch
    assert app.radio(key="up_kind").value == app.radio(key="up_kind").options[1]
    assert app.number_input(key="up_heads").value == 2


class Payload:
    """Unpickling this would create a marker file: a stand-in for a pickle that runs code."""

    marker = ""

    def __reduce__(self):
        return (open, (self.marker, "w"))


def bad_files(tmp_path: Path) -> dict[str, tuple[bytes, str]]:
    good = write_tiny_checkpoint(tmp_path / "good.pt").read_bytes()
    payload = torch.load(io.BytesIO(good), weights_only=True)
    payload["model_state_dict"]["src_embed.embedding.weight"] = torch.zeros(5, 16)
    shapes = io.BytesIO()
    torch.save(payload, shapes)
    evil = Payload()
    evil.marker = str(tmp_path / "pwned")
    pickled = io.BytesIO()
    torch.save({"model_state_dict": evil}, pickled)
    return {
        "not a checkpoint": (b"this is a text file, not a model\n", "not a checkpoint"),
        "truncated": (good[: len(good) // 2], "truncated"),
        "shapes": (shapes.getvalue(), "mismatch"),
        "pickle that runs code": (pickled.getvalue(), "refused"),
    }


@pytest.mark.parametrize("case", ["not a checkpoint", "truncated", "shapes", "pickle that runs code"])
def test_bad_upload_gets_a_message_and_keeps_the_previous_model(app, tmp_path, case):
    data, words = bad_files(tmp_path)[case]
    upload(open_models(app), data, "bad.pt")
    assert not app.exception
    assert words in app.error[0].value.lower() and "previous model stays active" in app.error[0].value
    assert "tiny.pt" in active_label(app)
    assert not (tmp_path / "pwned").exists()  # the payload never ran


def test_tutorial_upload_missing_tokenizer(app, tmp_path):
    ckpt, src, _ = write_tutorial_files(tmp_path / "tut")
    upload(
        open_models(app),
        ckpt.read_bytes(),
        "tmodel_00.pt",
        tutorial=(("tokenizer_en.json", src.read_bytes()), ("tokenizer_it.json", None)),
    )
    assert not app.exception and "missing tokenizer" in app.error[0].value
    assert "tiny.pt" in active_label(app)


def test_tutorial_upload_with_tokenizers_that_do_not_match(app, tmp_path):
    ckpt, src, _ = write_tutorial_files(tmp_path / "tut")
    small = build_tokenizer(IT[:1], min_frequency=1).to_str().encode()
    upload(
        open_models(app),
        ckpt.read_bytes(),
        "tmodel_00.pt",
        tutorial=(("tokenizer_en.json", src.read_bytes()), ("tokenizer_it.json", small)),
    )
    assert not app.exception and "mismatch" in app.error[0].value
    assert "tiny.pt" in active_label(app)


def test_upload_over_the_limit_is_refused(app, monkeypatch):
    import streamlit

    real = streamlit.get_option
    monkeypatch.setattr(streamlit, "get_option", lambda key: 1 if key == "server.maxUploadSize" else real(key))
    upload(open_models(app), b"\x80" + b"0" * (2 * 1024 * 1024), "huge.pt")
    assert not app.exception
    assert "over the upload limit of 1 MB" in app.error[0].value
    assert "tiny.pt" in active_label(app)


def test_two_sessions_each_get_their_own_attention(ckpt_dir, monkeypatch, bundle):
    """Interleaved sessions share the cached model but never each other's results. (AppTest itself is not
    thread-safe; tests/test_browser.py runs two real browser sessions at the same time.)"""
    monkeypatch.setenv("ATTN_CHECKPOINT_DIR", str(ckpt_dir))
    sentences = ["the house is big", "a dog runs in the park"]
    sessions = [AppTest.from_file(APP, default_timeout=60).run() for _ in sentences]
    for at, sentence in zip(sessions, sentences):
        translate_in(at, sentence)
    for head in (2, 1):
        for at, sentence in zip(sessions, sentences):
            at.slider(key="head").set_value(head).run()
            assert not at.exception
            assert at.text_input(key="sentence").value == sentence
            assert_focus_matches(at, translate(bundle, sentence), "cross", at.slider(key="layer").value, head)


def test_generated_unk_is_shown_as_the_copied_source_word(tmp_path, monkeypatch):
    bundle = load_checkpoint(write_tiny_checkpoint(tmp_path / "unk.pt"))
    with torch.no_grad():
        bundle.model.projection_layer.proj.bias[0] += 1e4  # writes [UNK] at every step
    save_checkpoint(tmp_path / "unk.pt", bundle.model, bundle.src_tokenizer, bundle.tgt_tokenizer)
    monkeypatch.setenv("ATTN_CHECKPOINT_DIR", str(tmp_path))
    at = translate_in(AppTest.from_file(APP, default_timeout=60).run(), "the zebra sat on the mat")
    assert not at.exception
    assert any(m.value == "**Translation:** " + " ".join(["zebra"] * 23) for m in at.markdown)
    notes = " ".join(c.value for c in at.caption)
    assert "the `[UNK]` predicted at row `0·[SOS]` is shown as **zebra**, the source word at `2·[UNK]`" in notes


# ---- No silent drops, escaped text, the step page's link ----------------------------------------------------


def commonmark_text(markdown: str) -> str:
    """What CommonMark shows for text without markup: backslash escapes of ASCII punctuation undone."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", markdown.replace("  \n", "\n"))


@pytest.mark.parametrize(
    "text",
    ["**bold** and `code`", "1. not a list", "- nor this", "$x^2$ costs $5", ":red[not red] :smile:", "<b>hi</b>"],
)
def test_user_text_is_escaped_for_markdown(text):
    import ui

    shown = ui.md_text(text)
    assert commonmark_text(shown) == text
    assert not re.search(r"(?<!\\)[*`$<\[]", shown) and not re.match(r"\s*(\d+\.|-)", shown)


def test_code_spans_hold_any_backticks():
    """A fence longer than any run of backticks inside, padded where the text starts or ends with one."""
    import ui

    assert ui.md_code("a `b` ``c``") == "``` a `b` ``c`` ```"
    assert ui.md_code("gatto") == "`gatto`"


def test_overlong_paste_gets_a_message_and_is_kept_in_the_box(app):
    long_text = "the cat sat on the mat." + " the cat sat on the mat." * 119  # 2,879 characters: over the limit
    translate_in(app, long_text)
    assert not app.exception
    assert any("2,879 characters" in w.value and "at most 2,000" in w.value for w in app.warning)
    assert app.text_input(key="sentence").value == long_text  # nothing was silently dropped or cut
    assert not app.get("vega_lite_chart")
    translate_in(app, SENTENCE, reference=("il gatto " * 300).strip())
    assert any("reference is 2,699 characters" in w.value for w in app.warning)
    assert app.button(key="clear_reference")  # a refused reference still gets its Clear button
    app.button(key="clear_reference").click().run()
    assert app.text_input(key="reference").value == "" and len(app.get("vega_lite_chart")) == 2


def test_rejected_reference_keeps_its_clear_button(app):
    translate_in(app, SENTENCE, reference=" ".join(["gatto"] * 40))  # over the tiny model's 24 tokens
    assert not app.exception and "at most" in app.warning[0].value
    app.button(key="clear_reference").click().run()
    assert not app.exception and app.text_input(key="reference").value == "" and not app.warning


def test_reference_box_stays_open_while_it_is_edited(app):
    (box,) = [e for e in app.expander if "reference" in e.label]
    assert not box.proto.expanded
    translate_in(app, SENTENCE, reference=IT[0])
    (box,) = [e for e in app.expander if "reference" in e.label]
    assert box.proto.expanded and box.label == "Compare with a reference translation"  # same expander, open


def test_markdown_in_user_text_is_shown_as_text(app, bundle, monkeypatch):
    """The translation line, the unknown-word warning and the token captions show the text as typed."""
    import dataclasses

    import ui

    shown_text = "**grassetto** e `codice` $5"
    real = ui.results.translate

    def shown(result):  # the best hypothesis is what a Translation shows
        best = dataclasses.replace(result.hypotheses[0], translation=shown_text)
        return dataclasses.replace(result, hypotheses=(best, *result.hypotheses[1:]))

    monkeypatch.setattr(ui.results, "translate", lambda *a, **k: shown(real(*a, **k)))
    sentence = "**bold** and `code` on the mat"
    translate_in(app, sentence)
    assert not app.exception
    (line,) = [m.value for m in app.markdown if m.value.startswith("**Translation:** ")]
    body = line.removeprefix("**Translation:** ")
    assert commonmark_text(body) == shown_text and not re.search(r"(?<!\\)[*`$]", body)
    result = translate(bundle, sentence)
    warning = " ".join(w.value for w in app.warning)
    assert result.unknown_words and "**bold**" not in warning
    for word in result.unknown_words:  # each unknown word in its own code span, whatever backticks it holds
        assert ui_code(word) in warning
    captions = " ".join(c.value for c in app.caption)
    for i, token in enumerate(result.source_tokens):
        assert ui_code(f"{i}·{token}") in captions


def ui_code(text: str) -> str:
    import ui

    return ui.md_code(text)


def test_long_token_lists_are_cut_with_a_count(app):
    import ui

    items = [f"w{i}" for i in range(50)]
    assert ui.cut_list(items, 20) == ", ".join(items[:20]) + ", … and 30 more"
    assert ui.cut_list(items[:3], 20) == "w0, w1, w2"


def test_step_page_reads_and_writes_its_link(ckpt_dir, monkeypatch, bundle):
    monkeypatch.setenv("ATTN_CHECKPOINT_DIR", str(ckpt_dir))
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params.update(sentence="i like green tea", step="3", layer="2")
    at.switch_page("pages/steps.py").run()
    assert not at.exception
    assert at.text_input(key="sentence").value == "i like green tea"
    assert at.slider(key="step").value == 3 and at.slider(key="step_layer").value == 2
    cross, _ = chart_rows(at, 0)
    want = translate(bundle, "i like green tea").attention.cross[1, :, 2]  # layer 2, step 3's row: (H, S)
    got = torch.zeros_like(want)
    got[cross["head"].to_numpy().astype("int64") - 1, cross["ki"].to_numpy().astype("int64")] = torch.tensor(
        cross["weight"].to_numpy().copy()
    )
    torch.testing.assert_close(got, want)
    at.text_input(key="sentence").input("the house is big").run()  # the link follows: never a stale sentence
    at.slider(key="step").set_value(2).run()
    assert at.query_params["sentence"] in ("the house is big", ["the house is big"])
    assert at.query_params["step"] in ("2", ["2"]) and at.query_params["layer"] in ("2", ["2"])
