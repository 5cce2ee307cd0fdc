"""The Compare page's result: both translations, every head's divergence (a click picks a head), the chosen head of
A, of B and A - B, and the heads that changed most."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core import charts
from core.analysis.divergence import most_changed
from core.attention import KIND, KINDS
from ui import state, widgets
from ui.models import ActiveModel
from ui.text import md_code


def show(result, models: tuple[ActiveModel, ActiveModel], linked: dict) -> None:
    """Both translations, every head's divergence, the chosen head of A, of B and A - B, the heads that moved."""
    view = state.view_state()
    left, right = st.columns(2)
    for col, letter, model, text in zip((left, right), "AB", models, (result.translation_a, result.translation_b)):
        col.markdown(f"**Model {letter}**")
        col.text(f"{model.label}\n{text}")
    att_a, att_b = result.attention_a, result.attention_b
    if result.level == "word":
        st.info(
            "The two models read different tokens, so they are compared **word by word**: both are fed "
            f"{result.decoder_input} through their own tokenizers, and each map becomes a map over the sentence's "
            "words and the translation's words (a word's rows averaged, its columns summed, start and end tokens "
            "left out). A row is a translation word, read at the steps that predict its tokens."
        )
    fed = "words" if result.level == "word" else "decoder input"
    st.caption(
        f"Both decoders are fed {result.decoder_input}; the rows ({fed}): "
        + " ".join(md_code(t) for t in charts.labels(att_a.target_tokens))
        + ". Divergence: Jensen-Shannon of A's and B's rows, log base 2 (0 = the same map, 1 = no key in common), "
        "averaged over the rows of each head."
    )
    st.subheader("Divergence of every head")
    st.caption("Click a cell to show that head below.")
    grids = st.container(horizontal=True, gap="medium")  # side by side where they fit, else on the next row
    for kind in KINDS:
        grid = charts.divergence_grid(charts.divergence_frame(result.divergence[kind]), KIND[kind].label)
        pick = lambda kind=kind: widgets.focus_picked_head(f"grid_{kind}", kind=kind)
        with grids:
            widgets.draw(grid, key=f"grid_{kind}", on_select=pick, selection_mode="pick")
    ref = widgets.head_picker(att_a.n_layers, att_a.n_heads)
    state.set_link(
        "compare",
        {"a": view["compare_a"], "b": view["compare_b"]}
        | linked
        | {"kind": ref.kind, "layer": ref.layer, "head": ref.head},
    )
    js = result.divergence[ref.kind][ref.layer - 1, ref.head - 1]
    st.markdown(f"**{ref.title}**: divergence {js:.4f} bits")
    maps = st.container(horizontal=True, gap="medium")  # each at its own width, wrapping where they do not fit
    for att, name in ((att_a, "A"), (att_b, "B")):
        with maps:
            widgets.draw(widgets.head_heatmap(att, ref, name, plot_width=260)[1], key=f"head_{name}")
    queries, keys = att_a.queries(ref.kind), att_a.keys(ref.kind)
    a, b = (charts.head_matrix(att, ref.kind, ref.layer, ref.head) for att in (att_a, att_b))
    with maps:
        widgets.draw(
            charts.difference_heatmap(a, b, queries, keys, "A - B (red: A more)", plot_width=260), key="head_diff"
        )
    st.subheader("Heads that changed most")
    top = most_changed(result.divergence, top=10)
    rows = [{"kind": KIND[k].label, "layer": la, "head": h, "divergence (bits)": round(v, 4)} for k, la, h, v in top]
    st.dataframe(pd.DataFrame(rows), hide_index=True)
