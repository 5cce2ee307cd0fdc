"""Decoding step by step: what the decoder looked at, and what it considered, for each generated token."""

import streamlit as st

import ui
from core import charts


def move(delta: int, last: int) -> None:
    view = ui.view_state()
    view["step"] = min(max(int(view.get("step", 1)) + delta, 1), last)


def page() -> None:
    st.title("Decoding step by step")
    model = ui.require_model()
    if model is None:
        return
    st.text_input("Sentence (English)", max_chars=2000, **ui.bound("sentence", ui.EXAMPLES[1]))
    sentence = ui.view_state()["sentence"].strip()
    if not sentence:
        st.info("Type an English sentence.")
        return
    result = ui.run_translation(model, sentence)  # greedy output, the same cached result as the Translate page
    if result is None:
        return
    st.markdown(f"**Translation:** {result.translation}")
    steps, cfg = len(result.target_tokens), model.bundle.config
    prev, slider, nxt = st.columns([1.3, 8, 1.3], vertical_alignment="bottom")
    prev.button("◀ Prev", key="prev", on_click=move, args=(-1, steps))
    nxt.button("Next ▶", key="next", on_click=move, args=(1, steps))
    with slider:
        step = ui.index_slider("Step", steps, "step")
    row = step - 1
    tgt = model.bundle.tgt_tokenizer
    chosen = tgt.id_to_token(int(result.top_ids[row, 0]))
    fed = " ".join(f"`{t}`" for t in result.target_tokens[: row + 1])
    st.markdown(
        f"Step **{step}** of {steps}: the decoder has read {fed} and writes **`{chosen}`** "
        f"(p = {float(result.top_probs[row, 0]):.3f})."
    )

    layer = ui.index_slider("Layer", cfg.n_layers, "step_layer")
    cross, self_rows = charts.step_frames(result.attention, layer, row)
    left, right = st.columns([3, 2])
    with left:
        st.markdown(f"**Cross attention over the source** · layer {layer}")
        st.altair_chart(charts.row_heatmap(cross, result.source_tokens), width="content")
        st.markdown(f"**Decoder self attention over its input** · layer {layer}")
        st.altair_chart(charts.row_heatmap(self_rows, result.target_tokens[: row + 1]), width="content")
    with right:
        top = charts.candidates_frame(result.top_ids, result.top_probs, row, tgt.id_to_token)
        st.markdown("**Five most likely next tokens**")
        st.altair_chart(charts.candidates_chart(top), width="content")
        st.dataframe(
            top,
            hide_index=True,
            column_config={
                "probability": st.column_config.ProgressColumn("probability", format="%.3f", min_value=0, max_value=1)
            },
        )


ui.route_through_app()
page()
