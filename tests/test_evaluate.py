"""Metrics (edit distance, CER, WER, BLEU, chrF) and the `python -m core evaluate` command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import cli_subprocess

from core import ModelConfig, Transformer, load_checkpoint, save_checkpoint
from core.evaluation import evaluate
from core.metrics import edit_distance, error_rate, length_scores, score
from core.tokenizer import build_tokenizer

torch.set_num_threads(1)

PAIRS = [
    ("the cat sleeps", "il gatto dorme"),
    ("a dog runs", "un cane corre"),
    ("the big house", "la casa grande"),
    ("where is the cat", "dov' è il gatto"),
    ("the dog sleeps", "il cane dorme"),
]


# ---------------------------------------------------------------- metrics


def test_edit_distance_known_values():
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("", "abc") == 3 and edit_distance("abc", "") == 3 and edit_distance("", "") == 0
    assert edit_distance("flaw", "lawn") == 2
    assert edit_distance("the cat sat".split(), "the cat sat down".split()) == 1
    assert edit_distance("abc", "abc") == 0


def test_error_rates():
    assert error_rate(["abc"], ["abc"]) == 0
    assert error_rate(["kitten"], ["sitting"]) == pytest.approx(3 / 7)
    assert error_rate(["ab", "xyz"], ["ab", "xyw"]) == pytest.approx(1 / 5)  # total edits / total reference length
    assert error_rate([[]], [[]]) == 0  # no division by zero
    assert error_rate([["a", "b", "c", "d"]], [["a"]]) == 3  # WER can exceed 1


def test_score_identical_and_disjoint():
    refs = ["il gatto dorme sul tappeto", "un cane corre nel parco"]
    perfect = score(refs, refs)
    assert perfect["bleu"] == pytest.approx(100) and perfect["chrf"] == pytest.approx(100)
    assert perfect["cer"] == 0 and perfect["wer"] == 0
    bad = score(["zzz qqq", "xxx"], refs)
    assert bad["bleu"] < 1 and bad["chrf"] < 10 and bad["wer"] == 1
    assert score(["IL GATTO"], ["il gatto"], lowercase=True)["cer"] == 0
    assert score(["IL GATTO"], ["il gatto"])["cer"] > 0.5


# ---------------------------------------------------------------- the evaluate command


@pytest.fixture
def checkpoint(tmp_path) -> tuple[Path, Path]:
    src, tgt = build_tokenizer([p[0] for p in PAIRS], 1), build_tokenizer([p[1] for p in PAIRS], 1)
    config = ModelConfig(
        src.get_vocab_size(), tgt.get_vocab_size(), d_model=32, n_layers=2, n_heads=4, d_ff=64, dropout=0.0, seq_len=12
    )
    torch.manual_seed(0)
    path = tmp_path / "model.pt"
    save_checkpoint(path, Transformer(config), src, tgt, metadata={"epoch": 1})
    data = tmp_path / "test.tsv"
    long_pair = (" ".join(["the"] * 20), " ".join(["il"] * 20))  # longer than seq_len: dropped
    data.write_text("".join(f"{s}\t{t}\n" for s, t in [*PAIRS, long_pair]), encoding="utf-8")
    return path, data


def test_evaluate_function_matches_score(checkpoint):
    path, _ = checkpoint
    bundle = load_checkpoint(path)
    metrics, hyps, kept = evaluate(bundle, PAIRS, progress=False)
    assert kept == PAIRS and len(hyps) == len(PAIRS)
    lengths = {name: metrics.pop(name) for name in ("length_ratio", "short_share")}
    assert metrics == score(hyps, [t for _, t in PAIRS])
    # every toy word is one piece: lengths counted in words here
    ratios = [len(h.split()) / len(s.split()) for h, (s, _) in zip(hyps, PAIRS)]
    short = [len(h.split()) < len(t.split()) / 2 for h, (_, t) in zip(hyps, PAIRS)]
    assert lengths == pytest.approx({"length_ratio": sum(ratios) / 5, "short_share": sum(short) / 5})


def test_length_scores_known_values():
    # outputs of 10, 2 and 6 pieces for sources of 10, 8, 4 and references of 10, 8 (2 < 4: short), 12 (6 = half)
    scores = length_scores([10, 2, 6], [10, 8, 4], [10, 8, 12])
    assert scores == pytest.approx({"length_ratio": (1 + 0.25 + 1.5) / 3, "short_share": 1 / 3})


def test_evaluate_cli_prints_bleu_chrf_cer_wer(checkpoint, cli):
    path, data = checkpoint
    proc = cli("evaluate", "--threads", "1", "--checkpoint", str(path), "--data", str(data), "--json")
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(metrics) == {"bleu", "chrf", "cer", "wer", "length_ratio", "short_share", "sentences", "dropped"}
    assert (metrics["sentences"], metrics["dropped"]) == (5, 1)
    hyps = evaluate(load_checkpoint(path), PAIRS, progress=False)[1]
    expected = score(hyps, [t for _, t in PAIRS])
    for name in ("bleu", "chrf", "cer", "wer"):
        assert metrics[name] == pytest.approx(expected[name])
    proc = cli("evaluate", "--threads", "1", "--checkpoint", str(path), "--data", str(data), "--examples", "1")
    assert proc.returncode == 0, proc.stderr
    assert "SOURCE:" in proc.stdout and "PREDICTED:" in proc.stdout
    last = proc.stdout.strip().splitlines()[-1]
    assert all(word in proc.stdout for word in ("BLEU", "chrF", "CER", "WER")) and "output/source pieces" in last


def test_evaluate_cli_errors(checkpoint, tmp_path, cli):
    path, data = checkpoint
    proc = cli("evaluate", "--threads", "1", "--checkpoint", str(path), "--data", str(tmp_path / "missing.tsv"))
    assert proc.returncode == 2 and "data file not found" in proc.stderr
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    proc = cli("evaluate", "--threads", "1", "--checkpoint", str(garbage), "--data", str(data))
    assert proc.returncode == 2 and "error:" in proc.stderr and "Traceback" not in proc.stderr


def test_evaluate_command_smoke(checkpoint):
    """`python -m core evaluate` in a fresh interpreter."""
    path, data = checkpoint
    proc = cli_subprocess("evaluate", "--checkpoint", path, "--data", data, "--json", "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["sentences"] == 5
