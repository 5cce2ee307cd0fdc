"""core/charts/: tensors + tokens -> tidy frames -> Altair charts and exports (pure functions, no Streamlit)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

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


def test_head_average():
    w = probs(6, 8, 4, 5)
    mean = charts.head_average(w[2])
    np.testing.assert_allclose(mean.sum(-1), 1, rtol=1e-5)
    np.testing.assert_allclose(mean, w[2].mean(0).numpy(), rtol=1e-6)


def test_heatmap_spec_labels_every_position_and_has_tooltips():
    df = charts.attention_frame(probs(4, 5), QUERIES, KEYS)
    spec = charts.heatmap(df, QUERIES, KEYS, "t")
    enc = spec["encoding"]
    cells = spec["datasets"]["cells"]
    # the axes are the label columns, in the data's order: every position once, first to last
    assert enc["x"] == {**enc["x"], "field": "key_token", "type": "ordinal", "sort": None}
    assert enc["y"] == {**enc["y"], "field": "query_token", "type": "ordinal", "sort": None}
    assert list(dict.fromkeys(cells["key_token"])) == charts.labels(KEYS)
    assert list(dict.fromkeys(cells["query_token"])) == charts.labels(QUERIES)
    assert {t["field"] for t in enc["tooltip"]} == {"query_token", "key_token", "weight"}
    assert enc["color"]["scale"]["domain"][0] == 0 and enc["color"]["scale"]["domain"][-1] == 1


def test_colour_scale_starts_white_and_darkens_with_weight():
    """The image tiles use the same piecewise-linear RGB scale as Vega: the stops come out exactly, 0 is
    white, lightness falls with weight, and 0.02 already differs from 0."""
    rgb = charts.weight_colors(np.array(charts.COLOR_STOPS))
    assert [f"#{r:02x}{g:02x}{b:02x}" for r, g, b in rgb] == list(charts.COLORS)
    assert rgb[0].tolist() == [255, 255, 255]
    ramp = charts.weight_colors(np.linspace(0, 1, 51)).astype(int).sum(-1)
    assert (np.diff(ramp) < 0).all()
    assert ramp[0] - ramp[1] > 20  # a weight of 0.02 is visibly not white
    mask = [int(charts.MASK_COLOR[i : i + 2], 16) for i in (1, 3, 5)]
    assert not (charts.weight_colors(np.linspace(0, 1, 1001)) == mask).all(-1).any()  # grey is no weight's colour


def test_decoder_heatmap_masks_the_upper_triangle_and_explains_rows():
    df = charts.attention_frame(probs(4, 4), QUERIES, QUERIES)
    spec = charts.heatmap(df, QUERIES, QUERIES, "t", causal=True, next_tokens=["a", "b", "c", "d"])
    color = spec["encoding"]["color"]
    assert color["condition"] == {"test": "datum.ki > datum.qi", "value": charts.MASK_COLOR}
    cells = spec["datasets"]["cells"]
    assert "transform" not in spec  # what the tooltip shows is in the data: no per-cell expression in Vega
    for row in cells.itertuples():
        assert row.query_token == f"{row.qi}·{QUERIES[row.qi]}" and row.key_token == f"{row.ki}·{QUERIES[row.ki]}"
        assert row.predicts == "abcd"[row.qi]
        assert row.shown == ("masked (a later token)" if row.ki > row.qi else f"{row.weight:.3f}")
    assert "predicts the next" in charts.READING_HELP["decoder"] and "predicts the next" in charts.READING_HELP["cross"]


def test_sizes_follow_token_counts():
    assert charts.fit_cell(5, 520) == 26 and charts.fit_cell(62, 520) == 8 and charts.fit_cell(500, 520) == 4
    short, long = (
        charts.heatmap(
            charts.attention_frame(probs(n, n), [f"t{i}" for i in range(n)], [f"t{i}" for i in range(n)]),
            [f"t{i}" for i in range(n)],
            [f"t{i}" for i in range(n)],
        )
        for n in (5, 62)
    )
    assert charts.natural_width(short) < charts.natural_width(long) <= 800
    assert short["autosize"] == {"type": "fit-x", "contains": "padding"}  # fits any narrower box


def test_all_layers_by_heads_is_one_image_and_a_panel_per_head():
    """6 layers x 8 heads x 62 x 62 = 184 512 cells: one image (one pixel per cell) under 48 clickable panels,
    a small spec whatever the sentence length."""
    tokens = [f"w{i}" for i in range(62)]
    chart = charts.layers_grid(probs(6, 8, 62, 62), tokens, tokens)
    assert charts.spec_size(chart) < 600_000
    panels = chart["datasets"]["panels"]
    assert len(panels) == 48 and set(zip(panels["layer"], panels["head"])) == {
        (la, h) for la in range(1, 7) for h in range(1, 9)
    }
    assert [p["select"]["fields"] for layer in chart["layer"] for p in layer.get("params", [])] == [["layer", "head"]]


def test_exports_round_trip():
    w = probs(4, 5)
    df = charts.attention_frame(w, QUERIES, KEYS)
    assert charts.attention_csv(df).decode().splitlines()[0] == "qi,ki,query,key,weight"
    data = json.loads(charts.attention_json(df, kind="cross", layer=1, head=2))
    assert data["queries"] == QUERIES and data["keys"] == KEYS and data["head"] == 2
    np.testing.assert_allclose(data["weights"], w.numpy(), atol=1e-6)


def test_png_and_svg_export():
    pytest.importorskip("vl_convert")
    title = "Encoder-decoder cross · layer 2 · head 3"
    chart = charts.heatmap(charts.attention_frame(probs(4, 5), QUERIES, KEYS), QUERIES, KEYS, title)
    assert charts.chart_image(chart, "png").startswith(b"\x89PNG")
    svg = charts.chart_image(chart, "svg").decode()
    assert svg.startswith("<svg") and "2·gatto" in svg
    assert title in svg  # the title comes with the data (charts.TITLE_EXPR), in an export too
    with pytest.raises(ValueError):
        charts.chart_image(chart, "gif")


def test_step_rows_and_candidates():
    rows = charts.step_rows(probs(2, 5).numpy(), KEYS)
    assert len(rows) == 10 and set(rows["head"]) == {1, 2}
    shown = charts.row_heatmap(rows, KEYS)["datasets"]["row"]
    assert list(dict.fromkeys(shown["key_token"])) == charts.labels(KEYS)  # the axis, in the data's order
    assert all(r.key_token == f"{r.ki}·{KEYS[r.ki]}" for r in shown.itertuples())
    top = charts.candidates_frame(torch.tensor([[5, 6]]), torch.tensor([[0.7, 0.2]]), 0, lambda i: f"t{i}")
    assert top["token"].tolist() == ["t5", "t6"] and top["probability"].tolist() == pytest.approx([0.7, 0.2])
    assert charts.candidates_chart(top)["datasets"]["top"]["token"].tolist() == ["t5", "t6"]


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


def test_a_map_too_large_for_a_mark_per_cell_is_one_image_with_a_tooltip_per_row():
    """The image is the map, pixel for pixel in the heatmap's colours; each row's band names the key it peaks on
    and that weight, computed here from the matrix."""
    import base64
    import io

    from PIL import Image

    from core.charts import MASK_COLOR, weight_colors
    from ui.widgets import weights_map

    generator = torch.Generator().manual_seed(0)
    tq, tk = 130, 90  # 11,700 cells: past BIG_MAP_CELLS
    w = torch.rand(tq, tk, generator=generator) ** 4
    w = (w / w.sum(-1, keepdim=True)).tril()  # a causal map: masked cells must be grey, not white
    queries, keys = [f"q{i}" for i in range(tq)], [f"k{i}" for i in range(tk)]
    frame, spec = weights_map(w, queries, keys, "big", causal=True, plot_width=600)
    assert len(frame) == tq * tk and "layer" in spec and "mark" not in spec  # an image, not a mark per cell
    uri = spec["layer"][0]["data"]["values"][0]["url"]
    pixels = np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB"))
    expected = weight_colors(w.numpy())
    mask = np.triu(np.ones((tq, tk), dtype=bool), 1)
    expected[mask] = [int(MASK_COLOR[i : i + 2], 16) for i in (1, 3, 5)]
    np.testing.assert_array_equal(pixels, expected)
    rows = spec["datasets"]["rows"]
    assert list(rows["row"]) == charts.labels(queries)
    np.testing.assert_array_equal(rows["peak"], np.asarray(charts.labels(keys))[w.argmax(-1).numpy()])
    np.testing.assert_allclose(rows["weight"], w.max(-1).values.numpy(), rtol=1e-6)
    _, small = weights_map(w[:50, :50], queries[:50], keys[:50], "small")
    assert small["mark"]["type"] == "rect"  # under the threshold: a mark and a tooltip per cell


def test_role_grid_gives_each_role_its_colour_and_the_tooltip_its_evidence():
    frame = charts.head_values_frame(np.zeros((2, 2)))
    frame["role"] = ["sink", "mixed", "alignment", "sink"]
    frame["evidence"] = ["a", "b", "c", "d"]
    spec = charts.head_roles_grid(frame).to_dict()
    scale = spec["encoding"]["color"]["scale"]
    assert scale["domain"] == ["alignment", "sink", "mixed"]  # the roles present, in the legend's order
    assert scale["range"] == [charts.ROLE_COLORS[name] for name in scale["domain"]]
    assert {t["field"] for t in spec["encoding"]["tooltip"]} == {"layer", "head", "role", "evidence"}
    values = charts.head_values_grid(frame, "Entropy").to_dict()
    assert {"role", "evidence"} <= {t["field"] for t in values["encoding"]["tooltip"]}
    curve = [{"heads_off": 0, "chrf": 50.0, "roles_off": ""}, {"heads_off": 4, "chrf": 40.0, "roles_off": "4 sink"}]
    assert "roles_off" in {t["field"] for t in charts.pruning_chart(curve).to_dict()["encoding"]["tooltip"]}
