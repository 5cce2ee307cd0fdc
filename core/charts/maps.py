"""Attention maps: one head as a heatmap with per-cell tooltips, a layer's heads and every layer x head as tiles
drawn from one image, one decoding step's rows, and the difference of two maps (Compare).

The maps a page redraws on every slider move are Vega-Lite specs written as plain dicts (data in `datasets` as
DataFrames, which Streamlit sends as Arrow): building them through Altair's objects cost 100-300 ms per chart
on our CPUs (schema lookups and validation), a dict well under 1 ms. Every frame is long format, one row per
cell: `qi, ki` (positions), `query, key` (tokens), `weight`, plus `layer, head` (1-based) for multi-head frames.
Charts encode positions and print "position·token" labels, so a repeated token keeps its own row and column.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import pandas as pd
from torch import Tensor

from core.attention import Attention
from core.charts.style import (
    DIFFERENCE_SCHEME,
    FIT_X,
    LEGEND_PX,
    MASK_COLOR,
    TITLE_EXPR,
    as_array,
    color_scale,
    fit_cell,
    label_axis,
    label_px,
    labels,
    labels_json,
    repeated,
    tip,
    weight_colors,
)


def head_average(weights: Tensor | np.ndarray) -> np.ndarray:
    """(..., H, Tq, Tk) -> (..., Tq, Tk): the mean over heads (rows still sum to 1)."""
    return as_array(weights).mean(axis=-3)


def head_matrix(attention: Attention, kind: str, layer: int, head: int | None) -> np.ndarray:
    """(Tq, Tk) weights of one kind, 1-based layer and head; head None means the average over heads."""
    layer_maps = as_array(attention.weights(kind)[layer - 1])
    return head_average(layer_maps) if head is None else layer_maps[head - 1]


def attention_frame(weights: Tensor | np.ndarray, queries: list[str], keys: list[str]) -> pd.DataFrame:
    """(Tq, Tk) weights -> rows qi, ki, query, key, weight."""
    w = as_array(weights)
    if w.shape != (len(queries), len(keys)):
        raise ValueError(f"weights {w.shape} do not match {len(queries)} query and {len(keys)} key tokens")
    qi, ki = np.indices(w.shape).reshape(2, -1)
    return pd.DataFrame(
        {
            "qi": qi,
            "ki": ki,
            "query": np.asarray(queries, dtype=object)[qi],
            "key": np.asarray(keys, dtype=object)[ki],
            "weight": w.reshape(-1),
        }
    )


def heatmap(
    df: pd.DataFrame,
    queries: list[str],
    keys: list[str],
    title: str = "",
    cell: int | None = None,
    plot_width: int = 520,
    causal: bool = False,
    next_tokens: list[str] | None = None,
    help_text: str = "",
) -> dict:
    """One head (or the head average): query tokens down, key tokens across, a weight legend.

    Cells are square at their natural size (plot_width // keys, 4 to 26 px, unless cell is given); in a
    narrower box the chart keeps its height and its cells get thinner (labels thinned, tooltips exact).
    causal: cells above the diagonal are masked (decoder self-attention) and drawn grey, not as weight 0.
    next_tokens: the token each row predicts, shown in the tooltip (decoder rows predict the next token)."""
    cell = cell or fit_cell(len(keys), plot_width)
    width = max(120, cell * len(keys))
    # Everything that changes with the sentence or the head is in the data, not the spec: the axis labels, the
    # tooltip's text, the title and the height (one step per row). Another sentence of about the same length,
    # or another head, is then the same spec with other data, and Streamlit swaps the data of the view it
    # has drawn instead of building a new one (bench/app_browser.py). And a Vega `calculate` would run for
    # every cell in the browser, through Streamlit's expression interpreter (no eval under its CSP): at 60 x
    # 60 tokens that was most of a redraw. Repeated strings travel as Arrow dictionaries.
    df = df.sort_values(["qi", "ki"], kind="stable", ignore_index=True)  # the axes take the data's order
    qi, ki = df["qi"].to_numpy(), df["ki"].to_numpy()
    cells = df.drop(columns=[c for c in ("query", "key") if c in df.columns]).assign(
        query_token=pd.Categorical.from_codes(qi, labels(queries)),
        key_token=pd.Categorical.from_codes(ki, labels(keys)),
        title=repeated(title, len(df)),
    )
    weight_tip = tip("weight", "weight", "quantitative", format=".3f")  # formatted on hover only
    if causal:  # a masked cell says so instead of "0.000"
        shown = np.char.mod("%.3f", df["weight"].to_numpy(dtype=np.float64)).astype(object)
        shown[ki > qi] = "masked (a later token)"
        cells["shown"] = pd.Categorical(shown)
        weight_tip = tip("shown", "weight")
    tooltip = [tip("query_token", "row (query)"), tip("key_token", "column (key)")]
    if next_tokens is not None:
        cells["predicts"] = pd.Categorical(np.asarray(next_tokens, dtype=object)[qi])
        tooltip.append(tip("predicts", "row predicts"))
    tooltip.append(weight_tip)
    if help_text:
        cells["reading"] = repeated(help_text.replace("`", ""), len(cells))
        tooltip.append(tip("reading", "reading"))
    color = {
        "field": "weight",
        "type": "quantitative",
        "title": "weight",
        "scale": color_scale(),
        "legend": {"gradientLength": 120},
    }
    if causal:
        color["condition"] = {"test": "datum.ki > datum.qi", "value": MASK_COLOR}
    full = width + label_px(queries) + 24 + LEGEND_PX
    return {
        # The title is read from the data, so that another head of the same sentence is the same spec with
        # other data: Streamlit then swaps the data of the drawn view instead of building a new one. Anchored
        # at the chart's left edge and never cut: the box is at least as wide as the title (below).
        "title": {"text": {"expr": TITLE_EXPR}, "anchor": "start", "frame": "bounds", "limit": 0},
        "data": {"name": "cells"},
        "datasets": {"cells": cells},
        "mark": {"type": "rect", "aria": False},  # no per-cell description: the tooltip says it all
        "encoding": {
            "x": label_axis("key_token", "key (column)", -90),  # upright: a label per column from 11 px on
            "y": label_axis("query_token", "query (row)"),
            "color": color,
            "tooltip": tooltip,
        },
        "width": width,
        "height": {"step": cell} if len(queries) * cell >= 100 else 100,  # from the data's rows (see above)
        "autosize": FIT_X,
        "usermeta": {"natural_width": max(full, 7 * len(title))},
    }


def _tiles_image(weights: np.ndarray, columns: int, gap: int, causal: bool) -> tuple[str, int, int]:
    """(N, Tq, Tk) maps -> a PNG data URI of them tiled `columns` to a row, one pixel per cell, `gap`
    transparent pixels between tiles; and its width and height in pixels."""
    from PIL import Image

    n, tq, tk = weights.shape
    rows = -(-n // columns)
    canvas = np.zeros((rows * (tq + gap) - gap, min(n, columns) * (tk + gap) - gap, 4), dtype=np.uint8)
    rgb = weight_colors(weights)  # (N, Tq, Tk, 3)
    if causal:
        rgb[:, np.triu(np.ones((tq, tk), dtype=bool), 1)] = [int(MASK_COLOR[i : i + 2], 16) for i in (1, 3, 5)]
    for i in range(n):
        top, left = (i // columns) * (tq + gap), (i % columns) * (tk + gap)
        canvas[top : top + tq, left : left + tk, :3] = rgb[i]
        canvas[top : top + tq, left : left + tk, 3] = 255
    buffer = io.BytesIO()
    Image.fromarray(canvas, "RGBA").save(buffer, format="PNG", optimize=False, compress_level=1)
    return (
        "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii"),
        canvas.shape[1],
        canvas.shape[0],
    )


def _tiles(
    weights: Tensor | np.ndarray,
    layer_of: np.ndarray,
    head_of: np.ndarray,
    columns: int,
    tile_px: int,
    causal: bool,
    selectable: bool,
    axes: bool,
) -> dict:
    """Small multiples of (N, Tq, Tk) maps drawn as one image (N tiles, `columns` to a row) under N
    transparent panels that carry the tooltip (layer, head) and, when selectable, a click selection "pick"
    of that (layer, head). One image instead of N x Tq x Tk marks: the browser draws it at once whatever
    the sentence length (the focused heatmap keeps per-cell tooltips)."""
    w = as_array(weights)
    n, tq, tk = w.shape
    gap = max(1, max(tq, tk) // 8)
    uri, width_px, height_px = _tiles_image(w, columns, gap, causal)
    index = np.arange(n)
    panels = pd.DataFrame(
        {
            "layer": layer_of.astype(int),
            "head": head_of.astype(int),
            "x": (index % columns) * (tk + gap),
            "y": (index // columns) * (tq + gap),
        }
    ).assign(x2=lambda d: d["x"] + tk, y2=lambda d: d["y"] + tq)
    scale = tile_px / max(tq, tk)  # screen pixels per cell at the natural size
    plot_w, plot_h = max(40, round(width_px * scale)), max(40, round(height_px * scale))
    x_scale = {"domain": [0, width_px], "nice": False, "zero": False}
    y_scale = {"domain": [0, height_px], "nice": False, "zero": False, "reverse": True}
    bare = {"grid": False, "domain": False, "ticks": False, "title": None}
    if axes:  # rows are layers, columns heads
        x_axis = {
            **bare,
            "values": [c * (tk + gap) + tk / 2 for c in range(min(n, columns))],
            "labelExpr": f"'head ' + (floor(datum.value / {tk + gap}) + 1)",
            "orient": "top",
            "labelAngle": 0,
        }
        y_axis = {
            **bare,
            "values": [r * (tq + gap) + tq / 2 for r in range(-(-n // columns))],
            "labelExpr": f"'layer ' + (floor(datum.value / {tq + gap}) + {int(layer_of.min())})",
            "minExtent": 48,  # room for "layer N" (fit-x otherwise measured the labels short and cut their start)
        }
    else:
        x_axis = y_axis = None

    def position(x: str, y: str) -> dict:
        return {
            "x": {"field": x, "type": "quantitative", "scale": x_scale, "axis": x_axis},
            "y": {"field": y, "type": "quantitative", "scale": y_scale, "axis": y_axis},
        }

    image = {
        "data": {"name": "image"},
        "mark": {"type": "image", "aspect": False, "smooth": False},
        "encoding": {**position("x", "y"), "x2": {"field": "x2"}, "y2": {"field": "y2"}, "url": {"field": "url"}},
    }
    panel = {
        "data": {"name": "panels"},
        "mark": {"type": "rect", "fill": "#ffffff", "fillOpacity": 0.01, "stroke": "#333333", "strokeWidth": 2},
        "encoding": {
            **position("x", "y"),
            "x2": {"field": "x2"},
            "y2": {"field": "y2"},
            "tooltip": [tip("layer", "layer", "ordinal"), tip("head", "head", "ordinal")],
            "strokeOpacity": {"value": 0.0},
        },
    }
    if selectable:
        panel["mark"]["cursor"] = "pointer"
        panel["params"] = [
            {"name": "pick", "select": {"type": "point", "fields": ["layer", "head"], "on": "click", "clear": False}}
        ]
        panel["encoding"]["strokeOpacity"] = {
            "condition": {"param": "pick", "empty": False, "value": 1.0},
            "value": 0.0,
        }
    layers = [image, panel]
    if not axes:  # a "head h" label over each tile
        layers.append(
            {
                "data": {"name": "panels"},
                "transform": [
                    {"calculate": "'head ' + datum.head", "as": "label"},
                    {"calculate": "(datum.x + datum.x2) / 2", "as": "cx"},
                ],
                "mark": {"type": "text", "baseline": "bottom", "dy": -2, "fontSize": 11, "color": "#555555"},
                "encoding": {**position("cx", "y"), "text": {"field": "label"}},
            }
        )
    images = pd.DataFrame({"url": [uri], "x": [0], "x2": [width_px], "y": [0], "y2": [height_px]})
    return {
        "datasets": {"image": images, "panels": panels},
        "layer": layers,
        "width": plot_w,
        "height": plot_h,
        "autosize": FIT_X,
        "usermeta": {"natural_width": plot_w + (60 if axes else 10)},
    }


def heads_grid(
    weights: Tensor | np.ndarray,
    queries: list[str],
    keys: list[str],
    columns: int = 4,
    tile_px: int = 96,
    layer: int = 1,
    causal: bool = False,
    selectable: bool = False,
) -> dict:
    """Every head of one layer: (H, Tq, Tk) weights as tiles, `columns` to a row, each labelled with its head."""
    w = as_array(weights)
    if w.shape[1:] != (len(queries), len(keys)):
        raise ValueError(f"weights {w.shape} do not match {len(queries)} query and {len(keys)} key tokens")
    heads = np.arange(1, w.shape[0] + 1)
    return _tiles(w, np.full_like(heads, layer), heads, columns, tile_px, causal, selectable, axes=False)


def layers_grid(
    weights: Tensor | np.ndarray,
    queries: list[str],
    keys: list[str],
    tile_px: int = 64,
    causal: bool = False,
    selectable: bool = True,
) -> dict:
    """All layers (rows) by all heads (columns) of (L, H, Tq, Tk) weights; a click selects a (layer, head)
    cell ("pick") when selectable."""
    w = as_array(weights)
    if w.shape[2:] != (len(queries), len(keys)):
        raise ValueError(f"weights {w.shape} do not match {len(queries)} query and {len(keys)} key tokens")
    n_layers, n_heads = w.shape[:2]
    layer_of, head_of = (np.indices((n_layers, n_heads)) + 1).reshape(2, -1)
    flat = w.reshape(n_layers * n_heads, *w.shape[2:])
    return _tiles(flat, layer_of, head_of, n_heads, tile_px, causal, selectable, axes=True)


def step_rows(weights: np.ndarray, tokens: list[str]) -> pd.DataFrame:
    """(H, Tk) per-head weights of one query row -> rows head, ki, key, weight."""
    w = as_array(weights)
    head, ki = np.indices(w.shape).reshape(2, -1)
    return pd.DataFrame(
        {"head": head + 1, "ki": ki, "key": np.asarray(tokens, dtype=object)[ki], "weight": w.reshape(-1)}
    )


def step_frames(att: Attention, layer: int, row: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Decoder row `row` (0-based) of 1-based `layer`: (cross attention over the source, self attention over
    the decoder inputs up to and including this row), each as rows head, ki, key, weight."""
    src, tgt = att.source_tokens, att.target_tokens
    cross = step_rows(as_array(att.cross[layer - 1, :, row]), src)  # (H, S)
    self_ = step_rows(as_array(att.decoder[layer - 1, :, row, : row + 1]), tgt[: row + 1])  # (H, row + 1)
    return cross, self_


def row_heatmap(df: pd.DataFrame, keys: list[str], cell: int = 26) -> dict:
    """Heads down, key tokens across: one query row of every head of a layer (untitled: a short sentence
    makes the chart narrower than a title, so the page writes it above). In a box narrower than its
    natural width the cells get thinner and the labels are thinned."""
    width = max(160, cell * len(keys))
    df = df.sort_values(["head", "ki"], kind="stable", ignore_index=True)  # the axis takes the data's order
    rows = df.drop(columns=["key"]).assign(key_token=pd.Categorical.from_codes(df["ki"].to_numpy(), labels(keys)))
    return {  # the labels are in the data, as in heatmap()
        "data": {"name": "row"},
        "datasets": {"row": rows},
        "mark": {"type": "rect", "aria": False},
        "encoding": {
            "x": label_axis("key_token", "key", -90),
            "y": {"field": "head", "type": "ordinal", "title": "head"},
            "color": {
                "field": "weight",
                "type": "quantitative",
                "scale": color_scale(),
                "legend": {"gradientLength": 80},
            },
            "tooltip": [
                tip("head", "head", "ordinal"),
                tip("key_token", "key"),
                tip("weight", "weight", "quantitative", format=".3f"),
            ],
        },
        "width": width,
        "height": max(40, 24 * df["head"].nunique()),
        "autosize": FIT_X,
        "usermeta": {"natural_width": width + 60 + LEGEND_PX},
    }


def difference_heatmap(
    a: np.ndarray, b: np.ndarray, queries: list[str], keys: list[str], title: str, plot_width: int = 360
) -> dict:
    """(Tq, Tk) maps of A and B -> A - B on a symmetric -1..1 scale; the tooltip gives all three weights."""
    df = attention_frame(np.asarray(a) - np.asarray(b), queries, keys)
    df["a"], df["b"] = np.asarray(a, np.float32).reshape(-1), np.asarray(b, np.float32).reshape(-1)
    spec = heatmap(df, queries, keys, title, plot_width=plot_width)
    spec["encoding"]["color"] = {
        "field": "weight",
        "type": "quantitative",
        "title": "A - B",
        "scale": {"scheme": DIFFERENCE_SCHEME, "domain": [-1, 1], "reverse": True},
    }
    spec["encoding"]["tooltip"] = [
        {"field": "query_token", "type": "nominal", "title": "query"},
        {"field": "key_token", "type": "nominal", "title": "key"},
        {"field": "a", "type": "quantitative", "format": ".3f", "title": "A"},
        {"field": "b", "type": "quantitative", "format": ".3f", "title": "B"},
        {"field": "weight", "type": "quantitative", "format": "+.3f", "title": "A - B"},
    ]
    return spec


BIG_MAP_CELLS = 10_000  # above this many cells a map is one image: Vega draws every cell as a mark of its own


def image_heatmap(
    weights: Tensor | np.ndarray,
    queries: list[str],
    keys: list[str],
    title: str = "",
    plot_width: int = 720,
    causal: bool = False,
    next_tokens: list[str] | None = None,
) -> dict:
    """A map too large for a mark per cell (a long sentence of a model that reads 512 tokens): the cells as one
    image, in the colours of heatmap(), under one transparent band per row whose tooltip names the row, the
    token it predicts and the key it peaks on with that weight. The axes keep their token labels (thinned
    where they would overlap); the chart fits its box."""
    w = as_array(weights)
    tq, tk = w.shape
    if (tq, tk) != (len(queries), len(keys)):
        raise ValueError(f"weights {w.shape} do not match {len(queries)} query and {len(keys)} key tokens")
    uri, _, _ = _tiles_image(w[None], 1, 1, causal)
    cell = max(1.0, plot_width / tk)
    peak = w.argmax(-1)
    rows = pd.DataFrame(
        {
            "y": np.arange(tq),
            "y2": np.arange(tq) + 1,
            "row": labels(queries),
            "peak": np.asarray(labels(keys), dtype=object)[peak],
            "weight": w[np.arange(tq), peak].astype(float),
        }
    )
    tips = [
        tip("row", "row (query)"),
        tip("peak", "peaks on"),
        tip("weight", "its weight", "quantitative", format=".3f"),
    ]
    if next_tokens is not None:
        rows["predicts"] = np.asarray(next_tokens, dtype=object)
        tips.insert(1, tip("predicts", "row predicts"))

    def axis(tokens: list[str], title: str, angle: int) -> dict:
        return {
            "title": title,
            "values": [i + 0.5 for i in range(len(tokens))],
            "labelExpr": f"{labels_json(tokens)}[floor(datum.value)]",
            "labelAngle": angle,
            "labelOverlap": "greedy",
            "labelFontSize": 11,
            "labelLimit": 90,
            "grid": False,
        }

    x = {
        "field": "x",
        "type": "quantitative",
        "scale": {"domain": [0, tk], "nice": False},
        "axis": axis(keys, "key (column)", -90),
    }
    y = {
        "field": "y",
        "type": "quantitative",
        "scale": {"domain": [0, tq], "nice": False, "reverse": True},
        "axis": axis(queries, "query (row)", 0),
    }
    image = {
        "data": {"values": [{"url": uri, "x": 0, "x2": tk, "y": 0, "y2": tq}]},
        "mark": {"type": "image", "aspect": False, "smooth": False},
        "encoding": {"x": x, "y": y, "x2": {"field": "x2"}, "y2": {"field": "y2"}, "url": {"field": "url"}},
    }
    bands = {
        "data": {"name": "rows"},
        "transform": [{"calculate": "0", "as": "x"}, {"calculate": str(tk), "as": "x2"}],
        "mark": {"type": "rect", "fill": "#ffffff", "fillOpacity": 0.01, "strokeWidth": 0},
        "encoding": {"x": x, "y": y, "x2": {"field": "x2"}, "y2": {"field": "y2"}, "tooltip": tips},
    }
    width = round(cell * tk)
    return {
        "title": {"text": title, "anchor": "start", "frame": "bounds", "limit": 0},
        "datasets": {"rows": rows},
        "layer": [image, bands],
        "width": width,
        "height": round(cell * tq),
        "autosize": FIT_X,
        "usermeta": {"natural_width": width + label_px(queries) + 30},
    }
