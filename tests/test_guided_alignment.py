"""Guided alignment training: words to tokens, target rows, the one-head path, the loss pulling a head, bad files."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from core import load_checkpoint, translate
from core.checkpoint import read_checkpoint
from core.cli.train import config_from_args, main
from core.config import TrainConfig
from core.guided_alignment import alignment_targets, guided_loss, read_links_file, token_links
from core.model import causal_mask, padding_mask
from core.tokenizer import PAD_ID, build_tokenizer
from core.training import train

torch.set_num_threads(1)

EN = ["red", "blue", "green", "cat", "dog", "house", "big", "small", "runs", "sleeps"]
IT = ["rosso", "blu", "verde", "gatto", "cane", "casa", "grande", "piccolo", "corre", "dorme"]


def test_word_links_become_token_links_and_normalised_rows():
    """'water's' is 3 word-level tokens, "l'acqua" 3, 'cold.' and 'fredda.' 2 each: every token of a linked word
    links every token of the other; rows are normalised over source tokens and start after [SOS]."""
    src_tok = build_tokenizer(["the water's cold."], min_frequency=1)
    tgt_tok = build_tokenizer(["l'acqua è fredda."], min_frequency=1)
    pair = ("the water's cold.", "l'acqua è fredda.")
    # source tokens: the 0, water 1, ' 2, s 3, cold 4, . 5; target tokens: l 0, ' 1, acqua 2, è 3, fredda 4, . 5
    links = token_links(src_tok, tgt_tok, pair, frozenset({(1, 0), (2, 2)}))
    assert links == tuple(
        sorted([(t, s) for t in (0, 1, 2) for s in (1, 2, 3)] + [(t, s) for t in (4, 5) for s in (4, 5)])
    )
    targets = alignment_targets([links], rows=7, columns=8)  # T = 6 tokens + [EOS] row, S = [SOS] + 6 + [EOS]
    expected = torch.zeros(1, 7, 8)
    expected[0, 0:3, 2:5] = 1 / 3
    expected[0, 4:6, 5:7] = 1 / 2
    torch.testing.assert_close(targets, expected)  # 'è' (row 3) and the [EOS] row (6) have no target


def test_guided_loss_is_the_cross_entropy_of_the_targets():
    head = torch.tensor([[[0.5, 0.5, 0.0], [0.1, 0.2, 0.7]]])  # (B=1, T=2, S=3)
    targets = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 0.5, 0.5]]])
    expected = -(torch.log(torch.tensor(0.5)) + 0.5 * torch.log(torch.tensor(0.2)) + 0.5 * torch.log(torch.tensor(0.7)))
    torch.testing.assert_close(guided_loss(head, targets, target_tokens=4), expected / 4)
    assert torch.isfinite(guided_loss(head, torch.zeros_like(targets), 1))  # zero probability, zero target: no nan


def test_one_head_beside_the_fused_kernel_matches_the_full_maps(tiny_model, src_tokenizer, tgt_tokenizer):
    src = torch.tensor([[2, 5, 6, 7, 3, 1], [2, 8, 9, 3, 1, 1]])
    dec = torch.tensor([[2, 4, 5, 6], [2, 7, 1, 1]])
    src_mask, tgt_mask = padding_mask(src, PAD_ID), padding_mask(dec, PAD_ID) & causal_mask(dec.size(1))
    plain = tiny_model(src, dec, src_mask, tgt_mask)
    logits, head = tiny_model(src, dec, src_mask, tgt_mask, align_head=(1, 2))
    assert torch.equal(logits, plain)  # the fused kernel still computes the output
    _, (_, _, cross) = tiny_model(src, dec, src_mask, tgt_mask, return_attention=True)
    torch.testing.assert_close(head, cross[1, :, 2])  # (B, T, S) of layer 2, head 3
    assert torch.allclose(head.sum(-1), torch.ones(2, 4)) and (head[:, :, -1] == 0).all()  # rows sum to 1, no [PAD]


def reversal_corpus(folder: Path, n: int = 160) -> tuple[Path, Path]:
    """Word-by-word translations written backwards, with the links that say so (word i to word len - 1 - i)."""
    rng = random.Random(1)
    pairs, links = [], []
    for _ in range(n):
        idx = [rng.randrange(len(EN)) for _ in range(rng.randint(3, 6))]
        pairs.append(" ".join(EN[i] for i in idx) + "\t" + " ".join(IT[i] for i in reversed(idx)))
        links.append(" ".join(f"{k}-{len(idx) - 1 - k}" for k in range(len(idx))))
    data, alignments = folder / "pairs.tsv", folder / "links.txt"
    data.write_text("\n".join(pairs) + "\n", encoding="utf-8")
    alignments.write_text("\n".join(links) + "\n", encoding="utf-8")
    return data, alignments


def argv_for(run: Path, data: Path, *extra: str) -> list[str]:
    return [
        *("--data", str(data), "--model-folder", str(run / "weights"), "--experiment-name", str(run / "tb")),
        *("--d-model", "32", "--layers", "2", "--heads", "4", "--d-ff", "64", "--seq-len", "16"),
        *("--batch-size", "16", "--min-frequency", "1", "--threads", "1", "--val-sentences", "2"),
        *("--device", "cpu", "--lr", "3e-3", "--epochs", "6", "--dropout", "0", "--seed", "2"),
        *extra,
    ]


def mass_on_links(bundle, data: Path, layer: int, head: int) -> float:
    """Mean attention the head puts on the given source word, at the rows that predict each target word,
    read from the full teacher-forced maps (the viewer's path, not the training one)."""
    masses = []
    for line in data.read_text(encoding="utf-8").splitlines()[:40]:
        source, target = line.split("\t")
        cross = translate(bundle, source, reference=target).attention.cross[layer, head]  # (T + 1, S + 2)
        n = len(source.split())
        masses += [float(cross[t, 1 + n - 1 - t]) for t in range(n)]
    return sum(masses) / len(masses)


def test_guided_loss_pulls_the_chosen_head_towards_the_given_alignment(tmp_path):
    data, alignments = reversal_corpus(tmp_path)
    plain = train(config_from_args(argv_for(tmp_path / "plain", data)))
    guided_argv = argv_for(tmp_path / "guided", data, "--alignments", str(alignments), "--alignment-weight", "1")
    guided = train(config_from_args(guided_argv + ["--alignment-head", "3"]))
    layer, head = 0, 2  # the penultimate of 2 layers is layer 1 (default); head 3 as asked
    plain_mass = mass_on_links(load_checkpoint(plain), data, layer, head)
    guided_mass = mass_on_links(load_checkpoint(guided), data, layer, head)
    assert guided_mass > 0.5 and guided_mass > plain_mass + 0.25, (plain_mass, guided_mass)  # seen: 0.62, 0.26
    assert read_checkpoint(guided)["metadata"]["guided_alignment"] == {"layer": 1, "head": 3, "weight": 1.0}
    assert "guided_alignment" not in read_checkpoint(plain)["metadata"]


def test_alignment_flags_and_their_checks():
    cfg = config_from_args(["--alignments", "links.txt", "--layers", "6", "--heads", "8"])
    assert (cfg.alignments, cfg.guided_head, cfg.alignment_weight) == ("links.txt", (4, 0), 0.05)  # penultimate
    assert TrainConfig(layers=1).guided_head == (0, 0)
    assert config_from_args(["--alignment-layer", "3", "--alignment-head", "2"]).guided_head == (2, 1)
    for bad in (["--alignment-layer", "7"], ["--alignment-head", "0"], ["--alignment-head", "9"]):
        with pytest.raises(ValueError, match="alignment_layer must be 0..6 and alignment_head 1..8"):
            config_from_args(bad)
    with pytest.raises(ValueError, match="alignment_weight"):
        config_from_args(["--alignment-weight", "-1"])


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("0-0 1-1\n", "links.txt has 1 lines but the --data files hold 3 sentence pairs"),
        ("0-0\n0-0\n0-0\n0-0\n", "has 4 lines but the --data files hold 3"),
        ("0-0\n1:1\n0-0\n", "links.txt:2: '1:1' is not a link"),
        ("0-0\n0-0\n0-0 3-1\n", "links.txt:3: link 3-1 is outside its pair (3 source and 2 target words)"),
    ],
)
def test_a_links_file_that_does_not_fit_the_data_is_a_clear_error(tmp_path, capsys, content, needle):
    data = tmp_path / "pairs.tsv"
    data.write_text("red cat\tgatto rosso\n\nbig dog\tcane grande\nthe red house\tla casa\n", encoding="utf-8")
    (tmp_path / "links.txt").write_text(content, encoding="utf-8")
    assert main(argv_for(tmp_path, data, "--alignments", str(tmp_path / "links.txt"))) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_an_empty_line_is_a_pair_without_links(tmp_path):
    pairs = [("red cat", "gatto rosso"), ("big dog", "cane grande")]
    (tmp_path / "links.txt").write_text("0-1 1-0\n\n", encoding="utf-8")
    assert read_links_file(tmp_path / "links.txt", pairs) == [frozenset({(0, 1), (1, 0)}), frozenset()]


def test_alignments_need_local_data(tmp_path, capsys):
    argv = ["--alignments", "links.txt", "--model-folder", str(tmp_path / "w"), "--experiment-name", str(tmp_path)]
    assert main(argv) == 2
    assert "--alignments needs --data files" in capsys.readouterr().err


def test_the_guided_path_at_weight_zero_trains_exactly_like_no_alignments(tmp_path):
    """Same logits, no random numbers drawn, zero gradient added: the one-head path changes nothing else."""
    data, alignments = reversal_corpus(tmp_path, n=60)
    common = ("--epochs", "1", "--dropout", "0.2", "--max-steps", "3")
    plain = train(config_from_args(argv_for(tmp_path / "plain", data, *common)))
    zero = ("--alignments", str(alignments), "--alignment-weight", "0")
    guided = train(config_from_args(argv_for(tmp_path / "zero", data, *common, *zero)))
    plain_weights = read_checkpoint(plain)["model_state_dict"]
    guided_weights = read_checkpoint(guided)["model_state_dict"]
    for key, value in plain_weights.items():
        assert torch.equal(value, guided_weights[key]), key
