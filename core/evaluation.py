"""Score a model on sentence pairs: corpus BLEU and chrF (sacrebleu), character and word error rates.

The command is `python -m core evaluate` (core/cli/evaluate.py).
"""

from __future__ import annotations

from tqdm import tqdm

from core.checkpoint import ModelBundle
from core.data import encode_pairs
from core.decoding import copied_text, copy_unknown_words, greedy_batch
from core.metrics import score
from core.model import HeadMask
from core.tokenizer import UNK_ID, encode, ids_to_text


def lowercases(bundle: ModelBundle) -> bool:
    """Whether the target tokenizer lowercases (then its output can only be compared with lowercased references)."""
    normalizer = bundle.tgt_tokenizer.normalizer
    return normalizer is not None and "Lowercase" in repr(normalizer)


def evaluate(
    bundle: ModelBundle,
    pairs: list[tuple[str, str]],
    batch_size: int = 64,
    progress: bool = True,
    copy_unknown: bool = True,
    head_mask: HeadMask | None = None,
) -> tuple[dict[str, float], list[str], list[tuple[str, str]]]:
    """Greedy-translate the pairs that fit the model; returns (metrics, hypotheses, the pairs scored).

    The hypotheses are the text `translate` gives: with copy_unknown, a generated [UNK] shows the source
    word it attended to; without, it stays "[UNK]". head_mask switches heads off (core.model.HeadMask).
    """
    src_tok, tgt_tok = bundle.src_tokenizer, bundle.tgt_tokenizer
    examples, kept = encode_pairs(pairs, src_tok, tgt_tok, bundle.config.seq_len)
    hyps: list[str] = []
    for start in tqdm(range(0, len(examples), batch_size), desc="translating", disable=not progress):
        batch = examples[start : start + batch_size]
        max_len = min(bundle.config.seq_len, max(len(e.tgt) for e in batch) * 2 + 10)
        decoded = greedy_batch(
            bundle.model, [e.src for e in batch], max_len, need_cross=copy_unknown, head_mask=head_mask
        )
        outputs, crosses = decoded if copy_unknown else (decoded, [None] * len(decoded))
        for (source, _), ids, cross in zip(kept[start : start + batch_size], outputs, crosses):
            if cross is not None and UNK_ID in ids:
                _, tokens, words = encode(src_tok, source)
                hyps.append(copied_text(tgt_tok, ids, copy_unknown_words(tgt_tok, cross, ids, tokens, words)))
            else:
                hyps.append(ids_to_text(tgt_tok, ids))
    return score(hyps, [t for _, t in kept], lowercase=lowercases(bundle)), hyps, kept
