"""python -m core export: a weights-only, 16-bit file with a model card; several checkpoints averaged."""

import json
import random

import pytest
import torch
from conftest import cli_subprocess

from core import ModelConfig, Transformer, load_checkpoint, save_checkpoint
from core.checkpoint import TrainingState
from core.cli.export import main


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
