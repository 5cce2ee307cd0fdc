"""Two models on the same sentence, head by head (the Compare page and `python -m core compare`).

To compare maps they must have the same shape, so both models are fed the same decoder input (teacher
forcing): model A's own translation by default, or a reference translation. The divergence is the
Jensen-Shannon divergence of core/analysis/divergence.py (bits, mean over rows).

Models with the same tokenizers are compared token by token. Models with different tokenizers (the tutorial's
word-level model and a subword one, or ours and a Marian model) read different tokens, so they are compared
word by word: each is fed the same text (A's translation, or the reference) through its own tokenizer, and each
map becomes a map over the space-separated words of the sentence and of that text (a word's rows averaged, its
columns summed, the framing tokens left out, each row renormalised over the words; a target word is read at the
rows that predict its tokens). Either way the two models need the same layers x heads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from core.analysis.alignment import shares, word_matrix
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
    """The attention of `bundle` with its start token + target_ids fed to its decoder (target_ids without the start
    or end token)."""
    inputs, _, _, _, maps = teacher_forced(bundle.model, list(source_ids), list(target_ids))
    return Attention(
        *(m.cpu() for m in maps),
        tuple(bundle.src_tokenizer.id_to_token(i) for i in source_ids),
        tuple(bundle.tgt_tokenizer.id_to_token(i) for i in inputs),
        (len(bundle.specials.source_prefix), 1),
    )


def same_tokenizers(a: ModelBundle, b: ModelBundle) -> bool:
    return (
        a.src_tokenizer.get_vocab() == b.src_tokenizer.get_vocab()
        and a.tgt_tokenizer.get_vocab() == b.tgt_tokenizer.get_vocab()
    )


def shape_mismatch(a: ModelBundle, b: ModelBundle) -> str | None:
    """Why two models' heads cannot be paired (different layers x heads), or None."""
    shape_a, shape_b = (a.config.n_layers, a.config.n_heads), (b.config.n_layers, b.config.n_heads)
    if shape_a != shape_b:
        return (
            f"model A has {shape_a[0]} layers x {shape_a[1]} heads and model B {shape_b[0]} x {shape_b[1]}: "
            "there is no head-by-head comparison between different shapes"
        )
    return None


def word_maps(attention: Attention, source: tuple[list[int], int], target: tuple[list[int], int], words) -> Attention:
    """Token-level attention of one teacher-forced sentence -> the same maps over words (module docstring).

    source and target are (word index of each token, number of words); words is (source words, target words),
    the labels of the new axes. The decoder input must be the start token then the target tokens."""
    (src_of, n_src), (tgt_of, n_tgt) = source, target
    if max(src_of, default=-1) >= n_src or max(tgt_of, default=-1) >= n_tgt:
        raise ValueError("the tokenizer reads words the text does not have: cannot map its tokens to words")
    n = len(tgt_of)
    src = attention.source_words  # the source's word positions
    encoder = word_matrix(attention.encoder.numpy()[..., src, src], src_of, src_of, n_src, n_src)
    cross = word_matrix(attention.cross.numpy()[..., :n, src], tgt_of, src_of, n_tgt, n_src)  # row m predicts token m
    decoder = word_matrix(attention.decoder.numpy()[..., :n, 1 : n + 1], tgt_of, tgt_of, n_tgt, n_tgt)  # key m+1 is m
    maps = (torch.from_numpy(shares(m)).float() for m in (encoder, decoder, cross))
    return Attention(*maps, tuple(words[0]), tuple(words[1]), (0, 0))


def fed_words(bundle: ModelBundle, sentence: str, text: str) -> Attention:
    """The word-level maps of `bundle` with `text` fed to its decoder (compare_models across tokenizers)."""
    fed = translate(bundle, sentence, reference=text)
    source = bundle.src_tokenizer.encode(sentence).word_index, len(sentence.split())
    target = bundle.tgt_tokenizer.encode(text).word_index, len(text.split())
    return word_maps(fed.attention, source, target, (sentence.split(), text.split()))


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
    attention_b: Attention  # the same for B (identical tokens, or identical words)
    divergence: dict[str, np.ndarray]  # kind -> (L, H) mean Jensen-Shannon divergence in bits
    level: str = "token"  # "token", or "word" for models with different tokenizers


def compare_models(
    a: ModelBundle, b: ModelBundle, sentence: str, reference: str | None = None, max_len: int | None = None
) -> Comparison:
    """Translate with both (at most max_len decoder rows, default translation_cap), feed both A's translation
    (or the reference) and compare every head: token by token with the same tokenizers, else word by word.

    Raises ValueError with a readable message for shapes that differ, or unusable input."""
    if problem := shape_mismatch(a, b):
        raise ValueError(problem)
    own_a = translate(a, sentence, max_len=max_len or translation_cap(a, sentence))
    own_b = translate(b, sentence, max_len=max_len or translation_cap(b, sentence))
    if not same_tokenizers(a, b):
        text = reference or own_a.translation
        if not text.strip():
            raise ValueError("model A wrote nothing to feed both decoders: type a reference translation")
        att_a, att_b = fed_words(a, sentence, text), fed_words(b, sentence, text)
        return Comparison(
            sentence=sentence,
            translation_a=own_a.translation,
            translation_b=own_b.translation,
            decoder_input="the reference" if reference else "A's translation",
            attention_a=att_a,
            attention_b=att_b,
            divergence=attention_divergence(att_a, att_b),
            level="word",
        )
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
    if problem := shape_mismatch(a, b):
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
