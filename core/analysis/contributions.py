"""Context mixing beyond raw attention: how much each input token contributes to each output of an attention
block, rolled out through the encoder and the decoder, for any model family (through the seam's trace).

A block's output is a sum over its inputs j of parts T_i(x_j), plus terms no token owns (seam.BlockRecord):
in a self-attention block the inputs are the layer's tokens and T_i(x_i) holds the residual; in a cross-attention
block the inputs are the S source positions and one more, the residual stream.

- ALTI (Ferrando et al. 2022): c_ij = max(0, |y_i|_1 - |y_i - T_i(x_j)|_1), each row normalised to sum 1 (a row
  whose scores are all 0 is uniform). For our pre-norm blocks the parts need no layer-norm linearisation: the
  layer norm acts on each token alone, so LN(x_j) belongs to token j; y_i is the residual stream after the block,
  and the final stack norms (token-wise) mix nothing. Marian's post-norm blocks linearise the norm with its real
  scale (seam.BlockRecord).
- Norm rollout (Kobayashi et al. 2021): c_ij = |T_i(x_j)|_2, rows normalised; rolled out as ALTI.
- Norm-based attention (Kobayashi et al. 2020): N_tj = |sum_h alpha_htj f_h(x_j)|_2 of the last decoder layer's
  cross-attention (no residual), rows normalised: a per-layer view, no prefix share.
- Value zeroing (Mohebbi et al. 2023): zero token j's value vector in one layer, rerun that layer, and take the
  cosine distance of each output to the unperturbed one; rows normalised; rolled out as ALTI. A row whose
  distances are all 0 (no value mattered: the layer passed the token on) is the token's own. Batched: batch row b
  zeroes token b, and rows never interact, so it equals the one-token-at-a-time loop.

ALTI+ rollout (Ferrando et al. 2022, translation): the encoder's layer matrices multiply into R_enc (S x S). Each
decoder layer gives a self-attention matrix C_self (T x T) and a cross-attention one over [S sources | residual],
normalised together; its source part goes through R_enc, its residual share scales C_self:
    R_src <- C_x R_enc + diag(c_res) C_self R_src,    R_tgt <- diag(c_res) C_self R_tgt,
from R_src = 0, R_tgt = I. Row t of [R_src | R_tgt] sums to 1: the source share of output token t (predicted at
decoder row t) is the sum of R_src's row, the rest came from the target prefix. Value zeroing has no decoder
rollout of its own (its authors normalise the two matrices apart); here its cross and self distances are
normalised together per row, as ALTI+'s, to give the same split.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from core.seam import BlockRecord, DecoderStep, LayerStack, LayerStep, causal_mask, model_device, trace


@dataclass(frozen=True)
class Contributions:
    """Where each output token came from: source (T, S) over the encoder positions and prefix (T, T) over the
    decoder inputs, row t for the token predicted at decoder row t; each row of [source | prefix] sums to 1."""

    source: Tensor
    prefix: Tensor

    @property
    def source_share(self) -> Tensor:
        """(T,) the share of each output token that came from the source."""
        return self.source.sum(-1)

    def source_distribution(self) -> Tensor:
        """(T, S) the source part of each row, normalised to sum 1 (uniform for a row with none)."""
        return rows_to_one(self.source)


def rows_to_one(r: Tensor) -> Tensor:
    """Rows divided by their sum; a row that sums to 0 becomes uniform."""
    total = r.sum(-1, keepdim=True)
    return torch.where(total > 0, r / total.clamp_min(1e-30), torch.full_like(r, 1.0 / r.size(-1)))


def block_parts(record: BlockRecord, self_attention: bool) -> Tensor:
    """(B, Tq, J, D): T_i(x_j) for each input j (the layer's tokens, or the sources then the residual)."""
    attended = torch.einsum("bhqk,bhkd->bqkd", record.probs, record.values)  # sum over heads of alpha f_h(x_j)
    if self_attention:
        t = attended.size(1)
        eye = torch.eye(t, dtype=attended.dtype, device=attended.device)[None, :, :, None]
        parts = attended + eye * record.residual[:, :, None, :]  # the residual belongs to the query's own token
    else:
        parts = torch.cat([attended, record.residual[:, :, None, :]], dim=2)
    if record.gain is not None:  # post-norm: gain * C(part) / sigma, the norm linear at its real scale
        parts = record.gain * (parts - parts.mean(-1, keepdim=True)) / record.sigma[:, :, None, :]
    return parts


def alti_scores(output: Tensor, parts: Tensor) -> Tensor:
    """(B, Tq, D) outputs and (B, Tq, J, D) parts -> (B, Tq, J) ALTI contributions, rows summing to 1."""
    size = output.abs().sum(-1, keepdim=True)  # (B, Tq, 1)
    scores = (size - (output[:, :, None, :] - parts).abs().sum(-1)).clamp_min(0)
    return rows_to_one(scores)


def norm_scores(parts: Tensor) -> Tensor:
    """(B, Tq, J, D) parts -> (B, Tq, J) their L2 norms, rows summing to 1."""
    return rows_to_one(parts.norm(dim=-1))


def block_matrix(record: BlockRecord, kind: str, method: str) -> Tensor:
    """(Tq, J) contributions of one block of a one-sentence trace: "alti" or "norm" (norm rollout)."""
    parts = block_parts(record, kind != "cross")
    scores = alti_scores(record.output, parts) if method == "alti" else norm_scores(parts)
    return scores[0]


def rollout(layers: list[tuple[Tensor, Tensor, Tensor]], encoder: list[Tensor]) -> Contributions:
    """ALTI+'s rollout (module docstring). encoder: per layer (S, S); layers: per decoder layer (C_self (T, T),
    C_cross_source (T, S), c_residual (T,)), each cross row summing to 1 with its residual share."""
    r_enc = torch.eye(encoder[0].size(-1), dtype=encoder[0].dtype)
    for matrix in encoder:
        r_enc = matrix @ r_enc
    t = layers[0][0].size(0)
    r_src = torch.zeros(t, r_enc.size(0), dtype=r_enc.dtype)
    r_tgt = torch.eye(t, dtype=r_enc.dtype)
    for c_self, c_src, c_res in layers:
        through_self = c_res[:, None] * c_self
        r_src = c_src @ r_enc + through_self @ r_src
        r_tgt = through_self @ r_tgt
    return Contributions(r_src, r_tgt)


@torch.inference_mode()
def traced(model: LayerStack, src_ids: list[int], decoder_ids: list[int]):
    """The probe of one teacher-forced pass of one sentence."""
    device = model_device(model)
    src, tgt = torch.tensor([src_ids], device=device), torch.tensor([decoder_ids], device=device)
    _, probe = trace(model, src, tgt)
    return probe


def decomposed(model: LayerStack, src_ids: list[int], decoder_ids: list[int], method: str) -> Contributions:
    """ALTI+ ("alti") or the norm rollout ("norm") of one sentence: source and prefix contributions per output."""
    probe = traced(model, src_ids, decoder_ids)
    records = probe.records
    encoder = [block_matrix(records[("encoder", layer)], "encoder", method).double() for layer in range(model.n_layers)]
    layers = []
    for layer in range(model.n_layers):
        c_self = block_matrix(records[("decoder", layer)], "decoder", method).double()
        cross = block_matrix(records[("cross", layer)], "cross", method).double()  # (T, S + 1)
        layers.append((c_self, cross[:, :-1], cross[:, -1]))
    return rollout(layers, encoder)


def cross_norms(model: LayerStack, src_ids: list[int], decoder_ids: list[int], layer: int = -1) -> Tensor:
    """(T, S) Kobayashi et al.'s norm-based attention |sum_h alpha f_h(x_j)| of one decoder layer's
    cross-attention (the last by default), rows normalised."""
    record = traced(model, src_ids, decoder_ids).records[("cross", layer % model.n_layers)]
    attended = torch.einsum("bhqk,bhkd->bqkd", record.probs, record.values)
    return rows_to_one(attended[0].norm(dim=-1)).double()


def _rows_or_self(distances: Tensor, own: Tensor) -> Tensor:
    """Rows normalised to sum 1; a row of zeros (zeroing no value changed that output) is the token's own
    (`own`, one-hot), as the residual stream carries it on."""
    total = distances.sum(-1, keepdim=True)
    return torch.where(total > 0, distances / total.clamp_min(1e-30), own)


UNCHANGED = 1e-6  # a cosine distance below this is float32 rounding, not a change (float32's cosine: ~1e-7)


def _cosine_distance(a: Tensor, b: Tensor) -> Tensor:
    distance = 1 - torch.nn.functional.cosine_similarity(a, b, dim=-1)
    return distance.masked_fill(distance < UNCHANGED, 0.0)


@torch.inference_mode()
def value_zeroing(model: LayerStack, src_ids: list[int], decoder_ids: list[int]) -> Contributions:
    """Value zeroing of one sentence, batched (module docstring), with the joint source/prefix rollout."""
    device = model_device(model)
    src = torch.tensor([src_ids], device=device)
    s, t = len(src_ids), len(decoder_ids)
    eye_s, eye_t = torch.eye(s, device=device), torch.eye(t, device=device)
    x, encoder = model.embed_source(src), []
    for i in range(model.n_layers):
        last = i == model.n_layers - 1
        plain, _ = model.encoder_layer(i, x, None)
        zeroed, _ = model.encoder_layer(i, x.expand(s, -1, -1), None, LayerStep(keep=1 - eye_s))  # row b: no b
        out, alt = (model.finish_encoder(plain), model.finish_encoder(zeroed)) if last else (plain, zeroed)
        distances = _cosine_distance(alt, out).T.double()  # (S queries, S zeroed)
        encoder.append(_rows_or_self(distances, eye_s.double()))
        x = plain
    memory = model.finish_encoder(x)
    y = model.embed_target(torch.tensor([decoder_ids], device=device))
    masks, layers = (None, causal_mask(t, device)), []
    for i in range(model.n_layers):
        last = i == model.n_layers - 1
        plain, _, _ = model.decoder_layer(i, y, memory, masks, DecoderStep())
        zero_src, _, _ = model.decoder_layer(
            i, y.expand(s, -1, -1), memory.expand(s, -1, -1), masks, DecoderStep(keep=(None, 1 - eye_s))
        )
        zero_tgt, _, _ = model.decoder_layer(
            i, y.expand(t, -1, -1), memory.expand(t, -1, -1), masks, DecoderStep(keep=(1 - eye_t, None))
        )
        if last:
            plain, zero_src, zero_tgt = (model.finish_decoder(z) for z in (plain, zero_src, zero_tgt))
        cross = _cosine_distance(zero_src, plain).T.double()  # (T, S)
        self_ = _cosine_distance(zero_tgt, plain).T.double().tril()  # (T, T): a row cannot see later tokens
        own = torch.cat([torch.zeros_like(cross), eye_t.double()], dim=-1)
        joint = _rows_or_self(torch.cat([cross, self_], dim=-1), own)
        c_src, c_self = joint[:, :s], joint[:, s:]
        c_res = c_self.sum(-1)
        layers.append((rows_to_one(c_self), c_src, c_res))
        y = plain if not last else y
    return rollout(layers, encoder)
