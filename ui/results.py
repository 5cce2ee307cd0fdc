"""What the model computes for a page, once per model and input: st.cache_data keeps each result (a copy per
call), keyed by the model's key (its file version, upload hash or Hugging Face source) and the input, so moving a
slider reruns the page but never the model. A result that cannot be computed becomes a message, never a traceback.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from core import ModelBundle, Translation, translate
from core.comparison import Comparison, compare_models, translation_cap
from core.runs import EpochView, RunCheckpoint, epoch_view
from ui.models import ActiveModel
from ui.text import md_text

MIN_ROWS = 64


@st.cache_data(max_entries=64, show_spinner=False)  # about 0.6 MB each at full size
def cached_translate(
    model_key: str, _bundle: ModelBundle, sentence: str, reference: str | None, max_len: int | None = None
) -> Translation:
    """translate(), computed once per model and input; later calls return a copy from the cache."""
    return translate(_bundle, sentence, max_len=max_len, reference=reference)


def row_cap(bundle: ModelBundle, sentence: str) -> int:
    """The most decoder rows a page decodes: 2 x source tokens + 10 (translation_cap), and never fewer than 64 (at
    most seq_len). A model that never writes its end token (an early checkpoint, a random one) stops there
    instead of at a 512-token limit; a model that does is never cut."""
    return min(bundle.config.seq_len, max(MIN_ROWS, translation_cap(bundle, sentence)))


def run_translation(model: ActiveModel, sentence: str, reference: str | None = None) -> Translation | None:
    """The (cached) translation, at most row_cap rows, or None after showing why the input cannot be translated."""
    try:
        cap = None if reference else row_cap(model.bundle, sentence)
        return cached_translate(model.key, model.bundle, sentence, reference or None, cap)
    except ValueError as exc:
        st.warning(f"Cannot translate: {md_text(exc)}")
        return None


@st.cache_data(max_entries=32, show_spinner=False)
def cached_search(
    model_key: str, _bundle: ModelBundle, sentence: str, beam_size: int, length_penalty: float, prefix: tuple[int, ...]
) -> Translation:
    """translate() with a beam (all beam_size hypotheses kept) and/or a forced prefix, once per model and input,
    at most row_cap rows as run_translation."""
    return translate(
        _bundle,
        sentence,
        max_len=row_cap(_bundle, sentence),
        beam_size=beam_size,
        nbest=beam_size,
        length_penalty=length_penalty,
        prefix=list(prefix) if prefix else None,
    )


def run_search(
    model: ActiveModel, sentence: str, beam_size: int, length_penalty: float = 0.0, prefix: tuple[int, ...] = ()
) -> Translation | None:
    """The (cached) beam search or forced decoding, or None after showing why it cannot run."""
    try:
        return cached_search(model.key, model.bundle, sentence, beam_size, length_penalty, prefix)
    except ValueError as exc:
        st.warning(f"Cannot translate: {md_text(exc)}")
        return None


@st.cache_data(max_entries=32, show_spinner="Comparing…")  # a few MB each at full size
def cached_comparison(key_a: str, key_b: str, _a, _b, sentence: str, reference: str | None) -> Comparison:
    """compare_models, once per pair of model versions and input."""
    return compare_models(_a, _b, sentence, reference)


@st.cache_data(max_entries=200, show_spinner=False)  # about 0.3 MB each at full size: one sentence at one epoch
def cached_epoch_view(
    path: str, stamp: str, epoch: int, step: int | None, sentence: str, reference, decoder_ids, heads
) -> EpochView:
    """epoch_view of one checkpoint file version; the model is loaded, used and dropped (never cached)."""
    return epoch_view(RunCheckpoint(Path(path), epoch, step), sentence, reference, decoder_ids, heads)


def cached_view(checkpoint: RunCheckpoint, sentence: str, reference, decoder_ids, heads) -> EpochView:
    """follow_sentence's per-epoch step, through the cache (keyed by the file's stamp)."""
    return cached_epoch_view(
        str(checkpoint.path),
        checkpoint.stamp,
        checkpoint.epoch,
        checkpoint.step,
        sentence,
        reference,
        decoder_ids,
        heads,
    )
