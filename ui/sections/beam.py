"""Beam search (Steps page): beam size and length penalty, the hypotheses, the search tree (a click shows the best
hypothesis through a node) and the attention of the hypothesis picked."""

from __future__ import annotations

import streamlit as st

from core import charts
from core.attention import KIND
from ui import results, state, widgets
from ui.models import ActiveModel
from ui.sections.replay import mean_map
from ui.text import md_text


def pick_node(hypothesis_paths: list[set[int]]) -> None:
    """A click on a tree node shows the best hypothesis whose path goes through it."""
    point = widgets.picked("beam_tree", "node")
    if point and "node" in point:
        through = [i for i, path in enumerate(hypothesis_paths) if int(point["node"]) in path]
        if through:
            state.view_state()["beam_pick"] = through[0]


def beam_view(model: ActiveModel, sentence: str) -> None:
    cfg, tgt, view = model.bundle.config, model.bundle.tgt_tokenizer, state.view_state()
    size, penalty = st.columns(2)
    beam_size = size.slider("Beam size", 2, 8, **state.bound("beam_size", 4))
    alpha = penalty.slider(
        "Length penalty α (GNMT; 0: none)",
        0.0,
        2.0,
        step=0.1,
        help="hypotheses rank by log-probability / ((5 + length) / 6) ** α: a larger α favours longer ones",
        **state.bound("length_penalty", 0.0),
    )
    with st.spinner("Searching…"):
        result = results.run_search(model, sentence, beam_size, alpha)
    if result is None:
        return
    hyps, tree = result.hypotheses, result.beam_tree
    view["beam_pick"] = min(int(view.get("beam_pick", 0)), len(hyps) - 1)
    pick = st.radio(
        "Hypotheses, best first (score = log-probability / length penalty)",
        range(len(hyps)),
        format_func=lambda i: (
            f"#{i + 1} · {md_text(hyps[i].translation)} · score {hyps[i].score:.3f}"
            + ("" if hyps[i].finished else " (cut at the length limit)")
        ),
        **state.bound("beam_pick", 0),
    )
    hyp = hyps[pick]
    st.markdown(f"**Beam search tree** · beam {beam_size}, {len(tree)} nodes scored")
    st.caption(
        "Each row is a step; its nodes are the candidates the search scored, best path on the left. Blue: kept in "
        "the beam; green squares: finished hypotheses (#rank); grey, dashed: pruned. The chosen hypothesis is "
        "orange. Hover a node for its probability; click one to show the best hypothesis through it."
    )
    frame = charts.beam_tree_frame(tree, tgt.id_to_token, hyp.node, [h.node for h in hyps])
    paths = [set(charts.tree_path(tree, h.node)) for h in hyps]
    chart = charts.beam_tree_chart(frame, plot_width=560)
    widgets.draw(chart, key="beam_tree", on_select=lambda: pick_node(paths), selection_mode="node", stretch=True)
    st.subheader(f"Attention of hypothesis #{pick + 1}")
    st.text(hyp.translation)
    ref = widgets.head_picker(cfg.n_layers, cfg.n_heads, prefix="beam_", heads=False)
    mean_map(hyp.attention, ref)
    att = hyp.attention
    st.markdown(f"**All heads of layer {ref.layer}**")
    grid = charts.heads_grid(
        att.weights(ref.kind)[ref.layer - 1],
        att.queries(ref.kind),
        att.keys(ref.kind),
        columns=min(4, cfg.n_heads),
        layer=ref.layer,
        causal=KIND[ref.kind].causal,
    )
    widgets.draw(grid)
