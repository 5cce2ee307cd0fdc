"""The Compare page's choices (the models it can pick, the pair it opens on) and its result: both translations,
every head's divergence (a click picks a head), the chosen head of A, of B and A - B, the heads that changed most."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core import CheckpointError, charts
from core.analysis.divergence import most_changed
from core.attention import KIND, KINDS
from ui import state, widgets
from ui.models import (
    PRETRAINED,
    UPLOAD,
    ActiveModel,
    find_runs,
    load_option,
    model_options,
    session_pretrained,
    session_upload,
)
from ui.text import md_code, md_text


def options() -> tuple[dict, dict]:
    """(choice -> checkpoint path, or None for this session's upload or Hugging Face model; choice -> label)."""
    files = model_options()
    choices: dict = dict(files)
    labels = {name: name for name in files}
    if st.session_state.get("upload"):
        choices[UPLOAD], labels[UPLOAD] = None, f"{st.session_state['upload']['name']} (uploaded)"
    if st.session_state.get(PRETRAINED):
        choices[PRETRAINED], labels[PRETRAINED] = None, f"{st.session_state[PRETRAINED]} (Hugging Face)"
    return choices, labels


def resolve(choice: str, choices: dict) -> ActiveModel | None:
    """The model behind a choice, or None after saying why it cannot load."""
    if choice in (UPLOAD, PRETRAINED):
        model = session_upload() if choice == UPLOAD else session_pretrained()
        if model is None:
            st.warning("That model was unloaded to make room for others: open it again on the Models page.")
        return model
    try:
        return load_option(choices[choice])
    except (CheckpointError, OSError) as exc:
        st.warning(f"Cannot load {md_code(choice)}: {md_text(exc)}")
        return None


def default_pair(choices: dict) -> tuple[str, str, str]:
    """(A, B, what to look for) when the session has not chosen: the active model and the checkpoint before it in
    its run (after it, for the first); else, with a training run in the folder, its last and first checkpoints;
    else the active model and the first other one."""
    names = list(choices)
    chosen = st.session_state.get("model_choice")
    a = next(
        (n for n, p in choices.items() if p is not None and str(p) == chosen), chosen if chosen in names else names[0]
    )
    name_of = {p: n for n, p in choices.items() if p is not None}
    runs = find_runs()
    for run in runs:
        paths = [c.path for c in run.checkpoints]
        if choices.get(a) in paths:
            i = paths.index(choices[a])
            neighbour = paths[i - 1] if i else paths[1]
            return a, name_of[neighbour], "A is the active model, B the checkpoint before it in its training run."
    if runs:  # A the trained end: both decoders read what it writes
        first, last = runs[0].checkpoints[0], runs[0].checkpoints[-1]
        return (
            name_of[last.path],
            name_of[first.path],
            f"A is the last checkpoint of a training run ({last.label}), B its first ({first.label}): the heads "
            "with the largest divergence are the ones training changed most; click one to see both maps.",
        )
    return a, next((n for n in names if n != a), names[0]), ""


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
