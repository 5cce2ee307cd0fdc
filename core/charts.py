"""Attention tensors -> tidy DataFrames -> Vega-Lite chart specs, plus exports. Pure functions; no Streamlit here.

The attention maps that every page rerun draws (heatmap, heads_grid, layers_grid, row_heatmap,
candidates_chart) are Vega-Lite specs written as plain dicts (data in `datasets` as DataFrames, which
Streamlit sends as Arrow), shown with ui.show_chart: building them through Altair's objects cost 100-300 ms
per chart on our CPUs (schema lookups and validation), a dict costs well under 1 ms, and a click or a slider
change reruns the page each time. The views drawn once per analysis (alignment, beam tree, head grids,
pruning curve) are Altair charts.

Every frame is long format, one row per cell: `qi, ki` (positions), `query, key` (tokens), `weight`,
plus `layer, head` (1-based, as the app shows them) for multi-head frames. Charts encode positions
(ordinal) and print "position·token" labels through `labelExpr`, so a repeated token keeps its own
row/column. Chart data holds only numbers; tooltips look the tokens up in the same label arrays,
which keeps the 6 x 8 x 20 x 20 view small.
"""

from __future__ import annotations

import base64
import io
import json

import altair as alt
import numpy as np
import pandas as pd
from torch import Tensor

from core.attention import Attention

# Colour of a weight: white at 0, then light to dark blue, with stops evenly spaced in sqrt(weight), so
# that weights near 0 (0.02 vs 0) already differ; interpolated in RGB both in Vega and in tile images.
COLOR_STOPS = (0.0, 0.0625, 0.25, 0.5625, 1.0)
COLORS = ("#ffffff", "#c6dbef", "#6baed6", "#2171b5", "#08306b")
MASK_COLOR = "#bdbdbd"  # a cell the decoder cannot see (a later token): grey, never the white of a zero weight
TITLE_EXPR = "length(data('cells')) ? data('cells')[0].title : ''"  # a heatmap's title, from its data
FIT_X = {"type": "fit-x", "contains": "padding"}  # the whole chart (axes, legend) fits the width it is given
LEGEND_PX = 70  # a right-hand weight legend
LABEL_PX = 7  # per character of an axis label, at the axes' 11 px font
SCHEME = "blues"  # the Altair charts' colour scheme
PAD = alt.AutoSizeParams(type="pad")  # Altair charts: width/height size the plot; axes and legend come on top

# What a row and a column of each kind of map are (shown under the chart and in its tooltip).
READING_HELP = {
    "encoder": "Row: an English token being re-read by the encoder; column: the English token it takes "
    "information from. Each row sums to 1.",
    "decoder": "Row `i·token`: the decoding step that has just read `token` and predicts the next Italian token; "
    "column: an Italian token it has already read (grey: a later token it cannot see). Each row sums to 1.",
    "cross": "Row `i·token`: the decoding step that has just read `token` and predicts the next Italian token "
    "(so a row peaks on the English word it is about to translate); column: the English token it reads. "
    "Each row sums to 1.",
}


def _numpy(weights: Tensor | np.ndarray) -> np.ndarray:
    if isinstance(weights, Tensor):
        weights = weights.detach().float().cpu().numpy()
    return np.asarray(weights, dtype=np.float32)


def labels(tokens: list[str]) -> list[str]:
    """Axis labels that keep repeated tokens apart: '3·gatto'."""
    return [f"{i}·{t}" for i, t in enumerate(tokens)]


def head_average(weights: Tensor | np.ndarray) -> np.ndarray:
    """(..., H, Tq, Tk) -> (..., Tq, Tk): the mean over heads (rows still sum to 1)."""
    return _numpy(weights).mean(axis=-3)


def head_matrix(attention: Attention, kind: str, layer: int, head: int | None) -> np.ndarray:
    """(Tq, Tk) weights of one kind, 1-based layer and head; head None means the average over heads."""
    layer_maps = _numpy(attention.weights(kind)[layer - 1])
    return head_average(layer_maps) if head is None else layer_maps[head - 1]


