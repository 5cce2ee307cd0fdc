"""Switching heads off as data: nothing masked changes nothing, a whole layer off is a zero sublayer,
concurrent calls with different masks keep their own results, HeadsOff parses and checks."""

from __future__ import annotations

import copy
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

sys.path[:0] = [str(Path(__file__).resolve().parent)]
from heads_fixtures import tiny_bundle, toy_pairs  # noqa: E402

import core.model  # noqa: E402
from core import translate  # noqa: E402
from core.data import collate, encode_pairs  # noqa: E402
from core.decoding import greedy_batch  # noqa: E402
from core.heads_off import HeadsOff, label  # noqa: E402
from core.model import causal_mask, padding_mask  # noqa: E402
from core.tokenizer import EOS_ID, PAD_ID, SOS_ID  # noqa: E402

torch.set_num_threads(1)
SENTENCE = "the cat sat on the mat"


@pytest.fixture(scope="module")
def bundle():
    return tiny_bundle(layers=2, heads=2, seed=1)


def same_translation(a, b) -> None:
    assert a.output_ids == b.output_ids and a.target_ids == b.target_ids and a.translation == b.translation
    for kind in ("encoder", "decoder", "cross"):
        assert torch.equal(a.attention.weights(kind), b.attention.weights(kind))
    assert torch.equal(a.top_probs, b.top_probs)


def test_masking_nothing_changes_nothing(bundle):
    plain = translate(bundle, SENTENCE)
    ones = {kind: torch.ones(2, 2) for kind in ("encoder", "decoder", "cross")}
    same_translation(plain, translate(bundle, SENTENCE, head_mask=HeadsOff()))
    same_translation(plain, translate(bundle, SENTENCE, head_mask=ones))
    forced = translate(bundle, SENTENCE, reference="il gatto")
    same_translation(forced, translate(bundle, SENTENCE, reference="il gatto", head_mask=ones))
    sources = [[SOS_ID, 5, 6, EOS_ID], [SOS_ID, 7, EOS_ID]]
    assert greedy_batch(bundle.model, sources, 8) == greedy_batch(bundle.model, sources, 8, head_mask=ones)


def test_unmasked_passes_keep_the_fused_kernel(bundle, monkeypatch):
    calls = []
    real = core.model.F.scaled_dot_product_attention
    monkeypatch.setattr(core.model.F, "scaled_dot_product_attention", lambda *a, **k: calls.append(1) or real(*a, **k))
    greedy_batch(bundle.model, [[SOS_ID, 5, 6, EOS_ID]], 4)
    assert calls  # no weights asked for and nothing masked: the fused kernel runs


def test_a_head_off_changes_the_result_and_only_for_that_call(bundle):
    plain = translate(bundle, SENTENCE)
    off = translate(bundle, SENTENCE, head_mask=HeadsOff(frozenset({("cross", 2, 1)})))
    assert not torch.allclose(plain.top_probs[0], off.top_probs[0])
    same_translation(plain, translate(bundle, SENTENCE))  # the shared model is unchanged afterwards


def test_every_head_of_an_encoder_layer_off_is_that_sublayer_giving_zero(bundle):
    examples, _ = encode_pairs(toy_pairs(4), bundle.src_tokenizer, bundle.tgt_tokenizer, 24)
    src, dec, _ = collate(examples)
    args = (src, dec, padding_mask(src, PAD_ID), causal_mask(dec.size(1)))
    gates = torch.ones(2, 2)
    gates[1] = 0.0  # layer 2: both heads off
    masked = bundle.model(*args, head_mask={"encoder": gates})
    zeroed = copy.deepcopy(bundle.model)
    zeroed.encoder.layers[1].self_attention_block.forward = lambda x_q, *a, **k: (torch.zeros_like(x_q), None)
    torch.testing.assert_close(masked, zeroed(*args))
    assert not torch.allclose(masked, bundle.model(*args))


def test_per_row_masks_equal_one_call_per_mask(bundle):
    examples, _ = encode_pairs(toy_pairs(2), bundle.src_tokenizer, bundle.tgt_tokenizer, 24)
    e = examples[0]
    rows = torch.ones(3, 2, 2)
    rows[1, 0, 1] = 0.0
    rows[2, 1, 0] = 0.0
    src = torch.tensor([e.src] * 3)
    dec = torch.tensor([[SOS_ID, *e.tgt]] * 3)
    batched = bundle.model(src, dec, None, causal_mask(dec.size(1)), head_mask={"cross": rows})
    for r in range(3):
        one = bundle.model(src[:1], dec[:1], None, causal_mask(dec.size(1)), head_mask={"cross": rows[r]})
        torch.testing.assert_close(batched[r : r + 1], one)


def test_concurrent_calls_with_different_masks_do_not_mix(bundle):
    masks = [
        HeadsOff(),
        HeadsOff(frozenset({("encoder", 1, 1)})),
        HeadsOff(frozenset({("cross", 2, 2), ("decoder", 1, 2)})),
    ]
    expected = [translate(bundle, SENTENCE, head_mask=m) for m in masks]
    assert not torch.equal(expected[0].attention.cross, expected[1].attention.cross)
    jobs = [masks[i % 3] for i in range(60)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda m: translate(bundle, SENTENCE, head_mask=m), jobs))
    for i, result in enumerate(results):
        same_translation(result, expected[i % 3])


def test_heads_off_text_form_round_trips_and_bad_input_is_refused(bundle):
    off = HeadsOff(frozenset({("cross", 2, 1), ("encoder", 1, 2)}))
    assert off.to_param() == "e1.2,c2.1" and HeadsOff.from_param("e1.2, c2.1") == off
    assert label("decoder", 3, 4) == "d3.4"
    mask = off.mask(2, 2)
    assert set(mask) == {"cross", "encoder"} and mask["cross"].tolist() == [[1, 1], [0, 1]]
    for bad in ("x1.2", "e1", "e1.a", "c.2"):
        with pytest.raises(ValueError, match="not a head"):
            HeadsOff.from_param(bad)
    with pytest.raises(ValueError, match="does not exist"):
        translate(bundle, SENTENCE, head_mask=HeadsOff(frozenset({("cross", 3, 1)})))
    with pytest.raises(ValueError, match="layers, heads"):
        translate(bundle, SENTENCE, head_mask={"cross": torch.ones(3, 2)})
