"""Word alignment: the Translate page's alignment view and the Models page's alignment summary.

The links come from core.analysis.alignment (one method over one sentence's cross-attention); the chart
from core.charts.alignment_chart. Nothing here runs the model: the page's translation is reused.
"""

from __future__ import annotations

import streamlit as st

from core import ModelBundle, Translation, charts
from core.analysis.alignment import (
    DECISIONS,
    DEFAULT_THRESHOLD,
    ROWS,
    Method,
    align_sentence,
    check_links,
    format_links,
    parse_links,
    recorded_alignment,
    score_links,
)
from ui.state import bound, view_state
from ui.text import md_text
from ui.widgets import HeadRef, draw

ROW_LABELS = {"predict": "where the word is predicted", "input": "where it is the decoder input (Shift-Att)"}
DECISION_LABELS = {"argmax": "the most attended English word", "threshold": "every English word over a share"}


def describe(method: Method, threshold: float | None = None) -> str:
    head = "the mean of its heads" if method.head is None else f"head {method.head}"
    decision = (
        f"every English word with at least {threshold:.2f} of the share"
        if method.decision == "threshold" and threshold is not None
        else DECISION_LABELS[method.decision]
    )
    return f"layer {method.layer}, {head}; rows read {ROW_LABELS[method.rows]}; each Italian word linked to {decision}"


def _store_gold(context: list[str]) -> None:
    view_state()["gold_links"] = {"for": context, "text": st.session_state["gold_links"]}


def _gold_links_input(sentence: str, reference: str) -> str:
    """A text box for gold links, remembered for this sentence and reference only (a new pair starts empty)."""
    context = [sentence, reference]
    stored = view_state().get("gold_links") or {}
    st.session_state["gold_links"] = stored.get("text", "") if stored.get("for") == context else ""
    return st.text_input(
        "Gold links (Pharaoh format: i-j links English word i to Italian word j, both counted from 0 as on the chart)",
        key="gold_links",
        max_chars=5000,
        placeholder="0-0 1-1 2-3",
        on_change=_store_gold,
        args=(context,),
    )


def alignment_view(bundle: ModelBundle, result: Translation, sentence: str, reference: str, ref: HeadRef) -> None:
    """Word links that the head picked above (ref; its layer's mean when ref.head is None) or the model card's
    method reads from the cross-attention, drawn
    over the word-level cross-attention; with a reference, gold links to compare and this sentence's AER."""
    if not st.toggle("Word alignment: links read from the cross-attention", **bound("align_on", False)):
        return
    view, recorded = view_state(), recorded_alignment(bundle)
    choices = ["chosen"] + (["card"] if recorded else [])
    if view.get("align_source") not in choices:
        view["align_source"] = choices[-1]
    names = {
        "chosen": "The layer and head chosen above",
        "card": f"The model card's alignment method ({recorded.method.name})" if recorded else "",
    }
    source = (
        st.radio("Links from", choices, format_func=names.get, horizontal=True, **bound("align_source", "card"))
        if len(choices) > 1
        else "chosen"
    )
    if source == "card":
        method, threshold = recorded.method, recorded.threshold or DEFAULT_THRESHOLD
    else:
        rows_col, decision_col, threshold_col = st.columns([3, 3, 2])
        rows = rows_col.radio("Rows read", ROWS, format_func=ROW_LABELS.get, **bound("align_rows", "predict"))
        decision = decision_col.radio(
            "Link each Italian word to",
            DECISIONS,
            format_func=DECISION_LABELS.get,
            **bound("align_decision", "argmax"),
        )
        with threshold_col:
            threshold = st.slider(
                "Share threshold",
                0.05,
                0.95,
                step=0.05,
                disabled=decision != "threshold",
                help="With 'every English word over a share': the share of the Italian word's attention on the "
                f"English words that a link needs (default {DEFAULT_THRESHOLD}, chosen on XL-WA's silver train file)",
                **bound("align_threshold", DEFAULT_THRESHOLD),
            )
        method = Method(ref.layer, ref.head, rows, decision)
    try:
        alignment = align_sentence(
            result.attention, bundle.src_tokenizer, bundle.tgt_tokenizer, sentence, reference or None, method, threshold
        )
    except ValueError as exc:
        st.warning(f"No word alignment for this sentence: {exc}")
        return
    st.caption(
        f"{method.name}: {describe(method, threshold)}. English words are the sentence's space-separated words; "
        + (
            "Italian words are the reference's."
            if reference
            else "Italian words are the generated tokens (type a reference translation above to align its words "
            "and to paste gold links)."
        )
        + " The colour is the share of each Italian word's cross-attention on each English word (its tokens' rows "
        "averaged, [SOS] and [EOS] left out); circles are the model's links."
    )
    gold = None
    if reference:
        text = _gold_links_input(sentence, reference)
        if text.strip():
            try:
                gold = parse_links(text)
                check_links(gold, len(alignment.source_words), len(alignment.target_words))
            except ValueError as exc:
                gold = None
                st.error(f"These gold links cannot be used: {md_text(str(exc))}")
    cells, links = charts.alignment_frames(alignment.matrix, alignment.links, gold)
    title = f"Word links · {method.name}"
    chart = charts.alignment_chart(cells, links, alignment.source_words, alignment.target_words, title)
    draw(chart)
    model_col, gold_col = st.columns(2)
    model_col.markdown("**Model links** (Pharaoh)")
    model_col.code(format_links(alignment.links) or "(none)", language=None)
    if gold is not None:
        score = score_links(alignment.links, gold)
        gold_col.markdown("**Your gold links**")
        gold_col.code(format_links(gold) or "(none)", language=None)
        st.markdown(
            f"**This sentence:** AER **{score.aer:.3f}**, precision {score.precision:.3f}, recall {score.recall:.3f} "
            "(every gold link counted as sure and possible; lower AER is better)"
        )


def show_card_alignment(bundle: ModelBundle) -> bool:
    """The model card's alignment method and its AER, in words; False when the card records none."""
    recorded = recorded_alignment(bundle)
    if recorded is None:
        return False
    st.markdown("**Alignment head**")
    measured = f": AER **{recorded.aer:.3f}**" if recorded.aer is not None else ""
    where = f" on {md_text(recorded.data)}" if recorded.data and measured else ""
    st.markdown(f"`{recorded.method.name}` ({describe(recorded.method, recorded.threshold)}){measured}{where}")
    return True
