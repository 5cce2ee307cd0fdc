"""Compare: two models on one sentence, head by head (Jensen-Shannon divergence of their maps, A - B)."""

import pandas as pd
import streamlit as st

import ui
from core import CheckpointError, charts
from core.analysis.divergence import most_changed
from core.attention import KIND_LABELS, KINDS
from core.comparison import Comparison, compare_models

UPLOAD = "upload"
FED = {"own": "A's translation", "reference": "the reference translation"}


@st.cache_data(max_entries=32, show_spinner="Comparing…")  # a few MB each at full size
def cached_comparison(key_a: str, key_b: str, _a, _b, sentence: str, reference: str | None) -> Comparison:
    """compare_models, once per pair of model versions and input."""
    return compare_models(_a, _b, sentence, reference)


def restore_from_url(options: list[str]) -> None:
    """Take models, sentence, reference, decoder input, kind, layer and head from a link that differs from the
    last one this page wrote (so a link from the Translate page always applies)."""
    params = st.query_params.to_dict()
    if params == st.session_state.get("_compare_url"):
        return
    st.session_state["_compare_url"] = params
    view = ui.view_state()
    for key in ("a", "b"):
        if params.get(key) in options:
            view[f"compare_{key}"] = params[key]
    for key in ("sentence", "reference"):
        if key in params:
            view[key] = params[key][:2000]
    if params.get("fed") in FED:
        view["compare_fed"] = params["fed"]
    if params.get("kind") in KIND_LABELS:
        view["kind"] = params["kind"]
    for key in ("layer", "head"):
        if str(params.get(key, "")).isdigit() and int(params[key]) >= 1:
            view[key] = int(params[key])  # clamped to the models by the sliders


def pick_head(kind: str) -> None:
    """A click in a kind's divergence grid focuses that kind, layer and head."""
    picked = st.session_state[f"grid_{kind}"].selection.get("pick") or []
    if picked and {"layer", "head"} <= set(picked[0]):
        ui.view_state().update(kind=kind, layer=int(picked[0]["layer"]), head=int(picked[0]["head"]))


def resolve(choice: str, files: dict) -> ui.ActiveModel | None:
    """The model behind a choice (a file or this session's upload), or None after saying why it cannot load."""
    if choice == UPLOAD:
        uploaded = ui.session_upload()
        if uploaded is None:
            st.warning("Your uploaded model was unloaded to make room for others: upload it again on the Models page.")
        return uploaded
    try:
        return ui.load_option(files[choice])
    except (CheckpointError, OSError) as exc:
        st.warning(f"Cannot load `{choice}`: {exc}")
        return None


def default_b(a: str, options: list[str], files: dict) -> str:
    """The checkpoint before A in its run (after it, for the first), else the first other option."""
    for run in ui.find_runs():
        paths = [c.path for c in run.checkpoints]
        if files.get(a) in paths:
            i = paths.index(files[a])
            neighbour = paths[i - 1] if i else paths[1]
            return next(name for name, path in files.items() if path == neighbour)
    return next((o for o in options if o != a), options[0])


