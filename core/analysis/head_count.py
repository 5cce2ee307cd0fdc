"""Which head count fits a tutorial checkpoint? Its tensors do not record it, so try the plausible ones.

With a wrong count the weights still load (the projections are d_model x d_model whatever the split) and the
attention maps still look like attention: merging two true heads or halving one gives maps whose entropy
simply grows with the count, so the maps alone cannot tell. What a wrong split does break is the model's fit to
language: read with the wrong count, a model gives good translations of everyday sentences a lower probability.
So the check feeds a few such translations (CHECK_PAIRS) to the decoder with each candidate count and compares
their mean log-probability per token. The model's confidence in its own greedy output is no test: read with 4
heads, the shipped 8-head model writes shorter translations it is surer of ("Amo." for "I love you.").
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from core.checkpoint import ModelBundle
from core.decoding.greedy import sequence_log_prob
from core.decoding.inputs import encode_checked
from core.model import Transformer

MARGIN = 0.05  # a count whose references score at least this much higher (nats per token) than the chosen one's wins

# Everyday sentences (the app's first examples) and a plain Italian translation of each, written for this check.
CHECK_PAIRS = (
    ("I love you.", "Ti amo."),
    ("The cat is sleeping on the chair.", "Il gatto dorme sulla sedia."),
    ("Where is the train station?", "Dov'è la stazione dei treni?"),
    ("We will go to the sea tomorrow if the weather is good.", "Domani andremo al mare se il tempo è bello."),
    ("She opened the door and looked at the garden.", "Ha aperto la porta e ha guardato il giardino."),
)


@dataclass(frozen=True)
class HeadCountCheck:
    chosen: int
    fit: dict[int, float]  # head count -> mean log-probability per token of the CHECK_PAIRS translations

    @property
    def best(self) -> int:
        return max(self.fit, key=self.fit.get)

    @property
    def doubtful(self) -> bool:
        """True when another count makes good translations clearly more likely than the chosen one does."""
        return self.fit[self.best] - self.fit[self.chosen] >= MARGIN


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


def reference_fit(bundle: ModelBundle, pairs) -> float:
    """Mean log-probability per token (nats, [EOS] included) of each pair's translation fed to the decoder."""
    total, count = 0.0, 0
    for en, it in pairs:
        src = bundle.specials.frame_source(
            encode_checked(
                bundle.src_tokenizer, en, bundle.config.seq_len - bundle.specials.source_specials, "sentence"
            ).ids
        )
        ref = encode_checked(bundle.tgt_tokenizer, it, bundle.config.seq_len - 1, "reference translation").ids
        total += sequence_log_prob(bundle.model, src, ref)
        count += len(ref) + 1  # the end-of-sentence token too
    return total / count


def check_head_count(bundle: ModelBundle, pairs=CHECK_PAIRS, counts: list[int] | None = None) -> HeadCountCheck:
    """Score the pairs' translations with each candidate head count (default: candidate_counts);
    bundle.config.n_heads is the chosen count."""
    chosen = bundle.config.n_heads
    counts = counts or candidate_counts(chosen, bundle.config.d_model)
    fit = {h: reference_fit(bundle if h == chosen else with_heads(bundle, h), pairs) for h in counts}
    return HeadCountCheck(chosen, fit)
