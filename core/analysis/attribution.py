"""Where each output word came from: every attribution method, one interface, for any model family.

`attribute(bundle, translation, method)` gives an Attribution: for each decoder row t (the row that predicts
output token t) a distribution over the encoder positions, and, for the methods that split it, the share of the
prediction that came from the source rather than the target prefix. Methods (names as the command line takes
them):

- attention: the last layer's cross-attention, mean of heads (the baseline);
- shift-att: the penultimate layer's cross-attention read at the row where the token is the decoder input (Shift-Att,
  Chen et al. 2020; the last row, with no such row, is read where it predicts);
- rollout, gradient: attention rollout with Chefer et al.'s rules, attention-only or gradient-weighted
  (core/analysis/relevance.py);
- norm: |sum_h alpha f_h(x_j)| of the last layer's cross-attention (Kobayashi et al. 2020);
- norm-rollout, alti, value-zeroing: contributions rolled out through encoder and decoder, with the source share
  (core/analysis/contributions.py; ALTI+ is Ferrando et al. 2022, value zeroing Mohebbi et al. 2023);
- integrated-gradients: integrated gradients (Sundararajan et al. 2017) on the source token embeddings, of each
  output token's log-probability, with Captum's default rule (32 Gauss-Legendre steps); the baseline keeps the
  framing tokens and zeroes the words' embeddings, so the framing tokens get 0 and a word's score is its share of
  log p(token) - log p(token | no words). Completeness: the signed scores of a row sum to that difference (up to
  the integral's error, `delta`). The distribution is the absolute scores normalised. All rows at once: with
  teacher forcing and the causal mask one pass over the whole decoder input gives every row's log-probability,
  so each batch of steps runs the model once and takes one backward pass per row; the scores are Captum's
  IntegratedGradients row by row (tests/test_attribution.py), for half the time (bench/attribution.py).

`contrastive(bundle, translation, row, foil)`: why the model wrote its token at `row` rather than `foil`: integrated
gradients of log p(token) - log p(foil) (the logit difference; Yin & Neubig 2022), signed scores that sum to it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from core.analysis import contributions, relevance
from core.bundle import ModelBundle
from core.seam import causal_mask, model_device

IG_STEPS = 32
IG_TOKENS = 2048  # encoder + decoder tokens per pass of integrated_gradients, over its steps: bounds its memory
LOW_SHARE = 0.5  # a step whose source share is under this fraction of the sentence's median is marked


@dataclass(frozen=True)
class Attribution:
    """source: (T, S) each decoder row's distribution over the encoder positions (rows sum to 1); source_share
    (T,): how much of the prediction came from the source (the rest from the target prefix), or None."""

    method: str
    source: Tensor
    source_share: Tensor | None = None


@dataclass(frozen=True)
class Method:
    label: str
    run: Callable  # (bundle, translation) -> Attribution fields (source, source_share)
    splits: bool = False  # gives a source / prefix split


def _attention(bundle, translation):
    return relevance.cross_last(translation.attention.cross), None


def _shift_att(bundle, translation):
    cross = translation.attention.cross  # (L, H, T, S)
    layer = cross[max(0, cross.size(0) - 2)].mean(0)  # (T, S), the penultimate layer
    rows = torch.cat([layer[1:], layer[-1:]])  # row t+1 has read output token t
    return rows, None


def _relevance(name: str):
    return lambda bundle, translation: (relevance.source_relevance(bundle.model, translation, name), None)


def _norm(bundle, translation):
    return contributions.cross_norms(bundle.model, translation.source_ids, translation.target_ids), None


def _decomposed(name: str):
    def run(bundle, translation):
        result = contributions.decomposed(bundle.model, translation.source_ids, translation.target_ids, name)
        return result.source_distribution(), result.source_share

    return run


def _value_zeroing(bundle, translation):
    result = contributions.value_zeroing(bundle.model, translation.source_ids, translation.target_ids)
    return result.source_distribution(), result.source_share


def _integrated_gradients(bundle, translation):
    scores, _ = integrated_gradients(bundle, translation)
    return contributions.rows_to_one(scores.abs()), None


METHODS = {
    "attention": Method("Raw cross-attention, last layer (mean of heads)", _attention),
    "shift-att": Method("Shift-Att: cross-attention where the word is read (penultimate layer)", _shift_att),
    "rollout": Method("Rollout + Chefer rules (attention only)", _relevance("rollout")),
    "gradient": Method("Chefer rules, gradient-weighted", _relevance("gradient")),
    "norm": Method("Norm of the weighted vectors, last layer (Kobayashi et al.)", _norm),
    "norm-rollout": Method("Norms rolled out, with the source share", _decomposed("norm"), splits=True),
    "alti": Method("ALTI+ (Ferrando et al.), with the source share", _decomposed("alti"), splits=True),
    "value-zeroing": Method("Value zeroing (Mohebbi et al.), with the source share", _value_zeroing, splits=True),
    "integrated-gradients": Method("Integrated gradients (32 steps)", _integrated_gradients),
}


def low_share(shares) -> list[bool]:
    """The steps whose source share (a tensor or array) is unusually low for their sentence: under LOW_SHARE x
    the median share, a sign of the model writing from its own prefix rather than translating."""
    values = [float(s) for s in shares]
    median = float(np.median(values)) if values else 0.0
    return [v < LOW_SHARE * median for v in values]


def attribute(bundle: ModelBundle, translation, method: str) -> Attribution:
    """The attribution of one Translation (greedy or teacher-forced) by one of METHODS."""
    if method not in METHODS:
        raise ValueError(f"unknown attribution method {method!r}: use one of {', '.join(METHODS)}")
    source, share = METHODS[method].run(bundle, translation)
    return Attribution(method, source.detach().double().cpu(), None if share is None else share.detach().double().cpu())


# ---------------------------------------------------------------- integrated gradients


def _baseline(bundle: ModelBundle, vectors: Tensor, src_ids: list[int]) -> Tensor:
    """The source embeddings with the words' zeroed: framing tokens keep theirs (and so get 0)."""
    baseline = torch.zeros_like(vectors)
    words = bundle.specials.words(src_ids)
    keep = [i for i in range(len(src_ids)) if not words.start <= i < words.stop]
    baseline[:, keep] = vectors[:, keep]
    return baseline


