"""Head analyses: one measure or each head's role over layers x heads, and the pruning curve."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from core.analysis.head_roles import ROLE_NAMES
from core.charts.style import PAD, SCHEME, as_array

# One colour per role on every kind's grid; mixed is grey.
ROLE_COLORS = {
    "previous token": "#1f77b4",
    "next token": "#17becf",
    "same token": "#9467bd",
    "rare words": "#e377c2",
    "alignment": "#2ca02c",
    "sink": "#ff7f0e",
    "broad": "#bcbd22",
    "mixed": "#d0d0d0",
}


def head_values_frame(values: np.ndarray) -> pd.DataFrame:
    """(L, H) one number per head -> rows layer, head (1-based), value."""
    v = as_array(values)
    layer, head = np.indices(v.shape).reshape(2, -1)
    return pd.DataFrame({"layer": layer + 1, "head": head + 1, "value": v.reshape(-1).astype(float)})


def _role_tooltips(df: pd.DataFrame) -> list[alt.Tooltip]:
    return [alt.Tooltip(f"{name}:N") for name in ("role", "evidence") if name in df.columns]


def _head_grid(df: pd.DataFrame, title: str, color: alt.Color, tooltip: list, cell: int) -> alt.Chart:
    n_layers, n_heads = int(df["layer"].max()), int(df["head"].max())
    return (
        alt.Chart(df)
        .mark_rect(stroke="white")
        .encode(x=alt.X("head:O", title="head"), y=alt.Y("layer:O", title="layer"), color=color, tooltip=tooltip)
        .add_params(alt.selection_point(name="pick", fields=["layer", "head"], on="click"))
        .properties(title=title, width=cell * n_heads, height=cell * n_layers, autosize=PAD)
    )


def head_values_grid(df: pd.DataFrame, title: str, cell: int = 44, diverging: bool = False) -> alt.Chart:
    """Layers down, heads across, each cell coloured by its value (in the tooltip, with the head's role and its
    evidence when df has `role` and `evidence` columns); a click picks a head.

    diverging centres the colours on 0 (for changes such as the ablation's log-probability delta)."""
    scale = alt.Scale(scheme="redblue", domainMid=0) if diverging else alt.Scale(scheme=SCHEME)
    tooltip = [alt.Tooltip("layer:O"), alt.Tooltip("head:O"), alt.Tooltip("value:Q", title=title, format=".4f")]
    return _head_grid(df, title, alt.Color("value:Q", title="value", scale=scale), tooltip + _role_tooltips(df), cell)


def head_roles_grid(df: pd.DataFrame, title: str = "Role", cell: int = 44) -> alt.Chart:
    """The same grid coloured by each head's role (df's `role` column; `evidence` in the tooltip), one colour per
    role on every grid, the legend listing the roles present."""
    present = [name for name in ROLE_NAMES if name in set(df["role"])]
    scale = alt.Scale(domain=present, range=[ROLE_COLORS[name] for name in present])
    color = alt.Color("role:N", title="role", scale=scale, sort=present)
    return _head_grid(df, title, color, [alt.Tooltip("layer:O"), alt.Tooltip("head:O"), *_role_tooltips(df)], cell)


def pruning_chart(curve: list[dict], title: str = "") -> alt.Chart:
    """chrF against the number of heads switched off (least important first); a point's `roles_off` (the roles
    of the heads that step switched off), when given, is in its tooltip."""
    df = pd.DataFrame(curve)
    tooltip = [alt.Tooltip("heads_off:Q", title="heads off"), alt.Tooltip("chrf:Q", format=".2f")]
    if "roles_off" in df.columns:
        tooltip.append(alt.Tooltip("roles_off:N", title="this step switched off"))
    return (
        alt.Chart(df)
        .mark_line(point=True)
        .encode(
            x=alt.X("heads_off:Q", title="heads switched off (least important first)"),
            y=alt.Y("chrf:Q", title="chrF", scale=alt.Scale(domain=[0, 100])),
            tooltip=tooltip,
        )
        .properties(title=title, width=420, height=220, autosize=PAD)
    )
