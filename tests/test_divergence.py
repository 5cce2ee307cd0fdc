"""core.analysis.divergence against hand-computed cases and an independent formula: JS = H(m) - (H(p) + H(q)) / 2."""

import math
import random

import numpy as np
import pytest
import torch

from core import Attention
from core.analysis.divergence import attention_divergence, head_divergence, most_changed, row_divergence


def entropy_bits(p: list[float]) -> float:
    return -sum(x * math.log2(x) for x in p if x > 0)


def js_by_entropies(p: list[float], q: list[float]) -> float:
    """The same divergence by another route: the entropy of the mixture less the mean entropy."""
    m = [(x + y) / 2 for x, y in zip(p, q)]
    return entropy_bits(m) - (entropy_bits(p) + entropy_bits(q)) / 2


def random_distribution(rng: random.Random, n: int, zeros: int = 0) -> list[float]:
    w = [rng.random() for _ in range(n)]
    for i in rng.sample(range(n), zeros):
        w[i] = 0.0
    return [x / sum(w) for x in w]


def test_hand_computed_cases():
    assert row_divergence([0.3, 0.7], [0.3, 0.7]) == pytest.approx(0.0)
    assert row_divergence([1.0, 0.0], [0.0, 1.0]) == pytest.approx(1.0)  # no key in common: 1 bit
    # m = (0.75, 0.25): H(m) = 0.811278; H(p) = 1, H(q) = 0 -> 0.811278 - 0.5
    assert row_divergence([0.5, 0.5], [1.0, 0.0]) == pytest.approx(0.311278, abs=1e-6)
    assert row_divergence([1.0, 0.0], [0.5, 0.5]) == pytest.approx(0.311278, abs=1e-6)  # symmetric


def test_matches_the_entropy_formula_on_random_rows_with_zeros():
    rng = random.Random(0)
    for _ in range(200):
        n = rng.randint(2, 12)
        p, q = random_distribution(rng, n, rng.randint(0, n - 1)), random_distribution(rng, n, rng.randint(0, n - 1))
        assert row_divergence(p, q) == pytest.approx(js_by_entropies(p, q), abs=1e-9)


def test_head_divergence_is_the_mean_over_rows():
    rng = random.Random(1)
    a = [[[[*random_distribution(rng, 5)] for _ in range(3)] for _ in range(2)] for _ in range(2)]  # (2, 2, 3, 5)
    b = [[[[*random_distribution(rng, 5)] for _ in range(3)] for _ in range(2)] for _ in range(2)]
    got = head_divergence(np.array(a), torch.tensor(b))
    assert got.shape == (2, 2)
    for layer in range(2):
        for head in range(2):
            rows = [js_by_entropies(a[layer][head][r], b[layer][head][r]) for r in range(3)]
            assert got[layer, head] == pytest.approx(sum(rows) / 3, abs=1e-6)


def test_causal_rows_with_zeros_above_the_diagonal():
    a = torch.tensor([[[[1.0, 0.0], [0.5, 0.5]]]])
    b = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]])
    assert head_divergence(a, b)[0, 0] == pytest.approx(0.311278 / 2, abs=1e-6)


def test_shapes_and_tokens_must_match():
    with pytest.raises(ValueError, match="shapes"):
        row_divergence([0.5, 0.5], [1.0, 0.0, 0.0])
    enc, dec, cross = torch.full((1, 1, 3, 3), 1 / 3), torch.eye(2)[None, None], torch.full((1, 1, 2, 3), 1 / 3)
    one = Attention(enc, dec, cross, ("[SOS]", "a", "[EOS]"), ("[SOS]", "x"))
    other = Attention(enc, dec, cross, ("[SOS]", "a", "[EOS]"), ("[SOS]", "y"))
    assert {k: float(v.max()) for k, v in attention_divergence(one, one).items()} == {
        "encoder": 0.0,
        "decoder": 0.0,
        "cross": 0.0,
    }
    with pytest.raises(ValueError, match="same decoder input"):
        attention_divergence(one, other)


def test_most_changed_lists_the_largest_first():
    grids = {"encoder": np.array([[0.1, 0.5]]), "cross": np.array([[0.7, 0.0]])}
    assert most_changed(grids, top=2) == [("cross", 1, 1, 0.7), ("encoder", 1, 2, 0.5)]


def test_most_changed_lists_ten_heads_by_default_and_bad_shapes_are_named():
    grid = np.arange(12, dtype=float).reshape(3, 4) / 12  # 12 heads of one kind
    top = most_changed({"decoder": grid})
    assert len(top) == 10 and top[0] == ("decoder", 3, 4, 11 / 12) and top[-1] == ("decoder", 1, 3, 2 / 12)
    with pytest.raises(ValueError, match=r"expected \(layers, heads, queries, keys\) weights, got shape \(2, 2\)"):
        head_divergence(np.eye(2), np.eye(2))
