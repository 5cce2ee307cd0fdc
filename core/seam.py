"""The model seam: everything decoding, the analyses and the app may ask of a translation model.

A model family plugs in by giving two things (core/families/ has one module per family):

- a `Seq2Seq` module: the encoder-decoder as a stack of layers. It implements the per-layer pieces below
  (`embed_source`, `encoder_layer`, ..., `project`); `LayerStack` builds `encode`, `decode` (one step or many,
  over a key/value cache), `forward` and the caches from them, so every family runs the same loops. Attention
  comes back as returned data and heads are switched off by an argument of the call (`HeadMask`), never by
  state left on the shared module: two callers may use one model at the same time with different masks.
- two `Tokenizer`s (source, target) that turn text into ids and back and name each id with the label the app
  shows, and the model's `Specials`: which ids frame a sentence.

Our Transformer (core/model.py) is the first implementation, Hugging Face Marian models (core/families/
marian.py) the second. Dimensions: B batch, S source length, T target length, D d_model, H heads,
L layers, V vocabulary. Masks are boolean, True where a query may attend to a key.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor, nn

HeadMask = Mapping[str, Tensor]
"""Which heads run, per call: attention kind ("encoder", "decoder", "cross") -> gates shaped (L, H), or
(B, L, H) for one set of gates per batch row, bool or float. Each head's output is multiplied by its gate
before the output projection (Michel et al. 2019): 0 switches the head off, 1 keeps it, and a float
tensor with requires_grad gives d loss / d gate. A kind that is missing runs every head; with no mask
nothing is multiplied."""


class CheckpointError(ValueError):
    """A file, folder or model id that cannot be used as a model; the message says why, in one line."""


@dataclass(frozen=True)
class Specials:
    """The ids that frame a sentence. Ours: source [SOS] words [EOS], decoder input [SOS] y1 y2 ...; Marian's:
    source words </s>, decoder input <pad> y1 y2 ... (its decoder start token is the pad token)."""

    start: int  # the first decoder input
    eos: int  # ends a sentence: the last source token, and what the decoder writes when it is done
    pad: int  # fills a batch's shorter rows (masked by length, never by this id: it may equal `start`)
    unk: int  # an unknown word or piece
    source_prefix: tuple[int, ...] = ()  # source tokens before the words ((SOS,) for ours)
    banned: tuple[int, ...] = ()  # ids decoding never writes (Marian's generation config bans its pad token)

    def choosable(self, logits: Tensor) -> Tensor:
        """(..., V) logits with the banned ids at -inf, as decoding sees them (unchanged when none is banned)."""
        if not self.banned:
            return logits
        return logits.index_fill(-1, torch.tensor(self.banned, device=logits.device), -torch.inf)

    def frame_source(self, ids: Sequence[int]) -> list[int]:
        """The encoder input of a sentence's word ids: prefix, words, eos."""
        return [*self.source_prefix, *ids, self.eos]

    @property
    def source_specials(self) -> int:
        """How many framing tokens a source sentence has (its length minus its words')."""
        return len(self.source_prefix) + 1

    def words(self, source_ids: Sequence) -> slice:
        """Where a framed source's word tokens are: frame_source(ids)[words(...)] == ids."""
        return slice(len(self.source_prefix), len(source_ids) - 1)


@dataclass(frozen=True)
class Encoded:
    """One text as a tokenizer reads it: ids, the label of each (as the app shows tokens), and for each token
    the text it came from and the index of its space-separated word."""

    ids: list[int]
    tokens: list[str]
    words: list[str]  # the characters of the text each token stands for (an unknown word's own spelling)
    word_index: list[int]  # index of each token's word among text.split(" ")-style words


def token_word_index(text: str, offsets: Iterable[tuple[int, int]]) -> list[int]:
    """For each token's (start, end) character span in text, the index of the whitespace-separated word it is in.

    A token belongs to the word of its first non-space character; a token of spaces only (a lone '▁')
    to the word that follows it."""
    starts = [m.start() for m in re.finditer(r"\S+", text)]
    words = []
    for start, end in offsets:
        inside = text[start:end]
        first = start + (len(inside) - len(inside.lstrip())) if inside.strip() else end
        words.append(max(0, int(np.searchsorted(starts, first, side="right")) - 1))
    return words


