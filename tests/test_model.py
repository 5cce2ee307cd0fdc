"""Invariants of the model's attention maps, masks and config validation."""

from __future__ import annotations

import pytest
import torch

from core import ModelConfig, Transformer
from core.model import attention, causal_mask, padding_mask
from core.tokenizer import PAD_ID


def padded_batch(config: ModelConfig):
    """Two source rows (6 and 4 real tokens) and two target rows (5 and 3 real tokens), right-padded."""
    gen = torch.Generator().manual_seed(1)
    src = torch.randint(4, config.src_vocab_size, (2, 6), generator=gen)
    tgt = torch.randint(4, config.tgt_vocab_size, (2, 5), generator=gen)
    src[1, 4:] = PAD_ID
    tgt[1, 3:] = PAD_ID
    return src, tgt


@pytest.mark.parametrize("n_layers,n_heads", [(1, 1), (2, 4), (3, 2)])
def test_attention_shapes_and_rows(tiny_config, n_layers, n_heads):
    config = ModelConfig(**{**tiny_config.to_dict(), "n_layers": n_layers, "n_heads": n_heads})
    torch.manual_seed(0)
    model = Transformer(config).eval()
    src, tgt = padded_batch(config)
    src_mask = padding_mask(src, PAD_ID)  # (B, 1, 1, S)
    tgt_mask = padding_mask(tgt, PAD_ID) & causal_mask(tgt.size(1))  # (B, 1, T, T)
    logits, (enc, dec, cross) = model(src, tgt, src_mask, tgt_mask, return_attention=True)

    assert logits.shape == (2, 5, config.tgt_vocab_size)
    assert enc.shape == (n_layers, 2, n_heads, 6, 6)
    assert dec.shape == (n_layers, 2, n_heads, 5, 5)
    assert cross.shape == (n_layers, 2, n_heads, 5, 6)
    for probs in (enc, dec, cross):
        assert torch.allclose(probs.sum(-1), torch.ones(probs.shape[:-1]), atol=1e-5)
        assert (probs >= 0).all()
    upper = torch.ones(5, 5, dtype=torch.bool).triu(1)
    assert (dec[..., upper] == 0).all()
    assert (enc[:, 1, :, :, 4:] == 0).all()  # padded source keys
    assert (cross[:, 1, :, :, 4:] == 0).all()
    assert (dec[:, 1, :, :, 3:] == 0).all()  # padded target keys
    # The batch's real rows match each sentence run on its own, unpadded.
    alone, (_, _, alone_cross) = model(src[1:, :4], tgt[1:, :3], None, causal_mask(3), return_attention=True)
    assert torch.allclose(logits[1, :3], alone[0], atol=1e-5)
    assert torch.allclose(cross[:, 1, :, :3, :4], alone_cross[:, 0], atol=1e-5)


def test_fused_path_matches_explicit_path(tiny_model, tiny_config):
    src, tgt = padded_batch(tiny_config)
    src_mask, tgt_mask = padding_mask(src, PAD_ID), padding_mask(tgt, PAD_ID) & causal_mask(tgt.size(1))
    fused = tiny_model(src, tgt, src_mask, tgt_mask)
    explicit, _ = tiny_model(src, tgt, src_mask, tgt_mask, return_attention=True)
    assert torch.allclose(fused, explicit, atol=1e-5)


def test_eval_mode_is_deterministic(tiny_config):
    torch.manual_seed(0)
    model = Transformer(ModelConfig(**{**tiny_config.to_dict(), "dropout": 0.5})).eval()
    src, tgt = padded_batch(tiny_config)
    first, (_, _, cross1) = model(src, tgt, None, causal_mask(tgt.size(1)), return_attention=True)
    second, (_, _, cross2) = model(src, tgt, None, causal_mask(tgt.size(1)), return_attention=True)
    assert torch.equal(first, second) and torch.equal(cross1, cross2)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_masking_is_finite_in_low_precision(dtype):
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 4, 8, generator=gen).to(dtype) for _ in range(3))
    mask = torch.tensor([True, True, False, False])[None, None, None, :] & causal_mask(4)
    out, probs = attention(q, k, v, mask, 0.0, need_weights=True)
    assert torch.isfinite(out).all() and torch.isfinite(probs).all()
    assert (probs[..., ~mask[0, 0]] == 0).all()
    assert torch.allclose(probs.float().sum(-1), torch.ones(1, 2, 4), atol=1e-2)


def test_tutorial_fill_value_would_overflow_float16():
    # Why the masks use torch.finfo(dtype).min: the tutorial's -1e9 is -inf in float16, masked_fill
    # refuses it there, and a fully masked row of -inf scores turns into NaN after softmax.
    assert torch.tensor(-1e9, dtype=torch.float16).item() == float("-inf")
    scores, everything = torch.zeros(3, dtype=torch.float16), torch.ones(3, dtype=torch.bool)
    with pytest.raises(RuntimeError, match="overflow"):
        scores.masked_fill(everything, -1e9)
    assert torch.isnan(torch.full((3,), float("-inf")).softmax(-1)).all()
    finite = scores.masked_fill(everything, torch.finfo(torch.float16).min).softmax(-1)
    assert torch.isfinite(finite).all()


def test_masks_have_documented_shapes():
    ids = torch.tensor([[5, 6, PAD_ID], [7, PAD_ID, PAD_ID]])
    assert padding_mask(ids, PAD_ID).tolist() == [[[[True, True, False]]], [[[True, False, False]]]]
    assert causal_mask(3).shape == (1, 1, 3, 3)
    assert causal_mask(3)[0, 0].tolist() == [[True, False, False], [True, True, False], [True, True, True]]


@pytest.mark.parametrize(
    "change,message",
    [
        ({"d_model": 30, "n_heads": 4}, "divisible"),
        ({"n_layers": 0}, "n_layers"),
        ({"dropout": 1.0}, "dropout"),
        ({"src_vocab_size": 3}, "special tokens"),
        ({"seq_len": 2}, "seq_len"),
    ],
)
def test_bad_configs_raise(tiny_config, change, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**{**tiny_config.to_dict(), **change})


def test_config_from_dict_rejects_unknown_keys(tiny_config):
    with pytest.raises(ValueError, match="unknown model config keys: colour"):
        ModelConfig.from_dict({**tiny_config.to_dict(), "colour": "red"})
