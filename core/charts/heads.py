"""Head analyses: one measure over layers x heads, and the pruning curve."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from core.charts.style import PAD, SCHEME, as_array


def head_values_frame(values: np.ndarray) -> pd.DataFrame:
    """(L, H) one number per head -> rows layer, head (1-based), value."""
    v = as_array(values)
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