def _contrast_row(bundle: ModelBundle, translation, row: int, chosen: int, foil: int) -> Tensor:
    """(S,) Captum's integrated gradients, on the source token embeddings, of log p(chosen) - log p(foil) at one
    decoder row. The decoder reads only the rows up to `row`: a row never sees later ones, so the shorter input
    gives the same scores for less work."""
    from captum.attr import IntegratedGradients

    model, device = bundle.model, model_device(bundle.model)
    src = torch.tensor([translation.source_ids], device=device)
    tgt = torch.tensor([translation.target_ids[: row + 1]], device=device)

    def forward(vectors: Tensor) -> Tensor:
        logp = model.project(_decoded(model, vectors, tgt)[:, -1]).float().log_softmax(-1)  # (B, V)
        return logp[:, chosen] - logp[:, foil]

    with torch.no_grad():
        vectors = model.source_vectors(src)
    with torch.enable_grad():
        attributions = IntegratedGradients(forward).attribute(
            vectors,
            baselines=_baseline(bundle, vectors, translation.source_ids),
            n_steps=IG_STEPS,
            internal_batch_size=IG_STEPS,
        )
    return attributions[0].sum(-1).detach()


def gauss_legendre(steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Captum's default rule for the integral ("gausslegendre"): the points alpha in (0, 1) and their weights, the
    n-point Gauss-Legendre rule moved from [-1, 1] to [0, 1]."""
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    return 0.5 * (1 + nodes), 0.5 * weights


def _decoded(model, vectors: Tensor, tgt: Tensor) -> Tensor:
    """(B, S, D) source embeddings and one (1, T) decoder input -> (B, T, D) the decoder's output."""
    memory = model.encode_vectors(vectors, None)
    t = tgt.size(1)
    hidden, _, _ = model.decode(tgt.expand(len(vectors), -1), memory, None, causal_mask(t, vectors.device))
    return hidden


def _log_prob(model, hidden: Tensor, token: int) -> Tensor:
    """(B, D) rows of the decoder's output -> (B,) log p(token)."""
    return model.project(hidden).float().log_softmax(-1)[:, token]


def integrated_gradients(bundle: ModelBundle, translation) -> tuple[Tensor, Tensor]:
    """((T, S) signed scores of each row's log-probability of its output token, (T,) completeness error delta).

    Row t's log-probability does not depend on later decoder inputs (the causal mask), so one pass over the whole
    decoder input serves every row: each batch of steps runs the model once, then one backward pass per row."""
    model, device = bundle.model, model_device(bundle.model)
    src = torch.tensor([translation.source_ids], device=device)
    tgt = torch.tensor([translation.target_ids], device=device)
    outputs = relevance.row_outputs(translation)
    with torch.no_grad():
        vectors = model.source_vectors(src)  # (1, S, D)
    baseline = _baseline(bundle, vectors, translation.source_ids)
    alphas, weights = (torch.tensor(a, dtype=vectors.dtype, device=device) for a in gauss_legendre(IG_STEPS))
    per_pass = max(1, IG_TOKENS // (src.size(1) + tgt.size(1)))
    total = torch.zeros(len(outputs), *vectors.shape[1:], dtype=vectors.dtype, device=device)  # (T, S, D)
    for start in range(0, IG_STEPS, per_pass):
        alpha, weight = alphas[start : start + per_pass], weights[start : start + per_pass]
        with torch.enable_grad():
            points = (baseline + alpha[:, None, None] * (vectors - baseline)).requires_grad_()  # (k, S, D)
            hidden = _decoded(model, points, tgt)
            for row, token in enumerate(outputs):
                # Each row is projected just before its backward pass, which then touches no other row's
                # projection; only one row's logits are held at a time.
                logp = _log_prob(model, hidden[:, row], token)
                last = row == len(outputs) - 1
                (grad,) = torch.autograd.grad(logp, points, grad_outputs=weight, retain_graph=not last)
                total[row] += grad.sum(0)  # the weighted sum over the steps of the gradient at each point
    scores = (total * (vectors - baseline)).sum(-1)  # (T, S)
    with torch.no_grad():
        hidden = _decoded(model, torch.cat([vectors, baseline]), tgt)
        ends = torch.stack([_log_prob(model, hidden[:, row], token) for row, token in enumerate(outputs)], 1)  # (2, T)
    return scores.detach(), scores.sum(-1) - (ends[0] - ends[1])  # a row's sum is the change, up to delta


def contrastive(bundle: ModelBundle, translation, row: int, foil: int) -> tuple[Tensor, float]:
    """((S,) signed scores of log p(chosen) - log p(foil) at decoder row `row`, the difference itself): why the
    model wrote its token there rather than `foil`. The scores sum to the difference minus the baseline's."""
    device = model_device(bundle.model)
    chosen = relevance.row_outputs(translation)[row]
    scores = _contrast_row(bundle, translation, row, chosen, foil)
    with torch.no_grad():
        src = torch.tensor([translation.source_ids], device=device)
        tgt = torch.tensor([translation.target_ids], device=device)
        logits = bundle.model(src, tgt, None, causal_mask(tgt.size(1), device))[0, row].float().log_softmax(-1)
    return scores, float(logits[chosen] - logits[foil])
