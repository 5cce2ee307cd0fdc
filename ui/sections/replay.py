"""Greedy decoding step by step (Steps page): one decoder row's attention and its five candidates, each a button
that forces it there (what-if), and the model's own decoding beside the forced one."""

from __future__ import annotations

import math

import streamlit as st

from core import charts
from core.analysis.attribution import contrastive
from core.analysis.relevance import row_outputs
from ui import state, widgets
from ui.models import ActiveModel
from ui.text import cut_list, md_code, md_text


def move(delta: int, last: int) -> None:
    view = state.view_state()
    view["step"] = min(max(int(view.get("step", 1)) + delta, 1), last)


def force(row: int, token_id: int, written: list[int]) -> None:
    """Write token_id at decoder row `row` instead, keeping what came before it; the model goes on from there."""
    view = state.view_state()
    view["forced"] = {"sentence": view["sentence"].strip(), "prefix": [*written[:row], token_id]}


def unforce() -> None:
    state.view_state().pop("forced", None)


def forced_prefix(sentence: str) -> list[int]:
    """The forced tokens for this sentence (none once the sentence changed)."""
    forced = state.view_state().get("forced")
    return list(forced["prefix"]) if forced and forced["sentence"] == sentence else []


def written_probs(result) -> list[float]:
    """The probability the model gave each token written in result (forced ones too)."""
    if result.beam_tree:
        tree = result.beam_tree
        path = charts.tree_path(tree, result.hypotheses[0].node)
        return [math.exp(tree[b].log_prob - tree[a].log_prob) for a, b in zip(path, path[1:])]
    return [float(result.top_probs[row, 0]) for row in range(len(result.output_ids))]


@st.fragment
def replay(model: ActiveModel, result, sentence: str, prefix: tuple[int, ...]) -> None:
    """The step slider over result's decoder rows: attention of one row, its five candidates, each one a button
    that forces it there. A fragment: Prev, Next and the sliders rerun only this part; a forced token (a new
    prefix, so a new decoding) reruns the whole page."""
    if tuple(forced_prefix(sentence)) != prefix:
        st.rerun()
    steps, cfg, tgt = len(result.target_tokens), model.bundle.config, model.bundle.tgt_tokenizer
    prev, slider, nxt = st.columns([2, 7, 2], vertical_alignment="bottom")  # room for the labels at 1024 px
    prev.button("◀ Prev", key="prev", on_click=move, args=(-1, steps))
    nxt.button("Next ▶", key="next", on_click=move, args=(1, steps))
    with slider:
        step = widgets.index_slider("Step", steps, "step")
    row = step - 1
    written = result.output_ids
    chosen_id = written[row] if row < len(written) else int(result.top_ids[row, 0])  # the last row may write nothing
    probs = written_probs(result)
    p = probs[row] if row < len(probs) else float(result.top_probs[row, 0])
    fed = cut_list([md_code(t) for t in result.target_tokens[: row + 1]], 30, " ")
    how = " (forced)" if row < result.prefix_length else ""
    st.markdown(
        f"Step **{step}** of {steps}: the decoder has read {fed} and writes **{md_code(tgt.id_to_token(chosen_id))}**{how} "
        f"(p = {p:.3f})."
    )
    layer = widgets.index_slider("Layer", cfg.n_layers, "step_layer")
    state.set_link("steps", {"sentence": sentence, "step": step, "layer": layer})
    cross, self_rows = charts.step_frames(result.attention, layer, row)
    st.caption(
        f"Both rows are step {step}: the decoder has just read {md_code(result.target_tokens[row])} and "
        f"predicts the next token ({md_code(tgt.id_to_token(chosen_id))}). Each row of heads sums to 1."
    )
    left, right = st.columns([3, 2])
    with left:
        st.markdown(f"**Cross attention over the source** · layer {layer}")
        widgets.draw(charts.row_heatmap(cross, result.source_tokens))
        st.markdown(f"**Decoder self attention over its input** · layer {layer}")
        widgets.draw(charts.row_heatmap(self_rows, result.target_tokens[: row + 1]))
    with right:
        result_key = (sentence, prefix)
        candidates(result, row, chosen_id, tgt, result_key)
        why_not(model, result, row, result_key)


def ask_why_not(row: int, foil: int, result_key: tuple) -> None:
    state.view_state()["why_not"] = {"result": result_key, "row": row, "foil": foil}


