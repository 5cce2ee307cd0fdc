"""Compare: two models on one sentence, head by head (Jensen-Shannon divergence of their maps, A - B)."""

import streamlit as st

from ui import results, state, widgets
from ui.models import show_no_model_help
from ui.sections.comparison import default_pair, options, resolve, show
from ui.text import md_text

FED = {"own": "A's translation", "reference": "the reference translation"}
LINK = state.LINK_VIEW | {
    "a": ("compare_a", state.text),
    "b": ("compare_b", state.text),
    "fed": ("compare_fed", lambda v: v if v in FED else None),
}


def page() -> None:
    st.title("Compare two models")
    choices, labels = options()
    if not choices:
        show_no_model_help()
        return
    state.restore_view("compare", LINK)
    view, names = state.view_state(), list(choices)
    a, b, hint = default_pair(choices)
    view["compare_a"] = view.get("compare_a") if view.get("compare_a") in names else a
    view["compare_b"] = view.get("compare_b") if view.get("compare_b") in names else b
    col_a, col_b = st.columns(2)
    col_a.selectbox("Model A", names, format_func=labels.get, **state.bound("compare_a", names[0]))
    col_b.selectbox("Model B", names, format_func=labels.get, **state.bound("compare_b", names[0]))
    st.caption(
        "Pick any two: files in the checkpoints folder, the epochs of a run, or your model from the Models page."
    )
    if hint and (view["compare_a"], view["compare_b"]) == (a, b):
        st.caption(hint)
    sentence = widgets.sentence_box()
    reference = widgets.reference_box("Reference (Italian)")
    fed = st.radio(
        "Both decoders are fed",
        list(FED),
        format_func=FED.get,
        horizontal=True,
        disabled=not reference,
        help="So both models' maps have the same rows: A's own output, or the reference typed above.",
        **state.bound("compare_fed", "own"),
    )
    fed = fed if reference else "own"
    if not sentence:
        st.info("Type an English sentence.")
        return
    if widgets.refused(sentence, reference):
        return
    model_a, model_b = resolve(view["compare_a"], choices), resolve(view["compare_b"], choices)
    if model_a is None or model_b is None:
        return
    if model_a.key == model_b.key:
        st.info("Model A and model B are the same model: there is nothing to compare. Pick another model B.")
        return
    try:
        keys, bundles = (model_a.key, model_b.key), (model_a.bundle, model_b.bundle)
        result = results.cached_comparison(*keys, *bundles, sentence, reference if fed == "reference" else None)
    except ValueError as exc:
        st.warning(f"Cannot compare: {md_text(exc)}")
        return
    if all(not values.any() for values in result.divergence.values()):
        st.info(
            "Model A and model B attend identically on this sentence (every head's divergence is 0): they hold the "
            "same weights. Pick another model B."
        )
        return
    show(
        result,
        (model_a, model_b),
        {"sentence": sentence}
        | ({"reference": reference} if reference else {})
        | ({"fed": fed} if fed != "own" else {}),
    )


state.route_through_app()
page()
