"""checkpoints/heads_report.json is the Heads page's report of checkpoints/default.pt on the shipped sample.

Recomputed here within the suite's time budget: the full report takes about 65 s of CPU on one thread (the
ablation sweep of every head about 50 s of it), so the statistics, the roles, the gradient score, the base
log-probability and the pruning curve (given the file's order) are recomputed in full, and the ablation only for
a seeded random sample of heads (two per kind), each by whole teacher-forced passes with that head off. The file's order is checked against its own ablation values, and the Spearman correlations against its
ablation and the recomputed gradient score. Nothing here names today's numbers: after the model is replaced,
`python -m core heads --checkpoint checkpoints/default.pt --data checkpoints/heads_sample.en-it.tsv
--save-report checkpoints/heads_report.json` writes the file again (docs/cli.md).
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core import load_checkpoint  # noqa: E402
from core.analysis.head_report import reference_attentions  # noqa: E402
from core.analysis.head_roles import head_roles  # noqa: E402
from core.analysis.head_stats import mean_statistics  # noqa: E402
from core.analysis.importance import encoded, gradient_importance, pruning_curve, spearman  # noqa: E402
from core.analysis.report_file import PAGE_PRUNING_STEP, load_report  # noqa: E402
from core.attention import KINDS  # noqa: E402
from core.data import collate, read_tsv  # noqa: E402
from core.seam import causal_mask, padding_mask  # noqa: E402

torch.set_num_threads(1)
CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"
MODEL, SAMPLE, REPORT = (
    CHECKPOINTS / "default.pt",
    CHECKPOINTS / "heads_sample.en-it.tsv",
    CHECKPOINTS / "heads_report.json",
)
REGENERATE = (
    "python -m core heads --checkpoint checkpoints/default.pt --data checkpoints/heads_sample.en-it.tsv "
    "--save-report checkpoints/heads_report.json"
)
pytestmark = pytest.mark.skipif(not MODEL.is_file(), reason="checkpoints/default.pt is not there")
ATOL = 2e-6  # the file keeps 6 decimals


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def shipped():
    bundle = load_checkpoint(MODEL)
    cfg = bundle.config
    report = load_report(REPORT, sha256(MODEL), sha256(SAMPLE), cfg.n_layers, cfg.n_heads)  # raises if stale
    return bundle, read_tsv(SAMPLE), report


def test_the_file_is_keyed_by_both_files_hashes_and_small():
    document = json.loads(REPORT.read_text(encoding="utf-8"))
    assert document["model_sha256"] == sha256(MODEL), f"the model changed: run {REGENERATE}"
    assert document["data_sha256"] == sha256(SAMPLE), f"the sample changed: run {REGENERATE}"
    assert REPORT.stat().st_size < 100_000


def test_statistics_and_roles_are_the_models(shipped):
    bundle, pairs, report = shipped
    attentions = reference_attentions(bundle, pairs)
    assert report.sentences == len(attentions) == len(pairs)
    roles = head_roles(attentions)
    for kind in KINDS:
        for name, values in mean_statistics(attentions, kind).items():
            np.testing.assert_allclose(report.measures[kind][name], values, atol=ATOL, err_msg=f"{kind} {name}")
        assert [[r.role for r in row] for row in report.roles[kind]] == [[r.role for r in row] for row in roles[kind]]
        assert [[r.evidence for r in row] for row in report.roles[kind]] == [
            [r.evidence for r in row] for row in roles[kind]
        ]


def test_gradient_scores_and_their_correlation_with_the_ablation(shipped):
    bundle, pairs, report = shipped
    gradients = gradient_importance(bundle, pairs)
    ablation = {kind: report.measures[kind]["ablation_delta_logprob"] for kind in KINDS}
    for kind in KINDS:
        np.testing.assert_allclose(report.measures[kind]["gradient_importance"], gradients[kind], atol=ATOL)
        assert report.spearman[kind] == pytest.approx(spearman(-ablation[kind], gradients[kind]), abs=1e-3)
    every = [np.concatenate([values[k].ravel() for k in KINDS]) for values in (ablation, gradients)]
    assert report.spearman["all"] == pytest.approx(spearman(-every[0], every[1]), abs=1e-3)


def reference_logprob(bundle, pairs, head_mask=None) -> float:
    """The references' summed log-probability ([EOS] included): whole teacher-forced passes over padded batches."""
    model, specials = bundle.model, bundle.specials
    total = 0.0
    examples = sorted(encoded(bundle, pairs), key=lambda e: (len(e.src), len(e.tgt)))  # little padding
    with torch.inference_mode():
        for start in range(0, len(examples), 50):
            src, dec, labels = collate(examples[start : start + 50], "cpu", specials)
            # padding comes after each reference, so the causal mask alone keeps its rows from reading it
            logits = model(src, dec, padding_mask(src, specials.pad), causal_mask(dec.size(1)), head_mask=head_mask)
            logp = logits.float().log_softmax(-1).gather(-1, labels[..., None])[..., 0]  # (B, T)
            total += logp[labels != specials.pad].sum().item()
    return total


def test_base_log_probability_and_a_seeded_sample_of_the_ablation(shipped):
    bundle, pairs, report = shipped
    cfg = bundle.config
    base = reference_logprob(bundle, pairs)
    tokens = sum(len(example.tgt) + 1 for example in encoded(bundle, pairs))
    assert report.tokens == tokens
    assert report.base_logprob == pytest.approx(base / tokens, abs=ATOL)
    rng = random.Random(0)
    for kind in KINDS:
        for layer, head in rng.sample(
            [(layer, head) for layer in range(cfg.n_layers) for head in range(cfg.n_heads)], 2
        ):
            gates = torch.ones(cfg.n_layers, cfg.n_heads)
            gates[layer, head] = 0.0
            delta = (reference_logprob(bundle, pairs, {kind: gates}) - base) / tokens
            stored = report.measures[kind]["ablation_delta_logprob"][layer, head]
            assert stored == pytest.approx(delta, abs=ATOL), f"{kind} layer {layer + 1} head {head + 1}"


def test_pruning_follows_the_files_ablation_and_its_curve_is_the_models(shipped):
    bundle, pairs, report = shipped
    drop = [-report.measures[kind]["ablation_delta_logprob"][layer - 1, head - 1] for kind, layer, head in report.order]
    assert drop == sorted(drop)  # least important first (rounded ties in either order)
    curve = pruning_curve(bundle, pairs, report.order, PAGE_PRUNING_STEP)
    assert [p["heads_off"] for p in curve] == [p["heads_off"] for p in report.pruning_curve]
    for point, stored in zip(curve, report.pruning_curve):
        assert stored["chrf"] == pytest.approx(point["chrf"], abs=1e-6)
        assert stored["bleu"] == pytest.approx(point["bleu"], abs=1e-6)
    assert report.pruning_curve_encoder == []  # the Heads page draws none
