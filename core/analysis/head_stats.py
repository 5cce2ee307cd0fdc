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
- offset_share (self-attention): the mean over rows of the weight on the key at one offset from the query
  (-1 the token before, 0 itself, +1 the token after); rows with no such key are left out.
- rare_token_share: the mean over rows of the weight on the rarest word key the row may see, by counts of
  each token over a data set (Voita et al. 2019's "rare words" heads).

`sink_share`, `normalised_entropy`, `diagonality`, `offset_share` and `rare_token_share` take `rows`, a mask
of the query rows to average over (`choice_rows`: the rows that may see two keys or more), and
`uniform_weights` gives the map of a head that spreads every row evenly, the baseline of each statistic
(core.analysis.head_roles reads both).
"""

from __future__ import annotations

from collections.abc import Mapping

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


def _mean_rows(values: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
    """(L, H, Tq) per-row values -> (L, H) mean over the rows in the mask (all by default); NaN if none."""
    if rows is None:
        return values.mean(-1)
    rows = np.asarray(rows, dtype=bool)
    if not rows.any():
        return np.full(values.shape[:-1], np.nan)
    return values[..., rows].mean(-1)


def choice_rows(n_rows: int, n_keys: int, causal: bool = False) -> np.ndarray:
    """(n_rows,) mask of the rows that may see at least two keys: a causal map's first row sees only the start
    token, so its weight there says nothing about the head."""
    visible = np.minimum(np.arange(1, n_rows + 1), n_keys) if causal else np.full(n_rows, n_keys)
    return visible >= 2


def uniform_weights(n_rows: int, n_keys: int, causal: bool = False) -> np.ndarray:
    """(1, 1, n_rows, n_keys) a head spreading each row evenly over the keys it may see."""
    visible = np.tril(np.ones((n_rows, n_keys))) if causal else np.ones((n_rows, n_keys))
    return (visible / visible.sum(-1, keepdims=True))[None, None]


def _row_entropy(w: np.ndarray) -> np.ndarray:
    """(L, H, Tq, Tk) -> (L, H, Tq) entropy of each row; 0 log 0 counts as 0."""
    return -(w * np.log(np.where(w > 0, w, 1.0))).sum(-1)


def entropy(weights: Tensor | np.ndarray) -> np.ndarray:
    return _row_entropy(_array(weights)).mean(-1)


def normalised_entropy(
    weights: Tensor | np.ndarray, causal: bool = False, rows: np.ndarray | None = None
) -> np.ndarray:
    """Row entropy / log(keys that row may see); rows with a single visible key count as 0 (rows=choice_rows(...)
    leaves them out)."""
    w = _array(weights)
    tq, tk = w.shape[-2:]
    visible = np.minimum(np.arange(1, tq + 1), tk) if causal else np.full(tq, tk)
    scale = np.log(np.maximum(visible, 1)).astype(np.float64)
    ratio = np.divide(_row_entropy(w), scale, out=np.zeros(w.shape[:-1]), where=scale > 0)
    return _mean_rows(ratio, rows)


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


def sink_keys(key_tokens: list[str], framing: frozenset[int] | None = None) -> np.ndarray:
    """(Tk,) mask of the sink keys: punctuation, and the framing positions (the model's start and end tokens; by
    default the keys named [SOS] or [EOS])."""
    if framing is None:
        return np.array([is_sink(t) for t in key_tokens], dtype=bool)
    return np.array([i in framing or is_sink(t) for i, t in enumerate(key_tokens)], dtype=bool)


def sink_share(
    weights: Tensor | np.ndarray,
    key_tokens: list[str],
    framing: frozenset[int] | None = None,
    rows: np.ndarray | None = None,
) -> np.ndarray:
    """Share of each row's weight on sink keys (`sink_keys`)."""
    w = _array(weights)
    if len(key_tokens) != w.shape[-1]:
        raise ValueError(f"{len(key_tokens)} key tokens for {w.shape[-1]} keys")
    return _mean_rows(w[..., sink_keys(key_tokens, framing)].sum(-1), rows)


def diagonal_keys(n_rows: int, n_keys: int) -> np.ndarray:
    """(n_rows,) the diagonal key of each cross-attention row (see the module docstring)."""
    return np.rint(np.arange(1, n_rows + 1) * (n_keys - 1) / n_rows).astype(int)


def diagonality(weights: Tensor | np.ndarray, band: int = 1, rows: np.ndarray | None = None) -> np.ndarray:
    w = _array(weights)
    tq, tk = w.shape[-2:]
    near = np.abs(np.arange(tk)[None, :] - diagonal_keys(tq, tk)[:, None]) <= band  # (Tq, Tk)
    return _mean_rows((w * near).sum(-1), rows)


def offset_share(weights: Tensor | np.ndarray, offset: int, rows: np.ndarray | None = None) -> np.ndarray:
    """Mean over rows of the weight on key query + offset (self-attention); rows without that key are left out."""
    w = _array(weights)
    tq, tk = w.shape[-2:]
    query = np.arange(tq)
    key = query + offset
    exists = (key >= 0) & (key < tk)
    per_row = np.zeros(w.shape[:-1])
    per_row[..., exists] = w[..., query[exists], key[exists]]
    return _mean_rows(per_row, exists if rows is None else exists & np.asarray(rows, dtype=bool))


def rarest_keys(
    key_tokens: list[str],
    counts: Mapping[str, int],
    n_rows: int,
    framing: frozenset[int] | None = None,
    causal: bool = False,
) -> np.ndarray:
    """(n_rows,) the rarest word key each row may see, -1 where it sees none.

    Word keys are the keys that are not sinks (`sink_keys`). The rarest has the smallest count; ties go to the longer
    token (longer words are the rarer ones, Zipf's law of abbreviation), then to the earlier. A causal row q sees
    keys 0..q; other rows see every key."""
    sinks = sink_keys(key_tokens, framing)
    rank = lambda i: (counts.get(key_tokens[i], 0), -len(key_tokens[i]), i)
    best, rarest = -1, []  # rarest[k]: the rarest word among keys 0..k
    for i in range(len(key_tokens)):
        if not sinks[i] and (best < 0 or rank(i) < rank(best)):
            best = i
        rarest.append(best)
    if not causal:
        return np.full(n_rows, best)
    return np.array([rarest[min(q, len(rarest) - 1)] for q in range(n_rows)], dtype=int)


def rare_token_share(
    weights: Tensor | np.ndarray,
    key_tokens: list[str],
    counts: Mapping[str, int],
    framing: frozenset[int] | None = None,
    causal: bool = False,
    rows: np.ndarray | None = None,
) -> np.ndarray:
    """Mean over rows of the weight on the rarest word key the row may see (`rarest_keys`); rows that see no word
    key are left out. counts: occurrences of each token over a data set."""
    w = _array(weights)
    tq, tk = w.shape[-2:]
    if len(key_tokens) != tk:
        raise ValueError(f"{len(key_tokens)} key tokens for {tk} keys")
    target = rarest_keys(key_tokens, counts, tq, framing, causal)
    exists = target >= 0
    per_row = np.zeros(w.shape[:-1])
    per_row[..., exists] = w[..., np.arange(tq)[exists], target[exists]]
    return _mean_rows(per_row, exists if rows is None else exists & np.asarray(rows, dtype=bool))


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