@runtime_checkable
class Tokenizer(Protocol):
    """One side's tokenizer as the seam sees it. Ids are the model's; tokens are labels as the app shows them:
    a piece that continues a word starts with `##`, one that starts a word is bare, whatever the family writes
    (SentencePiece's `▁` marks word starts instead)."""

    unk_token: str

    def encode(self, text: str) -> Encoded: ...

    def encode_ids(self, texts: Sequence[str]) -> list[list[int]]: ...

    def id_to_token(self, token_id: int) -> str: ...

    def token_to_id(self, token: str) -> int | None: ...

    def get_vocab_size(self) -> int: ...

    def get_vocab(self) -> dict[str, int]: ...

    def text(self, tokens: Sequence[str]) -> str:
        """Readable text of tokens (labels): pieces joined into words, spacing as the language writes it."""
        ...

    def normalize(self, word: str) -> str:
        """A word as this tokenizer's vocabulary writes it (lowercased by a lowercasing tokenizer, ...)."""
        ...


@dataclass
class KVCache:
    """Keys and values of one attention block, (B, H, T_past, Dh), kept between decoding steps.

    A self-attention cache grows by one position per step; a cross-attention cache (static=True)
    holds the projected encoder output, computed once.
    """

    static: bool = False
    k: Tensor | None = None
    v: Tensor | None = None


Caches = list[tuple[KVCache, KVCache]]  # per decoder layer: (self-attention, cross-attention)


def layer_gates(head_mask: HeadMask | None, kind: str, n_layers: int) -> list[Tensor | None]:
    """Per layer, that kind's gates as (B or 1, H), or Nones when the kind is not masked."""
    gates = None if head_mask is None else head_mask.get(kind)
    if gates is None:
        return [None] * n_layers
    if gates.dim() == 2:
        gates = gates[None]  # (1, L, H): the same gates for every row
    if gates.dim() != 3 or gates.size(1) != n_layers:
        raise ValueError(f"{kind} head mask {tuple(gates.shape)} is not (layers, heads) or (batch, layers, heads)")
    return list(gates.unbind(1))


def padding_mask(ids: Tensor, pad_id: int) -> Tensor:
    """(B, S) token ids -> (B, 1, 1, S): keys that are not padding (for models whose pad id starts no sentence)."""
    return (ids != pad_id)[:, None, None, :]


def length_mask(lengths: Sequence[int], width: int, device: torch.device | str | None = None) -> Tensor:
    """(B, 1, 1, width): the first lengths[b] keys of row b are real, the rest padding."""
    return (torch.arange(width, device=device)[None, :] < torch.tensor(list(lengths), device=device)[:, None])[
        :, None, None, :
    ]


def causal_mask(size: int, device: torch.device | None = None) -> Tensor:
    """(1, 1, T, T): query i may attend to keys 0..i."""
    return torch.ones(size, size, dtype=torch.bool, device=device).tril()[None, None]


def pad_rows(rows: Sequence[Sequence[int]], pad_id: int, device: torch.device | str | None = None) -> Tensor:
    """(B, longest) ids, each row padded with pad_id on the right."""
    out = torch.full((len(rows), max(len(r) for r in rows)), pad_id, dtype=torch.long, device=device)
    for b, row in enumerate(rows):
        out[b, : len(row)] = torch.tensor(list(row), dtype=torch.long, device=device)
    return out


@dataclass
class Values:
    """One attention block's value vectors in one call: which to keep, and whether to hand them back.

    keep (B, Tk): 1 keeps a key's value vector, 0 zeroes it (value bias included), in every head: value zeroing.
    With record, the block sets `transformed` to (B, H, Tk, D): each key's value through its head's slice of the
    output projection, f_h(x_j) = (x_j W_V^h + b_V^h) W_O^h (the output bias, the same for every key, left out)."""

    keep: Tensor | None = None
    record: bool = False
    transformed: Tensor | None = None


@dataclass(frozen=True)
class BlockRecord:
    """One attention block of one pass, as attribution methods read it (core/analysis/contributions.py): its output
    is the sum over keys j of T_i(x_j) plus terms no token owns.

    Pre-norm (ours): output_i = residual_i + sum_h,j probs_hij values_hj + out_bias. Post-norm (Marian): output_i =
    gain * C(residual_i + sum_h,j probs_hij values_hj + out_bias) / sigma_i + beta, C centring each vector: the
    layer norm treated as linear with its scale sigma fixed at its real value."""

    probs: Tensor  # (B, H, Tq, Tk)
    values: Tensor  # (B, H, Tk, D) f_h(x_j)
    out_bias: Tensor | None  # (D,) or None
    residual: Tensor  # (B, Tq, D) the residual input of the block
    output: Tensor  # (B, Tq, D) the block's output
    gain: Tensor | None = None  # post-norm: the layer norm's gain (D,)
    sigma: Tensor | None = None  # post-norm: the layer norm's scale of each row's sum (B, Tq, 1)


