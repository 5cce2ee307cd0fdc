"""Head importance against independent computations: the batched ablation sweep against one plain pass
per head and sentence, the one-backward gradient score against per-sentence backward passes, Spearman
against known cases, and a model where one head carries the task by construction."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path[:0] = [str(Path(__file__).resolve().parent)]
from heads_fixtures import CARRIER, carrier_bundle, tiny_bundle, toy_pairs, word_map_pairs  # noqa: E402

from core.analysis.importance import (  # noqa: E402
    ablation,
    gradient_importance,
    importance_order,
    pruning_curve,
    ranks,
    spearman,
)
from core.data import encode_pairs  # noqa: E402
from core.evaluation import evaluate  # noqa: E402
from core.model import causal_mask  # noqa: E402
from core.tokenizer import EOS_ID, SOS_ID  # noqa: E402

torch.set_num_threads(1)
KINDS = ("encoder", "decoder", "cross")


@pytest.fixture(scope="module")
def bundle():
    return tiny_bundle(layers=2, heads=2, seed=3)


def sentence_logprob(model, example, head_mask=None) -> torch.Tensor:
    """Summed reference log-probability of one sentence, one unbatched pass."""
    src = torch.tensor([example.src])
    dec = torch.tensor([[SOS_ID, *example.tgt]])
    labels = torch.tensor([*example.tgt, EOS_ID])
    logits = model(src, dec, None, causal_mask(dec.size(1)), head_mask=head_mask)[0]
    return logits.log_softmax(-1)[torch.arange(len(labels)), labels].sum()


def one_off(kind, layer, head, n_layers=2, n_heads=2):
    gates = torch.ones(n_layers, n_heads)
    gates[layer, head] = 0.0
    return {kind: gates}


def test_batched_ablation_equals_one_pass_per_head_and_sentence(bundle):
    pairs = toy_pairs(7)
    deltas, base, tokens = ablation(bundle, pairs, batch_sentences=3)
    examples, _ = encode_pairs(pairs, bundle.src_tokenizer, bundle.tgt_tokenizer, 24)
    with torch.inference_mode():
        plain = sum(sentence_logprob(bundle.model, e) for e in examples)
        assert tokens == sum(len(e.tgt) + 1 for e in examples)
        assert base == pytest.approx(plain.item() / tokens, abs=1e-5)
        for kind in KINDS:
            for layer, head in np.ndindex(2, 2):
                off = sum(sentence_logprob(bundle.model, e, one_off(kind, layer, head)) for e in examples)
                assert deltas[kind][layer, head] == pytest.approx((off - plain).item() / tokens, abs=1e-5)
    assert np.abs(np.concatenate([d.ravel() for d in deltas.values()])).max() > 1e-4  # heads do matter


def test_one_backward_gradient_score_equals_per_sentence_gradients(bundle):
    pairs = toy_pairs(5)
    scores = gradient_importance(bundle, pairs, batch_sentences=4)
    examples, _ = encode_pairs(pairs, bundle.src_tokenizer, bundle.tgt_tokenizer, 24)
    expected = {kind: torch.zeros(2, 2) for kind in KINDS}
    for e in examples:
        gates = {kind: torch.ones(2, 2, requires_grad=True) for kind in KINDS}
        loss = -sentence_logprob(bundle.model, e, gates) / (len(e.tgt) + 1)
        for kind, grad in zip(KINDS, torch.autograd.grad(loss, [gates[k] for k in KINDS])):
            expected[kind] += grad.abs() / len(examples)
    for kind in KINDS:
        np.testing.assert_allclose(scores[kind], expected[kind].numpy(), rtol=1e-4, atol=1e-7)


def test_spearman_on_known_cases():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3], [1, 1e9, 5]) == pytest.approx(0.5)  # ranks 1 2 3 vs 1 3 2
    assert ranks([5, 1, 5, 2]).tolist() == [3.5, 1.0, 3.5, 2.0]  # ties share their mean rank
    assert np.isnan(spearman([1, 1, 1], [1, 2, 3]))
    # with ties: x ranks 1, 2.5, 2.5, 4 against 1, 3, 2, 4: rho = 4.5 / sqrt(4.5 * 5) = 3 / sqrt(10)
    assert spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(3 / np.sqrt(10))
    # no ties, by the textbook formula 1 - 6 sum d^2 / (n (n^2 - 1)): d^2 sums to 4 over 5 values: 0.8
    assert spearman([10, 20, 30, 40, 50], [2, 1, 4, 3, 5]) == pytest.approx(0.8)
    assert spearman([1, 2], [5, 7]) == pytest.approx(1.0)  # two values: the smallest case that has a ranking
    with pytest.raises(ValueError, match="3 values against 2"):
        spearman([1, 2, 3], [1, 2])


def test_importance_order_on_hand_made_scores():
    scores = {
        "encoder": np.array([[0.3, -1.0]]),
        "decoder": np.array([[2.0, 0.0]]),
        "cross": np.array([[0.1, 0.1]]),
    }
    assert importance_order(scores) == [  # least important (lowest score) first; ties keep kind, layer, head order
        ("encoder", 1, 2),
        ("decoder", 1, 2),
        ("cross", 1, 1),
        ("cross", 1, 2),
        ("encoder", 1, 1),
        ("decoder", 1, 1),
    ]
    assert importance_order(scores, ("cross", "encoder")) == [
        ("encoder", 1, 2),
        ("cross", 1, 1),
        ("cross", 1, 2),
        ("encoder", 1, 1),
    ]


def test_the_head_that_carries_the_task_ranks_first_in_both_measures():
    bundle = carrier_bundle()
    pairs = word_map_pairs(40, seed=7)
    metrics, _, _ = evaluate(bundle, pairs, progress=False, copy_unknown=False)
    assert metrics["chrf"] > 90  # the model learned the task through its one head
    deltas, _, _ = ablation(bundle, pairs)
    gradients = gradient_importance(bundle, pairs)
    drop = {kind: -deltas[kind] for kind in KINDS}
    assert importance_order(drop)[-1] == CARRIER
    assert importance_order(gradients)[-1] == CARRIER
    kind, layer, head = CARRIER
    assert deltas[kind][layer - 1, head - 1] < -1.0  # without it the source is unreachable
    curve = pruning_curve(bundle, pairs, importance_order(drop), step=4)
    assert [p["heads_off"] for p in curve] == [0, 4, 8, 12]
    assert curve[0]["chrf"] == pytest.approx(metrics["chrf"])
    assert curve[2]["chrf"] == pytest.approx(curve[0]["chrf"])  # 8 heads that do nothing: no change
    assert curve[-1]["chrf"] < 50  # the carrier off at last


def test_pruning_curve_starts_at_the_unmasked_score(bundle, capsys):
    pairs = toy_pairs(4)
    deltas, _, _ = ablation(bundle, pairs)
    order = importance_order({k: -v for k, v in deltas.items()})
    assert len(order) == 12 and len(set(order)) == 12
    calls = []
    curve = pruning_curve(bundle, pairs, order, step=5, progress=calls.append)
    assert [p["heads_off"] for p in curve] == [0, 5, 10, 12] and sum(calls) == 4 * 4  # translations: 4 points x 4 pairs
    assert curve[0]["chrf"] == pytest.approx(evaluate(bundle, pairs, progress=False)[0]["chrf"])
    assert [p["heads_off"] for p in pruning_curve(bundle, pairs, order)] == [0, 8, 12]  # 8 at a time by default
    assert capsys.readouterr().err == ""  # no progress bar of its own: callers show progress
