"""What each head does, as numbers: pure functions of (L, H, Tq, Tk) attention weights.

Every function takes one kind of attention of one sentence (a tensor or array shaped (L, H, Tq, Tk),
rows summing to 1) and returns an (L, H) array; `head_statistics` gathers them for one Attention and
`mean_statistics` averages them over sentences. Entropies are in nats.

- entropy: mean over rows of -sum w log w; `normalised_entropy` divides each row's entropy by the log of
  the number of keys that row may attend to (1 = uniform, 0 = one key), so heads over sentences of
  different lengths compare. Decoder self-attention rows may see only keys 0..i (causal).
- confidence: mean over rows of the largest weight (Voita et al. 2019).
- mean_offset / mean_distance (self-attention): sum_k w_qk (k - q) and sum_k w_qk |k - q|, averaged over
  rows: -1 is a head that looks at the previous token, 0 at itself.
- sink_share: the share of attention on [SOS], [EOS] and punctuation keys (the "no-op" heads of Clark
  et al. 2019).
- diagonality (cross-attention): the share of each row's weight within one position of the scaled
  diagonal. Row i is the step that predicts target token i + 1, so its diagonal key is
  round((i + 1) (S - 1) / T): with T rows and S keys, the last row (which predicts [EOS]) sits on [EOS].
"""

from __future__ import annotations

import numpy as np
from torch import Tensor

from core.attention import KIND, Attention

SINK_TOKENS = frozenset({"[SOS]", "[EOS]"})
KIND_STATISTICS = {name: kind.statistics for name, kind in KIND.items()}  # which mean something for each kind


def _array(weights: Tensor | np.ndarray) -> np.ndarray:
    if isinstance(weights, Tensor):
        weights = weights.detach().float().cpu().numpy()
    weights = np.asarray(weights, dtype=np.float64)
    if weights.ndim != 4:
        raise ValueError(f"expected (layers, heads, queries, keys) weights, got shape {weights.shape}")
    return weights


def _row_entropy(w: np.ndarray) -> np.ndarray:
    """(L, H, Tq, Tk) -> (L, H, Tq) entropy of each row; 0 log 0 counts as 0."""
    return -(w * np.log(np.where(w > 0, w, 1.0))).sum(-1)


def entropy(weights: Tensor | np.ndarray) -> np.ndarray:
    return _row_entropy(_array(weights)).mean(-1)


def normalised_entropy(weights: Tensor | np.ndarray, causal: bool = False) -> np.ndarray:
    """Row entropy / log(keys that row may see); rows with a single visible key count as 0."""
    w = _array(weights)
    tq, tk = w.shape[-2:]
    visible = np.minimum(np.arange(1, tq + 1), tk) if causal else np.full(tq, tk)
    scale = np.log(np.maximum(visible, 1)).astype(np.float64)
    ratio = np.divide(_row_entropy(w), scale, out=np.zeros(w.shape[:-1]), where=scale > 0)
    return ratio.mean(-1)


def confidence(weights: Tensor | np.ndarray) -> np.ndarray:
    return _array(weights).max(-1).mean(-1)


def mean_offset(weights: Tensor | np.ndarray) -> np.ndarray:
    w = _array(weights)
    offset = np.arange(w.shape[-1])[None, :] - np.arange(w.shape[-2])[:, None]  # (Tq, Tk): key - query
    return (w * offset).sum(-1).mean(-1)


def mean_distance(weights: Tensor | np.ndarray) -> np.ndarray:
    w = _array(weights)
    distance = np.abs(np.arange(w.shape[-1])[None, :] - np.arange(w.shape[-2])[:, None])
    return (w * distance).sum(-1).mean(-1)


def is_sink(token: str) -> bool:
    """[SOS], [EOS] or a token with no letter or digit (punctuation)."""
    return token in SINK_TOKENS or not any(ch.isalnum() for ch in token)


def sink_share(
    weights: Tensor | np.ndarray, key_tokens: list[str], framing: frozenset[int] | None = None
) -> np.ndarray:
    """Share of each row's weight on sink keys: punctuation, and the framing positions (the model's start and end
    tokens; by default the keys named [SOS] or [EOS])."""
    w = _array(weights)
    if len(key_tokens) != w.shape[-1]:
        raise ValueError(f"{len(key_tokens)} key tokens for {w.shape[-1]} keys")
    if framing is None:
        sinks = np.array([is_sink(t) for t in key_tokens])
    else:
        sinks = np.array([i in framing or is_sink(t) for i, t in enumerate(key_tokens)])
    return w[..., sinks].sum(-1).mean(-1)


def diagonal_keys(n_rows: int, n_keys: int) -> np.ndarray:
    """(n_rows,) the diagonal key of each cross-attention row (see the module docstring)."""
    return np.rint(np.arange(1, n_rows + 1) * (n_keys - 1) / n_rows).astype(int)


def diagonality(weights: Tensor | np.ndarray, band: int = 1) -> np.ndarray:
    w = _array(weights)
    tq, tk = w.shape[-2:]
    near = np.abs(np.arange(tk)[None, :] - diagonal_keys(tq, tk)[:, None]) <= band  # (Tq, Tk)
    return (w * near).sum(-1).mean(-1)


def head_statistics(attention: Attention, kind: str) -> dict[str, np.ndarray]:
    """Every statistic that means something for this kind, each (L, H), for one sentence."""
    w = _array(attention.weights(kind))
    keys = attention.keys(kind)
    everything = {
        "entropy": lambda: entropy(w),
        "normalised_entropy": lambda: normalised_entropy(w, causal=KIND[kind].causal),
        "confidence": lambda: confidence(w),
        "sink_share": lambda: sink_share(w, keys, attention.framing(kind)),
        "mean_offset": lambda: mean_offset(w),
        "mean_distance": lambda: mean_distance(w),
        "diagonality": lambda: diagonality(w),
    }
    return {name: everything[name]() for name in KIND_STATISTICS[kind]}


def mean_statistics(attentions: list[Attention], kind: str) -> dict[str, np.ndarray]:
    """head_statistics averaged over sentences (each sentence weighs the same)."""
    if not attentions:
        raise ValueError("no sentences to average over")
    per_sentence = [head_statistics(a, kind) for a in attentions]
    return {name: np.mean([s[name] for s in per_sentence], axis=0) for name in per_sentence[0]}
