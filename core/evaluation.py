"""Score a model on sentence pairs: corpus BLEU and chrF (sacrebleu), character and word error rates.

The command is `python -m core evaluate` (core/cli/evaluate.py).
"""

from __future__ import annotations

from collections.abc import Sequence

from tqdm import tqdm

from core.bundle import ModelBundle
from core.data import Example, bundle_examples
from core.decoding import beam_batch, check_beam_options, copied_text, copy_unknown_words, greedy_batch
from core.metrics import length_scores, score
from core.seam import HeadMask, LayerStack
from core.tokenizer import as_tokenizer


def lowercases(bundle: ModelBundle) -> bool:
    """Whether the target tokenizer lowercases (then its output can only be compared with lowercased references)."""
    return bundle.tgt_tokenizer.normalize("Ab") == "ab"


def decode_limits(model: LayerStack, examples: Sequence[Example], batch_size: int = 64) -> list[int]:
    """Each example's max_len as batch_translations decodes it: twice the longest reference of its batch (examples
    cut in order into batches of batch_size) plus 10 tokens, at most seq_len."""
    limits = []
    for start in range(0, len(examples), batch_size):
        batch = examples[start : start + batch_size]
        limits += [min(model.config.seq_len, max(len(e.tgt) for e in batch) * 2 + 10)] * len(batch)
    return limits


def hypothesis_text(tgt_tokenizer, ids: list[int], cross, source: tuple[object, str] | None, specials) -> str:
    """The text of generated ids; with source (its tokenizer, its text), a generated [UNK] is written as the
    source word its (T, S) cross-attention picked (copy_unknown_words)."""
    copies = []
    if source is not None and specials.unk in ids:
        encoded = as_tokenizer(source[0]).encode(source[1])
        copies = copy_unknown_words(tgt_tokenizer, cross, ids, encoded.tokens, encoded.words, specials)
    return copied_text(tgt_tokenizer, ids, copies, specials)


def batch_translations(
    model: LayerStack,
    examples: Sequence[Example],
    tgt_tokenizer,
    *,
    batch_size: int = 64,
    copy_from: tuple[object, Sequence[str]] | None = None,
    progress: bool = False,
    beam_size: int = 1,
    length_penalty: float = 0.0,
    head_mask: HeadMask | None = None,
) -> list[str]:
    """Translations of encoded examples, decoded in batches (validation and evaluate share it): greedy, or
    with beam_size > 1 a beam search of batch_size // beam_size sentences per batch (about batch_size
    decoder rows per call).

    Each batch decodes up to twice its longest reference plus 10 tokens (at most seq_len; decode_limits). With
    copy_from (the source tokenizer and each example's source text), a generated [UNK] is written as the source
    word its cross-attention picked (copy_unknown_words); without, it stays "[UNK]". The model is put in eval
    mode while decoding and handed back in the mode it came in.
    """
    training = model.training
    model.eval()
    tgt_tokenizer, specials = as_tokenizer(tgt_tokenizer), model.specials
    hyps: list[str] = []
    batch_size = max(1, batch_size // beam_size)
    limits = decode_limits(model, examples, batch_size)
    need_cross = copy_from is not None
    for start in tqdm(range(0, len(examples), batch_size), desc="translating", disable=not progress):
        sources = [e.src for e in examples[start : start + batch_size]]
        if beam_size > 1:
            args = (beam_size, limits[start], length_penalty)
            decoded = beam_batch(model, sources, *args, need_cross=need_cross, head_mask=head_mask)
        else:
            decoded = greedy_batch(model, sources, limits[start], need_cross=need_cross, head_mask=head_mask)
        outputs, crosses = decoded if need_cross else (decoded, [None] * len(sources))
        for offset, (ids, cross) in enumerate(zip(outputs, crosses)):
            source = (copy_from[0], copy_from[1][start + offset]) if need_cross else None
            hyps.append(hypothesis_text(tgt_tokenizer, ids, cross, source, specials))
    model.train(training)
    return hyps


def evaluate(
    bundle: ModelBundle,
    pairs: list[tuple[str, str]],
    batch_size: int = 64,
    progress: bool = True,
    copy_unknown: bool = True,
    beam_size: int = 1,
    length_penalty: float = 0.0,
    head_mask: HeadMask | None = None,
) -> tuple[dict[str, float], list[str], list[tuple[str, str]]]:
    """Greedy-translate (or, with beam_size > 1, beam-search) the pairs that fit the model; returns
    (metrics, hypotheses, the pairs scored). The metrics: BLEU, chrF, CER, WER, and length_ratio and short_share
    (core.metrics.length_scores) over target-tokenizer pieces of each output.

    The hypotheses are the text `translate` gives: with copy_unknown, a generated [UNK] shows the source
    word it attended to; without, it stays "[UNK]". A beam search runs batch_size // beam_size sentences
    per batch, so each decoder call has about batch_size rows. head_mask switches heads off (core.model.HeadMask).
    """
    check_beam_options(beam_size, 1, length_penalty)
    src_tok, tgt_tok = bundle.src_tokenizer, bundle.tgt_tokenizer
    examples, kept = bundle_examples(bundle, pairs)
    copy_from = (src_tok, [source for source, _ in kept]) if copy_unknown else None
    hyps = batch_translations(
        bundle.model,
        examples,
        tgt_tok,
        batch_size=batch_size,
        copy_from=copy_from,
        progress=progress,
        beam_size=beam_size,
        length_penalty=length_penalty,
        head_mask=head_mask,
    )
    metrics = score(hyps, [t for _, t in kept], lowercase=lowercases(bundle))
    pieces = [len(as_tokenizer(tgt_tok).encode(h).ids) for h in hyps]
    lengths = length_scores(
        pieces, [len(e.src) - bundle.specials.source_specials for e in examples], [len(e.tgt) for e in examples]
    )
    return metrics | lengths, hyps, kept
