"""Streamlit pieces for the head analyses: the cached head report (Heads page), and the Translate page's
"switch heads off" and source-relevance views. Kept apart from pages/translate.py so that page only calls
`restore_heads_off`, `switched_off` (for its link) and `translate_extras` once each."""

from __future__ import annotations

import hashlib
from pathlib import Path
from urllib.parse import urlencode

import streamlit as st

import ui
from core import charts, translate
from core.analysis.head_report import HeadReport, head_report
from core.analysis.relevance import METHOD_LABELS, METHODS, row_outputs, source_relevance
from core.attention import KIND_LABELS, KINDS
from core.decoding import Translation
from core.heads_off import HeadsOff, label

SAMPLE = Path(__file__).resolve().parent / "checkpoints" / "heads_sample.en-it.tsv"
SAMPLE_NOTE = (
    "200 held-out Tatoeba pairs (https://tatoeba.org, CC BY 2.0 FR; compiled in the Tatoeba Translation Challenge "
    "test set v2021-08-07, J. Tiedemann 2020, CC BY-NC-SA 4.0): see checkpoints/heads_sample.md"
)
PRUNING_STEP = 16  # heads switched off per point of the app's pruning curve (each point re-translates the set)


def data_key(pairs: list[tuple[str, str]]) -> str:
    digest = hashlib.sha256()
    for en, it in pairs:
        digest.update(f"{en}\t{it}\n".encode())
    return digest.hexdigest()


@st.cache_data(max_entries=8, show_spinner=False)
def cached_report(model_key: str, pairs_key: str, _bundle, _pairs) -> HeadReport:
    """head_report once per model and data set (pairs_key: the sha256 of the pairs), with a progress bar.

    The bar is made inside the function: Streamlit replays a cached function's elements on a cache hit,
    and that works only for elements the function itself created (the replay ends with the bar emptied)."""
    bar = st.progress(0.0, text="Analysing heads…")
    stages = ("statistics", "ablation", "gradient", "pruning (all)")

    def progress(stage: str, done: int, total: int) -> None:
        index = stages.index(stage) if stage in stages else len(stages) - 1
        fraction = min(1.0, (index + done / max(total, 1)) / len(stages))
        bar.progress(fraction, text=f"Analysing heads: {stage} {done}/{total}")

    try:
        return head_report(_bundle, _pairs, pruning_step=PRUNING_STEP, progress=progress)
    finally:
        bar.empty()


def run_report(model: ui.ActiveModel, pairs: list[tuple[str, str]]) -> HeadReport | None:
    """The (cached) report, or None after saying why not."""
    try:
        return cached_report(model.key, data_key(pairs), model.bundle, pairs)
    except ValueError as exc:
        st.warning(f"Cannot analyse these pairs: {exc}")
        return None


def head_link(sentence: str, kind: str, layer: int, head: int, heads_off: HeadsOff | None = None) -> str:
    """The Translate page's URL showing one head (and switched-off heads, if any)."""
    params = {"sentence": sentence, "kind": kind, "layer": layer, "head": head}
    if heads_off:
        params["off"] = heads_off.to_param()
    return "/?" + urlencode(params)


# ---- Translate page: switch heads off, source relevance -------------------------------------------------


def all_head_labels(n_layers: int, n_heads: int) -> list[str]:
    return [
        label(kind, layer, head) for kind in KINDS for layer in range(1, n_layers + 1) for head in range(1, n_heads + 1)
    ]


def describe(head_label: str) -> str:
    """'c2.5' -> 'cross L2 H5'."""
    (kind, layer, head), *_ = HeadsOff.from_param(head_label).heads
    return f"{kind} L{layer} H{head}"


def restore_heads_off(n_layers: int, n_heads: int) -> None:
    """On a session's first visit, take the switched-off heads from the link's `off` parameter."""
    if st.session_state.get("_heads_off_restored"):
        return
    st.session_state["_heads_off_restored"] = True
    try:
        off = HeadsOff.from_param(str(st.query_params.get("off", ""))[:2000])
        off.check(n_layers, n_heads)
    except ValueError:
        return  # a broken link shows every head, as if it had no `off`
    ui.view_state()["heads_off"] = [label(*h) for h in off.sorted()]


