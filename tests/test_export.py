"""python -m core export: a weights-only, 16-bit (or 8-bit) file with a model card; several checkpoints averaged."""

import json
import random

import pytest
import torch
from conftest import cli_subprocess

from core import ModelConfig, Transformer, load_checkpoint, save_checkpoint
from core.checkpoint import CheckpointError, TrainingState, export_checkpoint
from core.cli.export import main
from core.seam import trace


def _checkpoint(path, config, src, tgt, seed):
    torch.manual_seed(seed)
    model = Transformer(config)
    big = TrainingState(0, 0, 0, {"big": torch.zeros(10_000)}, {}, torch.get_rng_state(), random.getstate())
    save_checkpoint(path, model, src, tgt, training_state=big)
    return model


def test_export_drops_training_state_halves_weights_and_carries_the_card(
    tmp_path, tiny_config, src_tokenizer, tgt_tokenizer
):
    model = _checkpoint(tmp_path / "a.pt", tiny_config, src_tokenizer, tgt_tokenizer, 0)
    card = tmp_path / "card.json"
    card.write_text(json.dumps({"description": "a test model", "metrics": {"bleu": 1.0}}), encoding="utf-8")
    assert main(["--checkpoint", str(tmp_path / "a.pt"), "--out", str(tmp_path / "out.pt"), "--card", str(card)]) == 0
    assert (tmp_path / "out.pt").stat().st_size < (tmp_path / "a.pt").stat().st_size / 2
    bundle = load_checkpoint(tmp_path / "out.pt")
    assert bundle.metadata["model_card"]["description"] == "a test model"
    for key, value in model.state_dict().items():
        torch.testing.assert_close(bundle.model.state_dict()[key], value, atol=1e-2, rtol=1e-2)  # 16-bit storage


def test_several_checkpoints_are_averaged(tmp_path, tiny_config, src_tokenizer, tgt_tokenizer):
    a = _checkpoint(tmp_path / "a.pt", tiny_config, src_tokenizer, tgt_tokenizer, 0)
    b = _checkpoint(tmp_path / "b.pt", tiny_config, src_tokenizer, tgt_tokenizer, 1)
    assert (
        main(
            [
                "--checkpoint",
                str(tmp_path / "a.pt"),
                str(tmp_path / "b.pt"),
                "--out",
                str(tmp_path / "avg.pt"),
                "--float32",
            ]
        )
        == 0
    )
    bundle = load_checkpoint(tmp_path / "avg.pt")
    assert bundle.metadata["averaged_from"] == ["a.pt", "b.pt"]
    key = "decoder.layers.0.feed_forward_block.linear_1.weight"
    torch.testing.assert_close(bundle.model.state_dict()[key], (a.state_dict()[key] + b.state_dict()[key]) / 2)


def test_checkpoints_of_different_models_are_not_averaged(tmp_path, tiny_config, src_tokenizer, tgt_tokenizer, capsys):
    _checkpoint(tmp_path / "a.pt", tiny_config, src_tokenizer, tgt_tokenizer, 0)
    other = ModelConfig(**{**tiny_config.to_dict(), "d_ff": tiny_config.d_ff * 2})
    _checkpoint(tmp_path / "b.pt", other, src_tokenizer, tgt_tokenizer, 1)
    assert main(["--checkpoint", str(tmp_path / "a.pt"), str(tmp_path / "b.pt"), "--out", str(tmp_path / "x.pt")]) == 2
    assert "different model" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()


@pytest.mark.parametrize("bad", ["missing.pt"])
def test_a_missing_checkpoint_is_a_clear_error(tmp_path, bad, capsys):
    assert main(["--checkpoint", str(tmp_path / bad), "--out", str(tmp_path / "x.pt")]) == 2
    assert "not found" in capsys.readouterr().err


def test_export_command_smoke(tmp_path, tiny_config, src_tokenizer, tgt_tokenizer):
    """`python -m core export` in a fresh interpreter."""
    _checkpoint(tmp_path / "a.pt", tiny_config, src_tokenizer, tgt_tokenizer, 0)
    run = cli_subprocess("export", "--checkpoint", tmp_path / "a.pt", "--out", tmp_path / "out.pt")
    assert run.returncode == 0, run.stderr
    assert load_checkpoint(tmp_path / "out.pt").config == tiny_config


def test_int8_export_stores_each_matrix_row_in_8_bits_and_keeps_the_attention(
    tmp_path, tiny_config, src_tokenizer, tgt_tokenizer
):
    """--int8: each weight row stored as round(row * 127 / max|row|) in int8; the loaded model's attention maps stay
    within a few hundredths of the full-precision ones."""
    model = _checkpoint(tmp_path / "a.pt", tiny_config, src_tokenizer, tgt_tokenizer, 0)
    assert main(["--checkpoint", str(tmp_path / "a.pt"), "--out", str(tmp_path / "half.pt")]) == 0
    assert main(["--checkpoint", str(tmp_path / "a.pt"), "--out", str(tmp_path / "int8.pt"), "--int8"]) == 0
    raw = torch.load(tmp_path / "int8.pt", weights_only=True)
    key = "encoder.layers.0.self_attention_block.w_q.weight"
    weight = model.state_dict()[key]
    row_max = weight.abs().max(dim=1).values
    assert raw["model_state_dict"][key].dtype == torch.int8
    assert torch.equal(raw["model_state_dict"][key][0].abs().max(), torch.tensor(127, dtype=torch.int8))
    by_hand = torch.round(weight[0] * 127 / row_max[0]) * row_max[0] / 127
    bundle = load_checkpoint(tmp_path / "int8.pt")
    torch.testing.assert_close(bundle.model.state_dict()[key][0], by_hand, atol=1e-3 * row_max[0].item(), rtol=0)
    assert (tmp_path / "int8.pt").stat().st_size < (tmp_path / "half.pt").stat().st_size
    src, tgt = torch.arange(4, 9)[None], torch.arange(5, 9)[None]
    with torch.no_grad():
        _, full = trace(model.eval(), src, tgt)
        _, small = trace(bundle.model.eval(), src, tgt)
    assert full.records.keys() == small.records.keys() and len(full.records) == 3 * tiny_config.n_layers
    for key, record in full.records.items():
        assert (small.records[key].probs - record.probs).abs().max() < 0.05


@pytest.mark.parametrize("damage", ["not a dict", "wrong length", "float weights"])
def test_damaged_int8_scales_are_a_clear_error(tmp_path, tiny_config, src_tokenizer, tgt_tokenizer, damage):
    _checkpoint(tmp_path / "a.pt", tiny_config, src_tokenizer, tgt_tokenizer, 0)
    export_checkpoint([tmp_path / "a.pt"], tmp_path / "int8.pt", bits=8)
    payload = torch.load(tmp_path / "int8.pt", weights_only=True)
    key = next(iter(payload["int8_scales"]))
    if damage == "not a dict":
        payload["int8_scales"] = [1, 2]
    elif damage == "wrong length":
        payload["int8_scales"][key] = payload["int8_scales"][key][:-1]
    else:
        payload["model_state_dict"][key] = payload["model_state_dict"][key].float()
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="damaged checkpoint"):
        load_checkpoint(tmp_path / "bad.pt")
