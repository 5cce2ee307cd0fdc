"""Translate a sentence and explore every attention head: one head, one layer's heads, all layers x heads."""

import streamlit as st

from core.analysis.alignment import opening_head
from ui import results, state, widgets
from ui.models import ActiveModel, link_targets, require_model
from ui.sections.alignment import alignment_view
from ui.sections.attribution import attribution_section
from ui.sections.heads_off import heads_off_section, restore_heads_off, switched_off
from ui.sections.maps import all_layers_grid, focused_view, layer_heads, open_in, result_header

SIDE_BY_SIDE_TOKENS = 12  # up to this many tokens a side, the focused head and the layer's heads share a row
LINK = state.LINK_VIEW | {"avg": ("avg", state.flag), "grid": ("grid", state.flag)}  # avg=1, grid=1: view switches


def use_example() -> None:
    """A picked example is a new sentence: a reference typed for the previous one no longer applies."""
    if st.session_state.get("example"):
        state.view_state().update(sentence=st.session_state["example"], reference="")


def clear_reference() -> None:
    state.view_state()["reference"] = ""


def input_section() -> tuple[str, str]:
    """Sentence box, examples, the reference box and Translate; returns (sentence, reference), stripped."""
    left, right = st.columns([3, 2])
    with left:
        sentence = widgets.sentence_box()
    right.selectbox(
        "Examples",
        widgets.EXAMPLES,
        index=None,
        key="example",
        on_change=use_example,
        placeholder="Pick an example sentence",
    )
    reference = widgets.reference_box(
        "Reference translation (Italian): the decoder is fed it instead of its own output",
        "Compare with a reference translation",
    )
    st.button("Translate", key="go", type="primary")
    return sentence, reference


def reference_note() -> None:
    """While a reference is in use (accepted or not), say so, with the button that clears it."""
    note, clear = st.columns([3, 1], vertical_alignment="center")
    note.info(
        "The decoder is fed your reference translation, not its own output: the maps show the "
        "attention the model puts on that text."
    )
    clear.button("Clear reference", key="clear_reference", on_click=clear_reference)


def page() -> None:
    st.title("Translate & attention")
    model = require_model()
    if model is None:
        return
    cfg = model.bundle.config
    state.restore_view("translate", LINK)
    restore_heads_off(cfg.n_layers, cfg.n_heads)
    sentence, reference = input_section()
    if not sentence:
        state.set_link("translate", {})  # a copied link must not bring back an earlier sentence
        st.info("Type an English sentence, or pick an example.")
        return
    linked = {"sentence": sentence} | ({"reference": reference} if reference else {})
    if reference:
        reference_note()
    result = None if widgets.refused(sentence, reference) else results.run_translation(model, sentence, reference)
    if result is None:
        state.set_link("translate", linked)  # with maps, explore() writes the link, with the view in it
        return
    result_header(result, reference)
    explore(model, result, (sentence, reference), linked, link_targets())


@st.fragment
def explore(model: ActiveModel, result, context: tuple[str, str], linked: dict, targets: tuple) -> None:
    """Everything below the translation. A fragment: moving a slider or clicking a tile reruns and redraws
    only this part; the inputs and the translation above stay as they are (bench/app_browser.py times it)."""
    cfg, view = model.bundle.config, state.view_state()
    telling = opening_head(model.bundle, result.attention)  # where words visibly line up
    ref = widgets.opening_picker(cfg.n_layers, cfg.n_heads, telling, telling.hint, average=True)
    flags = {key: 1 for key in ("avg", "grid") if view.get(key)}
    off = switched_off(cfg.n_layers, cfg.n_heads)
    where = {"kind": ref.kind, "layer": ref.layer, "head": view["head"]}
    state.set_link("translate", linked | where | flags | ({"off": off} if off else {}))
    open_in(context, where, targets)
    att = result.attention
    if max(len(att.queries(ref.kind)), len(att.keys(ref.kind))) <= SIDE_BY_SIDE_TOKENS:
        focus, tiles = st.columns([5, 4])
        with focus:
            focused_view(model, result, ref, context)
        with tiles:
            layer_heads(att, ref, columns=min(4, cfg.n_heads))
    else:  # long axes: each chart gets the page's width
        focused_view(model, result, ref, context)
        layer_heads(att, ref, columns=min(8, cfg.n_heads))
    alignment_view(model.bundle, result, *context, ref)
    all_layers_grid(att, ref.kind)
    heads_off_section(model, result, context, ref, off)
    attribution_section(model, result, context)


state.route_through_app()
page()
