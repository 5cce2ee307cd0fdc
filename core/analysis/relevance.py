"""Which source words each output token drew on: relevance beyond raw attention, for one sentence.

Every method gives a (T, S) matrix, row t for the output token predicted at decoder row t, each row a
distribution over the encoder input tokens (summing to 1):

- "cross_last": raw cross-attention of the last decoder layer, mean over heads (the baseline).
- "rollout": attention rollout (Abnar & Zuidema 2020) through the encoder, R_ss = prod_l (0.5 A_l + 0.5 I)
  with A_l the mean over heads and rows renormalised, carried through the decoder with the encoder-decoder
  rules of Chefer et al. (2021): R_tt = I, R_ts = 0, then for each decoder layer
  R_tt += A_self R_tt, R_ts += A_self R_ts (self-attention), R_ts += Rbar_tt A_cross R_ss (cross-attention),
  where Rbar_tt = I + (R_tt - I) with the rows of R_tt - I normalised to sum 1. Chefer et al. write
  (Rbar_tt)^T for bidirectional queries; in a causal decoder row t may only draw on rows <= t, so the
  transpose is left out here.
- "gradient": the same rules with every attention map A replaced by mean over heads of (dy_t/dA * A)^+,
  y_t the logit of output token t, so each output token has its own maps (one forward pass, and one batched
  backward pass for all rows).
Rows that end with no positive relevance (possible with gradients) are uniform.
"""

from __future__ import annotations

import torch
from torch import Tensor

from core.seam import LayerStack, causal_mask, model_device

METHODS = ("rollout", "gradient", "cross_last")
METHOD_LABELS = {
    "rollout": "Rollout + Chefer rules (attention only)",
    "gradient": "Chefer rules, gradient-weighted",
    "cross_last": "Raw cross-attention, last layer (mean of heads)",
}


def _rows_to_one(r: Tensor) -> Tensor:
    """Rows divided by their sum; a row that sums to 0 becomes uniform."""
    total = r.sum(-1, keepdim=True)
    return torch.where(total > 0, r / total.clamp_min(1e-30), torch.full_like(r, 1.0 / r.size(-1)))


def encoder_rollout(maps: Tensor) -> Tensor:
    """(..., L, S, S) head-averaged encoder maps -> (..., S, S) rollout with the residual, rows summing to 1."""
    s = maps.size(-1)
    eye = torch.eye(s, dtype=maps.dtype, device=maps.device)
    rollout = eye.expand(maps.shape[:-3] + (s, s))
    for layer in range(maps.size(-3)):
        mixed = _rows_to_one(0.5 * maps[..., layer, :, :] + 0.5 * eye)
        rollout = mixed @ rollout
    return rollout


def _residual_normalised(r: Tensor) -> Tensor:
    """Chefer et al.'s Rbar: I + (R - I) with the rows of R - I normalised to sum 1 (zero rows stay zero)."""
    eye = torch.eye(r.size(-1), dtype=r.dtype, device=r.device)
    off = r - eye
    total = off.sum(-1, keepdim=True)
    return eye + torch.where(total > 0, off / total.clamp_min(1e-30), torch.zeros_like(off))


def decoder_relevance(encoder_maps: Tensor, self_maps: Tensor, cross_maps: Tensor) -> Tensor:
    """Chefer et al.'s encoder-decoder rules on head-averaged maps.

    encoder_maps (..., L, S, S), self_maps (..., L, T, T), cross_maps (..., L, T, S) -> (..., T, S) R_ts,
    not yet normalised.
    """
    r_ss = encoder_rollout(encoder_maps)
    t, s = cross_maps.shape[-2:]
    eye = torch.eye(t, dtype=self_maps.dtype, device=self_maps.device)
    r_tt = eye.expand(self_maps.shape[:-3] + (t, t))
    r_ts = torch.zeros(cross_maps.shape[:-3] + (t, s), dtype=cross_maps.dtype, device=cross_maps.device)
    for layer in range(self_maps.size(-3)):
        a_self = self_maps[..., layer, :, :]
        r_tt = r_tt + a_self @ r_tt
        r_ts = r_ts + a_self @ r_ts
        r_ts = r_ts + _residual_normalised(r_tt) @ cross_maps[..., layer, :, :] @ r_ss
    return r_ts


def attention_relevance(encoder: Tensor, decoder: Tensor, cross: Tensor) -> Tensor:
    """(L, H, S, S), (L, H, T, T), (L, H, T, S) attention of one sentence -> (T, S) rollout relevance."""
    return _rows_to_one(decoder_relevance(encoder.mean(1), decoder.mean(1), cross.mean(1)))


