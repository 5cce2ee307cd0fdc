"""Hugging Face Marian models (opus-mt-*) behind the model seam (core/seam.py).

The weights stay Hugging Face's own modules, loaded by `transformers` (`MarianMTModel.from_pretrained`, weights
only, eager attention) and held once: this module's layers are views that reuse those Linear, LayerNorm and
Embedding modules. What it adds is the forward pass the seam asks for, written here so that every attention
map comes back as data and heads are switched off by an argument of the call (transformers 5 has no head_mask
argument, and a hook would be state left on a model all browser sessions share). The numerics are Marian's:
post-norm blocks (x = LN(x + sublayer(x))), attention with biases, the feed-forward's activation from the
config, embeddings scaled by sqrt(d_model) when the config says so, sinusoidal positions (sines in the first
half of each vector, cosines in the second), no final stack norm, logits = lm_head(x) + final_logits_bias.
tests/test_marian.py checks the maps, the logits and greedy decoding against transformers itself.

Tokens: Marian reads SentencePiece pieces; a piece that starts a word carries `▁`. The seam's labels are the
app's: a word-start piece without its `▁`, a piece that continues a word with `##`, the special tokens (`</s>`,
`<pad>` as the decoder's start, `<unk>`) as they are.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.config import ModelConfig
from core.model import MultiHeadAttentionBlock
from core.seam import PLAIN, BlockRecord, DecoderStep, Encoded, LayerStack, LayerStep, Specials, Values

WORD_START = "▁"
CONTINUES = "##"
ACTIVATIONS = {"swish": F.silu, "silu": F.silu, "gelu": F.gelu, "relu": F.relu, "gelu_new": F.gelu}


class MarianError(ValueError):
    """A Marian model this code cannot serve (an unknown layout or setting); the message says which."""


def _attention(hf_attention: nn.Module, n_heads: int, dropout: float) -> MultiHeadAttentionBlock:
    """Our attention block over a Hugging Face attention module's own projections (shared, not copied)."""
    return MultiHeadAttentionBlock.over(
        (hf_attention.q_proj, hf_attention.k_proj, hf_attention.v_proj, hf_attention.out_proj), n_heads, dropout
    )


class _EncoderLayer(nn.Module):
    def __init__(self, hf_layer: nn.Module, n_heads: int, act, dropout: float) -> None:
        super().__init__()
        self.self_attn = _attention(hf_layer.self_attn, n_heads, dropout)
        self.self_norm, self.final_norm = hf_layer.self_attn_layer_norm, hf_layer.final_layer_norm
        self.fc1, self.fc2, self.act = hf_layer.fc1, hf_layer.fc2, act

    def forward(self, x: Tensor, src_mask: Tensor | None, step: LayerStep):
        values = Values(step.keep, record=step.probe is not None)
        weights = step.need_weights or step.probe is not None
        out, probs = self.self_attn(x, x, src_mask, weights, gates=step.gates, values=values)
        y = self.self_norm(x + out)  # post-norm: the residual sum is normalised
        if step.probe is not None:
            step.probe.add("encoder", post_norm_record(self.self_attn, self.self_norm, (probs, values), x, y))
        return self.final_norm(y + self.fc2(self.act(self.fc1(y)))), probs


class _DecoderLayer(nn.Module):
    def __init__(self, hf_layer: nn.Module, n_heads: int, act, dropout: float) -> None:
        super().__init__()
        self.self_attn = _attention(hf_layer.self_attn, n_heads, dropout)
        self.cross_attn = _attention(hf_layer.encoder_attn, n_heads, dropout)
        self.self_norm, self.cross_norm = hf_layer.self_attn_layer_norm, hf_layer.encoder_attn_layer_norm
        self.final_norm = hf_layer.final_layer_norm
        self.fc1, self.fc2, self.act = hf_layer.fc1, hf_layer.fc2, act

    def forward(self, y: Tensor, memory: Tensor, masks: tuple, step: DecoderStep):
        src_mask, tgt_mask = masks
        self_cache, cross_cache = step.cache if step.cache is not None else (None, None)
        self_gates, cross_gates = step.gates
        probe, weights = step.probe, step.need_weights or step.probe is not None
        self_values, cross_values = (Values(keep, record=probe is not None) for keep in step.keep)
        out, self_probs = self.self_attn(y, y, tgt_mask, weights, self_cache, self_gates, values=self_values)
        after = self.self_norm(y + out)
        if probe is not None:
            probe.add("decoder", post_norm_record(self.self_attn, self.self_norm, (self_probs, self_values), y, after))
        y = after
        out, cross_probs = self.cross_attn(
            y, memory, src_mask, weights, cross_cache, cross_gates, step.cross_head, cross_values
        )
        after = self.cross_norm(y + out)
        if probe is not None:
            probe.add(
                "cross", post_norm_record(self.cross_attn, self.cross_norm, (cross_probs, cross_values), y, after)
            )
        y = after
        return self.final_norm(y + self.fc2(self.act(self.fc1(y)))), self_probs, cross_probs


