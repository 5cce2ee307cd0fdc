"""AppTest of the Decoding page's beam search view and of forcing a candidate in its step-by-step replay."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from test_app import bundle, chart_rows, ckpt_dir  # noqa: E402, F401 - the fixtures are used by name

from core import translate  # noqa: E402
from core.charts import tree_path  # noqa: E402

torch.set_num_threads(1)
APP = str(Path(__file__).resolve().parents[1] / "app.py")
SENTENCE = "the cat sat on the mat"


@pytest.fixture
def steps(ckpt_dir, monkeypatch) -> AppTest:  # noqa: F811 - the fixture from test_app
    monkeypatch.setenv("ATTN_CHECKPOINT_DIR", str(ckpt_dir))
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("pages/steps.py").run()
    at.text_input(key="sentence").input(SENTENCE).run()
    assert not at.exception
    return at


def matrix(rows, shape) -> torch.Tensor:
    got = torch.zeros(shape)
    got[rows["qi"].to_numpy().astype("int64"), rows["ki"].to_numpy().astype("int64")] = torch.tensor(
        rows["weight"].to_numpy().copy()
    )
    return got


def test_beam_view_draws_the_tree_and_each_hypothesis_attention(steps, bundle):  # noqa: F811
    steps.radio(key="steps_mode").set_value("beam").run()
    steps.slider(key="beam_size").set_value(3).run()
    assert not steps.exception
    result = translate(bundle, SENTENCE, beam_size=3, nbest=3)
    picker = steps.radio(key="beam_pick")
    assert len(picker.options) == 3 and all(
        f"score {h.score:.3f}" in option for h, option in zip(result.hypotheses, picker.options)
    )
    for pick in (0, 2):
        picker = steps.radio(key="beam_pick").set_value(pick).run()
        assert not steps.exception
        hyp = result.hypotheses[pick]
        tree, spec = chart_rows(steps, 0)
        assert len(tree) == len(result.beam_tree)
        assert tree["status"].tolist() == [n.status for n in result.beam_tree]
        assert tree["parent"].tolist() == [n.parent for n in result.beam_tree]
        assert set(tree.loc[tree["chosen"], "node"]) == set(tree_path(result.beam_tree, hyp.node))
        ends = tree.loc[tree["hypothesis"] > 0].sort_values("hypothesis")["node"].tolist()
        assert ends == [h.node for h in result.hypotheses]
        params = spec.get("params", []) + [p for layer in spec["layer"] for p in layer.get("params", [])]
        assert any(p.get("name") == "node" for p in params)  # nodes are clickable
        focus, _ = chart_rows(steps, 1)  # cross attention, layer 1, mean of heads, of this hypothesis
        want = hyp.attention.cross[0].mean(0)
        torch.testing.assert_close(matrix(focus, want.shape), want)
        assert hyp.translation in [t.value for t in steps.text]
    steps.radio(key="beam_kind").set_value("decoder").run()
    steps.slider(key="beam_layer").set_value(2).run()
    focus, _ = chart_rows(steps, 1)
    want = result.hypotheses[2].attention.decoder[1].mean(0)
    torch.testing.assert_close(matrix(focus, want.shape), want)


def test_a_smaller_beam_keeps_the_pick_in_range(steps):
    steps.radio(key="steps_mode").set_value("beam").run()
    steps.slider(key="beam_size").set_value(5).run()
    steps.radio(key="beam_pick").set_value(4).run()
    steps.slider(key="beam_size").set_value(2).run()
    assert not steps.exception and steps.radio(key="beam_pick").value == 1


def test_forcing_a_candidate_redecodes_from_there_and_goes_back(steps, bundle):  # noqa: F811
    original = translate(bundle, SENTENCE)
    steps.slider(key="step").set_value(3).run()
    row = 2
    rank = next(r for r in range(1, 6) if int(original.top_ids[row, r - 1]) != original.output_ids[row])
    token_id = int(original.top_ids[row, rank - 1])
    assert steps.button(key=f"force_{rank}").disabled is False
    steps.button(key=f"force_{rank}").click().run()
    assert not steps.exception
    forced = translate(bundle, SENTENCE, prefix=[*original.output_ids[:row], token_id])
    assert forced.output_ids[row] == token_id and forced.prefix_length == 3
    token = bundle.tgt_tokenizer.id_to_token(token_id)
    assert steps.info and f"`{token}` forced at step 3" in steps.info[0].value
    assert any(m.value.startswith("Step **3**") and f"**`{token}`** (forced)" in m.value for m in steps.markdown)
    # the replay follows the forced decoding: its candidates at this step, and its attention rows
    top, _ = chart_rows(steps, 2)
    torch.testing.assert_close(torch.tensor(top["probability"].to_numpy(), dtype=torch.float32), forced.top_probs[row])
    # side by side: both texts, each written token's probability, each cross-attention map
    assert [t.value for t in steps.text][-2:] == [original.translation, forced.translation]
    own, _ = chart_rows(steps, 3)
    torch.testing.assert_close(
        torch.tensor(own["probability"].to_numpy(), dtype=torch.float32), original.top_probs[: len(own), 0]
    )
    what_if, _ = chart_rows(steps, 5)
    assert what_if["source"].tolist() == ["forced"] * 3 + ["model"] * (len(forced.output_ids) - 3)
    tree = forced.beam_tree
    for position, node in enumerate(tree_path(tree, forced.hypotheses[0].node)[1:]):
        want = float(torch.tensor(tree[node].log_prob - tree[tree[node].parent].log_prob).exp())
        assert what_if["probability"][position] == pytest.approx(want, abs=1e-5)
    heat, _ = chart_rows(steps, 6)
    want = forced.attention.cross[steps.slider(key="step_layer").value - 1].mean(0)  # the replay's layer
    torch.testing.assert_close(matrix(heat, want.shape), want)
    # and back
    steps.button(key="unforce").click().run()
    assert not steps.exception and not steps.info
    top, _ = chart_rows(steps, 2)
    torch.testing.assert_close(
        torch.tensor(top["probability"].to_numpy(), dtype=torch.float32), original.top_probs[row]
    )
    assert len(steps.get("vega_lite_chart")) == 3


def test_a_new_sentence_drops_the_forced_token(steps):
    steps.slider(key="step").set_value(2).run()
    steps.button(key="force_2" if not steps.button(key="force_2").disabled else "force_3").click().run()
    assert steps.info
    steps.text_input(key="sentence").input("a dog runs in the park").run()
    assert not steps.exception and not steps.info and len(steps.get("vega_lite_chart")) == 3


def test_why_not_this_one_shows_the_contrastive_attribution(steps, bundle):  # noqa: F811
    """ "why not?" beside a candidate: the bars are core.analysis.attribution.contrastive of the chosen token against
    that candidate at the step on view, and the caption gives their log-probability difference."""
    from core.analysis.attribution import contrastive

    steps.slider(key="step").set_value(2).run()
    from ui.results import row_cap

    result = translate(bundle, SENTENCE, max_len=row_cap(bundle, SENTENCE))  # as the page decodes
    row, foil = 1, int(result.top_ids[1, 1])
    before = len(steps.get("vega_lite_chart"))
    steps.button(key="why_2").click().run()
    assert not steps.exception and len(steps.get("vega_lite_chart")) == before + 1
    rows, spec = chart_rows(steps, before)
    scores, difference = contrastive(bundle, result, row, foil)
    torch.testing.assert_close(
        torch.tensor(rows.sort_values("position")["score"].to_numpy()), scores.double(), atol=1e-5, rtol=0
    )
    assert f"{difference:.3f}" in " ".join(c.value for c in steps.caption)
    assert steps.button(key="force_2").value is False  # the what-if click stays as it was
