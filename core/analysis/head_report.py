"""Everything the Heads views show, computed once over a set of sentence pairs: `head_report`.

Statistics (core.analysis.head_stats) and each head's role (core.analysis.head_roles) come from teacher-forced
passes over the references; importance (ablation, gradient score, their Spearman correlation) and the pruning
curve from core.analysis.importance. `HeadReport.to_json()` is the `python -m core heads --json` schema.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from core.analysis.head_roles import ROLES, RoleGrid, head_roles
from core.analysis.head_stats import mean_statistics
from core.analysis.importance import (
    ablation,
    encoded,
    gradient_importance,
    importance_order,
    pruning_counts,
    pruning_curve,
    spearman,
)
from core.attention import KINDS, Attention
from core.bundle import ModelBundle
from core.decoding import teacher_forced

StageProgress = Callable[[str, int, int], None]  # (stage, done, total)
MEASURE_LABELS = {
    "ablation_delta_logprob": "Ablation: change of mean log-prob (negative = needed)",
    "gradient_importance": "Gradient importance |dL/d gate| (Michel et al.)",
    "entropy": "Entropy (nats)",
    "normalised_entropy": "Entropy / log(keys)",
    "confidence": "Confidence (mean max weight)",
    "sink_share": "Share on [SOS]/[EOS]/punctuation",
    "mean_offset": "Mean signed offset (key - query)",
    "mean_distance": "Mean distance |key - query|",
    "diagonality": "Diagonality (within 1 of the diagonal)",
}


@dataclass(frozen=True)
class HeadReport:
    sentences: int
    tokens: int  # reference tokens scored (with [EOS])
    base_logprob: float  # mean reference log-probability with every head on
    measures: dict[str, dict[str, np.ndarray]]  # kind -> measure -> (L, H)
    spearman: dict[str, float]  # kind or "all" -> Spearman(-ablation delta, gradient importance)
    pruning_curve: list[dict] = field(default_factory=list)  # all kinds, least important first
    pruning_curve_encoder: list[dict] = field(default_factory=list)  # encoder heads only (Voita et al.)
    order: list[tuple[str, int, int]] = field(default_factory=list)  # every head, least important first
    roles: dict[str, RoleGrid] = field(default_factory=dict)  # kind -> L x H HeadRole

    def to_json(self) -> dict:
        """The command's JSON: L x H nested lists, layer 1 first (plus the extra statistics)."""
        kinds = {
            kind: {name: np.round(values, 6).tolist() for name, values in measures.items()}
            for kind, measures in self.measures.items()
        }
        return {
            "sentences": self.sentences,
            "tokens": self.tokens,
            "base_logprob": round(self.base_logprob, 6),
            "kinds": kinds,
            "spearman": {k: round(v, 6) for k, v in self.spearman.items()},
            "pruning_curve": self.pruning_curve,
            "pruning_curve_encoder": self.pruning_curve_encoder,
            "pruning_order": [list(h) for h in self.order],
            "roles": {kind: [[r.role for r in row] for row in grid] for kind, grid in self.roles.items()},
            "role_evidence": {kind: [[r.to_json() for r in row] for row in grid] for kind, grid in self.roles.items()},
            "role_thresholds": {name: role.threshold for name, role in ROLES.items()},
        }


def reference_attentions(bundle: ModelBundle, pairs: Sequence[tuple[str, str]], progress=None) -> list[Attention]:
    """Teacher-forced attention of every pair that fits, with the tokens (the statistics are computed on these)."""
    src_tok, tgt_tok = bundle.src_tokenizer, bundle.tgt_tokenizer
    examples = encoded(bundle, pairs)
    frame = (len(bundle.specials.source_prefix), 1)
    result = []
    for n, example in enumerate(examples, 1):
        inputs, _, _, _, maps = teacher_forced(bundle.model, example.src, example.tgt)
        tokens = tuple(src_tok.id_to_token(i) for i in example.src), tuple(tgt_tok.id_to_token(i) for i in inputs)
        result.append(Attention(*(m.cpu() for m in maps), *tokens, source_frame=frame))
        if progress:
            progress("statistics", n, len(examples))
    return result


def _counter(progress: StageProgress | None, stage: str, total: int):
    """A callback adding finished units and reporting (stage, done, total)."""
    done = 0

    def step(units: int) -> None:
        nonlocal done
        done += units
        if progress:
            progress(stage, done, total)

    return step


def head_report(
    bundle: ModelBundle,
    pairs: Sequence[tuple[str, str]],
    pruning_step: int | None = 8,
    encoder_pruning_step: int | None = None,
    progress: StageProgress | None = None,
) -> HeadReport:
    """Statistics, importance and pruning curves over the pairs that fit the model (ValueError if none).

    pruning_step None skips the curve (it re-translates the pairs once per step, all steps in the same batches);
    encoder_pruning_step adds the encoder-only curve."""
    attentions = reference_attentions(bundle, pairs, progress)
    n = len(attentions)
    measures = {kind: mean_statistics(attentions, kind) for kind in KINDS}
    roles = head_roles(attentions)
    deltas, base, tokens = ablation(bundle, pairs, progress=_counter(progress, "ablation", n))
    gradients = gradient_importance(bundle, pairs, progress=_counter(progress, "gradient", n))
    for kind in KINDS:
        measures[kind]["ablation_delta_logprob"] = deltas[kind]
        measures[kind]["gradient_importance"] = gradients[kind]
    correlation = {kind: spearman(-deltas[kind], gradients[kind]) for kind in KINDS}
    correlation["all"] = spearman(
        np.concatenate([-deltas[k].ravel() for k in KINDS]), np.concatenate([gradients[k].ravel() for k in KINDS])
    )
    drop = {kind: -deltas[kind] for kind in KINDS}
    order = importance_order(drop)
    curves = {}
    for name, kinds, step in (("all", KINDS, pruning_step), ("encoder", ("encoder",), encoder_pruning_step)):
        if step:
            heads = importance_order(drop, kinds)
            tick = _counter(progress, f"pruning ({name})", len(pruning_counts(len(heads), step)) * n)
            curves[name] = pruning_curve(bundle, pairs, heads, step, progress=tick)
    return HeadReport(
        sentences=n,
        tokens=tokens,
        base_logprob=base,
        measures=measures,
        spearman=correlation,
        pruning_curve=curves.get("all", []),
        pruning_curve_encoder=curves.get("encoder", []),
        order=order,
        roles=roles,
    )