class Probe:
    """Collects one BlockRecord per attention block of a pass (LayerStack.trace): records[(kind, layer)]."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, int], BlockRecord] = {}
        self.layer = 0

    def add(self, kind: str, record: BlockRecord) -> None:
        self.records[(kind, self.layer)] = record


@dataclass(frozen=True)
class LayerStep:
    """How one encoder layer runs in a pass: return its maps, its gates, value vectors kept, a probe to fill."""

    need_weights: bool = False
    gates: Tensor | None = None  # (B or 1, H)
    keep: Tensor | None = None  # (B, S): value zeroing (Values)
    probe: Probe | None = None


PLAIN = LayerStep()  # an encoder layer's ordinary run: no maps, every head and value


class LayerStack(nn.Module):
    """What every family shares: encode, decode and the teacher-forced pass, built from its per-layer pieces.

    A family sets `config` (a core.config.ModelConfig: n_layers, n_heads, seq_len, d_model, vocabularies) and
    `specials`, and implements the pieces: embed_source, encoder_layer, finish_encoder, embed_target,
    decoder_layer, finish_decoder, project. The layer pieces return their probabilities (B, H, Tq, Tk) when
    need_weights is set, else None; `gates` (B or 1, H) multiply each head's output before the output projection.
    """

    config: object
    specials: Specials

    # ---- the pieces a family implements

    def source_vectors(self, src: Tensor) -> Tensor:
        """(B, S) ids -> (B, S, D) token embeddings, scaled as the family scales them, before positions."""
        raise NotImplementedError

    def place_source(self, vectors: Tensor) -> Tensor:
        """source_vectors' output -> the first encoder layer's input (positions added)."""
        raise NotImplementedError

    def encoder_layer(self, i: int, x: Tensor, src_mask: Tensor | None, step: LayerStep = PLAIN) -> tuple:
        """(B, S, D) -> (the layer's output, its probabilities (B, H, S, S) or None)."""
        raise NotImplementedError

    def finish_encoder(self, x: Tensor) -> Tensor:
        """The last encoder layer's output -> memory (a final norm, or nothing)."""
        raise NotImplementedError

    def embed_target(self, tgt: Tensor, start: int = 0) -> Tensor:
        """(B, T) ids at positions start.. -> (B, T, D) input of the first decoder layer."""
        raise NotImplementedError

    def decoder_layer(self, i: int, y: Tensor, memory: Tensor, masks: tuple, step: DecoderStep) -> tuple:
        """masks is (src_mask, tgt_mask); returns (y, self-attention probs, cross-attention probs)."""
        raise NotImplementedError

    def finish_decoder(self, y: Tensor) -> Tensor:
        raise NotImplementedError

    def project(self, hidden: Tensor) -> Tensor:
        """(..., D) -> (..., V) raw logits."""
        raise NotImplementedError

    def project_rows(self, hidden: Tensor) -> Tensor:
        """(B, D) -> (B, V): the logits of a few rows (one per beam); a family may have a faster way."""
        return self.project(hidden)

    # ---- shared

    @property
    def n_layers(self) -> int:
        return self.config.n_layers

    def embed_source(self, src: Tensor) -> Tensor:
        """(B, S) ids -> (B, S, D) input of the first encoder layer."""
        return self.place_source(self.source_vectors(src))

    def encode_vectors(self, vectors: Tensor, src_mask: Tensor | None) -> Tensor:
        """The memory of given token embeddings (source_vectors' output, perhaps changed): what attribution methods
        that perturb or interpolate the input embeddings run."""
        x = self.place_source(vectors)
        for i in range(self.n_layers):
            x, _ = self.encoder_layer(i, x, src_mask)
        return self.finish_encoder(x)

    def new_cache(self) -> Caches:
        """An empty (self, cross) key/value cache per decoder layer, for one decoding call."""
        return [(KVCache(), KVCache(static=True)) for _ in range(self.n_layers)]

    def encode(
        self, src: Tensor, src_mask: Tensor | None, need_weights: bool = False, head_mask: HeadMask | None = None
    ) -> tuple[Tensor, list[Tensor | None]]:
        """(B, S) ids -> memory (B, S, D) and per-layer encoder self-attention (B, H, S, S) or Nones."""
        x, probs = self.embed_source(src), []
        for i, gates in enumerate(layer_gates(head_mask, "encoder", self.n_layers)):
            x, p = self.encoder_layer(i, x, src_mask, LayerStep(need_weights, gates))
            probs.append(p)
        return self.finish_encoder(x), probs

    def decode(
        self,
        tgt: Tensor,
        memory: Tensor,
        src_mask: Tensor | None,
        tgt_mask: Tensor | None,
        need_weights: bool = False,
        caches: Caches | None = None,
        start: int = 0,
        head_mask: HeadMask | None = None,
        align_head: tuple[int, int] | None = None,
    ) -> tuple[Tensor, list[Tensor | None], list[Tensor | None]]:
        """(B, T) ids at positions start.. -> hidden (B, T, D), per-layer self (B, H, T, T_all) and cross (B, H, T, S).

        caches (new_cache) make each call one step over the keys and values of the earlier ones. head_mask
        switches heads off. align_head=(layer, head), 0-based, without need_weights: that layer's cross entry
        is the one head's (B, T, S) probabilities (guided alignment training), the others None.
        """
        y, self_probs, cross_probs = self.embed_target(tgt, start), [], []
        n = self.n_layers
        gates = zip(layer_gates(head_mask, "decoder", n), layer_gates(head_mask, "cross", n))
        for i, layer_gate in enumerate(gates):
            cross_head = align_head[1] if align_head is not None and align_head[0] == i else None
            step = DecoderStep(need_weights, None if caches is None else caches[i], layer_gate, cross_head)
            y, sp, cp = self.decoder_layer(i, y, memory, (src_mask, tgt_mask), step)
            self_probs.append(sp)
            cross_probs.append(cp)
        return self.finish_decoder(y), self_probs, cross_probs

    def forward(
        self,
        src: Tensor,
        tgt: Tensor,
        src_mask: Tensor | None,
        tgt_mask: Tensor | None,
        return_attention: bool = False,
        head_mask: HeadMask | None = None,
        align_head: tuple[int, int] | None = None,
    ) -> Tensor | tuple[Tensor, Tensor | tuple[Tensor, Tensor, Tensor]]:
        """Teacher-forced pass: logits (B, T, V), plus (encoder, decoder, cross) attention stacked over layers,
        (L, B, H, Tq, Tk) each, when return_attention is set. head_mask switches heads off (HeadMask).

        With align_head=(layer, head), 0-based (and no return_attention), returns (logits, that cross-attention
        head's (B, T, S) probabilities): the fused kernel still runs everywhere, and the logits are the same.
        """
        if return_attention and align_head is not None:
            raise ValueError("align_head is for training: return_attention already returns every head")
        memory, enc_probs = self.encode(src, src_mask, return_attention, head_mask)
        hidden, self_probs, cross_probs = self.decode(
            tgt, memory, src_mask, tgt_mask, return_attention, head_mask=head_mask, align_head=align_head
        )
        logits = self.project(hidden)
        if align_head is not None:
            return logits, cross_probs[align_head[0]]
        if not return_attention:
            return logits
        return logits, (torch.stack(enc_probs), torch.stack(self_probs), torch.stack(cross_probs))


@dataclass(frozen=True)
class DecoderStep:
    """How one decoder layer runs in a pass: return its maps, its caches, its gates, the one cross head to return,
    value vectors kept, a probe to fill."""

    need_weights: bool = False
    cache: tuple[KVCache, KVCache] | None = None
    gates: tuple[Tensor | None, Tensor | None] = (None, None)  # (self, cross), each (B or 1, H) or None
    cross_head: int | None = None  # without need_weights: return this cross head's (B, T, S) probabilities
    keep: tuple[Tensor | None, Tensor | None] = (None, None)  # (self (B, T), cross (B, S)): value zeroing
    probe: Probe | None = None


def trace(model: LayerStack, src: Tensor, tgt: Tensor) -> tuple[Tensor, Probe]:
    """A teacher-forced pass over one batch without padding that records every attention block (BlockRecord):
    (logits (B, T, V), the probe with records[(kind, layer)], kinds "encoder", "decoder", "cross")."""
    probe = Probe()
    x = model.embed_source(src)
    for i in range(model.n_layers):
        probe.layer = i
        x, _ = model.encoder_layer(i, x, None, LayerStep(need_weights=True, probe=probe))
    memory = model.finish_encoder(x)
    y, masks = model.embed_target(tgt), (None, causal_mask(tgt.size(1), tgt.device))
    for i in range(model.n_layers):
        probe.layer = i
        y, _, _ = model.decoder_layer(i, y, memory, masks, DecoderStep(need_weights=True, probe=probe))
    return model.project(model.finish_decoder(y)), probe


def reorder_cache(caches: Caches, index: Tensor, cross: bool = False) -> None:
    """Row j of every self-attention cache becomes the row index[j] held: beam search, whose cross caches never
    move; with cross=True the cross-attention caches too (batched greedy decoding dropping finished rows)."""
    for self_cache, cross_cache in caches:
        for cache in (self_cache, cross_cache) if cross else (self_cache,):
            cache.k, cache.v = cache.k.index_select(0, index), cache.v.index_select(0, index)


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device
