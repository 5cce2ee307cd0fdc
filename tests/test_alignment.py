"""Scoring cross-attention heads against gold word alignments (core.analysis.alignment, python -m core alignment)."""

import numpy as np
import pytest
from conftest import cli_subprocess

from core.analysis.alignment import aer, read_gold, score_heads, word_matrix, word_of_token
from core.cli.alignment import main
from core.tokenizer import build_tokenizer


def test_aer_counts_every_gold_link_as_sure():
    gold = {(0, 0), (1, 1), (2, 2)}
    assert aer(gold, gold) == 0
    assert aer(set(), gold) == 1
    assert aer({(0, 0), (2, 1)}, gold) == pytest.approx(1 - 2 * 1 / 5)


def test_tokens_map_back_to_the_gold_words_they_come_from():
    tok = build_tokenizer(["dell' acqua , grazie"], min_frequency=1)
    text, words = word_of_token(tok, ["dell'", "acqua", ",", "grazie"])
    assert text == "dell' acqua , grazie"
    assert words == [0, 0, 1, 2, 3]  # "dell'" is two tokens: dell + '


def test_word_matrix_averages_rows_and_sums_columns():
    weights = np.array([[0.5, 0.5, 0.0], [0.1, 0.1, 0.8], [0.3, 0.3, 0.4]])  # 3 query tokens x 3 key tokens
    words = word_matrix(weights, row_words=[0, 1, 1], col_words=[0, 0, 1], n_rows=2, n_cols=2)
    np.testing.assert_allclose(words, [[1.0, 0.0], [0.4, 0.6]])


def test_read_gold_rejects_malformed_lines(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("a b\tc d\n", encoding="utf-8")
    with pytest.raises(ValueError, match="3 tab-separated columns"):
        read_gold(bad)


def write_reversed_gold(gold):
    lines = []
    for src in ["1 2 3 4 5", "9 8 7 6", "3 1 4 1 5 9", "2 7 1 8"]:
        words = src.split()
        n = len(words)
        links = " ".join(f"{i}-{n - 1 - i}" for i in range(n))  # word i is written at position n-1-i
        lines.append(f"{src}\t{' '.join(reversed(words))}\t{links}")
    gold.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return gold


def test_a_reversing_model_has_a_head_that_aligns_better_than_the_diagonal(reverser_bundle, tmp_path, capsys):
    gold = write_reversed_gold(tmp_path / "gold.tsv")
    rates, baseline = score_heads(reverser_bundle, read_gold(gold))
    cfg = reverser_bundle.config
    assert rates.shape == (cfg.n_layers, cfg.n_heads)
    assert ((rates >= 0) & (rates <= 1)).all()
    assert rates.min() < baseline
    assert main(["--checkpoint", str(reverser_bundle.source), "--data", str(gold)]) == 0
    assert "diagonal baseline" in capsys.readouterr().out


def test_alignment_command_smoke(reverser_bundle, tmp_path):
    """`python -m core alignment` in a fresh interpreter."""
    gold = write_reversed_gold(tmp_path / "gold.tsv")
    run = cli_subprocess("alignment", "--checkpoint", reverser_bundle.source, "--data", gold)
    assert run.returncode == 0, run.stderr
    assert "diagonal baseline" in run.stdout