def post_norm_record(block, norm: nn.LayerNorm, attended: tuple, residual: Tensor, output: Tensor) -> BlockRecord:
    """A post-norm attention block as attribution methods read it (seam.BlockRecord): the layer norm treated as
    linear, its scale sigma that of the real sum residual + attention (biased variance plus eps, as LayerNorm)."""
    probs, values = attended
    total = residual + torch.einsum("bhqk,bhkd->bqd", probs, values.transformed)
    if block.w_o.bias is not None:
        total = total + block.w_o.bias
    sigma = (total.var(-1, unbiased=False, keepdim=True) + norm.eps).sqrt()
    bias = None if block.w_o.bias is None else block.w_o.bias.detach()
    return BlockRecord(probs, values.transformed, bias, residual, output, norm.weight.detach(), sigma)


def check_config(config) -> None:
    """MarianError naming the first setting this code does not serve."""
    if config.encoder_layers != config.decoder_layers:
        raise MarianError(
            f"not supported: {config.encoder_layers} encoder and {config.decoder_layers} decoder layers "
            "(the views need as many of each)"
        )
    if config.encoder_attention_heads != config.decoder_attention_heads:
        raise MarianError("not supported: different head counts in the encoder and the decoder")
    if config.activation_function not in ACTIVATIONS:
        raise MarianError(f"not supported: the activation {config.activation_function!r}")
    if getattr(config, "normalize_before", False) or getattr(config, "add_final_layer_norm", False):
        raise MarianError("not supported: a pre-norm Marian layout")


class MarianSeq2Seq(LayerStack):
    """A loaded MarianMTModel as the seam's layer stack (its modules reused, nothing copied)."""

    def __init__(self, hf_model: nn.Module, unk_id: int, banned: tuple[int, ...] = ()) -> None:
        super().__init__()
        cfg = hf_model.config
        check_config(cfg)
        core, dropout = _parts(hf_model), cfg.attention_dropout
        target_vocab = cfg.vocab_size if cfg.share_encoder_decoder_embeddings else cfg.decoder_vocab_size
        self.config = ModelConfig(
            src_vocab_size=cfg.vocab_size,
            tgt_vocab_size=target_vocab,
            d_model=cfg.d_model,
            n_layers=cfg.encoder_layers,
            n_heads=cfg.encoder_attention_heads,
            d_ff=cfg.encoder_ffn_dim,
            dropout=cfg.dropout,
            seq_len=cfg.max_position_embeddings,
            attention_bias=True,
        )
        self.specials = Specials(
            start=cfg.decoder_start_token_id, eos=cfg.eos_token_id, pad=cfg.pad_token_id, unk=unk_id, banned=banned
        )
        act, heads = ACTIVATIONS[cfg.activation_function], cfg.encoder_attention_heads
        self.src_embed, self.tgt_embed = core.encoder.embed_tokens, core.decoder.embed_tokens
        self.embed_scale = cfg.d_model**0.5 if cfg.scale_embedding else 1.0
        self.register_buffer("src_positions", core.encoder.embed_positions.weight.detach(), persistent=False)
        self.register_buffer("tgt_positions", core.decoder.embed_positions.weight.detach(), persistent=False)
        self.encoder_layers = nn.ModuleList(_EncoderLayer(layer, heads, act, dropout) for layer in core.encoder.layers)
        self.decoder_layers = nn.ModuleList(_DecoderLayer(layer, heads, act, dropout) for layer in core.decoder.layers)
        self.lm_head = hf_model.lm_head
        self.register_buffer("final_logits_bias", hf_model.final_logits_bias.detach(), persistent=False)

    def _positions(self, table: Tensor, start: int, length: int) -> Tensor:
        if start + length > table.size(0):
            raise ValueError(f"sequence of {start + length} positions is longer than this model's {table.size(0)}")
        return table[start : start + length]

    def source_vectors(self, src: Tensor) -> Tensor:
        return self.src_embed(src) * self.embed_scale

    def place_source(self, vectors: Tensor) -> Tensor:
        return vectors + self._positions(self.src_positions, 0, vectors.size(1))

    def encoder_layer(self, i, x, src_mask, step: LayerStep = PLAIN):
        return self.encoder_layers[i](x, src_mask, step)

    def finish_encoder(self, x: Tensor) -> Tensor:
        return x  # post-norm: each layer's output is already normalised

    def embed_target(self, tgt: Tensor, start: int = 0) -> Tensor:
        return self.tgt_embed(tgt) * self.embed_scale + self._positions(self.tgt_positions, start, tgt.size(1))

    def decoder_layer(self, i, y, memory, masks, step):
        return self.decoder_layers[i](y, memory, masks, step)

    def finish_decoder(self, y: Tensor) -> Tensor:
        return y

    def project(self, hidden: Tensor) -> Tensor:
        return self.lm_head(hidden) + self.final_logits_bias


