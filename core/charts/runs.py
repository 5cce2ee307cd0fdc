"""Charts of the Timeline and Compare pages: one kind's divergence over layers x heads, one head at every
checkpoint, and one statistic per checkpoint."""

from __future__ import annotations

import json

import altair as alt
import numpy as np
import pandas as pd

from core.charts.style import DIVERGENCE_SCHEME, PAD, altair_weight_scale, labels


def divergence_frame(grid: np.ndarray) -> pd.DataFrame:
    """(L, H) divergence -> rows layer, head (1-based), divergence."""
    layer, head = np.indices(grid.shape).reshape(2, -1)
    return pd.DataFrame({"layer": layer + 1, "head": head + 1, "divergence": np.asarray(grid, float).reshape(-1)})


def divergence_grid(df: pd.DataFrame, title: str, cell: int = 40, selectable: bool = True) -> alt.Chart:
    """Layers down, heads across, coloured by divergence on a fixed 0..1 bit scale (so kinds compare)."""
    base = alt.Chart(df).encode(
        x=alt.X("head:O", title="head", axis=alt.Axis(labelAngle=0)), y=alt.Y("layer:O", title="layer")
    )
    cells = base.mark_rect().encode(
        color=alt.Color(
            "divergence:Q",
            scale=alt.Scale(scheme=DIVERGENCE_SCHEME, domain=[0, 1], clamp=True),
            legend=None,  # the numbers are written in the cells; the scale is 0..1 bits for every kind
        ),
        tooltip=["layer:O", "head:O", alt.Tooltip("divergence:Q", format=".4f")],
    )
    if selectable:
        cells = cells.add_params(alt.selection_point(name="pick", fields=["layer", "head"], on="click"))
    text = base.mark_text(fontSize=9).encode(
        text=alt.Text("divergence:Q", format=".2f"),
        color=alt.condition("datum.divergence > 0.5", alt.value("white"), alt.value("black")),
    )
    n_layers, n_heads = df["layer"].nunique(), df["head"].nunique()
    return (cells + text).properties(title=title, width=cell * n_heads, height=cell * n_layers, autosize=PAD)


def epochs_frame(matrices: list[np.ndarray]) -> pd.DataFrame:
    """One (Tq, Tk) map per checkpoint -> rows position (0-based checkpoint), qi, ki, weight."""
    frames = []
    for position, matrix in enumerate(matrices):
        qi, ki = np.indices(matrix.shape).reshape(2, -1)
        frames.append(
            pd.DataFrame(
                {"position": position, "qi": qi, "ki": ki, "weight": np.asarray(matrix, np.float32).reshape(-1)}
            )
        )
    return pd.concat(frames, ignore_index=True)


def epochs_grid(
    df: pd.DataFrame, checkpoints: list[str], queries: list[str], keys: list[str], columns: int = 4, cell: int = 110
) -> alt.Chart:
    """Small multiples: the same head at every checkpoint, panels titled by checkpoint, in training order (4 a
    row: 5 of 110 px ran out of the page's column at 1024 px)."""
    query_labels, key_labels = json.dumps(labels(queries)), json.dumps(labels(keys))
    chart = (
        alt.Chart(df)
        .mark_rect()
        .transform_calculate(query_token=f"{query_labels}[datum.qi]", key_token=f"{key_labels}[datum.ki]")
        .encode(
            x=alt.X("ki:O", axis=alt.Axis(labels=False, ticks=False, title=None)),
            y=alt.Y("qi:O", axis=alt.Axis(labels=False, ticks=False, title=None)),
            color=alt.Color("weight:Q", scale=altair_weight_scale()),
            tooltip=[
                alt.Tooltip("query_token:N", title="query"),
                alt.Tooltip("key_token:N", title="key"),
                alt.Tooltip("weight:Q", format=".3f"),
            ],
        )
        .properties(width=cell, height=cell)
    )
    header = alt.Header(labelExpr=f"{json.dumps(checkpoints)}[datum.value]", title=None)
    return chart.facet(facet=alt.Facet("position:O", header=header), columns=columns).configure_legend(orient="bottom")


def series_chart(rows: pd.DataFrame, checkpoints: list[str], title: str, current: int | None = None) -> alt.Chart:
    """Rows position, value of one statistic -> a line over the checkpoints; `current` (0-based) marked."""
    x = alt.X(
        "position:O",
        title="checkpoint",
        axis=alt.Axis(labelExpr=f"{json.dumps(checkpoints)}[datum.value]", labelAngle=-90),
    )
    line = (
        alt.Chart(rows)
        .mark_line(point=True)
        .encode(
            x=x,
            y=alt.Y("value:Q", title=None, scale=alt.Scale(zero=False)),
            tooltip=[alt.Tooltip("checkpoint:N"), alt.Tooltip("value:Q", format=".4f")],
        )
    )
    layers = [line]
    if current is not None:
        layers.append(alt.Chart(pd.DataFrame({"position": [current]})).mark_rule(color="red").encode(x=x))
    fit = alt.AutoSizeParams(type="fit-x", contains="padding")  # stretched to its column, axes included
    # a long title on two lines ("Entropy" / "(nats, mean over rows)"): in a narrow column Vega cuts it with "..."
    lines = title.replace(" (", "\n(", 1).split("\n")
    return alt.layer(*layers).properties(
        title=alt.TitleParams(lines, anchor="start"), width=180, height=130, autosize=fit
    )
