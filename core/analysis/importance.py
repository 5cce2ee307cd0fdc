"""Which heads matter: ablation, the gradient score of Michel et al. (2019), their rank correlation, pruning.

- Ablation: for each head of each kind, the change in the mean log-probability of the reference tokens
  (teacher-forced, pooled over all target tokens, [EOS] included) when that head alone is switched off.
  Negative: the model needs the head. The sweep is batched: each sentence is repeated along the batch
  with one head mask per row (core.model.HeadMask with (B, L, H) gates), and for decoder and cross heads
  the encoder runs once per sentence, since those masks cannot change it.
- Gradient score: I_h = mean over sentences of |d loss / d gate_h|, the loss being the sentence's mean
  token negative log-likelihood and gate_h a gate of 1 on head h's output (Michel et al. 2019, eq. 4).
  One gate per sentence and head, so a single backward pass per batch gives every sentence's gradient.
- Spearman's rank correlation between the two (ties get their mean rank), implemented here on numpy.
- Pruning curve: heads switched off in order of increasing importance, several at a time, with the chrF
  of greedy re-translation (core.evaluation.evaluate) after each step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from core.attention import KINDS
from core.checkpoint import ModelBundle
from core.data import Example, collate, encode_pairs
from core.evaluation import evaluate
from core.heads_off import HeadsOff
from core.model import KVCache, Transformer, causal_mask, padding_mask
from core.tokenizer import PAD_ID

Progress = Callable[[int], None]  # called with the number of work units just finished


def encoded(bundle: ModelBundle, pairs: Sequence[tuple[str, str]]) -> list[Example]:
    """The pairs that fit the model, tokenized; ValueError when none does."""
    examples, _ = encode_pairs(pairs, bundle.src_tokenizer, bundle.tgt_tokenizer, bundle.config.seq_len)
    if not examples:
        raise ValueError("none of the sentence pairs fits this model (empty, or longer than its seq_len)")
    return examples


def length_batches(examples: Sequence[Example], size: int) -> list[list[Example]]:
    """Examples sorted by length and cut into batches of `size`, so little padding is computed."""
    ordered = sorted(examples, key=lambda e: (len(e.src), len(e.tgt)))
    return [ordered[i : i + size] for i in range(0, len(ordered), size)]


def token_logprobs(logits: Tensor, labels: Tensor) -> Tensor:
    """(B, T, V) logits, (B, T) labels -> (B,) summed log-probability of the labels ([PAD] ignored)."""
    logits = logits.float()
    logp = logits.gather(-1, labels[..., None])[..., 0] - logits.logsumexp(-1)  # (B, T), no (B, T, V) copy
    return (logp * (labels != PAD_ID)).sum(-1)


def _encoder_states(model: Transformer, src: Tensor, src_mask: Tensor) -> list[Tensor]:
    """Input of each encoder layer, (B, S, D) each: a mask on layer l leaves layers before l as they are."""
    states = [model.src_pos(model.src_embed(src))]
    for layer in model.encoder.layers[:-1]:
        states.append(layer(states[-1], src_mask, False)[0])
    return states


def _decoder_states(model: Transformer, dec: Tensor, memory: Tensor, src_mask: Tensor, tgt_mask: Tensor):
    """(input of each decoder layer (B, T, D), each layer's cross-attention keys and values (B, H, S, Dh))."""
    states, cross_kv = [model.tgt_pos(model.tgt_embed(dec))], []
    for i, layer in enumerate(model.decoder.layers):
        block = layer.cross_attention_block
        cross_kv.append((block.split_heads(block.w_k(memory)), block.split_heads(block.w_v(memory))))
        if i + 1 < len(model.decoder.layers):
            states.append(layer(states[-1], memory, src_mask, tgt_mask, False)[0])
    return states, cross_kv


def _decoder_from(model, first: int, x, memory, src_mask, tgt_mask, cross_kv, gates, repeat: int) -> Tensor:
    """Run decoder layers first.. on x (rows = repeat copies of the batch), the gates on layer `first` only;
    the cross-attention keys and values are the unmasked ones, repeated (they depend on the encoder alone)."""
    for i in range(first, len(model.decoder.layers)):
        k, v = cross_kv[i]
        cache = (None, KVCache(static=True, k=k.repeat(repeat, 1, 1, 1), v=v.repeat(repeat, 1, 1, 1)))
        x, _, _ = model.decoder.layers[i](
            x, memory, src_mask, tgt_mask, False, cache, gates if i == first else (None, None)
        )
    return model.project(model.decoder.norm(x))


def _one_off_gates(n_heads: int, repeat: int, device) -> Tensor:
    """(n_heads * repeat, H) gates of one layer: block i (repeat rows long) switches off head i."""
    return (1.0 - torch.eye(n_heads, device=device)).repeat_interleave(repeat, dim=0)


@torch.inference_mode()
def ablation(
    bundle: ModelBundle,
    pairs: Sequence[tuple[str, str]],
    batch_sentences: int = 16,
    progress: Progress | None = None,
) -> tuple[dict[str, np.ndarray], float, int]:
    """({kind: (L, H) change of the mean reference log-probability with that head off}, base mean, tokens).

    One forward pass per batch of sentences, layer and kind holds every head of that layer switched off in
    turn (H x batch_sentences rows; decoder and cross share a pass), and starts at that layer: what comes
    before it is computed once. progress gets how many sentences each batch finished.
    """
    model, cfg = bundle.model, bundle.config
    n_layers, n_heads = cfg.n_layers, cfg.n_heads
    device = next(model.parameters()).device
    totals = {kind: np.zeros((n_layers, n_heads)) for kind in KINDS}
    base_total, n_tokens = 0.0, 0
    for batch in length_batches(encoded(bundle, pairs), batch_sentences):
        src, dec, lab = collate(batch, device)
        n = len(batch)
        n_tokens += int((lab != PAD_ID).sum())
        src_mask, tgt_mask = padding_mask(src, PAD_ID), causal_mask(dec.size(1), device)
        enc_states = _encoder_states(model, src, src_mask)
        memory = model.encoder.norm(model.encoder.layers[-1](enc_states[-1], src_mask, False)[0])
        dec_states, cross_kv = _decoder_states(model, dec, memory, src_mask, tgt_mask)
        base = token_logprobs(
            _decoder_from(model, 0, dec_states[0], memory, src_mask, tgt_mask, cross_kv, (None, None), 1), lab
        )
        base_total += base.sum().item()
        gates = _one_off_gates(n_heads, n, device)  # (H * n, H)
        ones = torch.ones_like(gates)
        rep_src_mask, rep_dec, rep_lab = (
            src_mask.repeat(n_heads, 1, 1, 1),
            dec.repeat(n_heads, 1),
            lab.repeat(n_heads, 1),
        )
        for layer in range(n_layers):
            x = enc_states[layer].repeat(n_heads, 1, 1)
            for i in range(layer, n_layers):
                x, _ = model.encoder.layers[i](x, rep_src_mask, False, gates if i == layer else None)
            masked_memory = model.encoder.norm(x)
            hidden, _, _ = model.decode(rep_dec, masked_memory, rep_src_mask, tgt_mask)
            logp = token_logprobs(model.project(hidden), rep_lab)
            totals["encoder"][layer] += (logp.view(n_heads, n).sum(1) - base.sum()).tolist()
            # Decoder and cross masks leave the encoder as it is: one pass holds both kinds' masks.
            two = 2 * n_heads
            logits = _decoder_from(
                model,
                layer,
                dec_states[layer].repeat(two, 1, 1),
                memory.repeat(two, 1, 1),
                src_mask.repeat(two, 1, 1, 1),
                tgt_mask,
                cross_kv,
                (torch.cat([gates, ones]), torch.cat([ones, gates])),
                two,
            )
            per_mask = token_logprobs(logits, lab.repeat(two, 1)).view(two, n).sum(1) - base.sum()
            totals["decoder"][layer] += per_mask[:n_heads].tolist()
            totals["cross"][layer] += per_mask[n_heads:].tolist()
        if progress:
            progress(n)
    return {kind: total / n_tokens for kind, total in totals.items()}, base_total / n_tokens, n_tokens


def gradient_importance(
    bundle: ModelBundle, pairs: Sequence[tuple[str, str]], batch_sentences: int = 64, progress: Progress | None = None
) -> dict[str, np.ndarray]:
    """{kind: (L, H) mean over sentences of |d (mean token NLL) / d gate|}: one backward pass per batch."""
    model, cfg = bundle.model, bundle.config
    device = next(model.parameters()).device
    totals = {kind: torch.zeros(cfg.n_layers, cfg.n_heads) for kind in KINDS}
    examples = encoded(bundle, pairs)
    for batch in length_batches(examples, batch_sentences):
        src, dec, lab = collate(batch, device)
        gates = {
            kind: torch.ones(len(batch), cfg.n_layers, cfg.n_heads, device=device, requires_grad=True) for kind in KINDS
        }
        with torch.enable_grad():
            logits = model(src, dec, padding_mask(src, PAD_ID), causal_mask(dec.size(1), device), head_mask=gates)
            tokens = (lab != PAD_ID).sum(-1)  # (B,)
            loss = (-token_logprobs(logits, lab) / tokens).sum()  # sum of per-sentence mean NLLs
            grads = torch.autograd.grad(loss, [gates[kind] for kind in KINDS])
        for kind, grad in zip(KINDS, grads):
            totals[kind] += grad.abs().sum(0).cpu()  # (B, L, H): row b is d loss_b / d gates_b
        if progress:
            progress(len(batch))
    return {kind: (total / len(examples)).numpy() for kind, total in totals.items()}


def ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of a flat array, ties sharing their mean rank."""
    values = np.asarray(values, dtype=np.float64).ravel()
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    result = np.empty(len(values))
    start = 0
    while start < len(values):
        end = start
        while end + 1 < len(values) and sorted_values[end + 1] == sorted_values[start]:
            end += 1
        result[order[start : end + 1]] = (start + end) / 2 + 1
        start = end + 1
    return result


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation: Pearson's correlation of the ranks (NaN when either side is constant)."""
    ra, rb = ranks(a), ranks(b)
    if len(ra) != len(rb):
        raise ValueError(f"{len(ra)} values against {len(rb)}")
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = np.sqrt((ra**2).sum() * (rb**2).sum())
    return float((ra * rb).sum() / denominator) if denominator > 0 else float("nan")


def importance_order(scores: dict[str, np.ndarray], kinds: Sequence[str] = KINDS) -> list[tuple[str, int, int]]:
    """Heads (kind, 1-based layer, 1-based head), least important first; scores are higher = more important."""
    heads = [(kind, layer + 1, head + 1) for kind in kinds for layer, head in np.ndindex(scores[kind].shape)]
    values = [scores[kind][layer - 1, head - 1] for kind, layer, head in heads]
    return [heads[i] for i in np.argsort(values, kind="stable")]


def pruning_curve(
    bundle: ModelBundle,
    pairs: Sequence[tuple[str, str]],
    order: Sequence[tuple[str, int, int]],
    step: int = 8,
    progress: Progress | None = None,
) -> list[dict]:
    """[{heads_off: k, chrf: x, bleu: y}] switching off order[:k] for k = 0, step, 2 step, ..., len(order)."""
    cfg = bundle.config
    counts = sorted({*range(0, len(order), step), len(order)})
    curve = []
    for k in counts:
        off = HeadsOff(frozenset(order[:k]))
        metrics, _, _ = evaluate(
            bundle, list(pairs), progress=False, head_mask=off.mask(cfg.n_layers, cfg.n_heads) if off else None
        )
        curve.append({"heads_off": k, "chrf": metrics["chrf"], "bleu": metrics["bleu"]})
        if progress:
            progress(1)
    return curve
