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
from core.bundle import ModelBundle
from core.data import Example, bundle_examples, collate
from core.decoding import greedy_batch
from core.evaluation import decode_limits, hypothesis_text, lowercases
from core.heads_off import HeadsOff
from core.metrics import score
from core.seam import DecoderStep, KVCache, LayerStack, LayerStep, causal_mask, model_device, padding_mask

Progress = Callable[[int], None]  # called with the number of work units just finished


def encoded(bundle: ModelBundle, pairs: Sequence[tuple[str, str]]) -> list[Example]:
    """The pairs that fit the model, tokenized; ValueError when none does."""
    examples, _ = bundle_examples(bundle, pairs)
    if not examples:
        raise ValueError("none of the sentence pairs fits this model (empty, or longer than its seq_len)")
    return examples


def length_batches(examples: Sequence[Example], size: int) -> list[list[Example]]:
    """Examples sorted by length and cut into batches of `size`, so little padding is computed."""
    ordered = sorted(examples, key=lambda e: (len(e.src), len(e.tgt)))
    return [ordered[i : i + size] for i in range(0, len(ordered), size)]


def token_logprobs(logits: Tensor, labels: Tensor, pad_id: int) -> Tensor:
    """(B, T, V) logits, (B, T) labels -> (B,) summed log-probability of the labels (padding ignored)."""
    logits = logits.float()
    logp = logits.gather(-1, labels[..., None])[..., 0] - logits.logsumexp(-1)  # (B, T), no (B, T, V) copy
    return (logp * (labels != pad_id)).sum(-1)


def _encoder_states(model: LayerStack, src: Tensor, src_mask: Tensor) -> list[Tensor]:
    """Input of each encoder layer, (B, S, D) each: a mask on layer l leaves layers before l as they are."""
    states = [model.embed_source(src)]
    for i in range(model.n_layers - 1):
        states.append(model.encoder_layer(i, states[-1], src_mask)[0])
    return states


def _decoder_states(model: LayerStack, dec: Tensor, memory: Tensor, masks: tuple):
    """(input of each decoder layer (B, T, D), each layer's filled cross-attention cache (B, H, S, Dh))."""
    states, cross_caches = [model.embed_target(dec)], []
    for i in range(model.n_layers):
        cross = KVCache(static=True)  # the layer fills it with its keys and values of the memory
        y, _, _ = model.decoder_layer(i, states[-1], memory, masks, DecoderStep(cache=(None, cross)))
        cross_caches.append(cross)
        if i + 1 < model.n_layers:
            states.append(y)
    return states, cross_caches


