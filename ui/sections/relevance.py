"""Source relevance per output word (Translate page): which source tokens each output token drew on, by a method
beyond raw attention (core/analysis/relevance.py), computed only when asked for."""

from __future__ import annotations

import streamlit as st

from core import Translation
from core.analysis.relevance import METHOD_LABELS, METHODS, row_outputs, source_relevance
from ui.sections.heads_off import cached_masked
from ui.state import bound
from ui.widgets import draw, weights_map


@st.cache_data(max_entries=64, show_spinner=False)
def cached_relevance(model_key: str, _bundle, sentence: str, reference: str | None, method: str, off_param: str):
    result = cached_masked(model_key, _bundle, sentence, reference, off_param)
    return source_relevance(_bundle.model, result, method).numpy()


def relevance_section(model, result: Translation, context: tuple[str, str], off_param: str) -> None:
    """The expander with its toggle; context is (sentence, reference); heads off apply here too."""
    with st.expander("Source relevance per output word (beyond raw attention)"):
        if not st.toggle("Show source relevance", **bound("relevance_on", False)):
            return
        sentence, reference = context
        method = st.radio(
            "Method", METHODS, format_func=METHOD_LABELS.get, horizontal=True, **bound("relevance", "gradient")
        )
        shown = cached_masked(model.key, model.bundle, sentence, reference or None, off_param) if off_param else result
        relevance = cached_relevance(model.key, model.bundle, sentence, reference or None, method, off_param)
        predicted = [model.bundle.tgt_tokenizer.id_to_token(i) for i in row_outputs(shown)]
        title = f"{METHOD_LABELS[method]}" + (" · with heads off" if off_param else "")
        draw(weights_map(relevance, predicted, shown.source_tokens, title)[1], key="relevance_chart")
        st.caption(
            "Rows: the output token each decoder row predicts; columns: source tokens; each row sums to 1. "
            "`python bench/relevance_deletion.py` checks the methods by deleting the source word each ranks first."
        )
