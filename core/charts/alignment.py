"""Word alignment: word-level cross-attention with the model's links (and gold ones) drawn over it."""

from __future__ import annotations

import json

import altair as alt
import numpy as np
import pandas as pd

from core.charts.style import PAD, altair_weight_scale, as_array, fit_cell, labels, token_axis

AXIS_PX, LEGEND_PX = 110, 90  # the Italian word axis with its title; the share and link legends


def alignment_frames(matrix: np.ndarray, model_links, gold_links=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(target words, source words) shares and links {(source word, target word)} -> (cells: ti, si, weight;
    links: ti, si, by) where `by` is "model" or "gold"."""
    w = as_array(matrix)
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
    cell: int | None = None,
    plot_width: int = 760,
) -> alt.Chart:
    """Word-level cross-attention (target words down, source words across) with the links drawn on it as marks:
    the model's as small circles, gold ones as larger squares, so a gold link the model found shows both. Cells
    are 30 px, or smaller (8 px at least) for the source side to fit plot_width."""
    cell = cell or fit_cell(len(source_words), plot_width, 8, 30)
    x = alt.X(**token_axis("si", "English word", source_words, -90))
    y = alt.Y(**token_axis("ti", "Italian word", target_words))
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
            color=alt.Color("weight:Q", title="share", scale=altair_weight_scale()),
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
    # the natural width (plot, the Italian axis, the two legends): the app fits the chart to its column if narrower
    natural = size["width"] + AXIS_PX + LEGEND_PX
    return (
        alt.layer(heat, marks)
        .resolve_scale(color="independent", shape="independent")
        .properties(
            title=alt.TitleParams(title, anchor="start", limit=800),
            autosize=PAD,
            usermeta={"natural_width": natural},
            **size,
        )
    )
