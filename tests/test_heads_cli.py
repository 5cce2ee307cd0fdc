"""`python -m core heads`: the JSON follows the issue's schema, tables print, bad input gets one line; each
head's role agrees with the statistics its evidence cites, recomputed here with head_stats."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path[:0] = [str(Path(__file__).resolve().parent)]
from app_fixtures import write_tiny_checkpoint  # noqa: E402
from heads_fixtures import copy_bundle, toy_pairs, word_map_pairs  # noqa: E402

from core import load_checkpoint, save_checkpoint, translate  # noqa: E402
from core.__main__ import main as core_main  # noqa: E402
from core.analysis.head_roles import MIXED, ROLES  # noqa: E402
from core.analysis.head_stats import (  # noqa: E402
    choice_rows,
    diagonality,
    normalised_entropy,
    offset_share,
    rare_token_share,
    sink_share,
    uniform_weights,
)
from core.analysis.importance import ablation  # noqa: E402
from core.attention import KIND  # noqa: E402
from core.cli import COMMANDS  # noqa: E402
from core.cli.heads import main  # noqa: E402
from core.data import read_tsv  # noqa: E402

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
    deltas, _, _ = ablation(load_checkpoint(ckpt), read_tsv(data)[:5])
    np.testing.assert_allclose(report["kinds"]["cross"]["ablation_delta_logprob"], deltas["cross"], atol=2e-6)
    assert "prev = previous token" in printed and "most important heads (ablation):" in printed
    check_roles(report, load_checkpoint(ckpt), read_tsv(data)[:5])


def test_roles_of_a_trained_model_agree_with_their_statistics(tmp_path, capsys):
    """A model trained to copy its input has sharper heads than an untrained one (alignment among them)."""
    bundle = copy_bundle()
    ckpt = tmp_path / "copy.pt"
    save_checkpoint(ckpt, bundle.model, bundle.src_tokenizer, bundle.tgt_tokenizer)
    data = tmp_path / "pairs.tsv"
    data.write_text("".join(f"{en}\t{it}\n" for en, it in word_map_pairs(30, seed=7)), encoding="utf-8")
    out = tmp_path / "heads.json"
    assert main(["--checkpoint", str(ckpt), "--data", str(data), "--json", str(out), "--step", "12"]) == 0
    report = json.loads(out.read_text(encoding="utf-8"))
    assert "alignment" in np.array(report["roles"]["cross"])
    assert "align" in capsys.readouterr().out
    check_roles(report, load_checkpoint(ckpt), read_tsv(data))


def statistics(att, kind: str, counts: Counter, uniform: bool) -> dict[str, np.ndarray]:
    """Every role statistic of one sentence, from head_stats (the rows that have a choice; uniform: of uniform rows)."""
    causal = KIND[kind].causal
    w = att.weights(kind).double().numpy()
    if uniform:
        w = uniform_weights(*w.shape[-2:], causal)
    rows, keys, framing = choice_rows(*w.shape[-2:], causal), att.keys(kind), att.framing(kind)
    return {
        "previous_token_share": offset_share(w, -1, rows),
        "next_token_share": offset_share(w, 1, rows),
        "same_token_share": offset_share(w, 0, rows),
        "rare_token_share": rare_token_share(w, keys, counts, framing, causal, rows),
        "sink_share": sink_share(w, keys, framing, rows),
        "normalised_entropy": normalised_entropy(w, causal, rows),
        "diagonality": diagonality(w, rows=rows),
    }


def check_roles(report: dict, bundle, pairs) -> None:
    """Each head's evidence quotes its statistic as head_stats gives it on the model's attention (from translate,
    not from the report's code path); the role is the one the rule picks from those numbers."""
    attentions = [translate(bundle, en, reference=it).attention for en, it in pairs]
    for kind in KIND:
        counts = Counter(t for att in attentions for i, t in enumerate(att.keys(kind)) if i not in att.framing(kind))
        per_sentence = [statistics(att, kind, counts, False) for att in attentions]
        per_uniform = [statistics(att, kind, counts, True) for att in attentions]
        names = np.array(report["roles"][kind])
        assert names.shape == (bundle.config.n_layers, bundle.config.n_heads)
        for layer, head in np.ndindex(names.shape):
            cited = report["role_evidence"][kind][layer][head]
            scores = {}
            for role in KIND[kind].roles:
                stat = ROLES[role].statistic
                value = np.nanmean([s[stat][layer, head] for s in per_sentence])
                base = np.nanmean([u[stat][0, 0] for u in per_uniform])
                scores[role] = (value - base) / (1 - base) if ROLES[role].lift else value
                if role == cited["cites"]:
                    assert cited["statistic"] == stat
                    assert cited["value"] == pytest.approx(value, abs=1e-5)
                    assert cited["uniform"] == pytest.approx(base, abs=1e-5)
                    assert cited["score"] == pytest.approx(scores[role], abs=1e-5)
                    assert f"{value:.0%}" in cited["text"]
            cleared = {r: v for r, v in scores.items() if v >= ROLES[r].threshold}
            shares = {r: v for r, v in cleared.items() if ROLES[r].lift}
            expected = max(shares, key=shares.get) if shares else next(iter(cleared), MIXED)
            assert names[layer, head] == expected, (kind, layer, head, scores)
            if kind != "decoder":  # the decoder's leave its first row out; the table's count it
                for stat in ("sink_share", "normalised_entropy", "diagonality"):
                    if cited["statistic"] == stat:
                        assert cited["value"] == pytest.approx(report["kinds"][kind][stat][layer][head], abs=1e-5)


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