def _decoder_from(model: LayerStack, first: int, x, memory, masks, cross_caches, gates, repeat: int) -> Tensor:
    """Run decoder layers first.. on x (rows = repeat copies of the batch), the gates on layer `first` only;
    the cross-attention keys and values are the unmasked ones, repeated (they depend on the encoder alone)."""
    for i in range(first, model.n_layers):
        k, v = cross_caches[i].k, cross_caches[i].v
        cache = (None, KVCache(static=True, k=k.repeat(repeat, 1, 1, 1), v=v.repeat(repeat, 1, 1, 1)))
        step = DecoderStep(cache=cache, gates=gates if i == first else (None, None))
        x, _, _ = model.decoder_layer(i, x, memory, masks, step)
    return model.project(model.finish_decoder(x))


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
    model, cfg, pad = bundle.model, bundle.config, bundle.specials.pad
    n_layers, n_heads = cfg.n_layers, cfg.n_heads
    device = model_device(model)
    totals = {kind: np.zeros((n_layers, n_heads)) for kind in KINDS}
    base_total, n_tokens = 0.0, 0
    for batch in length_batches(encoded(bundle, pairs), batch_sentences):
        src, dec, lab = collate(batch, device, bundle.specials)
        n = len(batch)
        n_tokens += int((lab != pad).sum())
        src_mask, tgt_mask = padding_mask(src, pad), causal_mask(dec.size(1), device)
        enc_states = _encoder_states(model, src, src_mask)
        memory = model.finish_encoder(model.encoder_layer(n_layers - 1, enc_states[-1], src_mask)[0])
        dec_states, cross_kv = _decoder_states(model, dec, memory, (src_mask, tgt_mask))
        base = token_logprobs(
            _decoder_from(model, 0, dec_states[0], memory, (src_mask, tgt_mask), cross_kv, (None, None), 1), lab, pad
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
                x, _ = model.encoder_layer(i, x, rep_src_mask, LayerStep(gates=gates if i == layer else None))
            masked_memory = model.finish_encoder(x)
            hidden, _, _ = model.decode(rep_dec, masked_memory, rep_src_mask, tgt_mask)
            logp = token_logprobs(model.project(hidden), rep_lab, pad)
            totals["encoder"][layer] += (logp.view(n_heads, n).sum(1) - base.sum()).tolist()
            # Decoder and cross masks leave the encoder as it is: one pass holds both kinds' masks.
            two = 2 * n_heads
            logits = _decoder_from(
                model,
                layer,
                dec_states[layer].repeat(two, 1, 1),
                memory.repeat(two, 1, 1),
                (src_mask.repeat(two, 1, 1, 1), tgt_mask),
                cross_kv,
                (torch.cat([gates, ones]), torch.cat([ones, gates])),
                two,
            )
            per_mask = token_logprobs(logits, lab.repeat(two, 1), pad).view(two, n).sum(1) - base.sum()
            totals["decoder"][layer] += per_mask[:n_heads].tolist()
            totals["cross"][layer] += per_mask[n_heads:].tolist()
        if progress:
            progress(n)
    return {kind: total / n_tokens for kind, total in totals.items()}, base_total / n_tokens, n_tokens


def gradient_importance(
    bundle: ModelBundle, pairs: Sequence[tuple[str, str]], batch_sentences: int = 64, progress: Progress | None = None
) -> dict[str, np.ndarray]:
    """{kind: (L, H) mean over sentences of |d (mean token NLL) / d gate|}: one backward pass per batch."""
    model, cfg, pad = bundle.model, bundle.config, bundle.specials.pad
    device = model_device(model)
    totals = {kind: torch.zeros(cfg.n_layers, cfg.n_heads) for kind in KINDS}
    examples = encoded(bundle, pairs)
    for batch in length_batches(examples, batch_sentences):
        src, dec, lab = collate(batch, device, bundle.specials)
        gates = {
            kind: torch.ones(len(batch), cfg.n_layers, cfg.n_heads, device=device, requires_grad=True) for kind in KINDS
        }
        with torch.enable_grad():
            logits = model(src, dec, padding_mask(src, pad), causal_mask(dec.size(1), device), head_mask=gates)
            tokens = (lab != pad).sum(-1)  # (B,)
            loss = (-token_logprobs(logits, lab, pad) / tokens).sum()  # sum of per-sentence mean NLLs
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


def pruning_counts(n_heads: int, step: int) -> list[int]:
    """How many heads each point of a pruning curve switches off: 0, step, 2 step, ..., and all of them."""
    return sorted({*range(0, n_heads, step), n_heads})


def _stacked_gates(head_sets: Sequence[HeadsOff], n_layers: int, n_heads: int) -> dict[str, Tensor]:
    """{kind: (len(head_sets), L, H) gates}, one row per set of heads off (kinds no set touches left out)."""
    masks = [off.mask(n_layers, n_heads) for off in head_sets]
    kinds = [kind for kind in KINDS if any(kind in mask for mask in masks)]
    return {kind: torch.stack([m.get(kind, torch.ones(n_layers, n_heads)) for m in masks]) for kind in kinds}


@torch.inference_mode()
def pruned_translations(
    bundle: ModelBundle,
    pairs: Sequence[tuple[str, str]],
    head_sets: Sequence[HeadsOff],
    rows_per_batch: int = 256,
    progress: Progress | None = None,
) -> tuple[list[list[str]], list[tuple[str, str]]]:
    """([set][pair] greedy translation with that set of heads off, the pairs that fit): what evaluate() writes
    for each set (the same decoding limits and [UNK] copying), but every set decoded in the same batches, each
    row with its own gates, rather than one evaluate() per set. progress gets how many translations each batch
    finished."""
    model, cfg, specials = bundle.model, bundle.config, bundle.specials
    examples, kept = bundle_examples(bundle, pairs)
    limits = decode_limits(model, examples)
    gates = {
        kind: g.to(model_device(model)) for kind, g in _stacked_gates(head_sets, cfg.n_layers, cfg.n_heads).items()
    }
    # Sentences of similar length share a batch (little source padding); a row leaves it when its sentence ends.
    by_length = sorted(range(len(examples)), key=lambda i: len(examples[i].src))
    rows = [(s, i) for i in by_length for s in range(len(head_sets))]
    hyps = [[""] * len(examples) for _ in head_sets]
    for start in range(0, len(rows), rows_per_batch):
        chunk = rows[start : start + rows_per_batch]
        sets = torch.tensor([s for s, _ in chunk])
        outputs, crosses = greedy_batch(
            model,
            [examples[i].src for _, i in chunk],
            [limits[i] for _, i in chunk],
            need_cross=True,
            head_mask={kind: g[sets] for kind, g in gates.items()},
        )
        for (s, i), ids, cross in zip(chunk, outputs, crosses):
            hyps[s][i] = hypothesis_text(bundle.tgt_tokenizer, ids, cross, (bundle.src_tokenizer, kept[i][0]), specials)
        if progress:
            progress(len(chunk))
    return hyps, kept


def pruning_curve(
    bundle: ModelBundle,
    pairs: Sequence[tuple[str, str]],
    order: Sequence[tuple[str, int, int]],
    step: int = 8,
    progress: Progress | None = None,
) -> list[dict]:
    """[{heads_off: k, chrf: x, bleu: y}] switching off order[:k] for k in pruning_counts(len(order), step): the
    scores evaluate() gives with those heads off. progress gets how many translations each batch finished
    (len(pruning_counts(...)) x the pairs that fit in all)."""
    counts = pruning_counts(len(order), step)
    hyps, kept = pruned_translations(bundle, pairs, [HeadsOff(frozenset(order[:k])) for k in counts], progress=progress)
    references = [target for _, target in kept]
    curve = []
    for k, translations in zip(counts, hyps):
        metrics = score(translations, references, lowercase=lowercases(bundle))
        curve.append({"heads_off": k, "chrf": metrics["chrf"], "bleu": metrics["bleu"]})
    return curve