def attention_frame(weights: Tensor | np.ndarray, queries: list[str], keys: list[str]) -> pd.DataFrame:
    """(Tq, Tk) weights -> rows qi, ki, query, key, weight."""
    w = _numpy(weights)
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


def grid_frame(weights: Tensor | np.ndarray, queries: list[str], keys: list[str], first_layer: int = 1) -> pd.DataFrame:
    """(L, H, Tq, Tk) or (H, Tq, Tk) weights -> rows layer, head, qi, ki, query, key, weight (1-based layer/head)."""
    w = _numpy(weights)
    if w.ndim == 3:
        w = w[None]
    if w.shape[2:] != (len(queries), len(keys)):
        raise ValueError(f"weights {w.shape} do not match {len(queries)} query and {len(keys)} key tokens")
    layer, head, qi, ki = np.indices(w.shape).reshape(4, -1)
    return pd.DataFrame(
        {
            "layer": (layer + first_layer).astype(np.int16),
            "head": (head + 1).astype(np.int16),
            "qi": qi.astype(np.int16),
            "ki": ki.astype(np.int16),
            "query": np.asarray(queries, dtype=object)[qi],
            "key": np.asarray(keys, dtype=object)[ki],
            "weight": w.reshape(-1),
        }
    )


def fit_cell(count: int, space: int, smallest: int = 4, largest: int = 26) -> int:
    """Pixels per cell so that count cells fill space, kept between smallest and largest."""
    return int(max(smallest, min(largest, space // max(count, 1))))


def label_px(tokens: list[str], limit: int = 90) -> int:
    """About how wide the longest 'position·token' label of tokens is drawn (capped by the axis labelLimit)."""
    return min(limit, LABEL_PX * max((len(t) for t in labels(tokens)), default=1)) + 8


def natural_width(spec: dict) -> int:
    """The width a chart would like (its plot, axes and legend at full cell size), as set by its builder: the
    app gives it a box of that width, or its column's if narrower, and the chart fits the box (FIT_X)."""
    return int(spec["usermeta"]["natural_width"])


def color_scale() -> dict:
    return {"domain": list(COLOR_STOPS), "range": list(COLORS), "interpolate": "rgb", "clamp": True}


def weight_colors(weights: np.ndarray) -> np.ndarray:
    """(...) weights -> (..., 3) uint8 RGB, the same colours Vega draws with color_scale()."""
    stops = np.array([[int(c[i : i + 2], 16) for i in (1, 3, 5)] for c in COLORS], dtype=np.float32)  # (5, 3)
    w = np.clip(_numpy(weights), 0.0, 1.0)
    rgb = np.stack([np.interp(w, COLOR_STOPS, stops[:, channel]) for channel in range(3)], axis=-1)
    return np.rint(rgb).astype(np.uint8)


def _axis(field: str, title: str, tokens: list[str], angle: int = 0) -> dict:
    """An ordinal token axis labelled 'position·token'; labels that would overlap are thinned (every cell
    keeps its tooltip)."""
    axis = {
        "labelExpr": f"{json.dumps(labels(tokens))}[datum.value]",
        "labelAngle": angle,
        "labelLimit": 90,
        "labelOverlap": "greedy",
        "labelFontSize": 11,
    }
    return {"field": field, "type": "ordinal", "title": title, "axis": axis}


def _label_axis(field: str, title: str, angle: int = 0) -> dict:
    """An ordinal axis over a column of 'position·token' labels, in the data's order (rows come sorted by
    position); labels that would overlap are thinned (every cell keeps its tooltip)."""
    axis = {"labelAngle": angle, "labelLimit": 90, "labelOverlap": "greedy", "labelFontSize": 11}
    return {"field": field, "type": "ordinal", "sort": None, "title": title, "axis": axis}


def _repeated(text: str, n: int) -> pd.Categorical:
    """One text for each of n rows, sent once (an Arrow dictionary of one entry)."""
    return pd.Categorical.from_codes(np.zeros(n, dtype=np.int8), [text])


def _tooltip(field: str, title: str, kind: str = "nominal", **extra) -> dict:
    return {"field": field, "type": kind, "title": title, **extra}


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
        title=_repeated(title, len(df)),
    )
    weight_tip = _tooltip("weight", "weight", "quantitative", format=".3f")  # formatted on hover only
    if causal:  # a masked cell says so instead of "0.000"
        shown = np.char.mod("%.3f", df["weight"].to_numpy(dtype=np.float64)).astype(object)
        shown[ki > qi] = "masked (a later token)"
        cells["shown"] = pd.Categorical(shown)
        weight_tip = _tooltip("shown", "weight")
    tooltip = [_tooltip("query_token", "row (query)"), _tooltip("key_token", "column (key)")]
    if next_tokens is not None:
        cells["predicts"] = pd.Categorical(np.asarray(next_tokens, dtype=object)[qi])
        tooltip.append(_tooltip("predicts", "row predicts"))
    tooltip.append(weight_tip)
    if help_text:
        cells["reading"] = _repeated(help_text.replace("`", ""), len(cells))
        tooltip.append(_tooltip("reading", "reading"))
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
            "x": _label_axis("key_token", "key (column)", -90),  # upright: a label per column from 11 px on
            "y": _label_axis("query_token", "query (row)"),
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
    w = _numpy(weights)
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
            "tooltip": [_tooltip("layer", "layer", "ordinal"), _tooltip("head", "head", "ordinal")],
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
    w = _numpy(weights)
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
    w = _numpy(weights)
    if w.shape[2:] != (len(queries), len(keys)):
        raise ValueError(f"weights {w.shape} do not match {len(queries)} query and {len(keys)} key tokens")
    n_layers, n_heads = w.shape[:2]
    layer_of, head_of = (np.indices((n_layers, n_heads)) + 1).reshape(2, -1)
    flat = w.reshape(n_layers * n_heads, *w.shape[2:])
    return _tiles(flat, layer_of, head_of, n_heads, tile_px, causal, selectable, axes=True)


def step_rows(weights: np.ndarray, tokens: list[str]) -> pd.DataFrame:
    """(H, Tk) per-head weights of one query row -> rows head, ki, key, weight."""
    w = _numpy(weights)
    head, ki = np.indices(w.shape).reshape(2, -1)
    return pd.DataFrame(
        {"head": head + 1, "ki": ki, "key": np.asarray(tokens, dtype=object)[ki], "weight": w.reshape(-1)}
    )


def step_frames(att: Attention, layer: int, row: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Decoder row `row` (0-based) of 1-based `layer`: (cross attention over the source, self attention over
    the decoder inputs up to and including this row), each as rows head, ki, key, weight."""
    src, tgt = att.source_tokens, att.target_tokens
    cross = step_rows(_numpy(att.cross[layer - 1, :, row]), src)  # (H, S)
    self_ = step_rows(_numpy(att.decoder[layer - 1, :, row, : row + 1]), tgt[: row + 1])  # (H, row + 1)
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
            "x": _label_axis("key_token", "key", -90),
            "y": {"field": "head", "type": "ordinal", "title": "head"},
            "color": {
                "field": "weight",
                "type": "quantitative",
                "scale": color_scale(),
                "legend": {"gradientLength": 80},
            },
            "tooltip": [
                _tooltip("head", "head", "ordinal"),
                _tooltip("key_token", "key"),
                _tooltip("weight", "weight", "quantitative", format=".3f"),
            ],
        },
        "width": width,
        "height": max(40, 24 * df["head"].nunique()),
        "autosize": FIT_X,
        "usermeta": {"natural_width": width + 60 + LEGEND_PX},
    }


def candidates_frame(top_ids, top_probs, row: int, id_to_token) -> pd.DataFrame:
    """The five most likely next tokens of one decoder row: rank, token, probability."""
    probs, ids = _numpy(top_probs[row]), [int(i) for i in top_ids[row]]
    return pd.DataFrame(
        {"rank": range(1, len(ids) + 1), "token": [id_to_token(i) for i in ids], "probability": probs.astype(float)}
    )


def candidates_chart(df: pd.DataFrame) -> dict:
    """Horizontal bars of the top candidates, most likely first."""
    return {
        "data": {"name": "top"},
        "datasets": {"top": df},
        "mark": {"type": "bar"},
        "encoding": {
            "x": {"field": "probability", "type": "quantitative", "scale": {"domain": [0, 1]}},
            "y": {
                "field": "rank",
                "type": "ordinal",
                "title": "candidate",
                "axis": {"labelExpr": f"{json.dumps(list(df['token']))}[datum.value - 1]", "labelOverlap": False},
            },
            "tooltip": [
                _tooltip("token", "token"),
                _tooltip("probability", "probability", "quantitative", format=".3f"),
            ],
        },
        "width": 240,
        "height": 30 * len(df),
        "autosize": FIT_X,
        "usermeta": {"natural_width": 340},
    }


def attention_csv(df: pd.DataFrame) -> bytes:
    """The shown attention as CSV (UTF-8), one row per cell."""
    return df.to_csv(index=False).encode("utf-8")


def attention_json(df: pd.DataFrame, **context) -> bytes:
    """The shown attention as JSON: context (sentence, kind, layer, head...), tokens and the weight matrix."""
    queries = df.drop_duplicates("qi").sort_values("qi")["query"].tolist()
    keys = df.drop_duplicates("ki").sort_values("ki")["key"].tolist()
    matrix = np.zeros((len(queries), len(keys)), dtype=float)
    matrix[df["qi"].to_numpy(), df["ki"].to_numpy()] = df["weight"].to_numpy()
    payload = {**context, "queries": queries, "keys": keys, "weights": np.round(matrix, 6).tolist()}
    return json.dumps(payload, ensure_ascii=False, indent=1).encode("utf-8")


def inline_spec(spec: dict) -> dict:
    """The spec with its datasets as JSON records (what a plain Vega-Lite renderer reads)."""
    datasets = {name: json.loads(frame.to_json(orient="records")) for name, frame in spec.get("datasets", {}).items()}
    return {**spec, "datasets": datasets} if datasets else dict(spec)


def chart_image(spec: dict, fmt: str = "png", scale: float = 2.0) -> bytes:
    """Render a chart to PNG or SVG with vl-convert (no browser needed)."""
    import vl_convert as vlc

    if fmt not in ("png", "svg"):
        raise ValueError(f"unknown image format {fmt!r}: use png or svg")
    inline = inline_spec(spec)
    if fmt == "svg":
        return vlc.vegalite_to_svg(inline).encode("utf-8")
    return vlc.vegalite_to_png(inline, scale=scale)


def spec_size(spec: dict) -> int:
    """Bytes of the chart's compact Vega-Lite JSON with its data inlined (what a plain HTML embed would carry)."""
    return len(json.dumps(inline_spec(spec), separators=(",", ":")).encode("utf-8"))


def arrow_size(df: pd.DataFrame) -> int:
    """Bytes of the frame as an Arrow IPC stream (what Streamlit sends to the browser)."""
    import pyarrow as pa

    sink = io.BytesIO()
    table = pa.Table.from_pandas(df, preserve_index=False)
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.tell()


def alignment_frames(matrix: np.ndarray, model_links, gold_links=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(target words, source words) shares and links {(source word, target word)} -> (cells: ti, si, weight;
    links: ti, si, by) where `by` is "model" or "gold"."""
    w = _numpy(matrix)
    ti, si = np.indices(w.shape).reshape(2, -1)
    cells = pd.DataFrame({"ti": ti, "si": si, "weight": w.reshape(-1)})
    rows = [(j, i, "model") for i, j in sorted(model_links)] + [(j, i, "gold") for i, j in sorted(gold_links or ())]
    return cells, pd.DataFrame(rows, columns=["ti", "si", "by"]).astype({"ti": "int64", "si": "int64"})


def alignment_chart(
    cells: pd.DataFrame,
    links: pd.DataFrame,
    source_words: list[str],
    target_words: list[str],
    title: str = "",
    cell: int = 30,
) -> alt.Chart:
    """Word-level cross-attention (target words down, source words across) with the links drawn on it as marks:
    the model's as small circles, gold ones as larger squares, so a gold link the model found shows both."""
    x = alt.X(**_axis("si", "English word", source_words, -45))
    y = alt.Y(**_axis("ti", "Italian word", target_words))
    words = {
        "source_word": f"{json.dumps(labels(source_words))}[datum.si]",
        "target_word": f"{json.dumps(labels(target_words))}[datum.ti]",
    }
    word_tips = [alt.Tooltip("target_word:N", title="Italian"), alt.Tooltip("source_word:N", title="English")]
    heat = (
        alt.Chart(cells)
        .mark_rect()
        .transform_calculate(**words)
        .encode(
            x=x,
            y=y,
            color=alt.Color("weight:Q", title="share", scale=alt.Scale(scheme=SCHEME, domain=[0, 1])),
            tooltip=[*word_tips, alt.Tooltip("weight:Q", format=".3f", title="share")],
        )
    )
    marks = (
        alt.Chart(links)
        .mark_point(filled=False, strokeWidth=2.5, opacity=1)
        .transform_calculate(**words)
        .encode(
            x=x,
            y=y,
            shape=alt.Shape(
                "by:N", title="link", scale=alt.Scale(domain=["model", "gold"], range=["circle", "square"])
            ),
            color=alt.Color(
                "by:N", title="link", scale=alt.Scale(domain=["model", "gold"], range=["#e45756", "#f2a900"])
            ),
            size=alt.Size("by:N", legend=None, scale=alt.Scale(domain=["model", "gold"], range=[60, 330])),
            tooltip=[alt.Tooltip("by:N", title="link"), *word_tips],
        )
    )
    size = {"width": max(160, cell * len(source_words)), "height": max(120, cell * len(target_words))}
    return (
        alt.layer(heat, marks)
        .resolve_scale(color="independent", shape="independent")
        .properties(title=alt.TitleParams(title, anchor="start", limit=800), autosize=PAD, **size)
    )


# ---- Beam search tree and what-if decoding ------------------------------------------------------------------

STATUS_COLORS = {"kept": "#4c78a8", "finished": "#2ca02c", "pruned": "#b9b9b9"}
CHOSEN_COLOR = "#f58518"


def tree_path(tree, node: int) -> list[int]:
    """Indices of the tree nodes from the root to `node` (tree: BeamNode sequence, parents first)."""
    path = []
    while node >= 0:
        path.append(node)
        node = tree[node].parent
    return path[::-1]


def beam_tree_frame(tree, id_to_token, chosen: int, hypothesis_ends: list[int]) -> pd.DataFrame:
    """One row per tree node: node, parent, step, rank (its place among its step's nodes, most likely path
    first), token, log_prob (of the path), prob (of its own token after its parent), status, chosen (on the
    path to node `chosen`), hypothesis (1-based rank of the hypothesis that ends there, 0 for none), and
    parent_step / parent_rank for the edge from its parent."""
    rank = {}
    for step in sorted({n.step for n in tree}):
        nodes = sorted((i for i, n in enumerate(tree) if n.step == step), key=lambda i: -tree[i].log_prob)
        rank.update({i: r for r, i in enumerate(nodes)})
    on_path = set(tree_path(tree, chosen)) if chosen >= 0 else set()
    ends = {end: r + 1 for r, end in enumerate(hypothesis_ends)}
    rows = []
    for i, n in enumerate(tree):
        parent = tree[n.parent] if n.parent >= 0 else None
        rows.append(
            {
                "node": i,
                "parent": n.parent,
                "step": n.step,
                "rank": rank[i],
                "token": id_to_token(n.token_id),
                "log_prob": n.log_prob,
                "prob": float(np.exp(n.log_prob - parent.log_prob)) if parent else 1.0,
                "status": n.status,
                "forced": n.forced,
                "chosen": i in on_path,
                "hypothesis": ends.get(i, 0),
                "parent_step": parent.step if parent else n.step,
                "parent_rank": rank[n.parent] if parent else rank[i],
            }
        )
    return pd.DataFrame(rows)


def beam_tree_chart(df: pd.DataFrame, plot_width: int = 620, row_height: int = 34) -> alt.Chart:
    """The beam search tree, top to bottom: one row per step, a step's nodes ranked left to right by path
    log-probability (best first), an edge to each node's parent. Kept nodes blue, finished hypotheses green
    squares (numbered by rank), pruned candidates grey with dashed edges, the chosen hypothesis's path orange.
    Hover a node for its token, probability and path log-probability; a click selects it (param "node").
    Columns share plot_width (44 to 110 px each); long tokens are cut with an ellipsis (hover shows them)."""
    steps, columns = int(df["step"].max()) + 1, int(df["rank"].max()) + 1
    column = max(44, min(110, plot_width // columns))
    x = alt.X("rank:Q", title=None, axis=None, scale=alt.Scale(domain=[-0.3, columns - 0.3]))
    y = alt.Y(
        "step:Q",
        title="step",
        scale=alt.Scale(reverse=True, domain=[-0.5, steps - 0.5], nice=False),
        axis=alt.Axis(tickMinStep=1, format="d", grid=False),
    )
    chosen = alt.datum.chosen
    edges = (
        alt.Chart(df)
        .transform_filter(alt.datum.parent >= 0)
        .mark_rule()
        .encode(
            x=x,
            y=y,
            x2="parent_rank:Q",
            y2="parent_step:Q",
            color=alt.condition(chosen, alt.value(CHOSEN_COLOR), alt.value("#c8c8c8")),
            strokeWidth=alt.condition(chosen, alt.value(3), alt.value(1)),
            strokeDash=alt.condition(alt.datum.status == "pruned", alt.value([3, 3]), alt.value([1, 0])),
        )
    )
    pick = alt.selection_point(name="node", fields=["node"], on="click")
    tooltip = [
        alt.Tooltip("token:N"),
        alt.Tooltip("step:Q"),
        alt.Tooltip("prob:Q", title="p(token)", format=".3f"),
        alt.Tooltip("log_prob:Q", title="path log-prob", format=".3f"),
        alt.Tooltip("status:N"),
        alt.Tooltip("hypothesis:Q", title="hypothesis (0: none)"),
    ]
    points = (
        alt.Chart(df)
        .mark_point(filled=True, size=90, opacity=1)
        .encode(
            x=x,
            y=y,
            color=alt.Color(
                "status:N",
                scale=alt.Scale(domain=list(STATUS_COLORS), range=list(STATUS_COLORS.values())),
                legend=alt.Legend(orient="top", title=None),
            ),
            shape=alt.condition(alt.datum.status == "finished", alt.value("square"), alt.value("circle")),
            stroke=alt.condition(chosen, alt.value(CHOSEN_COLOR), alt.value(None)),
            strokeWidth=alt.condition(chosen, alt.value(3), alt.value(0)),
            tooltip=tooltip,
        )
        .add_params(pick)
    )
    labels = [
        alt.Chart(df)
        .transform_filter(chosen if on_path else ~chosen)
        .mark_text(
            align="left",
            dx=7,
            dy=-8,
            fontSize=11,
            limit=column - 8,
            fontWeight="bold" if on_path else "normal",
            color=color,
        )
        .encode(x=x, y=y, text="token:N", tooltip=tooltip)
        for on_path, color in ((False, "#333333"), (True, CHOSEN_COLOR))
    ]
    numbers = (
        alt.Chart(df)
        .transform_filter(alt.datum.hypothesis > 0)
        .transform_calculate(label="'#' + datum.hypothesis")
        .mark_text(align="left", dx=7, dy=7, fontSize=10, fontWeight="bold", color=STATUS_COLORS["finished"])
        .encode(x=x, y=y, text="label:N")
    )
    return alt.layer(edges, points, *labels, numbers).properties(
        width=column * columns, height=max(120, row_height * steps), autosize=PAD
    )


def written_frame(tokens: list[str], probs: list[float], forced: int) -> pd.DataFrame:
    """Each written token's probability: position (1-based), token, probability, source ("forced" for the
    first `forced` ones, else "model")."""
    return pd.DataFrame(
        {
            "position": range(1, len(tokens) + 1),
            "token": tokens,
            "probability": np.asarray(probs, dtype=float),
            "source": ["forced" if i < forced else "model" for i in range(len(tokens))],
        }
    )


def written_chart(df: pd.DataFrame, width: int = 320) -> alt.Chart:
    """Bars of the probability the model gave each written token, forced ones in orange."""
    return (
        alt.Chart(df)
        .mark_bar()
        .encode(
            x=alt.X(
                "position:O",
                title=None,
                axis=alt.Axis(labelExpr=f"{json.dumps(list(df['token']))}[datum.value - 1]", labelAngle=-45),
            ),
            y=alt.Y("probability:Q", scale=alt.Scale(domain=[0, 1])),
            color=alt.Color(
                "source:N",
                scale=alt.Scale(domain=["model", "forced"], range=[STATUS_COLORS["kept"], CHOSEN_COLOR]),
                legend=alt.Legend(orient="top", title=None),
            ),
            tooltip=["position:O", "token:N", alt.Tooltip("probability:Q", format=".3f"), "source:N"],
        )
        .properties(width=max(160, min(width, 24 * len(df))), height=140, autosize=PAD)
    )


def head_values_frame(values: np.ndarray) -> pd.DataFrame:
    """(L, H) one number per head -> rows layer, head (1-based), value."""
    v = _numpy(values)
    layer, head = np.indices(v.shape).reshape(2, -1)
    return pd.DataFrame({"layer": layer + 1, "head": head + 1, "value": v.reshape(-1).astype(float)})


def head_values_grid(df: pd.DataFrame, title: str, cell: int = 44, diverging: bool = False) -> alt.Chart:
    """Layers down, heads across, each cell coloured by its value (in the tooltip); a click picks a head.

    diverging centres the colours on 0 (for changes such as the ablation's log-probability delta)."""
    scale = alt.Scale(scheme="redblue", domainMid=0) if diverging else alt.Scale(scheme=SCHEME)
    n_layers, n_heads = int(df["layer"].max()), int(df["head"].max())
    return (
        alt.Chart(df)
        .mark_rect(stroke="white")
        .encode(
            x=alt.X("head:O", title="head"),
            y=alt.Y("layer:O", title="layer"),
            color=alt.Color("value:Q", title="value", scale=scale),
            tooltip=[alt.Tooltip("layer:O"), alt.Tooltip("head:O"), alt.Tooltip("value:Q", title=title, format=".4f")],
        )
        .add_params(alt.selection_point(name="pick", fields=["layer", "head"], on="click"))
        .properties(title=title, width=cell * n_heads, height=cell * n_layers, autosize=PAD)
    )


def pruning_chart(curve: list[dict], title: str = "") -> alt.Chart:
    """chrF against the number of heads switched off (least important first)."""
    df = pd.DataFrame(curve)
    return (
        alt.Chart(df)
        .mark_line(point=True)
        .encode(
            x=alt.X("heads_off:Q", title="heads switched off (least important first)"),
            y=alt.Y("chrf:Q", title="chrF", scale=alt.Scale(domain=[0, 100])),
            tooltip=[alt.Tooltip("heads_off:Q", title="heads off"), alt.Tooltip("chrf:Q", format=".2f")],
        )
        .properties(title=title, width=420, height=220, autosize=PAD)
    )
