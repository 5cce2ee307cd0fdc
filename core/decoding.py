"""Greedy decoding with a key/value cache, and teacher-forced passes, returning everything a viewer needs.

Row labels are the tokens the decoder was really fed: [SOS] then each generated token (a final [EOS]
is an output, never an input). Attention tensors are (L, H, T_query, T_key) for one sentence.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from core.attention import Attention
from core.checkpoint import ModelBundle
from core.heads_off import HeadsOff
from core.model import HeadMask, Transformer, causal_mask, padding_mask
from core.tokenizer import EOS_ID, PAD_ID, SOS_ID, UNK, UNK_ID, detokenize, encode

TOP_K = 5


@dataclass(frozen=True)
class Translation:
    """One translated (or teacher-forced) sentence: ids, tokens and attention, labelled as the model saw them."""

    source: str
    translation: str  # generated text, or the reference text in teacher-forced mode
    source_ids: list[int]  # encoder input: [SOS] + words + [EOS]
    target_ids: list[int]  # decoder input (the query rows): [SOS] then each generated/reference token
    output_ids: list[int]  # generated after [SOS], ending with [EOS] when produced; argmax per row if forced
    top_ids: Tensor  # (T, TOP_K) most likely next tokens at each decoder position
    top_probs: Tensor  # (T, TOP_K) their probabilities
    attention: Attention
    reference: str | None = None  # set in teacher-forced mode
    unknown_words: tuple[str, ...] = ()  # source words the tokenizer mapped to [UNK]
    copied: tuple[tuple[int, int, str], ...] = ()  # (output position, source position, word shown): a
    # generated [UNK] written in `translation` as the source word its cross-attention picked (copy_sources)

    @property
    def source_tokens(self) -> list[str]:
        return list(self.attention.source_tokens)

    @property
    def target_tokens(self) -> list[str]:
        return list(self.attention.target_tokens)


def _top(logits: Tensor) -> tuple[Tensor, Tensor]:
    probs, ids = logits.float().softmax(-1).topk(min(TOP_K, logits.size(-1)), dim=-1)
    return ids, probs


@torch.inference_mode()
def greedy_decode(model: Transformer, src_ids: list[int], max_len: int, *, head_mask: HeadMask | None = None):
    """Encode once, then decode one token per step over a key/value cache.

    Returns (decoder input ids, output ids, (T, k) top ids, (T, k) top probs, (encoder, decoder, cross)
    attention as (L, H, Tq, Tk) tensors). max_len counts
    [SOS], as in the tutorial's loop: at most max_len decoder tokens. The model must be in eval mode.
    head_mask switches heads off (core.model.HeadMask).
    """
    device = next(model.parameters()).device
    src = torch.tensor([src_ids], device=device)  # (1, S)
    memory, enc_probs = model.encode(src, None, True, head_mask)  # no padding, so no source mask
    caches = model.new_cache()
    inputs, outputs, self_rows, cross_rows, top_ids, top_probs = [SOS_ID], [], [], [], [], []
    last_row_only = False
    while True:
        token = torch.tensor([[inputs[-1]]], device=device)  # (1, 1): only the newest token is run
        hidden, self_p, cross_p = model.decode(
            token, memory, None, None, True, caches, start=len(inputs) - 1, head_mask=head_mask
        )
        self_rows.append(torch.stack(self_p)[:, 0, :, 0])  # (L, H, len(inputs))
        cross_rows.append(torch.stack(cross_p)[:, 0, :, 0])  # (L, H, S)
        ids, probs = _top(model.project(hidden[:, -1]))  # (1, k)
        top_ids.append(ids[0])
        top_probs.append(probs[0])
        if last_row_only:
            break
        next_id = int(ids[0, 0])
        outputs.append(next_id)
        if next_id == EOS_ID:
            break
        inputs.append(next_id)
        # At max_len the tutorial stops with the last token never fed; feed it once more, emitting
        # nothing, so every generated token has its attention row as in a teacher-forced pass.
        last_row_only = len(inputs) == max_len
    t = len(inputs)
    decoder = torch.zeros(model.config.n_layers, model.config.n_heads, t, t, device=device)
    for i, row in enumerate(self_rows):
        decoder[:, :, i, : i + 1] = row  # causal: keys after the query stay 0
    maps = (torch.stack(enc_probs)[:, 0], decoder, torch.stack(cross_rows, dim=2))
    return inputs, outputs, torch.stack(top_ids), torch.stack(top_probs), maps


@torch.inference_mode()
def teacher_forced(model: Transformer, src_ids: list[int], tgt_ids: list[int], *, head_mask: HeadMask | None = None):
    """One full pass with decoder input [SOS] + tgt_ids; returns (inputs, argmax ids, top ids, top probs, maps)
    with maps the (encoder, decoder, cross) attention as (L, H, Tq, Tk) tensors."""
    device = next(model.parameters()).device
    src = torch.tensor([src_ids], device=device)
    tgt = torch.tensor([[SOS_ID, *tgt_ids]], device=device)
    logits, maps = model(src, tgt, None, causal_mask(tgt.size(1), device), True, head_mask)
    ids, probs = _top(logits[0])
    return tgt[0].tolist(), ids[:, 0].tolist(), ids, probs, tuple(m[:, 0] for m in maps)


def copy_sources(
    cross: Tensor, output_ids: list[int], source_tokens: list[str], source_words: list[str]
) -> list[tuple[int, int]]:
    """Where each generated [UNK] copies from: (output position, source position), as in Luong et al. (2015).

    cross is (T, S) attention of the decoder rows on the encoder input ([SOS] + words + [EOS]), averaged
    over layers and heads; source_tokens/source_words are the words only. An [UNK] takes the most
    attended source word that has a letter or digit, preferring words the model read as [UNK] itself
    (a name or rare word it cannot translate is what it cannot spell either).
    """
    readable = [any(ch.isalnum() for ch in w) for w in source_words]
    unknown = [r and t == UNK for r, t in zip(readable, source_tokens)]
    allowed = torch.tensor(unknown if any(unknown) else readable, device=cross.device)
    if not allowed.any():
        return []
    copies = []
    for row, token_id in enumerate(output_ids):
        if token_id == UNK_ID:
            scores = cross[row, 1 : len(source_words) + 1].masked_fill(~allowed, -1.0)
            copies.append((row, int(scores.argmax()) + 1))
    return copies


def copy_unknown_words(
    tgt_tokenizer, cross: Tensor, output_ids: list[int], source_tokens: list[str], source_words: list[str]
) -> list[tuple[int, int, str]]:
    """(output position, source position, word as shown) for each generated [UNK]; see copy_sources.

    The word is written as the target side writes words (its tokenizer's normalizer applied).
    """
    normalize = tgt_tokenizer.normalizer.normalize_str if tgt_tokenizer.normalizer else str
    return [
        (row, col, normalize(source_words[col - 1]))
        for row, col in copy_sources(cross, output_ids, source_tokens, source_words)
    ]


def copied_text(tgt_tokenizer, output_ids: list[int], copies: list[tuple[int, int, str]]) -> str:
    """Output text with each copied [UNK] (copy_unknown_words) written as its word."""
    replace = {row: word for row, _, word in copies}
    tokens = [
        replace[row] if row in replace else tgt_tokenizer.id_to_token(token_id)
        for row, token_id in enumerate(output_ids)
        if token_id not in (PAD_ID, SOS_ID, EOS_ID)
    ]
    return detokenize(tokens)


def _tokens(tokenizer, ids: list[int]) -> list[str]:
    return [tokenizer.id_to_token(i) for i in ids]


def _encode_checked(tokenizer, text: str, limit: int, what: str, specials: str):
    """Ids, tokens and words of text, or a ValueError a user can act on (empty, unreadable, too long)."""
    if not text or not text.strip():
        raise ValueError(f"the {what} is empty: type a sentence to translate")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # bytes that were not UTF-8, surrogate-escaped by Python (command line, stdin)
        raise ValueError(f"the {what} is not UTF-8 text; save or type it as UTF-8") from None
    ids, tokens, words = encode(tokenizer, text)
    if not ids:
        raise ValueError(f"the {what} has no words the tokenizer can read")
    if len(ids) > limit:
        raise ValueError(
            f"the {what} is {len(ids)} tokens long; this model takes at most {limit} (its seq_len includes {specials})"
        )
    return ids, tokens, words


def translate(
    bundle: ModelBundle,
    sentence: str,
    max_len: int | None = None,
    reference: str | None = None,
    copy_unknown: bool = True,
    *,
    head_mask: HeadMask | HeadsOff | None = None,
) -> Translation:
    """Translate one sentence greedily (or, given a reference, feed it to the decoder) with all attention maps.

    With copy_unknown, each [UNK] the model generates is shown in the text as the source word it attended
    to most (tokens and ids keep the [UNK]). head_mask switches heads off for this call only (HeadsOff, or a
    HeadMask of (L, H) gates). Raises ValueError with a readable message for empty or overlong input, or a
    head the model does not have.
    """
    model, src_tok, tgt_tok, seq_len = bundle.model, bundle.src_tokenizer, bundle.tgt_tokenizer, bundle.config.seq_len
    if isinstance(head_mask, HeadsOff):
        head_mask = head_mask.mask(bundle.config.n_layers, bundle.config.n_heads) if head_mask else None
    ids, tokens, words = _encode_checked(src_tok, sentence, seq_len - 2, "sentence", "[SOS] and [EOS]")
    src_ids = [SOS_ID, *ids, EOS_ID]
    unknown = tuple(w for w, t in zip(words, tokens) if t == src_tok.id_to_token(UNK_ID))
    copies: list[tuple[int, int, str]] = []
    if reference is not None:
        ref_ids, ref_tokens, _ = _encode_checked(tgt_tok, reference, seq_len - 1, "reference translation", "[SOS]")
        inputs, outputs, top_ids, top_probs, maps = teacher_forced(model, src_ids, ref_ids, head_mask=head_mask)
        text = detokenize(ref_tokens)
    else:
        max_len = seq_len if max_len is None else max_len
        if not 2 <= max_len <= seq_len:
            raise ValueError(f"max_len must be between 2 and the model's seq_len {seq_len}, got {max_len}")
        inputs, outputs, top_ids, top_probs, maps = greedy_decode(model, src_ids, max_len, head_mask=head_mask)
        if copy_unknown and UNK_ID in outputs:
            copies = copy_unknown_words(tgt_tok, maps[2].mean((0, 1)), outputs, tokens, words)
        text = copied_text(tgt_tok, outputs, copies)
    attention = Attention(*(m.cpu() for m in maps), tuple(_tokens(src_tok, src_ids)), tuple(_tokens(tgt_tok, inputs)))
    return Translation(
        source=sentence,
        translation=text,
        source_ids=src_ids,
        target_ids=inputs,
        output_ids=outputs,
        top_ids=top_ids.cpu(),
        top_probs=top_probs.cpu(),
        attention=attention,
        reference=reference,
        unknown_words=unknown,
        copied=tuple(copies),
    )


@torch.inference_mode()
def greedy_batch(
    model: Transformer,
    sources: list[list[int]],
    max_len: int,
    need_cross: bool = False,
    *,
    head_mask: HeadMask | None = None,
):
    """Greedy-decode several encoder inputs at once over a key/value cache; for validation and evaluation.

    Returns each sentence's generated ids (up to, not including, [EOS]); with need_cross, also each
    sentence's (T, S) cross-attention averaged over layers and heads (for copy_sources). head_mask: HeadMask,
    (L, H) gates for all sentences or (B, L, H) one set per sentence.
    """
    device = next(model.parameters()).device
    width = max(len(s) for s in sources)
    src = torch.full((len(sources), width), PAD_ID, dtype=torch.long, device=device)
    for row, ids in enumerate(sources):
        src[row, : len(ids)] = torch.tensor(ids, device=device)
    src_mask = padding_mask(src, PAD_ID)  # (B, 1, 1, S)
    memory, _ = model.encode(src, src_mask, head_mask=head_mask)
    caches = model.new_cache()
    tokens = torch.full((len(sources), 1), SOS_ID, dtype=torch.long, device=device)
    done = torch.zeros(len(sources), dtype=torch.bool, device=device)
    generated, cross_rows = [], []
    for step in range(max_len - 1):
        hidden, _, cross = model.decode(
            tokens, memory, src_mask, None, need_cross, caches, start=step, head_mask=head_mask
        )
        if need_cross:
            cross_rows.append(torch.stack(cross)[:, :, :, -1].mean((0, 2)))  # (B, S)
        tokens = model.project(hidden[:, -1]).argmax(-1, keepdim=True)  # (B, 1)
        generated.append(tokens[:, 0])
        done |= tokens[:, 0] == EOS_ID
        if done.all():
            break
    out = [row[: row.index(EOS_ID)] if EOS_ID in row else row for row in torch.stack(generated, dim=1).tolist()]
    if not need_cross:
        return out
    cross = torch.stack(cross_rows, dim=1).cpu()  # (B, T, S)
    return out, [cross[b, : len(ids) + 1] for b, ids in enumerate(out)]
