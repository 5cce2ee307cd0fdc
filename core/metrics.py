"""Translation quality: corpus BLEU and chrF (sacrebleu), character and word error rates."""

from __future__ import annotations

from collections.abc import Sequence

import sacrebleu


def edit_distance(a: Sequence, b: Sequence) -> int:
    """Levenshtein distance between two sequences (insertions, deletions, substitutions cost 1)."""
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def error_rate(hypotheses: Sequence[Sequence], references: Sequence[Sequence]) -> float:
    """Total edits over total reference length (CER on strings, WER on word lists)."""
    edits = sum(edit_distance(h, r) for h, r in zip(hypotheses, references))
    return edits / max(1, sum(len(r) for r in references))


def score(hypotheses: list[str], references: list[str], lowercase: bool = False) -> dict[str, float]:
    """BLEU and chrF (0-100, higher is better), CER and WER (0-1+, lower is better)."""
    if lowercase:
        hypotheses, references = [h.lower() for h in hypotheses], [r.lower() for r in references]
    return {
        "bleu": sacrebleu.corpus_bleu(hypotheses, [references]).score,
        "chrf": sacrebleu.corpus_chrf(hypotheses, [references]).score,
        "cer": error_rate(hypotheses, references),
        "wer": error_rate([h.split() for h in hypotheses], [r.split() for r in references]),
    }


SHORT = 0.5  # an output under half the reference's pieces has dropped part of the sentence


def length_scores(outputs: list[int], sources: list[int], references: list[int]) -> dict[str, float]:
    """How whole the translations are, from the pieces each holds: the mean ratio of output to source pieces, and
    the share of outputs under SHORT x their reference's pieces (a sentence whose end was never translated)."""
    pairs = [(o, s, r) for o, s, r in zip(outputs, sources, references, strict=True) if s > 0]
    if not pairs:
        return {"length_ratio": float("nan"), "short_share": float("nan")}
    return {
        "length_ratio": sum(o / s for o, s, _ in pairs) / len(pairs),
        "short_share": sum(o < SHORT * r for o, _, r in pairs) / len(pairs),
    }
