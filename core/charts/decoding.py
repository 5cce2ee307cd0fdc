"""Decoding charts: the five candidates of a step, the beam search tree, the probability of each written token."""

from __future__ import annotations

import json

import altair as alt
import numpy as np
import pandas as pd

from core.charts.style import FIT_X, PAD, as_array, tip


def candidates_frame(top_ids, top_probs, row: int, id_to_token) -> pd.DataFrame:
    """The five most likely next tokens of one decoder row: rank, token, probability."""
    probs, ids = as_array(top_probs[row]), [int(i) for i in top_ids[row]]
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
                tip("token", "token"),
                tip("probability", "probability", "quantitative", format=".3f"),
            ],
        },
        "width": 240,
        "height": 30 * len(df),
        "autosize": FIT_X,
        "usermeta": {"natural_width": 340},
    }


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


def written_chart(df: pd.DataFrame, width: int = 1100) -> alt.Chart:
    """Bars of the probability the model gave each written token, forced ones in orange; bars of 24 px up to
    width, the natural width (usermeta) with the axis: the app fits it to its column. Labels stand upright, so
    that short sentences keep every one."""
    return (
        alt.Chart(df)
        .mark_bar()
        .encode(
            x=alt.X(
                "position:O",
                title=None,
                axis=alt.Axis(labelExpr=f"{json.dumps(list(df['token']))}[datum.value - 1]", labelAngle=-90),
            ),
            y=alt.Y("probability:Q", scale=alt.Scale(domain=[0, 1])),
            color=alt.Color(
                "source:N",
                scale=alt.Scale(domain=["model", "forced"], range=[STATUS_COLORS["kept"], CHOSEN_COLOR]),
                legend=alt.Legend(orient="top", title=None),
            ),
            tooltip=["position:O", "token:N", alt.Tooltip("probability:Q", format=".3f"), "source:N"],
        )
        .properties(
            width=max(160, min(width, 24 * len(df))),
            height=140,
            autosize=PAD,
            usermeta={"natural_width": max(160, min(width, 24 * len(df))) + 80},
        )
    )
