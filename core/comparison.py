"""Two models on the same sentence, head by head (the Compare page and `python -m core compare`).

To compare maps they must have the same shape, so both models are fed the same decoder input (teacher
forcing): model A's own translation by default, or a reference translation. The divergence is the
Jensen-Shannon divergence of core/analysis/divergence.py (bits, mean over rows).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from core.analysis.divergence import attention_divergence
from core.attention import KINDS, Attention
from core.bundle import ModelBundle
from core.decoding import sequence_log_prob, teacher_forced, translate


def translation_cap(bundle: ModelBundle, sentence: str) -> int:
    """Decoder rows allowed for a compared translation: 2 x source tokens + 10, at most seq_len. An early or
    untrained checkpoint may never write [EOS]; a translation is rarely more than twice as long as its source."""
    source_tokens = len(bundle.src_tokenizer.encode(sentence).ids) + bundle.specials.source_specials
    return max(2, min(bundle.config.seq_len, 2 * source_tokens + 10))


def feed_decoder(bundle: ModelBundle, source_ids: Sequence[int], target_ids: Sequence[int]) -> Attention:
    """The attention of `bundle` with [SOS] + target_ids fed to its decoder (target_ids without [SOS]/[EOS])."""
    inputs, _, _, _, maps = teacher_forced(bundle.model, list(source_ids), list(target_ids))
    return Attention(
        *(m.cpu() for m in maps),
        tuple(bundle.src_tokenizer.id_to_token(i) for i in source_ids),
        tuple(bundle.tgt_tokenizer.id_to_token(i) for i in inputs),
    )


def log_probability(bundle: ModelBundle, source_ids: Sequence[int], target_ids: Sequence[int]) -> float:
    """log p(target_ids then the end of sentence | source) under the model, in nats (a sum over the target tokens)."""
    return sequence_log_prob(bundle.model, list(source_ids), list(target_ids))


def vocabulary_mismatch(a: ModelBundle, b: ModelBundle) -> str | None:
    """Why two models' maps cannot be compared cell by cell (different tokenizers or shapes), or None."""
    for side, tok_a, tok_b in (
        ("English", a.src_tokenizer, b.src_tokenizer),
        ("Italian", a.tgt_tokenizer, b.tgt_tokenizer),
    ):
        if tok_a.get_vocab() != tok_b.get_vocab():
            return (
                f"the two models use different {side} tokenizers ({tok_a.get_vocab_size():,} and "
                f"{tok_b.get_vocab_size():,} tokens), so their maps have different rows and columns; compare "
                "models trained with the same tokenizer files (a run's checkpoints, a fine-tune and its base)"
            )
    shape_a, shape_b = (a.config.n_layers, a.config.n_heads), (b.config.n_layers, b.config.n_heads)
    if shape_a != shape_b:
        return (
            f"model A has {shape_a[0]} layers x {shape_a[1]} heads and model B {shape_b[0]} x {shape_b[1]}: "
            "there is no head-by-head comparison between different shapes"
        )
    return None


@dataclass(frozen=True)
class Comparison:
    """Two models on one sentence: their own translations, and their maps on one shared decoder input."""

    sentence: str
    translation_a: str
    translation_b: str
    decoder_input: str  # "A's translation" or "the reference"
    attention_a: Attention  # (L, H, Tq, Tk) maps of A on the shared decoder input
    attention_b: Attention  # the same for B (identical tokens)
    divergence: dict[str, np.ndarray]  # kind -> (L, H) mean Jensen-Shannon divergence in bits


def compare_models(
    a: ModelBundle, b: ModelBundle, sentence: str, reference: str | None = None, max_len: int | None = None
) -> Comparison:
    """Translate with both (at most max_len decoder rows, default translation_cap), feed both A's translation
    (or the reference) and compare every head.

    Raises ValueError with a readable message for tokenizers or shapes that differ, or unusable input."""
    if problem := vocabulary_mismatch(a, b):
        raise ValueError(problem)
    own_a = translate(a, sentence, max_len=max_len or translation_cap(a, sentence))
    own_b = translate(b, sentence, max_len=max_len or translation_cap(b, sentence))
    if reference:
        target_ids = translate(a, sentence, reference=reference).target_ids[1:]
    else:
        target_ids = own_a.target_ids[1:]  # A's decoder input after [SOS]: every token it generated but [EOS]
    att_a = feed_decoder(a, own_a.source_ids, target_ids)
    att_b = feed_decoder(b, own_a.source_ids, target_ids)
    return Comparison(
        sentence=sentence,
        translation_a=own_a.translation,
        translation_b=own_b.translation,
        decoder_input="the reference" if reference else "A's translation",
        attention_a=att_a,
        attention_b=att_b,
        divergence=attention_divergence(att_a, att_b),
    )


def mean_divergence(
    a: ModelBundle,
    b: ModelBundle,
    pairs: Sequence[tuple[str, str]],
    use_reference: bool = False,
    on_sentence: Callable[[], None] | None = None,
) -> tuple[int, dict[str, np.ndarray], list[tuple[str, str]]]:
    """(sentences compared, {kind: (L, H) mean divergence over them}, [(sentence, reason skipped)]).

    Each sentence weighs the same; the decoder input is A's translation, or each pair's Italian side with
    use_reference. Sentences a model cannot take (empty, too long) are skipped and listed."""
    if problem := vocabulary_mismatch(a, b):
        raise ValueError(problem)
    sums = {kind: np.zeros((a.config.n_layers, a.config.n_heads)) for kind in KINDS}
    count, skipped = 0, []
    for source, target in pairs:
        try:
            result = compare_models(a, b, source, target if use_reference else None)
        except ValueError as exc:
            skipped.append((source, str(exc)))
        else:
            count += 1
            for kind in KINDS:
                sums[kind] += result.divergence[kind]
        if on_sentence is not None:
            on_sentence()
    if not count:
        raise ValueError("no sentence could be compared: " + (skipped[0][1] if skipped else "no sentences given"))
    return count, {kind: total / count for kind, total in sums.items()}, skipped