def _parts(hf_model: nn.Module):
    """The MarianModel inside a MarianMTModel, after checking the layout this module reads (a guard against
    another transformers version moving things): MarianError naming what is missing."""
    core = getattr(hf_model, "model", None)
    needed = ["lm_head", "final_logits_bias", "model.encoder.layers", "model.decoder.layers"]
    needed += [
        f"model.{side}.{name}" for side in ("encoder", "decoder") for name in ("embed_tokens", "embed_positions")
    ]
    layer = ["self_attn.q_proj", "self_attn.out_proj", "self_attn_layer_norm", "fc1", "fc2", "final_layer_norm"]
    needed += [f"model.encoder.layers.0.{name}" for name in layer]
    needed += [f"model.decoder.layers.0.{name}" for name in (*layer, "encoder_attn.k_proj", "encoder_attn_layer_norm")]
    for path in needed:
        obj = hf_model
        for part in path.split("."):
            obj = obj[int(part)] if part.isdigit() else getattr(obj, part, None)
            if obj is None:
                raise MarianError(f"not supported: this transformers version's Marian model has no {path}")
    return core


# ---------------------------------------------------------------- tokenizers


def piece_label(piece: str, specials: frozenset[str]) -> str:
    """A SentencePiece piece as the app shows tokens: word starts bare, continuations with ##."""
    if piece in specials or (piece.startswith(">>") and piece.endswith("<<")):
        return piece
    if piece.startswith(WORD_START):
        return piece[1:] or WORD_START  # a lone ▁ (before punctuation the vocabulary splits off) stays visible
    return CONTINUES + piece


def label_piece(label: str, specials: frozenset[str]) -> str:
    """piece_label's inverse."""
    if label in specials or label == WORD_START:
        return label
    return label[len(CONTINUES) :] if label.startswith(CONTINUES) else WORD_START + label


class MarianSide:
    """One side (source or target) of a MarianTokenizer behind the seam's Tokenizer interface. The tokenizer
    switches between its two SentencePiece models while it encodes a target text, so every call holds a lock
    shared by both sides: browser sessions tokenizing at the same moment never see the other side's model."""

    def __init__(self, tokenizer, target: bool, lock: threading.Lock) -> None:
        self.tokenizer, self.target, self.lock = tokenizer, target, lock
        self.unk_token = tokenizer.unk_token
        self.specials = frozenset(tokenizer.all_special_tokens)
        vocab = tokenizer.get_vocab()
        self._labels = {i: piece_label(p, self.specials) for p, i in vocab.items()}
        self._ids: dict[str, int] = {}
        for i, label in sorted(self._labels.items()):
            self._ids.setdefault(label, i)

    def _ids_of(self, texts: Sequence[str]) -> list[list[int]]:
        with self.lock, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            key = "text_target" if self.target else "text"
            return self.tokenizer(**{key: list(texts)}, add_special_tokens=False)["input_ids"]

    def encode(self, text: str) -> Encoded:
        ids = self._ids_of([text])[0]
        with self.lock:
            pieces = self.tokenizer.convert_ids_to_tokens(ids)
        words, index, word = [], [], -1
        for piece in pieces:
            if piece.startswith(WORD_START) or word < 0:
                word += 1
            index.append(word)
            words.append(piece.lstrip(WORD_START) or piece)
        return Encoded(list(ids), [self._labels[i] for i in ids], words, index)

    def encode_ids(self, texts: Sequence[str]) -> list[list[int]]:
        return self._ids_of(texts) if texts else []

    def id_to_token(self, token_id: int) -> str:
        return self._labels.get(int(token_id), self.unk_token)

    def token_to_id(self, token: str) -> int | None:
        return self._ids.get(token)

    def get_vocab_size(self) -> int:
        return len(self._labels)

    def get_vocab(self) -> dict[str, int]:
        return dict(self._ids)

    def text(self, tokens: Sequence[str]) -> str:
        shown = self.specials - {self.unk_token}  # an unknown piece stays visible in the text
        pieces = [label_piece(t, self.specials) for t in tokens if t not in shown]
        with self.lock:
            return self.tokenizer.convert_tokens_to_string(pieces)

    def normalize(self, word: str) -> str:
        return word
