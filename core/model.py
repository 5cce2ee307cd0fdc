"""The encoder-decoder Transformer of "Attention is all you need" (Vaswani et al., 2017), built the way
the "Transformer from scratch" tutorial builds it.

Module and parameter names match the tutorial's state dict key for key, and so do the numerics
(embeddings scaled by sqrt(d_model), sinusoidal positions kept as a buffer, pre-norm residual blocks
with the tutorial's own layer norm, a final norm after each stack, raw logits), so its checkpoints
load unchanged and give the same outputs. What differs: attention probabilities come back as
returned data when asked for (never stored on modules), the fused scaled_dot_product_attention
kernel runs when they are not, and the decoder can run one token at a time over a key/value cache.
Heads can be switched off per call (`head_mask`, see HeadMask), never by changing the modules.

Dimensions: B batch, S source length, T target length, D d_model, H heads, Dh = D / H,
F d_ff, V vocabulary, L layers. Masks are boolean, True where a query may attend to a key.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.config import ModelConfig
from core.seam import (  # noqa: F401 - causal_mask, padding_mask, HeadMask: part of this module's API since the tutorial
    PLAIN,
    BlockRecord,
    DecoderStep,
    HeadMask,
    KVCache,
    LayerStack,
    LayerStep,
    Values,
    causal_mask,
    padding_mask,
)
from core.tokenizer import SPECIALS


def attention_probabilities(q: Tensor, k: Tensor, mask: Tensor | None) -> Tensor:
    """softmax(q k^T / sqrt(Dh)) over keys: (..., Tq, Dh) queries and (..., Tk, Dh) keys -> (..., Tq, Tk)."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    if mask is not None:
        # The tutorial fills with -1e9, which overflows float16; the dtype's most negative finite
        # value gives the same probabilities and works in every dtype.
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    return scores.softmax(dim=-1)


def attention(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, dropout_p: float, need_weights: bool, head: int | None = None
) -> tuple[Tensor, Tensor | None]:
    """Scaled dot-product attention on (B, H, Tq, Dh) queries; returns (output, probabilities or None).

    With need_weights, the probabilities are (B, H, Tq, Tk); otherwise the fused kernel runs and, when `head`
    is given, the probabilities of that head alone, (B, Tq, Tk), are computed beside it (guided alignment
    training needs one head, not every map): the output is the same either way.
    """
    if not need_weights:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
        if head is None:
            return out, None
        head_mask = None if mask is None else mask.select(1, head if mask.size(1) > 1 else 0)  # (B, Tq | 1, Tk)
        return out, attention_probabilities(q[:, head], k[:, head], head_mask)
    probs = attention_probabilities(q, k, mask)  # (B, H, Tq, Tk)
    return (F.dropout(probs, dropout_p) if dropout_p else probs) @ v, probs  # weights reported before dropout


class InputEmbeddings(nn.Module):
    """Token ids -> vectors scaled by sqrt(d_model), as in the paper."""

    def __init__(self, d_model: int, vocab_size: int) -> None:
        super().__init__()
        self.d_model = d_model
        self.embedding = nn.Embedding(vocab_size, d_model)

    def forward(self, ids: Tensor) -> Tensor:
        return self.embedding(ids) * math.sqrt(self.d_model)  # (B, T, D), scaled as in the paper


