"""How far apart two models' attention is, head by head: pure functions of (L, H, Tq, Tk) weights.

The Jensen-Shannon divergence of two attention rows p and q (each a distribution over the same keys) is

    JS(p, q) = 1/2 KL(p || m) + 1/2 KL(q || m),   m = (p + q) / 2,

in bits (log base 2), so it lies in [0, 1]: 0 for identical rows, 1 for rows with no key in common. A
head's divergence is the mean over its query rows. Both maps must come from the same decoder input (the
same tokens on both axes); decoder self-attention rows hold zeros above the diagonal, which count as 0.
"""

from __future__ import annotations

import numpy as np
from torch import Tensor

from core.attention import KINDS, Attention


def _array(weights: Tensor | np.ndarray) -> np.ndarray:
    if isinstance(weights, Tensor):
        weights = weights.detach().float().cpu().numpy()
    return np.asarray(weights, dtype=np.float64)


def _kl_to_mixture(p: np.ndarray, m: np.ndarray) -> np.ndarray:
    """sum_k p_k log2(p_k / m_k) over the last axis; a key with p_k = 0 adds nothing (and m_k >= p_k / 2 > 0
    wherever p_k > 0)."""
    ratio = np.divide(p, m, out=np.ones_like(p), where=p > 0)
    return (p * np.log2(ratio)).sum(-1)


def row_divergence(p: Tensor | np.ndarray, q: Tensor | np.ndarray) -> np.ndarray:
    """(..., Tk) and (..., Tk) rows -> (...) Jensen-Shannon divergence of each pair of rows, in bits."""
    p, q = _array(p), _array(q)
    if p.shape != q.shape:
        raise ValueError(f"cannot compare attention of shapes {p.shape} and {q.shape}")
    m = (p + q) / 2
    return np.clip(0.5 * _kl_to_mixture(p, m) + 0.5 * _kl_to_mixture(q, m), 0.0, 1.0)  # clip: float rounding


def head_divergence(a: Tensor | np.ndarray, b: Tensor | np.ndarray) -> np.ndarray:
    """(L, H, Tq, Tk) maps of two models -> (L, H) mean over query rows of the rows' JS divergence (bits)."""
    a = _array(a)
    if a.ndim != 4:
        raise ValueError(f"expected (layers, heads, queries, keys) weights, got shape {a.shape}")
    return row_divergence(a, b).mean(-1)


def attention_divergence(a: Attention, b: Attention) -> dict[str, np.ndarray]:
    """{kind: (L, H) mean JS divergence} of two models' attention on the same sentence and decoder input."""
    if a.source_tokens != b.source_tokens or a.target_tokens != b.target_tokens:
        raise ValueError("the two maps were computed on different tokens: feed both models the same decoder input")
    return {kind: head_divergence(a.weights(kind), b.weights(kind)) for kind in KINDS}


def most_changed(divergence: dict[str, np.ndarray], top: int = 10) -> list[tuple[str, int, int, float]]:
    """The `top` heads of any kind with the largest divergence: (kind, layer, head, value), 1-based, largest first."""
    cells = [
        (kind, layer + 1, head + 1, float(grid[layer, head]))
        for kind, grid in divergence.items()
        for layer, head in np.ndindex(grid.shape)
    ]
    return sorted(cells, key=lambda cell: -cell[3])[:top]
