"""Source relevance: rollout and Chefer et al.'s rules on cases whose answer is known, rows summing to 1,
the gradient-weighted version on a model, and the deletion test on real sentences when the data is here."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path[:0] = [str(Path(__file__).resolve().parent)]
from heads_fixtures import tiny_bundle  # noqa: E402
from marian_fixtures import make_marian  # noqa: E402

from core import translate  # noqa: E402
from core.analysis.relevance import (  # noqa: E402
    METHODS,
    attention_relevance,
    decoder_relevance,
    deletion_drops,
    deletion_test,
    encoder_rollout,
    row_outputs,
    source_relevance,
)
from core.seam import causal_mask  # noqa: E402

torch.set_num_threads(1)


def random_rows(*shape) -> torch.Tensor:
    return torch.rand(*shape).softmax(-1)


def causal_rows(layers, heads, t) -> torch.Tensor:
    w = torch.rand(layers, heads, t, t).tril() + torch.eye(t)
    return w / w.sum(-1, keepdim=True)


def test_rollout_rows_sum_to_one_and_one_layer_is_half_attention_half_identity():
    maps = random_rows(3, 5, 5)  # (L, S, S) head-averaged
    rollout = encoder_rollout(maps)
    torch.testing.assert_close(rollout.sum(-1), torch.ones(5))
    torch.testing.assert_close(encoder_rollout(maps[:1]), 0.5 * maps[0] + 0.5 * torch.eye(5))
    two = (0.5 * maps[1] + 0.5 * torch.eye(5)) @ (0.5 * maps[0] + 0.5 * torch.eye(5))
    torch.testing.assert_close(encoder_rollout(maps[:2]), two)


def test_relevance_rows_are_distributions_over_the_source():
    relevance = attention_relevance(random_rows(2, 4, 6, 6), causal_rows(2, 4, 5), random_rows(2, 4, 5, 6))
    assert relevance.shape == (5, 6) and (relevance >= 0).all()
    torch.testing.assert_close(relevance.sum(-1), torch.ones(5))


def test_with_identity_self_attention_relevance_is_the_cross_attention():
    # Encoder and decoder self-attention on each token itself: nothing mixes, so each output row's
    # relevance is its cross-attention row (averaged over layers when every layer has the same map).
    cross = random_rows(1, 3, 4)
    eye_s, eye_t = torch.eye(4)[None], torch.eye(3)[None]
    torch.testing.assert_close(decoder_relevance(eye_s, eye_t, cross) / 2, cross[0])  # Rbar_tt = 2 I


def test_future_rows_never_flow_into_earlier_output_tokens():
    enc, dec, cross = random_rows(2, 2, 5, 5), causal_rows(2, 2, 4), random_rows(2, 2, 4, 5)
    changed = cross.clone()
    changed[:, :, 3] = random_rows(2, 2, 5)  # only the last decoder row's cross-attention changes
    a, b = attention_relevance(enc, dec, cross), attention_relevance(enc, dec, changed)
    torch.testing.assert_close(a[:3], b[:3])
    assert not torch.allclose(a[3], b[3])


@pytest.fixture(scope="module")
def bundle():
    return tiny_bundle(layers=2, heads=2, seed=2)


def test_every_method_gives_rows_summing_to_one_on_a_model(bundle):
    result = translate(bundle, "the cat sat on the mat")
    for method in METHODS:
        relevance = source_relevance(bundle.model, result, method)
        assert relevance.shape == (len(result.target_ids), len(result.source_ids))
        assert (relevance >= 0).all()
        torch.testing.assert_close(relevance.sum(-1), torch.ones(len(result.target_ids)))
    with pytest.raises(ValueError, match="unknown relevance method"):
        source_relevance(bundle.model, result, "saliency")


def test_gradient_relevance_does_not_leave_gradients_on_the_shared_model(bundle):
    result = translate(bundle, "i like green tea")
    source_relevance(bundle.model, result, "gradient")
    assert all(p.grad is None for p in bundle.model.parameters())


@pytest.fixture(scope="module")
def marian(tmp_path_factory):
    from core import load_checkpoint

    return load_checkpoint(make_marian(tmp_path_factory.mktemp("marian") / "opus-mt-en-it"))


@pytest.mark.parametrize("which", ["bundle", "marian"])
def test_gradient_relevance_equals_one_backward_pass_per_output_token(which, request):
    """The batched backward pass against the plain way: for each output token its own forward and backward pass of
    the sentence, its maps weighted by their gradients and put through Chefer et al.'s rules."""
    model = request.getfixturevalue(which).model
    result = translate(request.getfixturevalue(which), "the cat sleeps on the chair .", max_len=8)
    src, tgt = torch.tensor([result.source_ids]), torch.tensor([result.target_ids])
    expected = []
    for row, token in enumerate(row_outputs(result)):
        with torch.enable_grad():
            memory, enc = model.encode(src, None, True)
            hidden, self_maps, cross = model.decode(tgt, memory, None, causal_mask(tgt.size(1)), True)
            maps = [*enc, *self_maps, *cross]
            grads = torch.autograd.grad(model.project(hidden[0, row : row + 1])[0, token], maps)
        weighted = [(g * m).clamp_min(0).mean(1).detach() for g, m in zip(grads, maps)]
        n = len(enc)
        relevance = decoder_relevance(*(torch.stack(weighted[i * n : (i + 1) * n], dim=1) for i in range(3)))[0, row]
        expected.append(
            relevance / relevance.sum() if relevance.sum() > 0 else torch.full_like(relevance, 1 / len(relevance))
        )
    got = source_relevance(model, result, "gradient")
    torch.testing.assert_close(got, torch.stack(expected), atol=1e-6, rtol=1e-5)


def test_deletion_drops_match_a_plain_translation_without_that_word(bundle):
    result = translate(bundle, "the cat sat on the mat")
    drops = deletion_drops(bundle.model, result)  # (words, rows)
    assert drops.shape == (6, len(result.target_ids))
    words = "the cat sat on the mat".split()
    shorter = " ".join(words[:2] + words[3:])  # 'sat' deleted: encoder position 3, row 2 of drops
    reference = " ".join(result.target_tokens[1:])
    forced = translate(bundle, shorter, reference=reference)
    base = translate(bundle, "the cat sat on the mat", reference=reference)
    row = 1  # the probability of the token fed at row 2, predicted at row 1
    token = result.target_ids[row + 1]

    def prob(t):
        ids = t.top_ids[row].tolist()
        return t.top_probs[row][ids.index(token)].item() if token in ids else None

    if prob(base) is not None and prob(forced) is not None:
        assert drops[2, row].item() == pytest.approx(prob(base) - prob(forced), abs=1e-5)


DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "tatoeba.en-it.tsv"  # ../shared beside the checkout
DEFAULT = Path(__file__).resolve().parents[1] / "checkpoints" / "default.pt"


@pytest.mark.skipif(not DATA.is_file() or not DEFAULT.is_file(), reason="needs ../shared/data and the default model")
def test_deletion_test_runs_on_real_sentences_and_beats_chance():
    from core import load_checkpoint

    bundle = load_checkpoint(DEFAULT)
    sentences = [line.split("\t")[0] for line in DATA.read_text(encoding="utf-8").splitlines()[5000:5012]]
    result = deletion_test(bundle, sentences)
    assert result["rows"] > 20 and result["sentences"] >= 10
    assert result["best"] >= max(result[m] for m in METHODS)  # nothing beats the most damaging word
    assert result["gradient"] > result["random"]
