"""What every chart shares: the colour of an attention weight (one scale everywhere, in Vega and in tile
images), token labels that keep repeated tokens apart, axis and tooltip pieces, and the sizing rules.

Colour of a weight: white at 0, then light to dark blue, with stops evenly spaced in sqrt(weight), so that weights
near 0 (0.02 vs 0) already differ; interpolated in RGB both in Vega and in tile images.
"""

from __future__ import annotations

import json

import altair as alt
import numpy as np
import pandas as pd
from torch import Tensor

# Colour of a weight: white at 0, then light to dark blue, with stops evenly spaced in sqrt(weight), so
# that weights near 0 (0.02 vs 0) already differ; interpolated in RGB both in Vega and in tile images.
COLOR_STOPS = (0.0, 0.0625, 0.25, 0.5625, 1.0)


COLORS = ("#ffffff", "#c6dbef", "#6baed6", "#2171b5", "#08306b")


MASK_COLOR = "#bdbdbd"  # a cell the decoder cannot see (a later token): grey, never the white of a zero weight


TITLE_EXPR = "length(data('cells')) ? data('cells')[0].title : ''"  # a heatmap's title, from its data


FIT_X = {"type": "fit-x", "contains": "padding"}  # the whole chart (axes, legend) fits the width it is given


LEGEND_PX = 70  # a right-hand weight legend


LABEL_PX = 7  # per character of an axis label, at the axes' 11 px font


PAD = alt.AutoSizeParams(type="pad")  # Altair charts: width/height size the plot; axes and legend come on top


def as_array(weights: Tensor | np.ndarray) -> np.ndarray:
    if isinstance(weights, Tensor):
        weights = weights.detach().float().cpu().numpy()
    return np.asarray(weights, dtype=np.float32)


def labels(tokens: list[str]) -> list[str]:
    """Axis labels that keep repeated tokens apart: '3·gatto'."""
    return [f"{i}·{t}" for i, t in enumerate(tokens)]


def labels_json(tokens: list[str]) -> str:
    """labels(tokens) as a JSON array, for a Vega expression (json.dumps escapes what Vega would read)."""
    return json.dumps(labels(tokens))


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


SCHEME = "blues"  # other sequential measures (head statistics), never attention weights
DIVERGENCE_SCHEME = "oranges"  # Jensen-Shannon divergence, 0..1 bit
DIFFERENCE_SCHEME = "redblue"  # A - B, -1..1


def altair_weight_scale() -> alt.Scale:
    """color_scale() for Altair charts: the same colours of attention weights as every other chart."""
    return alt.Scale(domain=list(COLOR_STOPS), range=list(COLORS), interpolate="rgb", clamp=True)


def color_scale() -> dict:
    return {"domain": list(COLOR_STOPS), "range": list(COLORS), "interpolate": "rgb", "clamp": True}


def weight_colors(weights: np.ndarray) -> np.ndarray:
    """(...) weights -> (..., 3) uint8 RGB, the same colours Vega draws with color_scale()."""
    stops = np.array([[int(c[i : i + 2], 16) for i in (1, 3, 5)] for c in COLORS], dtype=np.float32)  # (5, 3)
    w = np.clip(as_array(weights), 0.0, 1.0)
    rgb = np.stack([np.interp(w, COLOR_STOPS, stops[:, channel]) for channel in range(3)], axis=-1)
    return np.rint(rgb).astype(np.uint8)


def token_axis(field: str, title: str, tokens: list[str], angle: int = 0) -> dict:
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


def label_axis(field: str, title: str, angle: int = 0) -> dict:
    """An ordinal axis over a column of 'position·token' labels, in the data's order (rows come sorted by
    position); labels that would overlap are thinned (every cell keeps its tooltip)."""
    axis = {"labelAngle": angle, "labelLimit": 90, "labelOverlap": "greedy", "labelFontSize": 11}
    return {"field": field, "type": "ordinal", "sort": None, "title": title, "axis": axis}


def repeated(text: str, n: int) -> pd.Categorical:
    """One text for each of n rows, sent once (an Arrow dictionary of one entry)."""
    return pd.Categorical.from_codes(np.zeros(n, dtype=np.int8), [text])


def tip(field: str, title: str, kind: str = "nominal", **extra) -> dict:
    return {"field": field, "type": kind, "title": title, **extra}
