"""Which head count fits a tutorial checkpoint? Its tensors do not record it, so try the plausible ones.

With a wrong count the weights still load (the projections are d_model x d_model whatever the split) and the
attention maps still look like attention: merging two true heads or halving one gives maps whose entropy
simply grows with the count, so the maps alone cannot tell. What a wrong split does break is the model's
fit to its own training: measured on the shipped 8-head model read as a tutorial file, its mean top-1
probability over the greedy translations of everyday sentences was 0.80 with 8 heads against 0.69 with 4
and 0.70 with 16 (0.68 with 1, 0.64 with 32). So the check translates a few sentences with each candidate
count and compares the model's confidence.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from core.checkpoint import ModelBundle
from core.decoding import translate
from core.model import Transformer

MARGIN = 0.03  # a count at least this much more confident (mean top-1 probability) than the chosen one wins


@dataclass(frozen=True)
class HeadCountCheck:
    chosen: int
    confidence: dict[int, float]  # head count -> mean top-1 probability of its greedy translations

    @property
    def best(self) -> int:
        return max(self.confidence, key=self.confidence.get)

    @property
    def doubtful(self) -> bool:
        """True when another count makes the model clearly more sure of its own output than the chosen one."""
        return self.confidence[self.best] - self.confidence[self.chosen] >= MARGIN


def candidate_counts(chosen: int, d_model: int) -> list[int]:
    """The chosen count, half and double it (the likely slips) and the tutorial's 8, where they divide d_model."""
    counts = {chosen, chosen // 2, chosen * 2, 8}
    return sorted(h for h in counts if h >= 1 and d_model % h == 0)


def with_heads(bundle: ModelBundle, heads: int) -> ModelBundle:
    """The same weights read with another head count."""
    config = dataclasses.replace(bundle.config, n_heads=heads)
    model = Transformer(config).eval()
    model.load_state_dict(bundle.model.state_dict())
    return dataclasses.replace(bundle, model=model, config=config)


def mean_confidence(bundle: ModelBundle, sentences: list[str], max_len: int = 40) -> float:
    """Mean over sentences and decoder rows of the probability of the token greedy decoding writes."""
    max_len = min(max_len, bundle.config.seq_len)
    rows = [translate(bundle, s, max_len=max_len).top_probs[:, 0] for s in sentences]
    return float(sum(r.sum() for r in rows) / sum(len(r) for r in rows))


def check_head_count(bundle: ModelBundle, sentences: list[str], counts: list[int] | None = None) -> HeadCountCheck:
    """Translate sentences with each candidate head count (default: candidate_counts) and compare how sure
    the model is of its own output; bundle.config.n_heads is the chosen count."""
    chosen = bundle.config.n_heads
    counts = counts or candidate_counts(chosen, bundle.config.d_model)
    confidence = {h: mean_confidence(bundle if h == chosen else with_heads(bundle, h), sentences) for h in counts}
    return HeadCountCheck(chosen, confidence)
