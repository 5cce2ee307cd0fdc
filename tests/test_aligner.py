"""grow-diag-final-and on cases worked out by hand, eflomal's pieces, and `python -m core align-corpus`."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest

from core.aligner import align_corpus, grow_diag_final_and, pieces
from core.analysis.alignment import parse_links
from core.cli.align_corpus import main

ROOT = Path(__file__).resolve().parents[1]


def links(text: str) -> frozenset[tuple[int, int]]:
    return parse_links(text)


@pytest.mark.parametrize(
    ("forward", "backward", "expected", "why"),
    [
        # intersection {0-0, 1-1}; 2-1 (below 1-1) and 1-2 (right of it) are in the union with one word unaligned
        ("0-0 1-1 2-1", "0-0 1-1 1-2", "0-0 1-1 1-2 2-1", "grow"),
        # 0-1 neighbours 0-0, but source 0 and target 1 are both aligned already: grow-diag leaves it out
        ("0-0 1-1 0-1", "0-0 1-1", "0-0 1-1", "both aligned"),
        # 1-1 is diagonal to 0-0, so it grows in; then 1-2 neighbours 1-1 and target 2 is unaligned. Without the
        # diagonal, final-and alone would add 1-1 but not 1-2 (source 1 would be aligned by then)
        ("0-0 1-1 1-2", "0-0", "0-0 1-1 1-2", "diagonal"),
        # 3-3 touches nothing; final-and adds it since source 3 and target 3 are both unaligned
        ("0-0 3-3", "0-0", "0-0 3-3", "final-and adds"),
        # 0-3 touches nothing and source 0 is aligned: final-and (unlike final) refuses it
        ("0-0 0-3", "0-0", "0-0", "final-and refuses"),
        # nothing in common: final-and takes the forward links first (0-0), then refuses backward's 0-1 (source 0
        # aligned) and takes 1-1 (both free)
        ("0-0", "0-1 1-1", "0-0 1-1", "forward first"),
        ("", "", "", "empty"),
    ],
)
def test_grow_diag_final_and_on_hand_made_cases(forward, backward, expected, why):
    assert grow_diag_final_and(links(forward), links(backward)) == links(expected), why


def test_grow_diag_final_and_is_symmetric_on_intersection_and_bounded_by_union():
    rng = random.Random(0)
    for _ in range(200):
        forward = frozenset((rng.randrange(6), rng.randrange(6)) for _ in range(rng.randint(0, 8)))
        backward = frozenset((rng.randrange(6), rng.randrange(6)) for _ in range(rng.randint(0, 8)))
        result = grow_diag_final_and(forward, backward)
        assert forward & backward <= result <= forward | backward


def test_pieces_split_punctuation_off_words_and_remember_the_word():
    assert pieces("Don't go, Tom!") == (["don", "'", "t", "go", ",", "tom", "!"], [0, 0, 0, 1, 1, 2, 2])
    assert pieces("dell'acqua  fredda") == (["dell", "'", "acqua", "fredda"], [0, 0, 0, 2])  # two spaces: word 1 empty


def reversed_corpus(n: int = 400) -> list[tuple[str, str]]:
    en = ["red", "blue", "green", "cat", "dog", "house", "big", "small", "runs", "sleeps", "sees", "the"]
    it = ["rosso", "blu", "verde", "gatto", "cane", "casa", "grande", "piccolo", "corre", "dorme", "vede", "il"]
    rng = random.Random(0)
    pairs = []
    for _ in range(n):
        idx = rng.sample(range(len(en)), rng.randint(3, 7))
        pairs.append((" ".join(en[i] for i in idx), " ".join(it[i] for i in reversed(idx)) + "."))
    return pairs


def test_align_corpus_finds_a_reversal_word_for_word():
    pytest.importorskip("eflomal")
    pairs = reversed_corpus()
    found = align_corpus(pairs, samplers=1)
    expected = [{(k, len(s.split()) - 1 - k) for k in range(len(s.split()))} for s, _ in pairs]
    hits = sum(len(f & e) for f, e in zip(found, expected))
    assert hits / sum(map(len, expected)) > 0.9  # the last word 'x.' carries a full stop: pieces map it back
    assert all(j < len(t.split(" ")) for f, (_, t) in zip(found, pairs) for _, j in f)


def test_align_corpus_command_writes_a_line_per_pair_and_scores_gold(tmp_path, capsys):
    pytest.importorskip("eflomal")
    pairs = reversed_corpus()
    data = tmp_path / "pairs.tsv"
    data.write_text("".join(f"{s}\t{t}\n" for s, t in pairs[:300]), encoding="utf-8")
    gold = tmp_path / "gold.tsv"
    gold.write_text(
        "".join(
            f"{s}\t{t}\t" + " ".join(f"{k}-{len(s.split()) - 1 - k}" for k in range(len(s.split()))) + "\n"
            for s, t in pairs[300:]
        ),
        encoding="utf-8",
    )
    out = tmp_path / "links.txt"
    assert main(["--data", str(data), "--gold", str(gold), "--out", str(out), "--samplers", "1"]) == 0
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 300 and all(parse_links(line) for line in lines)
    report = capsys.readouterr().out
    aer = float(report.split("AER ")[1].split(",")[0])
    assert aer < 0.15, report


def test_align_corpus_runs_as_a_command_and_refuses_missing_data(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "core", "align-corpus", "--data", str(tmp_path / "none.tsv"), "--out", "x.txt"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "data file not found" in proc.stderr and "Traceback" not in proc.stderr
