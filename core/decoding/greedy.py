"""Greedy decoding over a key/value cache (one sentence with every map, or a batch for scoring), and the
teacher-forced pass. Each works through the model seam (core/seam.py), so every model family decodes the same way.

Row labels are the tokens the decoder was really fed: its start token, then each generated token (a final
end-of-sentence is an output, never an input). Attention tensors are (L, H, T_query, T_key) for one sentence.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from core.decoding.options import TOP_K
from core.seam import HeadMask, LayerStack, causal_mask, model_device, pad_rows, padding_mask, reorder_cache

Maps = tuple[Tensor, Tensor, Tensor]  # (encoder, decoder, cross), each (L, H, Tq, Tk)


def top(logits: Tensor) -> tuple[Tensor, Tensor]:
    """(..., V) logits -> the TOP_K most likely ids and their probabilities, each (..., TOP_K)."""
    probs, ids = logits.float().softmax(-1).topk(min(TOP_K, logits.size(-1)), dim=-1)
    return ids, probs


def causal_rows(rows: list[Tensor], n_layers: int, n_heads: int) -> Tensor:
    """Per step, (L, H, step + 1) self-attention rows -> (L, H, T, T), zero above the diagonal."""
    t = len(rows)
    decoder = torch.zeros(n_layers, n_heads, t, t, device=rows[0].device)
    for i, row in enumerate(rows):
        decoder[:, :, i, : i + 1] = row  # causal: keys after the query stay 0
    return decoder


@torch.inference_mode()
def greedy_decode(model: LayerStack, src_ids: list[int], max_len: int, *, head_mask: HeadMask | None = None):
    """Encode once, then decode one token per step over a key/value cache.

    Returns (decoder input ids, output ids, (T, k) top ids, (T, k) top probs, (encoder, decoder, cross)
    attention as (L, H, Tq, Tk) tensors). max_len counts the start token, as in the tutorial's loop: at most
    max_len decoder tokens. The model must be in eval mode. head_mask switches heads off (core.seam.HeadMask).
    """
    specials, device = model.specials, model_device(model)
    memory, enc_probs = model.encode(torch.tensor([src_ids], device=device), None, True, head_mask)
    caches = model.new_cache()
    inputs, outputs, self_rows, cross_rows, top_ids, top_probs = [specials.start], [], [], [], [], []
    last_row_only = False
    while True:
        token = torch.tensor([[inputs[-1]]], device=device)  # (1, 1): only the newest token is run
        hidden, self_p, cross_p = model.decode(
            token, memory, None, None, True, caches, start=len(inputs) - 1, head_mask=head_mask
        )
        self_rows.append(torch.stack(self_p)[:, 0, :, 0])  # (L, H, len(inputs))
        cross_rows.append(torch.stack(cross_p)[:, 0, :, 0])  # (L, H, S)
        ids, probs = top(specials.choosable(model.project(hidden[:, -1])))  # (1, k)
        top_ids.append(ids[0])
        top_probs.append(probs[0])
        if last_row_only:
            break
        next_id = int(ids[0, 0])
        outputs.append(next_id)
        if next_id == specials.eos:
            break
        inputs.append(next_id)
        # At max_len the tutorial stops with the last token never fed; feed it once more, emitting
        # nothing, so every generated token has its attention row as in a teacher-forced pass.
        last_row_only = len(inputs) == max_len
    decoder = causal_rows(self_rows, model.config.n_layers, model.config.n_heads)
    maps = (torch.stack(enc_probs)[:, 0], decoder, torch.stack(cross_rows, dim=2))
    return inputs, outputs, torch.stack(top_ids), torch.stack(top_probs), maps


@torch.inference_mode()
def teacher_forced(model: LayerStack, src_ids: list[int], tgt_ids: list[int], *, head_mask: HeadMask | None = None):
    """One full pass with decoder input [start] + tgt_ids; returns (inputs, argmax ids, top ids, top probs, maps)
    with maps the (encoder, decoder, cross) attention as (L, H, Tq, Tk) tensors."""
    device = model_device(model)
    src = torch.tensor([src_ids], device=device)
    tgt = torch.tensor([[model.specials.start, *tgt_ids]], device=device)
    logits, maps = model(src, tgt, None, causal_mask(tgt.size(1), device), True, head_mask)
    ids, probs = top(model.specials.choosable(logits[0]))
    return tgt[0].tolist(), ids[:, 0].tolist(), ids, probs, tuple(m[:, 0] for m in maps)


@torch.inference_mode()
def sequence_log_prob(model: LayerStack, src_ids: list[int], tgt_ids: list[int]) -> float:
    """log p(tgt_ids then end-of-sentence | source) under the model, in nats (a sum over the target tokens)."""
    device = model_device(model)
    src = torch.tensor([src_ids], device=device)  # (1, S)
    dec = torch.tensor([[model.specials.start, *tgt_ids]], device=device)  # (1, T)
    labels = torch.tensor([*tgt_ids, model.specials.eos], device=device)  # (T,): the token each row predicts
    logits = model(src, dec, None, causal_mask(dec.size(1), device))  # (1, T, V)
    return float(logits[0].float().log_softmax(-1).gather(-1, labels[:, None]).sum())


def _mask_rows(head_mask: HeadMask | None, index: Tensor) -> HeadMask | None:
    """The HeadMask of rows `index`: per-row (B, L, H) gates are cut, shared (L, H) or (1, L, H) ones kept."""
    if head_mask is None:
        return None
    return {kind: g.index_select(0, index) if g.dim() == 3 and g.size(0) > 1 else g for kind, g in head_mask.items()}


@torch.inference_mode()
def greedy_batch(
    model: LayerStack,
    sources: list[list[int]],
    max_len: int | Sequence[int],
    need_cross: bool = False,
    *,
    head_mask=None,
):
    """Greedy-decode several encoder inputs at once over a key/value cache; for validation and evaluation.

    Returns each sentence's generated ids (up to, not including, the end of sentence); with need_cross, also
    each sentence's (T, S) cross-attention averaged over layers and heads (for copy_sources). max_len is one
    limit for all or one per sentence (each counting the start token, as translate's). head_mask: HeadMask,
    (L, H) gates for all sentences or (B, L, H) one set per sentence. A sentence leaves the batch when it ends
    or reaches its limit, so a long one does not keep the finished ones running.
    """
    specials, device = model.specials, model_device(model)
    n = len(sources)
    limits = torch.tensor([max_len] * n if isinstance(max_len, int) else list(max_len), device=device)
    src = pad_rows(sources, specials.pad, device)
    src_mask = padding_mask(src, specials.pad)  # (B, 1, 1, S): source padding never equals a source token
    memory, _ = model.encode(src, src_mask, head_mask=head_mask)
    caches = model.new_cache()
    live = torch.arange(n, device=device)  # the sentence of each row still decoding
    tokens = torch.full((n, 1), specials.start, dtype=torch.long, device=device)
    generated = torch.full((n, int(limits.max()) - 1), specials.eos, dtype=torch.long, device=device)
    ran = torch.zeros(n, dtype=torch.long, device=device)  # decoder steps each sentence ran
    cross_rows = (
        torch.zeros(n, generated.size(1), src.size(1), dtype=memory.dtype, device=device) if need_cross else None
    )
    for step in range(generated.size(1)):
        hidden, _, cross = model.decode(
            tokens, memory, src_mask, None, need_cross, caches, start=step, head_mask=head_mask
        )
        if need_cross:
            cross_rows[live, step] = torch.stack(cross)[:, :, :, -1].mean((0, 2))  # (B, S)
        tokens = specials.choosable(model.project(hidden[:, -1])).argmax(-1, keepdim=True)  # (B, 1)
        generated[live, step] = tokens[:, 0]
        ran[live] = step + 1
        going = (tokens[:, 0] != specials.eos) & (limits[live] > step + 2)  # limit - 1 tokens at most
        if not going.all():
            if not going.any():
                break
            index = going.nonzero()[:, 0]
            live, tokens, memory, src_mask = live[index], tokens[index], memory[index], src_mask[index]
            reorder_cache(caches, index, cross=True)  # rows that finished are dropped
            head_mask = _mask_rows(head_mask, index)
    out = [row[: row.index(specials.eos)] if specials.eos in row else row for row in generated.tolist()]
    if not need_cross:
        return out
    cross = cross_rows.cpu()  # (B, T, S): each sentence's rows up to its last step
    return out, [cross[b, :steps] for b, steps in enumerate(ran.tolist())]
