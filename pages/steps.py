"""Decoding step by step: what the decoder looked at, and what it considered, for each generated token;
what it would have written had it chosen another candidate; and the beam search's tree of hypotheses."""

import streamlit as st

from ui import results, state, widgets
from ui.models import ActiveModel, require_model
from ui.sections.beam import beam_view
from ui.sections.replay import compare, forced_prefix, replay, unforce
from ui.text import md_code, md_text

MODES = {"greedy": "Greedy, step by step", "beam": "Beam search"}
LINK = {"sentence": ("sentence", state.text), "step": ("step", state.count), "layer": ("step_layer", state.count)}


def page() -> None:
    st.title("Decoding step by step")
    model = require_model()
    if model is None:
        return
    state.restore_view("steps", LINK)
    sentence = widgets.sentence_box()
    if not sentence:
        state.set_link("steps", {})  # a copied link must not bring back an earlier sentence
        st.info("Type an English sentence.")
        return
    if widgets.refused(sentence):
        state.set_link("steps", {"sentence": sentence})
        return
    mode = st.radio(
        "Decoding", list(MODES), format_func=MODES.get, horizontal=True, **state.bound("steps_mode", "greedy")
    )
    if mode == "beam":
        state.set_link("steps", {"sentence": sentence})
        beam_view(model, sentence)
    else:
        greedy_view(model, sentence)


def greedy_view(model: ActiveModel, sentence: str) -> None:
    original = results.run_translation(model, sentence)  # greedy output, the same cached result as the Translate page
    prefix = forced_prefix(sentence)
    result = results.run_search(model, sentence, 1, 0.0, tuple(prefix)) if prefix and original else original
    if result is None:
        state.set_link("steps", {"sentence": sentence})  # with a decoding, replay() writes the link, with the step
        return
    st.markdown(f"**Translation:** {md_text(original.translation)}")
    if prefix:
        tgt = model.bundle.tgt_tokenizer
        note, back = st.columns([4, 1.6], vertical_alignment="center")
        note.info(
            f"What if: {md_code(tgt.id_to_token(prefix[-1]))} forced at step {len(prefix)}. The replay below follows "
            "this decoding; under it, the model's own decoding and the forced one side by side."
        )
        back.button("↩ Model's own", key="unforce", on_click=unforce, help="back to what the model wrote by itself")
    replay(model, result, sentence, tuple(prefix))
    if prefix:
        compare(model, original, result)


state.route_through_app()
page()
