"""Where did each word come from? (Translate page): for each output token, its source contributions by a method
beyond raw attention (core/analysis/attribution.py), computed only when asked for; the model card's leaderboard
scores beside each method's name, so a user knows which to trust; for the methods that split a prediction, the
share that came from the target prefix, with the steps that drew unusually little on the source marked."""

from __future__ import annotations

import streamlit as st

from core import Translation, charts
from core.analysis.attribution import METHODS, attribute, low_share
from core.analysis.relevance import row_outputs
from ui.state import bound
from ui.text import md_code
from ui.widgets import draw, weights_map

DEFAULT = "alti"


@st.cache_data(max_entries=64, show_spinner=False)
def cached_attribution(model_key: str, _bundle, sentence: str, reference: str | None, method: str, _result):
    """attribute() once per model, input and method (the translation is the page's own, cached with the same key)."""
    result = attribute(_bundle, _result, method)
    return result.source.numpy(), None if result.source_share is None else result.source_share.numpy()


def card_scores(bundle) -> dict:
    """The model card's leaderboard ({method: {aer, deletion_drop, ...}}), written by python -m core attribution-eval."""
    card = bundle.metadata.get("model_card") or {}
    board = card.get("attribution") or {}
    return board.get("methods", board) if isinstance(board, dict) else {}


def method_label(name: str, scores: dict) -> str:
    row = scores.get(name) or {}
    measured = [
        f"AER {row['aer']:.2f}" if row.get("aer") is not None else "",
        f"deletion {row['deletion_drop']:.2f}" if row.get("deletion_drop") is not None else "",
    ]
    measured = [m for m in measured if m]
    return METHODS[name].label + (f" · {', '.join(measured)}" if measured else "")


def attribution_section(model, result: Translation, context: tuple[str, str]) -> None:
    with st.expander("Where did each word come from? (attribution beyond raw attention)"):
        if not st.toggle("Show where each output word came from", **bound("relevance_on", False)):
            return
        scores = card_scores(model.bundle)
        method = st.selectbox(
            "Method (the model card's leaderboard beside each: AER, lower is better; deletion drop, higher is better)",
            list(METHODS),
            format_func=lambda name: method_label(name, scores),
            **bound("relevance", DEFAULT),
        )
        if not scores:
            st.caption(
                "No leaderboard for this model yet: `python -m core attribution-eval` measures one (docs/analyses.md)."
            )
        sentence, reference = context
        with st.spinner(f"Computing {METHODS[method].label}…"):
            source, share = cached_attribution(model.key, model.bundle, sentence, reference or None, method, result)
        predicted = [model.bundle.tgt_tokenizer.id_to_token(i) for i in row_outputs(result)]
        draw(weights_map(source, predicted, result.source_tokens, METHODS[method].label)[1], key="relevance_chart")
        st.caption(
            "Rows: the output token each decoder row predicts; columns: source tokens; each row sums to 1. "
            "`python -m core attribution-eval` scores every method on a model (docs/analyses.md)."
        )
        if share is not None:
            low = low_share(share)
            st.markdown(f"**How much of each output token came from the source** · {METHODS[method].label}")
            draw(charts.source_share_chart(predicted, share, low), stretch=True)
            marked = [md_code(f"{i}·{t}") for i, (t, flag) in enumerate(zip(predicted, low)) if flag]
            st.caption(
                "The rest came from the Italian already written (the target prefix). "
                + (
                    "Marked (orange): "
                    + " ".join(marked)
                    + ", whose source share is under half the sentence's median: "
                    "the model wrote them from its own prefix more than it translated."
                    if marked
                    else "No step drew unusually little on the source."
                )
            )