def gradient_relevance(model: LayerStack, src_ids: list[int], decoder_ids: list[int], output_ids: list[int]) -> Tensor:
    """(T, S) gradient-weighted relevance of each output token (output_ids[t] predicted at decoder row t): one
    forward pass of the sentence, then every row's gradients of every map in one batched backward pass (a one-hot
    upstream gradient per row, autograd's is_grads_batched)."""
    device = model_device(model)
    t = len(decoder_ids)
    if len(output_ids) < t:
        raise ValueError(f"{len(output_ids)} output tokens for {t} decoder rows")
    src, tgt = torch.tensor([src_ids], device=device), torch.tensor([decoder_ids], device=device)
    rows = torch.arange(t, device=device)
    with torch.enable_grad():
        memory, enc_maps = model.encode(src, None, True)
        hidden, self_maps, cross_maps = model.decode(tgt, memory, None, causal_mask(t, device), True)
        picked = model.project(hidden[0])[rows, torch.tensor(output_ids[:t], device=device)]  # (T,) each row's logit
        maps = [*enc_maps, *self_maps, *cross_maps]  # per layer, (1, H, Tq, Tk) each
        one_hot = torch.eye(t, dtype=picked.dtype, device=device)  # row b: the gradients of output token b
        grads = torch.autograd.grad(picked, maps, grad_outputs=one_hot, is_grads_batched=True)  # (T, 1, H, Tq, Tk)
    # mean over heads of the positive part of grad * attention, stacked to (T, L, Tq, Tk) per kind
    weighted = [(g[:, 0] * m).clamp_min(0).mean(1).detach() for g, m in zip(grads, maps)]
    n = len(enc_maps)
    relevance = decoder_relevance(*(torch.stack(weighted[i * n : (i + 1) * n], dim=1) for i in range(3)))  # (T, T, S)
    return _rows_to_one(relevance[rows, rows])


def cross_last(cross: Tensor) -> Tensor:
    """(L, H, T, S) -> (T, S): the last layer's cross-attention, mean over heads."""
    return cross[-1].mean(0)


def row_outputs(translation) -> list[int]:
    """The token each decoder row predicts: the next fed token, and for the last row the model's top choice."""
    return [*translation.target_ids[1:], int(translation.top_ids[-1, 0])]


def source_relevance(model: LayerStack, translation, method: str) -> Tensor:
    """(T, S) relevance of one Translation (core.decoding) by one of METHODS; rows sum to 1."""
    att = translation.attention
    if method == "cross_last":
        return cross_last(att.cross)
    if method == "rollout":
        return attention_relevance(att.encoder, att.decoder, att.cross)
    if method == "gradient":
        return gradient_relevance(model, translation.source_ids, translation.target_ids, row_outputs(translation))
    raise ValueError(f"unknown relevance method {method!r}: use one of {', '.join(METHODS)}")


@torch.inference_mode()
def deletion_drops(model: LayerStack, translation) -> Tensor:
    """(W, T) drop of each row's output probability when one of the W source word tokens is deleted (teacher-forced
    on the same decoder input): entry [w, t] deletes the w-th word token (the framing tokens stay)."""
    device = model_device(model)
    src, dec = translation.source_ids, translation.target_ids
    outputs = torch.tensor(row_outputs(translation), device=device)
    words = model.specials.words(src)
    variants = torch.tensor([src[:p] + src[p + 1 :] for p in range(words.start, words.stop)], device=device)
    full = torch.tensor([src], device=device)
    tgt = torch.tensor([dec], device=device)
    tgt_mask = causal_mask(len(dec), device)
    base = model(full, tgt, None, tgt_mask).softmax(-1)[0, torch.arange(len(dec)), outputs]  # (T,)
    deleted = model(variants, tgt.expand(len(variants), -1), None, tgt_mask).softmax(-1)[
        :, torch.arange(len(dec)), outputs
    ]
    return base[None] - deleted


def deletion_test(bundle, sentences: list[str], methods=METHODS, progress=None) -> dict:
    """Mean drop of an output token's probability when the source word each method ranks first is deleted.

    For every sentence of at least two words, greedy-translated, and every decoder row that does not
    predict [EOS]: the word ranked first ([SOS]/[EOS] never count) is deleted and the row's probability of
    the same output token is read again, teacher-forced on the same decoder input. Returns {method: mean
    drop} plus "random" (the mean drop over all words: what a ranking by chance gives), "best" (the drop
    of the most damaging word each time: the ceiling), "rows" and "sentences".
    """
    from core.decoding import translate

    totals = dict.fromkeys([*methods, "random", "best"], 0.0)
    rows = used = 0
    specials = bundle.specials
    for sentence in sentences:
        result = translate(bundle, sentence)
        words = specials.words(result.source_ids)
        if words.stop - words.start < 2:
            if progress:
                progress(1)
            continue
        drops = deletion_drops(bundle.model, result)  # (W, T)
        keep = torch.tensor([o != specials.eos for o in row_outputs(result)])
        for method in methods:
            relevance = source_relevance(bundle.model, result, method)[:, words]  # (T, W): words only
            first = relevance.argmax(-1)  # (T,)
            totals[method] += drops[first, torch.arange(len(first))][keep].sum().item()
        totals["random"] += drops.mean(0)[keep].sum().item()
        totals["best"] += drops.max(0).values[keep].sum().item()
        rows += int(keep.sum())
        used += 1
        if progress:
            progress(1)
    return {name: total / max(rows, 1) for name, total in totals.items()} | {"rows": rows, "sentences": used}