def candidates(result, row: int, chosen_id: int, tgt, result_key: tuple) -> None:
    """The five most likely next tokens of a row, each a button that forces it there (what-if), and beside each
    other one a "why not?" button: why the model wrote its token rather than that one."""
    top = charts.candidates_frame(result.top_ids, result.top_probs, row, tgt.id_to_token)
    st.markdown("**Five most likely next tokens**")
    widgets.draw(charts.candidates_chart(top))
    st.caption(
        "What if it wrote another one? Click a candidate to force it here and see how the model goes on; "
        "**why not?** shows which source words made the model prefer its own token."
    )
    for rank, (token_id, token, prob) in enumerate(
        zip(result.top_ids[row].tolist(), top["token"], top["probability"]), 1
    ):
        written = token_id == chosen_id
        pick, why = st.columns([3, 2], vertical_alignment="center")
        pick.button(
            f"{rank}. {md_text(token)} · {prob:.3f}",
            key=f"force_{rank}",
            on_click=force,
            args=(row, token_id, result.output_ids),
            disabled=written,
            help="the token written here" if written else "force this token here and decode on from it",
            width="stretch",
        )
        why.button(
            "why not?",
            key=f"why_{rank}",
            on_click=ask_why_not,
            args=(row, token_id, result_key),
            disabled=written,
            help=None if written else "why the model wrote its token here rather than this one",
            width="stretch",
        )


@st.cache_data(max_entries=64, show_spinner=False)
def cached_contrast(model_key: str, result_key: tuple, row: int, foil: int, _bundle, _result):
    scores, difference = contrastive(_bundle, _result, row, foil)
    return scores.numpy(), difference


def why_not(model: ActiveModel, result, row: int, result_key: tuple) -> None:
    """The contrastive attribution asked for at this row, if any (integrated gradients of the difference)."""
    asked = state.view_state().get("why_not") or {}
    if asked.get("result") != result_key or asked.get("row") != row:
        return
    tgt = model.bundle.tgt_tokenizer
    chosen = tgt.id_to_token(row_outputs(result)[row])
    foil = tgt.id_to_token(asked["foil"])
    with st.spinner("Attributing the difference to the source (integrated gradients)…"):
        scores, difference = cached_contrast(model.key, result_key, row, asked["foil"], model.bundle, result)
    title = f"Why {chosen} and not {foil}?"
    widgets.draw(charts.contrastive_chart(result.source_tokens, scores, title), stretch=True)
    st.caption(
        f"log p({md_code(chosen)}) - log p({md_code(foil)}) = {difference:.3f} here. Blue source tokens pushed towards "
        f"{md_code(chosen)}, red ones towards {md_code(foil)}; the bars add up to that difference minus the difference "
        "the model shows with every English word's embedding zeroed (integrated gradients, Captum)."
    )


def compare(model: ActiveModel, original, forced) -> None:
    """The model's own decoding next to the forced one: text, the probability of each written token, and the
    cross-attention (mean of the heads of the replay's layer) of every row."""
    layer = state.view_state().get("step_layer", 1)
    tgt = model.bundle.tgt_tokenizer
    st.subheader("Model's own vs. forced")
    forced_token = tgt.id_to_token(forced.output_ids[forced.prefix_length - 1])
    # side by side where both fit at their own width, else one under the other (two columns squeezed the maps)
    sides = st.container(horizontal=True, gap="medium")
    for title, result in zip(("The model's own decoding", f"With {md_code(forced_token)} forced"), (original, forced)):
        with sides, st.container(width="content"):
            st.markdown(f"**{title}**")
            st.text(result.translation)
            st.caption(f"log-probability of the whole output: {result.hypotheses[0].log_prob:.3f}")
            tokens = [tgt.id_to_token(i) for i in result.output_ids]
            written = charts.written_frame(tokens, written_probs(result), result.prefix_length)
            widgets.draw(charts.written_chart(written), stretch=True)
            mean_map(result.attention, widgets.HeadRef("cross", layer, None), 220)


def mean_map(att, ref: widgets.HeadRef, plot_width: int = 360) -> None:
    """The mean over heads of one layer's maps, with cells small enough for the longer side to fit plot_width."""
    queries, keys = att.queries(ref.kind), att.keys(ref.kind)
    st.markdown(f"**{ref.title}**")  # above, not in the chart: a short sentence's chart is narrower than the title
    widgets.draw(
        widgets.head_heatmap(att, ref, "", cell=charts.fit_cell(max(len(queries), len(keys)), plot_width, 6))[1]
    )
