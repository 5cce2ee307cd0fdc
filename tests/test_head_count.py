"""The head-count check on a model whose count is known: the shipped 8-head model saved as a tutorial file
(state dict only) and read as 4, 8 and 16 heads."""

import io
from pathlib import Path

import pytest
import torch

from core import load_checkpoint
from core.analysis.head_count import CHECK_PAIRS, candidate_counts, check_head_count, reference_fit, with_heads
from core.model import causal_mask

DEFAULT = Path(__file__).resolve().parents[1] / "checkpoints" / "default.pt"


@pytest.fixture(scope="module")
def tutorial_file():
    if not DEFAULT.is_file():
        pytest.skip("checkpoints/default.pt is not there")
    torch.set_num_threads(1)
    bundle = load_checkpoint(DEFAULT)
    assert bundle.config.n_heads == 8
    data = io.BytesIO()
    torch.save({"epoch": 0, "model_state_dict": bundle.model.state_dict()}, data)
    return data.getvalue(), bundle.src_tokenizer.to_str().encode(), bundle.tgt_tokenizer.to_str().encode()


@pytest.mark.parametrize("heads", [4, 16])
def test_a_wrong_head_count_is_flagged_and_the_true_one_found(tutorial_file, heads):
    data, src, tgt = tutorial_file
    check = check_head_count(load_checkpoint(data, src, tgt, heads=heads))
    assert check.chosen == heads and check.best == 8 and check.doubtful


def test_the_true_head_count_passes(tutorial_file):
    data, src, tgt = tutorial_file
    check = check_head_count(load_checkpoint(data, src, tgt, heads=8))
    assert set(check.fit) == {4, 8, 16} and check.best == 8 and not check.doubtful


def test_reference_fit_is_the_mean_log_probability_of_each_reference_token(tutorial_file):
    """Against a plain forward pass of each pair: log-softmax of the logits at each reference token, [EOS] too."""
    data, src, tgt = tutorial_file
    bundle = load_checkpoint(data, src, tgt, heads=8)
    pairs = CHECK_PAIRS[:3]
    total, count = 0.0, 0
    for en, it in pairs:
        source = torch.tensor([bundle.specials.frame_source(bundle.src_tokenizer.encode(en).ids)])
        labels = bundle.tgt_tokenizer.encode(it).ids + [bundle.specials.eos]
        decoder = torch.tensor([[bundle.specials.start] + labels[:-1]])
        with torch.no_grad():
            logits = bundle.model(source, decoder, None, causal_mask(decoder.size(1)))[0]
        total += float(logits.log_softmax(-1)[torch.arange(len(labels)), labels].sum())
        count += len(labels)
    assert reference_fit(bundle, pairs) == pytest.approx(total / count, abs=1e-4)


def test_candidates_divide_d_model_and_weights_are_shared(tutorial_file):
    assert candidate_counts(8, 512) == [4, 8, 16] and candidate_counts(6, 300) == [3, 6, 12]
    assert candidate_counts(1, 256) == [1, 2, 8]
    data, src, tgt = tutorial_file
    bundle = load_checkpoint(data, src, tgt, heads=8)
    other = with_heads(bundle, 4)
    assert other.config.n_heads == 4 and other.model.decoder.layers[0] is not bundle.model.decoder.layers[0]
    for (name, a), (_, b) in zip(bundle.model.state_dict().items(), other.model.state_dict().items()):
        assert torch.equal(a, b), name