def page() -> None:
    st.title("Compare two models")
    files = ui.model_options()
    options = list(files) + ([UPLOAD] if st.session_state.get("upload") else [])
    if not options:
        ui.show_no_model_help()
        return
    restore_from_url(options)
    view = ui.view_state()
    names = {UPLOAD: f"{st.session_state['upload']['name']} (uploaded)"} if UPLOAD in options else {}
    chosen = st.session_state.get("model_choice")
    active = next((name for name, path in files.items() if str(path) == chosen), UPLOAD if chosen == UPLOAD else None)
    if view.get("compare_a") not in options:
        view["compare_a"] = active if active in options else options[0]
    if view.get("compare_b") not in options:
        view["compare_b"] = default_b(view["compare_a"], options, files)
    col_a, col_b = st.columns(2)
    col_a.selectbox("Model A", options, format_func=lambda o: names.get(o, o), **ui.bound("compare_a", options[0]))
    col_b.selectbox("Model B", options, format_func=lambda o: names.get(o, o), **ui.bound("compare_b", options[0]))
    st.caption("Pick any two: files in the checkpoints folder, the epochs of a run, or your upload (Models page).")
    st.text_input("Sentence (English)", max_chars=2000, **ui.bound("sentence", ui.EXAMPLES[1]))
    with st.expander("Reference translation" + (" (in use)" if view.get("reference", "").strip() else "")):
        st.text_input("Reference (Italian)", max_chars=2000, **ui.bound("reference", ""))
    sentence, reference = view["sentence"].strip(), view.get("reference", "").strip()
    fed = st.radio(
        "Both decoders are fed",
        list(FED),
        format_func=FED.get,
        horizontal=True,
        disabled=not reference,
        help="So both models' maps have the same rows: A's own output, or the reference typed above.",
        **ui.bound("compare_fed", "own"),
    )
    fed = fed if reference else "own"
    if not sentence:
        st.info("Type an English sentence.")
        return
    model_a, model_b = resolve(view["compare_a"], files), resolve(view["compare_b"], files)
    if model_a is None or model_b is None:
        return
    try:
        result = cached_comparison(
            model_a.key,
            model_b.key,
            model_a.bundle,
            model_b.bundle,
            sentence,
            reference if fed == "reference" else None,
        )
    except ValueError as exc:
        st.warning(f"Cannot compare: {exc}")
        return

    left, right = st.columns(2)
    for col, letter, model, text in (
        (left, "A", model_a, result.translation_a),
        (right, "B", model_b, result.translation_b),
    ):
        col.markdown(f"**Model {letter}**")
        col.text(f"{model.label}\n{text}")
    att_a, att_b = result.attention_a, result.attention_b
    st.caption(
        f"Both decoders are fed {result.decoder_input}: "
        + " ".join(f"`{t}`" for t in charts.labels(att_a.target_tokens))
        + ". Divergence: Jensen-Shannon of A's and B's rows, log base 2 (0 = the same map, 1 = no key in common), "
        "averaged over the rows of each head."
    )

    st.subheader("Divergence of every head")
    st.caption("Click a cell to show that head below.")
    grids = st.container(horizontal=True, gap="medium")  # side by side where they fit, else on the next row
    for kind in KINDS:
        grids.altair_chart(
            charts.divergence_grid(charts.divergence_frame(result.divergence[kind]), KIND_LABELS[kind]),
            key=f"grid_{kind}",
            on_select=lambda kind=kind: pick_head(kind),
            selection_mode="pick",
            width="content",
        )

    kind = st.radio(
        "Attention", list(KIND_LABELS), format_func=KIND_LABELS.get, horizontal=True, **ui.bound("kind", "cross")
    )
    c1, c2 = st.columns(2)
    with c1:
        layer = ui.index_slider("Layer", att_a.n_layers, "layer")
    with c2:
        head = ui.index_slider("Head", att_a.n_heads, "head")
    linked = {"a": view["compare_a"], "b": view["compare_b"], "sentence": sentence}
    linked |= ({"reference": reference} if reference else {}) | ({"fed": fed} if fed != "own" else {})
    ui.set_link(linked | {"kind": kind, "layer": layer, "head": head})
    st.session_state["_compare_url"] = st.query_params.to_dict()

    queries, keys = att_a.queries(kind), att_a.keys(kind)
    a, b = charts.head_matrix(att_a, kind, layer, head), charts.head_matrix(att_b, kind, layer, head)
    where = f"{KIND_LABELS[kind]} · layer {layer} · head {head}"
    js = result.divergence[kind][layer - 1, head - 1]
    st.markdown(f"**{where}**: divergence {js:.4f} bits")
    maps = st.container(horizontal=True, gap="medium")  # each at its own width, wrapping where they do not fit
    for matrix, name in ((a, "A"), (b, "B")):
        heat = charts.heatmap(
            charts.attention_frame(matrix, queries, keys), queries, keys, name, plot_width=260, causal=kind == "decoder"
        )
        with maps:
            ui.show_chart(heat, key=f"head_{name}")
    diff = charts.difference_heatmap(a, b, queries, keys, "A - B (red: A more)", plot_width=260)
    with maps:
        ui.show_chart(diff, key="head_diff")

    st.subheader("Heads that changed most")
    top = most_changed(result.divergence, top=10)
    st.dataframe(
        pd.DataFrame(
            [{"kind": KIND_LABELS[k], "layer": la, "head": h, "divergence (bits)": round(v, 4)} for k, la, h, v in top]
        ),
        hide_index=True,
    )


ui.route_through_app()
page()
