"""Decoding step by step: what the decoder looked at, and what it considered, for each generated token."""

import streamlit as st

import ui
from core import charts


def move(delta: int, last: int) -> None:
    view = ui.view_state()
    view["step"] = min(max(int(view.get("step", 1)) + delta, 1), last)


def restore_from_url(n_layers: int) -> None:
    """On a session's first visit to this page, take sentence, step and layer from the link (as the
    Translate page does); the step is checked against the sentence's length once it is translated."""
    view, params = ui.view_state(), st.query_params
    if not ui.restore_once("steps"):
        return
    if params.get("sentence"):
        view["sentence"] = params["sentence"]
    if str(params.get("step", "")).isdigit() and int(params["step"]) >= 1:
        view["step"] = int(params["step"])
    if str(params.get("layer", "")).isdigit() and 1 <= int(params["layer"]) <= n_layers:
        view["step_layer"] = int(params["layer"])


def page() -> None:
    st.title("Decoding step by step")
    model = ui.require_model()
    if model is None:
        return
    cfg = model.bundle.config
    restore_from_url(cfg.n_layers)
    st.text_input("Sentence (English)", **ui.bound("sentence", ui.EXAMPLES[1]))
    sentence = ui.view_state()["sentence"].strip()
    if not sentence:
        st.query_params.clear()  # a copied link must not bring back an earlier sentence
        st.info("Type an English sentence.")
        return
    st.query_params.from_dict({"sentence": sentence})  # refined below once the step is known
    if ui.too_long(sentence, "sentence"):
        return
    result = ui.run_translation(model, sentence)  # greedy output, the same cached result as the Translate page
    if result is None:
        return
    st.markdown(f"**Translation:** {ui.md_text(result.translation)}")
    steps = len(result.target_tokens)
    prev, slider, nxt = st.columns([2, 7, 2], vertical_alignment="bottom")  # room for the labels at 1024 px
    prev.button("◀ Prev", key="prev", on_click=move, args=(-1, steps))
    nxt.button("Next ▶", key="next", on_click=move, args=(1, steps))
    with slider:
        step = ui.index_slider("Step", steps, "step")
    row = step - 1
    tgt = model.bundle.tgt_tokenizer
    chosen = tgt.id_to_token(int(result.top_ids[row, 0]))
    fed = ui.cut_list([ui.md_code(t) for t in result.target_tokens[: row + 1]], 30, " ")
    st.markdown(
        f"Step **{step}** of {steps}: the decoder has read {fed} and writes **{ui.md_code(chosen)}** "
        f"(p = {float(result.top_probs[row, 0]):.3f})."
    )

    layer = ui.index_slider("Layer", cfg.n_layers, "step_layer")
    st.query_params.from_dict({"sentence": sentence, "step": step, "layer": layer})
    cross, self_rows = charts.step_frames(result.attention, layer, row)
    st.caption(
        f"Both rows are step {step}: the decoder has just read {ui.md_code(result.target_tokens[row])} and "
        f"predicts the next token ({ui.md_code(chosen)}). Each row of heads sums to 1."
    )
    left, right = st.columns([3, 2])
    with left:
        st.markdown(f"**Cross attention over the source** · layer {layer}")
        ui.show_chart(charts.row_heatmap(cross, result.source_tokens))
        st.markdown(f"**Decoder self attention over its input** · layer {layer}")
        ui.show_chart(charts.row_heatmap(self_rows, result.target_tokens[: row + 1]))
    with right:
        top = charts.candidates_frame(result.top_ids, result.top_probs, row, tgt.id_to_token)
        st.markdown("**Five most likely next tokens**")
        ui.show_chart(charts.candidates_chart(top))
        st.dataframe(  # the numbers of the bars above (a progress column would cut them off in a narrow column)
            top, hide_index=True, column_config={"probability": st.column_config.NumberColumn(format="%.3f")}
        )


ui.route_through_app()
page()
