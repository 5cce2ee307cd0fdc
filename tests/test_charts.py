"""core/charts.py: tensors + tokens -> tidy frames -> Altair charts and exports (pure functions, no Streamlit)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import altair as alt
import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from core import Attention, charts  # noqa: E402

QUERIES = ["[SOS]", "il", "gatto", "il"]
KEYS = ["[SOS]", "the", "cat", "the", "[EOS]"]


def probs(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).softmax(-1)


def test_attention_frame_is_long_format_with_distinct_positions():
    w = probs(4, 5)
    df = charts.attention_frame(w, QUERIES, KEYS)
    assert list(df.columns) == ["qi", "ki", "query", "key", "weight"] and len(df) == 20
    assert df.loc[(df.qi == 3) & (df.ki == 3), "weight"].item() == pytest.approx(w[3, 3].item())
    assert df.loc[df.ki == 3, "key"].unique().tolist() == ["the"]
    assert charts.labels(KEYS)[1] != charts.labels(KEYS)[3]  # '1·the' vs '3·the'


def test_attention_frame_rejects_mismatched_tokens():
    with pytest.raises(ValueError, match="do not match"):
        charts.attention_frame(probs(4, 5), QUERIES, KEYS[:-1])


def test_grid_frame_and_head_average():
    w = probs(6, 8, 4, 5)
    df = charts.grid_frame(w, QUERIES, KEYS)
    assert len(df) == 6 * 8 * 4 * 5 and df["layer"].max() == 6 and df["head"].max() == 8
    one = df[(df["layer"] == 3) & (df["head"] == 7)]
    np.testing.assert_allclose(one["weight"].to_numpy().reshape(4, 5), w[2, 6].numpy())
    mean = charts.head_average(w[2])
    np.testing.assert_allclose(mean.sum(-1), 1, rtol=1e-5)
    np.testing.assert_allclose(mean, w[2].mean(0).numpy(), rtol=1e-6)


def test_heatmap_spec_labels_every_position_and_has_tooltips():
    df = charts.attention_frame(probs(4, 5), QUERIES, KEYS)
    spec = charts.heatmap(df, QUERIES, KEYS, "t").to_dict()
    enc = spec["encoding"]
    assert enc["x"]["type"] == "ordinal" and json.dumps(charts.labels(KEYS)) in enc["x"]["axis"]["labelExpr"]
    assert {t["field"] for t in enc["tooltip"]} == {"query_token", "key_token", "weight"}
    assert enc["color"]["scale"]["domain"] == [0, 1]


def test_all_layers_by_heads_spec_stays_small():
    """6 layers x 8 heads x 20 x 20 = 19 200 cells: numeric columns keep the inline spec under 2 MB."""
    tokens = [f"w{i}" for i in range(20)]
    df = charts.grid_frame(probs(6, 8, 20, 20), tokens, tokens)
    chart = charts.layers_grid(df, tokens, tokens)
    assert charts.spec_size(chart) < 2_000_000
    assert charts.arrow_size(df.drop(columns=["query", "key"])) < 400_000


def test_exports_round_trip():
    w = probs(4, 5)
    df = charts.attention_frame(w, QUERIES, KEYS)
    assert charts.attention_csv(df).decode().splitlines()[0] == "qi,ki,query,key,weight"
    data = json.loads(charts.attention_json(df, kind="cross", layer=1, head=2))
    assert data["queries"] == QUERIES and data["keys"] == KEYS and data["head"] == 2
    np.testing.assert_allclose(data["weights"], w.numpy(), atol=1e-6)


def test_png_and_svg_export():
    pytest.importorskip("vl_convert")
    chart = charts.heatmap(charts.attention_frame(probs(4, 5), QUERIES, KEYS), QUERIES, KEYS, "t")
    assert charts.chart_image(chart, "png").startswith(b"\x89PNG")
    svg = charts.chart_image(chart, "svg").decode()
    assert svg.startswith("<svg") and "2·gatto" in svg
    with pytest.raises(ValueError):
        charts.chart_image(chart, "gif")


def test_step_rows_and_candidates():
    rows = charts.step_rows(probs(2, 5).numpy(), KEYS)
    assert len(rows) == 10 and set(rows["head"]) == {1, 2}
    top = charts.candidates_frame(torch.tensor([[5, 6]]), torch.tensor([[0.7, 0.2]]), 0, lambda i: f"t{i}")
    assert top["token"].tolist() == ["t5", "t6"] and top["probability"].tolist() == pytest.approx([0.7, 0.2])
    assert isinstance(charts.candidates_chart(top), alt.Chart)


def test_attention_labels_its_kinds_and_rejects_mismatched_tokens():
    src, tgt = ("[SOS]", "a", "b", "[EOS]"), ("[SOS]", "x", "y")
    att = Attention(probs(2, 3, 4, 4), probs(2, 3, 3, 3), probs(2, 3, 3, 4), src, tgt)
    assert (att.n_layers, att.n_heads) == (2, 3)
    assert att.queries("cross") == list(tgt) and att.keys("cross") == list(src)
    assert att.queries("encoder") == att.keys("encoder") == list(src)
    assert att.queries("decoder") == att.keys("decoder") == list(tgt)
    assert np.allclose(charts.head_matrix(att, "cross", 2, 3), att.cross[1, 2].numpy())
    assert np.allclose(charts.head_matrix(att, "cross", 1, None), att.cross[0].mean(0).numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="cross attention"):
        Attention(probs(2, 3, 4, 4), probs(2, 3, 3, 3), probs(2, 3, 3, 5), src, tgt)
    with pytest.raises(ValueError, match="unknown attention kind"):
        att.weights("self")