class PositionalEncoding(nn.Module):
    """Adds the fixed sinusoidal position vectors (kept as the buffer `pe`), then dropout."""

    def __init__(self, d_model: int, seq_len: int, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        position = torch.arange(seq_len, dtype=torch.float).unsqueeze(1)  # (seq_len, 1)
        div_term = torch.exp(torch.arange(0, d_model, 2).float() * (-math.log(10000.0) / d_model))
        pe = torch.zeros(seq_len, d_model)
        pe[:, 0::2] = torch.sin(position * div_term)
        pe[:, 1::2] = torch.cos(position * div_term)
        self.register_buffer("pe", pe.unsqueeze(0))  # (1, seq_len, D), saved like the tutorial's

    def forward(self, x: Tensor, start: int = 0) -> Tensor:
        end = start + x.size(1)
        if end > self.pe.size(1):
            raise ValueError(f"sequence of {end} positions is longer than this model's seq_len {self.pe.size(1)}")
        return self.dropout(x + self.pe[:, start:end])


class LayerNormalization(nn.Module):
    """The tutorial's layer norm over the last dimension, with learned scale `alpha` and `bias`."""

    def __init__(self, features: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.alpha = nn.Parameter(torch.ones(features))
        self.bias = nn.Parameter(torch.zeros(features))

    def forward(self, x: Tensor) -> Tensor:
        # The tutorial's formula: unbiased std, eps added to the std (not inside a square root).
        std, mean = torch.std_mean(x, dim=-1, keepdim=True)
        return self.alpha * (x - mean) / (std + self.eps) + self.bias


class FeedForwardBlock(nn.Module):
    """Position-wise feed-forward network: Linear(D, F), ReLU, dropout, Linear(F, D)."""

    def __init__(self, d_model: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(d_model, d_ff)
        self.dropout = nn.Dropout(dropout)
        self.linear_2 = nn.Linear(d_ff, d_model)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear_2(self.dropout(torch.relu(self.linear_1(x))))  # (B, T, D) -> (B, T, F) -> (B, T, D)


class MultiHeadAttentionBlock(nn.Module):
    """Multi-head attention: project to H heads, attend, merge the heads, project back; returns its probabilities
    when asked, and can append to or reuse a key/value cache."""

    def __init__(self, d_model: int, h: int, dropout: float, bias: bool = False) -> None:
        super().__init__()
        self.h = h
        self.w_q = nn.Linear(d_model, d_model, bias=bias)
        self.w_k = nn.Linear(d_model, d_model, bias=bias)
        self.w_v = nn.Linear(d_model, d_model, bias=bias)
        self.w_o = nn.Linear(d_model, d_model, bias=bias)
        self.dropout = nn.Dropout(dropout)

    @classmethod
    def over(
        cls, projections: tuple[nn.Linear, nn.Linear, nn.Linear, nn.Linear], h: int, dropout: float
    ) -> MultiHeadAttentionBlock:
        """A block over existing (w_q, w_k, w_v, w_o) Linear modules: another family's weights, shared, not copied."""
        with torch.device("meta"):  # the block's own projections are replaced at once: allocate nothing
            block = cls(projections[0].in_features, h, dropout)
        block.w_q, block.w_k, block.w_v, block.w_o = projections
        return block

    def split_heads(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        return x.view(b, t, self.h, d // self.h).transpose(1, 2)  # (B, T, D) -> (B, H, T, Dh)

    def forward(
        self,
        x_q: Tensor,
        x_kv: Tensor,
        mask: Tensor | None,
        need_weights: bool = False,
        cache: KVCache | None = None,
        gates: Tensor | None = None,
        head: int | None = None,
        values: Values | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Attend from x_q (B, Tq, D) to x_kv (B, Tk, D); returns (output (B, Tq, D), probs or None).

        gates (B or 1, H) multiply each head's output before w_o (None: all heads as they are). probs are
        (B, H, Tq, Tk) with need_weights, else (B, Tq, Tk) of `head` when one is given (see attention).
        values zeroes keys' value vectors and hands them back through the output projection (seam.Values).
        """
        q = self.split_heads(self.w_q(x_q))
        if cache is not None and cache.static and cache.k is not None:
            k, v = cache.k, cache.v
        else:
            k, v = self.split_heads(self.w_k(x_kv)), self.split_heads(self.w_v(x_kv))
            if cache is not None:
                if cache.k is not None:  # a self-attention cache: append this step's keys and values
                    k, v = torch.cat([cache.k, k], dim=2), torch.cat([cache.v, v], dim=2)
                cache.k, cache.v = k, v
        if values is not None:
            v = v if values.keep is None else v * values.keep.to(v.dtype)[:, None, :, None]  # (B, H, Tk, Dh)
            if values.record:  # f_h(x_j): each head's values through its slice of w_o, (B, H, Tk, D)
                d = self.w_o.weight.size(0)
                values.transformed = torch.einsum("bhkd,ehd->bhke", v, self.w_o.weight.view(d, self.h, -1))
        dropout_p = self.dropout.p if self.training else 0.0
        out, probs = attention(q, k, v, mask, dropout_p, need_weights, head)
        if gates is not None:
            if gates.size(-1) != self.h:
                raise ValueError(f"head mask has {gates.size(-1)} heads; this model has {self.h}")
            out = out * gates.to(out.dtype)[:, :, None, None]  # (B, H, Tq, Dh) * (B or 1, H, 1, 1)
        b, _, t, _ = out.shape
        return self.w_o(out.transpose(1, 2).reshape(b, t, -1)), probs  # (B, H, Tq, Dh) -> (B, Tq, D)


class ResidualConnection(nn.Module):
    """Pre-norm residual wrapper around one sublayer."""

    def __init__(self, features: int, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.norm = LayerNormalization(features)

    def forward(
        self, x: Tensor, sublayer: Callable[[Tensor], tuple[Tensor, Tensor | None]]
    ) -> tuple[Tensor, Tensor | None]:
        """Pre-norm residual x + dropout(sublayer(norm(x))); the sublayer returns (output, probs)."""
        out, probs = sublayer(self.norm(x))
        return x + self.dropout(out), probs


class EncoderBlock(nn.Module):
    """One encoder layer: self-attention, then feed-forward, each in a residual connection."""

    def __init__(self, d_model: int, attn: MultiHeadAttentionBlock, ffn: FeedForwardBlock, dropout: float) -> None:
        super().__init__()
        self.self_attention_block = attn
        self.feed_forward_block = ffn
        self.residual_connections = nn.ModuleList([ResidualConnection(d_model, dropout) for _ in range(2)])

    def forward(self, x: Tensor, src_mask: Tensor | None, step: LayerStep = PLAIN) -> tuple[Tensor, Tensor | None]:
        values = Values(step.keep, record=step.probe is not None)
        weights = step.need_weights or step.probe is not None
        out, probs = self.residual_connections[0](
            x, lambda y: self.self_attention_block(y, y, src_mask, weights, gates=step.gates, values=values)
        )
        if step.probe is not None:
            step.probe.add("encoder", record(self.self_attention_block, probs, values, x, out))
        x, _ = self.residual_connections[1](out, lambda y: (self.feed_forward_block(y), None))
        return x, probs


def record(
    block: MultiHeadAttentionBlock, probs: Tensor, values: Values, residual: Tensor, output: Tensor
) -> BlockRecord:
    """A pre-norm attention block as attribution methods read it: output = residual + sum of the keys' parts."""
    bias = None if block.w_o.bias is None else block.w_o.bias.detach()
    return BlockRecord(probs, values.transformed, bias, residual, output)


class DecoderBlock(nn.Module):
    """One decoder layer: masked self-attention, cross-attention to the encoder output, then feed-forward."""

    def __init__(
        self,
        d_model: int,
        self_attn: MultiHeadAttentionBlock,
        cross_attn: MultiHeadAttentionBlock,
        ffn: FeedForwardBlock,
        dropout: float,
    ) -> None:
        super().__init__()
        self.self_attention_block = self_attn
        self.cross_attention_block = cross_attn
        self.feed_forward_block = ffn
        self.residual_connections = nn.ModuleList([ResidualConnection(d_model, dropout) for _ in range(3)])

    def forward(
        self, x: Tensor, memory: Tensor, masks: tuple[Tensor | None, Tensor | None], step: DecoderStep
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """masks: (source mask, target mask); step: what this pass returns, its caches, gates and probe."""
        src_mask, tgt_mask = masks
        self_cache, cross_cache = step.cache if step.cache is not None else (None, None)
        self_gates, cross_gates = step.gates
        probe, weights = step.probe, step.need_weights or step.probe is not None
        self_values, cross_values = (Values(keep, record=probe is not None) for keep in step.keep)
        out, self_probs = self.residual_connections[0](
            x, lambda y: self.self_attention_block(y, y, tgt_mask, weights, self_cache, self_gates, values=self_values)
        )
        if probe is not None:
            probe.add("decoder", record(self.self_attention_block, self_probs, self_values, x, out))
        x, out = out, None
        out, cross_probs = self.residual_connections[1](
            x,
            lambda y: self.cross_attention_block(
                y, memory, src_mask, weights, cross_cache, cross_gates, step.cross_head, cross_values
            ),
        )
        if probe is not None:
            probe.add("cross", record(self.cross_attention_block, cross_probs, cross_values, x, out))
        x, _ = self.residual_connections[2](out, lambda y: (self.feed_forward_block(y), None))
        return x, self_probs, cross_probs


class Stack(nn.Module):
    """A stack of encoder or decoder layers and the layer norm after them (the Transformer runs them)."""

    def __init__(self, d_model: int, layers: nn.ModuleList) -> None:
        super().__init__()
        self.layers = layers
        self.norm = LayerNormalization(d_model)


class ProjectionLayer(nn.Module):
    """Hidden states -> raw logits over the target vocabulary."""

    def __init__(self, d_model: int, vocab_size: int) -> None:
        super().__init__()
        self.proj = nn.Linear(d_model, vocab_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x)  # (B, T, D) -> (B, T, V) raw logits


class Transformer(LayerStack):
    """The encoder-decoder model built from a ModelConfig. Its per-layer pieces are what the model seam
    (core/seam.py) asks of a family; `encode`, `decode` (one step over a key/value cache, or all at once),
    `project` and the teacher-forced `forward` come from LayerStack."""

    specials = SPECIALS  # [SOS] words [EOS] in, [SOS] then the output fed back (core/tokenizer.py)

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        d, h, f, p, bias = config.d_model, config.n_heads, config.d_ff, config.dropout, config.attention_bias
        self.encoder = Stack(
            d,
            nn.ModuleList(
                EncoderBlock(d, MultiHeadAttentionBlock(d, h, p, bias), FeedForwardBlock(d, f, p), p)
                for _ in range(config.n_layers)
            ),
        )
        self.decoder = Stack(
            d,
            nn.ModuleList(
                DecoderBlock(
                    d,
                    MultiHeadAttentionBlock(d, h, p, bias),
                    MultiHeadAttentionBlock(d, h, p, bias),
                    FeedForwardBlock(d, f, p),
                    p,
                )
                for _ in range(config.n_layers)
            ),
        )
        self.src_embed = InputEmbeddings(d, config.src_vocab_size)
        self.tgt_embed = InputEmbeddings(d, config.tgt_vocab_size)
        self.src_pos = PositionalEncoding(d, config.seq_len, p)
        self.tgt_pos = PositionalEncoding(d, config.seq_len, p)
        self.projection_layer = ProjectionLayer(d, config.tgt_vocab_size)
        for param in self.parameters():
            if param.dim() > 1:
                nn.init.xavier_uniform_(param)

    def source_vectors(self, src: Tensor) -> Tensor:
        return self.src_embed(src)  # (B, S) -> (B, S, D), scaled by sqrt(D)

    def place_source(self, vectors: Tensor) -> Tensor:
        return self.src_pos(vectors)

    def encoder_layer(self, i: int, x: Tensor, src_mask: Tensor | None, step: LayerStep = PLAIN) -> tuple:
        return self.encoder.layers[i](x, src_mask, step)

    def finish_encoder(self, x: Tensor) -> Tensor:
        return self.encoder.norm(x)

    def embed_target(self, tgt: Tensor, start: int = 0) -> Tensor:
        return self.tgt_pos(self.tgt_embed(tgt), start)  # (B, T) -> (B, T, D) at positions start..

    def decoder_layer(self, i: int, y: Tensor, memory: Tensor, masks: tuple, step: DecoderStep) -> tuple:
        return self.decoder.layers[i](y, memory, masks, step)

    def finish_decoder(self, y: Tensor) -> Tensor:
        return self.decoder.norm(y)

    def project(self, x: Tensor) -> Tensor:
        return self.projection_layer(x)

    def project_rows(self, hidden: Tensor) -> Tensor:
        """(B, D) -> (B, V) logits of a few rows (a beam): weight @ hidden.T reads the (V, D) weight in its stored
        layout and ran about 2.5x faster on one CPU thread than nn.Linear's hidden @ weight.T (4 rows, V 22400);
        one row keeps nn.Linear, so a beam of 1 computes exactly what greedy decoding does."""
        if hidden.size(0) == 1:
            return self.project(hidden)
        proj = self.projection_layer.proj
        return torch.addmm(proj.bias[:, None], proj.weight, hidden.T).T.contiguous()  # rows contiguous for softmax
