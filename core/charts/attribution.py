"""Attribution charts: the share of each output token that came from the source, and a contrastive attribution
over the source tokens ("why this word and not that one")."""

from __future__ import annotations

import json

import altair as alt
import numpy as np
import pandas as pd

from core.charts.style import PAD, labels

LOW_COLOR, SHARE_COLOR = "#f58518", "#4c78a8"


AXIS_PX = 90  # a bar chart's y axis, its title and padding: what its natural width adds to the bars'


def bars_width(count: int, width: int) -> int:
    """The plot width of count bars of 22 px (160 px at least, width at most)."""
    return min(width, max(160, 22 * count))


def token_bars_x(field: str, title: str, tokens: list[str]) -> alt.X:
    """One upright-labelled bar per token along x ('position·token')."""
    axis = alt.Axis(labelExpr=f"{json.dumps(labels(tokens))}[datum.value]", labelAngle=-90)
    return alt.X(f"{field}:O", title=title, axis=axis)


def bars_size(count: int, width: int) -> dict:
    """Plot width and the natural width (usermeta, with the axis) of count bars: the app fits it to its column."""
    plot = bars_width(count, width)
    return {"width": plot, "autosize": PAD, "usermeta": {"natural_width": plot + AXIS_PX}}


def source_share_chart(tokens: list[str], shares: np.ndarray, low: list[bool], width: int = 1100) -> alt.Chart:
    """One bar per output token: the share of its prediction that came from the source (the rest came from the
    target prefix); the rows marked low in orange (no legend: the caption under it says which ones and why).
    Bars of 22 px up to width, the natural width (usermeta) with the axis: the app fits it to its column."""
    df = pd.DataFrame(
        {
            "row": range(len(tokens)),
            "token": labels(tokens),
            "share": np.asarray(shares, dtype=float),
            "low": ["low: written from its own prefix" if flag else "source" for flag in low],
        }
    )
    x = token_bars_x("row", "output token", tokens)
    return (
        alt.Chart(df)
        .mark_bar()
        .encode(
            x=x,
            y=alt.Y("share:Q", title="from the source", scale=alt.Scale(domain=[0, 1])),
            color=alt.Color(
                "low:N",
                title=None,
                scale=alt.Scale(domain=["source", "low: written from its own prefix"], range=[SHARE_COLOR, LOW_COLOR]),
                legend=None,
            ),
            tooltip=[
                alt.Tooltip("token:N", title="output token"),
                alt.Tooltip("share:Q", format=".3f", title="from the source"),
            ],
        )
        .properties(height=140, **bars_size(len(tokens), width))
    )


def contrastive_chart(tokens: list[str], scores: np.ndarray, title: str, width: int = 1100) -> alt.Chart:
    """Signed scores over the source tokens: blue for the chosen word, red for the other one (no legend: the
    caption under it says so). Bars of 22 px up to width, the natural width (usermeta) with the axis."""
    df = pd.DataFrame(
        {"position": range(len(tokens)), "token": labels(tokens), "score": np.asarray(scores, dtype=float)}
    )
    df["favours"] = np.where(df["score"] >= 0, "the chosen word", "the other word")
    x = token_bars_x("position", "source token", tokens)
    return (
        alt.Chart(df)
        .mark_bar()
        .encode(
            x=x,
            y=alt.Y("score:Q", title="log-probability difference"),
            color=alt.Color(
                "favours:N",
                title=None,
                scale=alt.Scale(domain=["the chosen word", "the other word"], range=["#2171b5", "#e45756"]),
                legend=None,
            ),
            tooltip=[alt.Tooltip("token:N", title="source token"), alt.Tooltip("score:Q", format="+.3f")],
        )
        .properties(
            title=alt.TitleParams(title, anchor="start", limit=800), height=160, **bars_size(len(tokens), width)
        )
    )
