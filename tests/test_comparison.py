"""Comparing two models head by head: itself gives 0, a perturbed head shows up where it was perturbed only."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from app_fixtures import write_tiny_checkpoint

from core import load_checkpoint, save_checkpoint
from core.attention import Attention
from core.checkpoint import ModelBundle
from core.cli import compare as compare_cli
from core.comparison import compare_models, log_probability, mean_divergence, vocabulary_mismatch, word_maps
from core.decoding import translate
from core.tokenizer import EOS_ID

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


def permuted_twin(bundle: ModelBundle, seed: int = 0) -> ModelBundle:
    """The same model under tokenizers whose ids are shuffled (specials stay): the embeddings and the output
    projection are permuted to match, so it computes the same function of the text with other token ids."""
    from tokenizers import Tokenizer

    generator = torch.Generator().manual_seed(seed)
    model = copy.deepcopy(bundle.model)
    sides = []
    for side, embedding in (
        (bundle.src_tokenizer, model.src_embed.embedding),
        (bundle.tgt_tokenizer, model.tgt_embed.embedding),
    ):
        vocab = side.get_vocab()
        order = list(range(4)) + (torch.randperm(len(vocab) - 4, generator=generator) + 4).tolist()  # new id -> old id
        data = json.loads(side.to_str())
        data["model"]["vocab"] = {token: order.index(old) for token, old in vocab.items()}
        sides.append(Tokenizer.from_str(json.dumps(data)))
        with torch.no_grad():
            embedding.weight.copy_(embedding.weight[order])
            if embedding is model.tgt_embed.embedding:
                proj = model.projection_layer.proj
                proj.weight.copy_(proj.weight[order])
                proj.bias.copy_(proj.bias[order])
    return ModelBundle(model, *sides, bundle.config, "twin", bundle.kind)


def test_different_tokenizers_are_compared_word_by_word(tiny_bundle):
    """Known by construction: the same model under shuffled token ids writes the same words and attends the same
    way, so every head's word-level divergence is 0; a head of the twin perturbed shows up, and only from its
    layer on."""
    twin = permuted_twin(tiny_bundle)
    assert vocabulary_mismatch(tiny_bundle, twin)  # the token ids differ: a token-level comparison is impossible
    result = compare_models(tiny_bundle, twin, SENTENCE)
    assert result.level == "word" and result.translation_a == result.translation_b
    assert list(result.attention_a.source_tokens) == SENTENCE.split()
    assert list(result.attention_a.target_tokens) == result.translation_a.split()
    for kind in ("encoder", "decoder", "cross"):
        np.testing.assert_allclose(result.divergence[kind], 0.0, atol=1e-6)
    changed = compare_models(tiny_bundle, perturbed(twin, layer=1, head=0), SENTENCE, reference="il gatto dorme .")
    assert changed.level == "word" and changed.decoder_input == "the reference"
    assert changed.divergence["encoder"][1, 0] > 1e-3
    np.testing.assert_allclose(changed.divergence["encoder"][0], 0.0, atol=1e-6)  # before the perturbed layer


def test_word_maps_average_a_words_rows_and_sum_its_columns():
    """A hand-made case: source [SOS] a b c [EOS] with tokens a b in word 0 and c in word 1; decoder input
    [SOS] x y with x, y one word. As the alignment code does: a word's token rows are averaged, the framing
    columns left out, then each word row renormalised."""
    enc = torch.zeros(1, 1, 5, 5)
    enc[0, 0, 1] = torch.tensor([0.2, 0.2, 0.2, 0.4, 0.0])  # a: 0.4 on word 0, 0.4 on word 1 of 0.8 on words
    enc[0, 0, 2] = torch.tensor([0.0, 0.5, 0.5, 0.0, 0.0])  # b: all on word 0
    enc[0, 0, 3] = torch.tensor([0.0, 0.0, 0.0, 1.0, 0.0])  # c: all on word 1
    cross = torch.zeros(1, 1, 3, 5)
    cross[0, 0, 0] = torch.tensor([0.5, 0.25, 0.0, 0.25, 0.0])  # predicts x: 0.25 / 0.25 over the words
    cross[0, 0, 1] = torch.tensor([0.0, 0.0, 0.0, 1.0, 0.0])  # predicts y
    dec = torch.tensor([[1.0, 0, 0], [0.5, 0.5, 0], [0.2, 0.4, 0.4]])[None, None]
    att = Attention(enc, dec, cross, ("[SOS]", "a", "b", "c", "[EOS]"), ("[SOS]", "x", "y"))
    words = word_maps(att, ([0, 0, 1], 2), ([0, 0], 1), (["ab", "c"], ["xy"]))
    # word 0's rows on the words: a -> (0.4, 0.4), b -> (1.0, 0); mean (0.7, 0.2), renormalised (7/9, 2/9)
    torch.testing.assert_close(words.encoder[0, 0], torch.tensor([[7 / 9, 2 / 9], [0.0, 1.0]]))
    # target word xy: rows predicting x -> (0.25, 0.25), y -> (0, 1); mean (0.125, 0.625) -> (1/6, 5/6)
    torch.testing.assert_close(words.cross[0, 0], torch.tensor([[1 / 6, 5 / 6]]))
    # decoder: row predicting x sees only [SOS] (left out: zero), row predicting y sees x: mean (0.5) then shares 1
    torch.testing.assert_close(words.decoder[0, 0], torch.tensor([[1.0]]))


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
    assert set(same) == {"sentences", "level", "kinds"} and same["sentences"] == 2 and same["level"] == "token"
    assert set(same["kinds"]) == {"encoder", "decoder", "cross"}
    assert all(v == 0 for grid in same["kinds"].values() for row in grid for v in row)
    assert "layer 2" in capsys.readouterr().out
    assert (
        compare_cli.main(["--a", str(tiny_checkpoint), "--b", str(other), "--data", str(data), "--json", str(out)]) == 0
    )
    changed = json.loads(out.read_text())["kinds"]["encoder"]
    assert changed[0] == [0, 0, 0, 0] and changed[1][1] > 0
    assert load_checkpoint(other).config == tiny_bundle.config


def test_cli_compares_other_tokenizers_word_by_word_and_refuses_other_shapes(tiny_checkpoint, tmp_path, capsys):
    other = write_tiny_checkpoint(tmp_path / "other.pt", heads=4)  # 2 x 4 as tiny.pt, its own 4-sentence tokenizers
    data = tmp_path / "pairs.tsv"
    data.write_text("the cat\til gatto\n")
    out = tmp_path / "grids.json"
    assert (
        compare_cli.main(["--a", str(tiny_checkpoint), "--b", str(other), "--data", str(data), "--json", str(out)]) == 0
    )
    assert "compared word by word" in capsys.readouterr().out and json.loads(out.read_text())["level"] == "word"
    deeper = write_tiny_checkpoint(tmp_path / "deeper.pt", layers=3, heads=4)
    assert compare_cli.main(["--a", str(tiny_checkpoint), "--b", str(deeper), "--data", str(data)]) == 2
    assert "no head-by-head comparison between different shapes" in capsys.readouterr().err
