"""`python -m core heads`: the JSON follows the issue's schema, tables print, bad input gets one line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path[:0] = [str(Path(__file__).resolve().parent)]
from app_fixtures import write_tiny_checkpoint  # noqa: E402
from heads_fixtures import toy_pairs  # noqa: E402

from core.__main__ import main as core_main  # noqa: E402
from core.analysis.importance import ablation  # noqa: E402
from core.cli import COMMANDS  # noqa: E402
from core.cli.heads import main  # noqa: E402

torch.set_num_threads(1)


def test_json_follows_the_schema(tmp_path, capsys):
    ckpt = write_tiny_checkpoint(tmp_path / "tiny.pt", layers=3, heads=2)
    data = tmp_path / "pairs.tsv"
    data.write_text("".join(f"{en}\t{it}\n" for en, it in toy_pairs(6)), encoding="utf-8")
    out = tmp_path / "heads.json"
    assert (
        main(["--checkpoint", str(ckpt), "--data", str(data), "--limit", "5", "--json", str(out), "--step", "4"]) == 0
    )
    printed = capsys.readouterr().out
    assert "layer 3" in printed and "most important heads" in printed and "pruning curve" in printed
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["sentences"] == 5
    assert set(report["kinds"]) == {"encoder", "decoder", "cross"}
    for kind, measures in report["kinds"].items():
        for name in ("entropy", "confidence", "sink_share", "ablation_delta_logprob", "gradient_importance"):
            values = np.array(measures[name])
            assert values.shape == (3, 2), (kind, name)  # L x H, layer 1 first
            assert np.isfinite(values).all()
    curve = report["pruning_curve"]
    assert [p["heads_off"] for p in curve] == [0, 4, 8, 12, 16, 18]
    assert all(set(p) >= {"heads_off", "chrf"} and 0 <= p["chrf"] <= 100 for p in curve)
    # the numbers are the analysis' own, in the same layout
    from core import load_checkpoint
    from core.data import read_tsv

    deltas, _, _ = ablation(load_checkpoint(ckpt), read_tsv(data)[:5])
    np.testing.assert_allclose(report["kinds"]["cross"]["ablation_delta_logprob"], deltas["cross"], atol=2e-6)


def test_registered_and_bad_input_gets_one_line(tmp_path, capsys):
    assert "heads" in COMMANDS
    assert core_main(["heads", "--checkpoint", str(tmp_path / "none.pt"), "--data", "x.tsv"]) == 2
    ckpt = write_tiny_checkpoint(tmp_path / "tiny.pt")
    bad = tmp_path / "bad.tsv"
    bad.write_text("no tab here\n", encoding="utf-8")
    assert main(["--checkpoint", str(ckpt), "--data", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err
    long = tmp_path / "long.tsv"
    long.write_text(" ".join(["cat"] * 40) + "\tgatto\n", encoding="utf-8")
    assert main(["--checkpoint", str(ckpt), "--data", str(long)]) == 2
    assert "none of the sentence pairs fits" in capsys.readouterr().err
