"""Comparing two models head by head: itself gives 0, a perturbed head shows up where it was perturbed only."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from app_fixtures import write_tiny_checkpoint

from core import load_checkpoint, save_checkpoint
from core.checkpoint import ModelBundle
from core.cli import compare as compare_cli
from core.comparison import compare_models, log_probability, mean_divergence, vocabulary_mismatch
from core.decoding import translate
from core.tokenizer import EOS_ID, build_tokenizer

SENTENCE = "the cat sleeps on the mat ."


def perturbed(bundle: ModelBundle, layer: int, head: int) -> ModelBundle:
    """A copy whose encoder self-attention query weights of one head (0-based layer and head) are changed."""
    model = copy.deepcopy(bundle.model)
    w_q = model.encoder.layers[layer].self_attention_block.w_q.weight  # (d_model, d_model): rows = heads' outputs
    d_k = bundle.config.d_model // bundle.config.n_heads
    with torch.no_grad():
        w_q[head * d_k : (head + 1) * d_k] += torch.randn(d_k, w_q.shape[1], generator=torch.Generator().manual_seed(3))
    return ModelBundle(model, bundle.src_tokenizer, bundle.tgt_tokenizer, bundle.config, "perturbed", bundle.kind)


def test_a_model_against_itself_is_zero_everywhere(tiny_bundle):
    result = compare_models(tiny_bundle, tiny_bundle, SENTENCE)
    for kind, grid in result.divergence.items():
        assert grid.shape == (tiny_bundle.config.n_layers, tiny_bundle.config.n_heads)
        assert np.all(grid == 0), kind
    assert result.translation_a == result.translation_b == translate(tiny_bundle, SENTENCE).translation


def test_one_perturbed_encoder_head_differs_there_and_not_before(tiny_bundle):
    other = perturbed(tiny_bundle, layer=1, head=2)
    grids = compare_models(tiny_bundle, other, SENTENCE).divergence
    assert np.all(grids["encoder"][0] == 0)  # the layer before sees the same input with the same weights
    assert grids["encoder"][1, 2] > 1e-3
    assert np.allclose(np.delete(grids["encoder"][1], 2), 0, atol=1e-9)  # the other heads' queries are untouched
    assert np.all(grids["decoder"][0] == 0)  # the first decoder layer's self-attention sees only the decoder input
    assert grids["cross"].max() > 1e-4  # the changed encoder output reaches cross-attention


def test_both_models_are_fed_the_same_decoder_input(tiny_bundle):
    other = perturbed(tiny_bundle, layer=0, head=0)
    result = compare_models(tiny_bundle, other, SENTENCE, reference="il gatto dorme sul tappeto .")
    assert result.decoder_input == "the reference"
    assert result.attention_a.target_tokens == result.attention_b.target_tokens
    assert result.attention_a.target_tokens[1:3] == ("il", "gatto")


def test_log_probability_of_the_greedy_output_is_the_sum_of_its_top_probabilities(reverser_bundle):
    result = translate(reverser_bundle, "3 1 4 1 5")
    assert result.output_ids[-1] == EOS_ID  # ends with [EOS]: every row's choice is part of the sequence
    expected = float(torch.log(result.top_probs[:, 0]).sum())
    assert log_probability(reverser_bundle, result.source_ids, result.target_ids[1:]) == pytest.approx(
        expected, abs=1e-4
    )


def test_different_tokenizers_get_a_clear_message(tiny_bundle, tmp_path):
    other_src = build_tokenizer(["completely different words here"], min_frequency=1)
    bundle = ModelBundle(tiny_bundle.model, other_src, tiny_bundle.tgt_tokenizer, tiny_bundle.config, "x", "native")
    assert "different English tokenizers" in vocabulary_mismatch(tiny_bundle, bundle)
    with pytest.raises(ValueError, match="different English tokenizers"):
        compare_models(tiny_bundle, bundle, SENTENCE)


def test_mean_divergence_averages_sentences_and_skips_unusable_ones(tiny_bundle):
    other = perturbed(tiny_bundle, layer=1, head=0)
    pairs = [("the cat sleeps .", "il gatto dorme ."), ("where is the station ?", "dov' è la stazione ?")]
    count, grids, skipped = mean_divergence(tiny_bundle, other, pairs + [("   ", "x")])
    one = [compare_models(tiny_bundle, other, s).divergence["encoder"] for s, _ in pairs]
    assert count == 2 and len(skipped) == 1
    np.testing.assert_allclose(grids["encoder"], (one[0] + one[1]) / 2)


def test_cli_writes_the_documented_json(tiny_checkpoint, tiny_bundle, tmp_path, capsys):
    other = tmp_path / "other.pt"
    bundle = perturbed(tiny_bundle, layer=1, head=1)
    save_checkpoint(other, bundle.model, bundle.src_tokenizer, bundle.tgt_tokenizer)
    data = tmp_path / "pairs.tsv"
    data.write_text("the cat sleeps .\til gatto dorme .\nthe book is on the table .\til libro è sul tavolo .\n")
    out = tmp_path / "same.json"
    assert (
        compare_cli.main(
            ["--a", str(tiny_checkpoint), "--b", str(tiny_checkpoint), "--data", str(data), "--json", str(out)]
        )
        == 0
    )
    same = json.loads(out.read_text())
    assert set(same) == {"sentences", "kinds"} and same["sentences"] == 2
    assert set(same["kinds"]) == {"encoder", "decoder", "cross"}
    assert all(v == 0 for grid in same["kinds"].values() for row in grid for v in row)
    assert "layer 2" in capsys.readouterr().out
    assert (
        compare_cli.main(["--a", str(tiny_checkpoint), "--b", str(other), "--data", str(data), "--json", str(out)]) == 0
    )
    changed = json.loads(out.read_text())["kinds"]["encoder"]
    assert changed[0] == [0, 0, 0, 0] and changed[1][1] > 0
    assert load_checkpoint(other).config == tiny_bundle.config


def test_cli_refuses_models_with_different_tokenizers(tiny_checkpoint, tmp_path, capsys):
    other = write_tiny_checkpoint(tmp_path / "other.pt")  # its own 4-sentence tokenizers
    data = tmp_path / "pairs.tsv"
    data.write_text("the cat\til gatto\n")
    assert compare_cli.main(["--a", str(tiny_checkpoint), "--b", str(other), "--data", str(data)]) == 2
    assert "different English tokenizers" in capsys.readouterr().err