def switched_off(n_layers: int, n_heads: int) -> str:
    """The switched-off heads as the link's `off` value ("" for none), from the session's view; heads this
    model does not have (another model's choice) are dropped from the view."""
    state, labels = ui.view_state(), all_head_labels(n_layers, n_heads)
    state["heads_off"] = [h for h in state.get("heads_off", []) if h in labels]
    return HeadsOff.from_param(",".join(state["heads_off"])).to_param()


@st.cache_data(max_entries=64, show_spinner=False)
def cached_masked(model_key: str, _bundle, sentence: str, reference: str | None, off_param: str) -> Translation:
    return translate(_bundle, sentence, reference=reference, head_mask=HeadsOff.from_param(off_param))


@st.cache_data(max_entries=64, show_spinner=False)
def cached_relevance(model_key: str, _bundle, sentence: str, reference: str | None, method: str, off_param: str):
    result = cached_masked(model_key, _bundle, sentence, reference, off_param)
    return source_relevance(_bundle.model, result, method).numpy()


def translate_extras(
    model: ui.ActiveModel, result: Translation, sentence: str, reference: str, view: tuple, off_param: str
) -> None:
    """Below the Translate page's maps: switch heads off (kept in the link) and source relevance.

    view is the page's (kind, layer, head or None for the average); off_param the switched-off heads, as
    switched_off() gives them (the page puts them in its link first)."""
    cfg = model.bundle.config
    chosen = ui.view_state()["heads_off"]  # what the box below shows: its changes are stored before the run
    with st.expander("Switch heads off" + (f" ({len(chosen)} off)" if chosen else ""), expanded=bool(chosen)):
        st.multiselect(
            "Heads to switch off (e = encoder self, d = decoder self, c = cross; layer.head)",
            all_head_labels(cfg.n_layers, cfg.n_heads),
            format_func=describe,
            **ui.bound("heads_off", []),
        )
        if off_param:
            masked = cached_masked(model.key, model.bundle, sentence, reference or None, off_param)
            show_comparison(result, masked, HeadsOff.from_param(off_param), view)
        else:
            st.caption(
                "Pick heads to silence: their output is zeroed before the output projection (Michel et al. 2019)."
            )
    with st.expander("Source relevance per output word (beyond raw attention)"):
        if st.toggle("Show source relevance", **ui.bound("relevance_on", False)):
            show_relevance(model, result, sentence, reference, off_param)


def show_relevance(model: ui.ActiveModel, result: Translation, sentence: str, reference: str, off_param: str) -> None:
    """Which source tokens each output token drew on, by the chosen method (computed only when asked)."""
    method = st.radio(
        "Method", METHODS, format_func=METHOD_LABELS.get, horizontal=True, **ui.bound("relevance", "gradient")
    )
    shown = cached_masked(model.key, model.bundle, sentence, reference or None, off_param) if off_param else result
    relevance = cached_relevance(model.key, model.bundle, sentence, reference or None, method, off_param)
    predicted = [model.bundle.tgt_tokenizer.id_to_token(i) for i in row_outputs(shown)]
    frame = charts.attention_frame(relevance, predicted, shown.source_tokens)
    title = f"{METHOD_LABELS[method]}" + (" · with heads off" if off_param else "")
    ui.show_chart(charts.heatmap(frame, predicted, shown.source_tokens, title), key="relevance_chart")
    st.caption(
        "Rows: the output token each decoder row predicts; columns: source tokens; each row sums to 1. "
        "`python bench/relevance_deletion.py` checks the methods by deleting the source word each ranks first."
    )


def show_comparison(original: Translation, masked: Translation, off: HeadsOff, view: tuple) -> None:
    kind, layer, head = view
    left, right = st.columns(2)
    left.markdown("**All heads on**")
    left.text(original.translation)
    right.markdown(f"**{len(off)} head{'s' * (len(off) != 1)} off**")
    right.text(masked.translation)
    if masked.translation == original.translation:
        st.caption("Same text; the probabilities and maps still change.")
    for column, result in ((left, original), (right, masked)):
        att = result.attention
        queries, keys = att.queries(kind), att.keys(kind)
        frame = charts.attention_frame(charts.head_matrix(att, kind, layer, head), queries, keys)
        title = f"{KIND_LABELS[kind]} · layer {layer} · {'mean of heads' if head is None else f'head {head}'}"
        with column:
            ui.show_chart(
                charts.heatmap(frame, queries, keys, title, plot_width=260, causal=kind == "decoder"),
                key=f"off_{'original' if result is original else 'masked'}",
            )
