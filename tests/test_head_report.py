"""head_report against independent computations: its Spearman values against a textbook rank correlation of the
ablation and gradient numbers it reports, its pruning order against those numbers and against a model where one
head carries the task by construction, and its pruning curve against re-translation with those heads off."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path[:0] = [str(Path(__file__).resolve().parent)]
from heads_fixtures import CARRIER, carrier_bundle, tiny_bundle, toy_pairs, word_map_pairs  # noqa: E402

from core import translate  # noqa: E402
from core.analysis.head_report import head_report  # noqa: E402
from core.evaluation import evaluate  # noqa: E402

torch.set_num_threads(1)
KINDS = ("encoder", "decoder", "cross")


def spearman_by_hand(x, y) -> float:
    """Spearman's rho as a textbook gives it: each value's rank is 1 + how many values are smaller + half of the
    others equal to it (ties share their mean rank), then Pearson's correlation of the ranks; NaN when a side is
    constant."""
    x, y = np.ravel(x).astype(float), np.ravel(y).astype(float)

    def rank(v):
        return np.array([1 + (v < a).sum() + ((v == a).sum() - 1) / 2 for a in v])

    rx, ry = rank(x), rank(y)
    dx, dy = rx - rx.mean(), ry - ry.mean()
    spread = math.sqrt((dx * dx).sum() * (dy * dy).sum())
    return float((dx * dy).sum() / spread) if spread else float("nan")


def test_spearman_by_hand_on_textbook_cases():
    assert spearman_by_hand([1, 2, 3, 4, 5], [2, 4, 6, 8, 10]) == pytest.approx(1.0)
    assert spearman_by_hand([1, 2, 3, 4, 5], [5, 4, 3, 2, 1]) == pytest.approx(-1.0)
    # no ties: 1 - 6 sum d^2 / (n (n^2 - 1)); ranks 1 2 3 4 5 against 2 1 4 3 5: d^2 sums to 4, rho = 1 - 24/120
    assert spearman_by_hand([10, 20, 30, 40, 50], [2, 1, 4, 3, 5]) == pytest.approx(0.8)
    # ties: x ranks 1, 2.5, 2.5, 4 against 1, 3, 2, 4: rho = 4.5 / sqrt(4.5 * 5) = 3 / sqrt(10)
    assert spearman_by_hand([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(3 / math.sqrt(10))
    assert math.isnan(spearman_by_hand([1, 1, 1], [1, 2, 3]))


def assert_report_agrees_with_its_numbers(report) -> None:
    """Spearman per kind and over all heads, and the order, recomputed from the ablation and gradient numbers the
    report itself shows."""
    delta = {k: report.measures[k]["ablation_delta_logprob"] for k in KINDS}
    grad = {k: report.measures[k]["gradient_importance"] for k in KINDS}
    expected = {k: spearman_by_hand(-delta[k], grad[k]) for k in KINDS}
    expected["all"] = spearman_by_hand(
        np.concatenate([-delta[k].ravel() for k in KINDS]), np.concatenate([grad[k].ravel() for k in KINDS])
    )
    assert set(report.spearman) == set(expected)
    for name, value in expected.items():
        got = report.spearman[name]
        assert (math.isnan(got) and math.isnan(value)) or got == pytest.approx(value, abs=1e-9), name
    # least important first: switching a head off costs (-delta) never less than the heads before it
    n_layers, n_heads = delta["cross"].shape
    assert sorted(report.order) == sorted(
        (k, li, h) for k in KINDS for li in range(1, n_layers + 1) for h in range(1, n_heads + 1)
    )
    costs = [-delta[k][li - 1, h - 1] for k, li, h in report.order]
    assert costs == sorted(costs)


def gates_off(heads, n_layers: int, n_heads: int) -> dict[str, torch.Tensor]:
    gates = {k: torch.ones(n_layers, n_heads) for k in KINDS}
    for kind, layer, head in heads:
        gates[kind][layer - 1, head - 1] = 0.0
    return gates


def test_report_of_an_untrained_model_agrees_with_its_own_ablation_and_gradient_numbers():
    bundle = tiny_bundle(layers=2, heads=2, seed=3)
    pairs = toy_pairs(6)
    stages = []
    report = head_report(bundle, pairs, progress=lambda *args: stages.append(args))  # the default step: 8
    assert_report_agrees_with_its_numbers(report)
    values = [v for v in report.spearman.values() if not math.isnan(v)]
    assert len(set(np.round(values, 6))) > 1  # generic numbers: not one constant for every kind
    costs = [-report.measures[k]["ablation_delta_logprob"][li - 1, h - 1] for k, li, h in report.order]
    assert costs[0] < costs[-1]  # the heads differ, so the order says something
    # the curve switches off the first k heads of that order: re-translate with them off, gates built here
    assert [p["heads_off"] for p in report.pruning_curve] == [0, 8, 12]
    for point in report.pruning_curve:
        metrics, _, _ = evaluate(
            bundle, pairs, progress=False, head_mask=gates_off(report.order[: point["heads_off"]], 2, 2)
        )
        assert point["chrf"] == pytest.approx(metrics["chrf"]) and point["bleu"] == pytest.approx(metrics["bleu"])
    # statistics: a mean over sentences of each sentence's mean row entropy (nats), computed here
    maps = [translate(bundle, en, reference=it).attention.cross.double().numpy() for en, it in pairs]
    entropies = [-(w * np.log(np.where(w > 0, w, 1.0))).sum(-1).mean(-1) for w in maps]
    np.testing.assert_allclose(report.measures["cross"]["entropy"], np.mean(entropies, axis=0), atol=1e-5)
    assert report.sentences == len(pairs)
    # share on the framing keys ([SOS] and [EOS]: these sentences have no punctuation), per sentence, then the mean
    encoder = [translate(bundle, en, reference=it).attention.encoder.double().numpy() for en, it in pairs]
    sinks = [w[..., [0, -1]].sum(-1).mean(-1) for w in encoder]
    np.testing.assert_allclose(report.measures["encoder"]["sink_share"], np.mean(sinks, axis=0), atol=1e-5)
    assert report.tokens == sum(len(bundle.tgt_tokenizer.encode(it).ids) + 1 for _, it in pairs)  # with [EOS]
    # progress: each stage counts up to its total, in this order
    names = list(dict.fromkeys(stage for stage, _, _ in stages))
    assert names == ["statistics", "ablation", "gradient", "pruning (all)"]
    for name in names:
        counts = [(done, total) for stage, done, total in stages if stage == name]
        assert [d for d, _ in counts] == sorted(d for d, _ in counts) and counts[-1][0] == counts[-1][1] > 0
    assert counts[-1] == (18, 18)  # the pruning curve: 0, 8 and 12 heads off, each over the 6 pairs
    # the JSON of `python -m core heads`: its keys, the numbers rounded to 6 places
    record = report.to_json()
    assert set(record) == {
        "sentences", "tokens", "base_logprob", "kinds", "spearman", "pruning_curve", "pruning_curve_encoder",
        "pruning_order", "roles", "role_evidence", "role_thresholds",
    }  # fmt: skip
    assert (record["sentences"], record["tokens"]) == (report.sentences, report.tokens)
    assert record["base_logprob"] == pytest.approx(report.base_logprob, abs=5e-7) == round(record["base_logprob"], 6)
    for name, value in report.spearman.items():
        assert record["spearman"][name] == pytest.approx(value, abs=5e-7) == round(record["spearman"][name], 6)
    entropy = np.array(record["kinds"]["cross"]["entropy"])
    np.testing.assert_allclose(entropy, report.measures["cross"]["entropy"], atol=5e-7)
    assert (np.round(entropy, 6) == entropy).all()
    assert record["pruning_order"] == [list(h) for h in report.order] and record["pruning_curve_encoder"] == []


@pytest.fixture(scope="module")
def carrier():
    return carrier_bundle()


def test_report_puts_the_head_that_carries_the_task_last_and_prunes_it_last(carrier):
    pairs = word_map_pairs(40, seed=7)
    report = head_report(carrier, pairs, pruning_step=4, encoder_pruning_step=2)
    assert_report_agrees_with_its_numbers(report)
    # By construction only CARRIER does anything: every other head's output projection is zero, so switching it off
    # changes nothing (ablation 0, gradient 0) and the carrier ranks above all: Spearman 1 where anything varies.
    assert report.order[-1] == CARRIER
    kind, layer, head = CARRIER
    for k, li, h in report.order[:-1]:
        assert report.measures[k]["ablation_delta_logprob"][li - 1, h - 1] == pytest.approx(0.0, abs=1e-6)
    assert report.measures[kind]["ablation_delta_logprob"][layer - 1, head - 1] < -1.0
    assert report.spearman["cross"] == pytest.approx(1.0) and report.spearman["all"] == pytest.approx(1.0)
    assert math.isnan(report.spearman["encoder"])  # every encoder head does nothing: no ranking to correlate
    curve = report.pruning_curve
    assert [p["heads_off"] for p in curve] == [0, 4, 8, 12]
    assert curve[0]["chrf"] > 90  # the model does the task
    assert curve[1]["chrf"] == curve[2]["chrf"] == curve[0]["chrf"]  # the heads that do nothing go first
    assert curve[3]["chrf"] < 50  # the carrier off, at last
    encoder = report.pruning_curve_encoder
    assert [p["heads_off"] for p in encoder] == [0, 2, 4] and all(p["chrf"] == curve[0]["chrf"] for p in encoder)
    assert report.to_json()["pruning_curve_encoder"] == encoder
