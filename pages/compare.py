"""Compare: two models on one sentence, head by head (Jensen-Shannon divergence of their maps, A - B)."""

import streamlit as st

from core import CheckpointError
from ui import results, state, widgets
from ui.models import (
    PRETRAINED,
    UPLOAD,
    ActiveModel,
    find_runs,
    load_option,
    model_options,
    session_pretrained,
    session_upload,
    show_no_model_help,
)
from ui.sections.comparison import show
from ui.text import md_code, md_text

FED = {"own": "A's translation", "reference": "the reference translation"}
LINK = state.LINK_VIEW | {
    "a": ("compare_a", state.text),
    "b": ("compare_b", state.text),
    "fed": ("compare_fed", lambda v: v if v in FED else None),
}


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
    its run (after it, for the first); else, with a training run in the folder, its first and last checkpoints;
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
    if runs and runs[0].checkpoints[0].path in name_of:
        first, last = runs[0].checkpoints[0], runs[0].checkpoints[-1]
        return (
            name_of[first.path],
            name_of[last.path],
            f"A is the first checkpoint of a training run ({first.label}), B its last ({last.label}): the heads "
            "with the largest divergence are the ones training changed most; click one to see both maps.",
        )
    return a, next((n for n in names if n != a), names[0]), ""


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
