"""Data: TSV reading, grouped deterministic splits, dropping long pairs, length-bucketed batches, collate."""

from __future__ import annotations

import random
import sys
import types

import pytest
import torch

from core.data import (
    DataError,
    Example,
    collate,
    encode_pairs,
    load_hub_pairs,
    make_batches,
    parse_data_spec,
    read_tsv,
    split_pairs,
)
from core.tokenizer import EOS_ID, PAD_ID, SOS_ID, build_tokenizer

torch.set_num_threads(1)


def random_examples(n: int, seed: int = 0, max_len: int = 60) -> list[Example]:
    """Examples with a skewed, realistic-looking length mix (many short, a few long)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        s = max(1, min(max_len, int(rng.expovariate(1 / 10)) + 1))
        t = max(1, min(max_len, s + rng.randint(-3, 3)))
        out.append(Example([SOS_ID, *[5] * s, EOS_ID], [6] * t))
    return out


# ---------------------------------------------------------------- reading and splitting


def test_read_tsv(tmp_path):
    path = tmp_path / "p.tsv"
    path.write_text("hello\tciao\n\n  good night \t buona notte\textra\n", encoding="utf-8")
    assert read_tsv(path) == [("hello", "ciao"), ("good night", "buona notte")]


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("hello ciao\n", "p.tsv:1: expected 'source<TAB>target'"),
        ("a\tb\nhello\t \n", "p.tsv:2:"),
        ("\n\n", "holds no sentence pairs"),
    ],
)
def test_read_tsv_errors(tmp_path, content, needle):
    path = tmp_path / "p.tsv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=needle):
        read_tsv(path)
    with pytest.raises(DataError, match="data file not found"):
        read_tsv(tmp_path / "missing.tsv")


def test_parse_data_spec():
    assert parse_data_spec("a.tsv") == ("a.tsv", 1)
    assert parse_data_spec("a.tsv*3") == ("a.tsv", 3)
    assert parse_data_spec("weird*name.tsv") == ("weird*name.tsv", 1)
    assert parse_data_spec("a.tsv*0") == ("a.tsv*0", 1)


def test_split_is_deterministic_seeded_grouped_and_about_90_10():
    pairs = [(f"sentence number {i}", f"frase numero {i}") for i in range(2000)]
    pairs += [("the same source", f"translation {k}") for k in range(5)]
    train, val, test = split_pairs(pairs, 0.1, 0.0, seed=0)
    assert (train, val, test) == split_pairs(list(pairs), 0.1, 0.0, seed=0)
    assert test == [] and len(train) + len(val) == len(pairs)
    assert 0.08 < len(val) / len(pairs) < 0.12
    assert split_pairs(pairs, 0.1, 0.0, seed=1)[1] != val  # the seed changes the split
    sides = {"train" if p in train else "val" for p in pairs if p[0] == "the same source"}
    assert len(sides) == 1  # every translation of one source sentence lands in the same split
    train, val, test = split_pairs(pairs, 0.1, 0.05, seed=0)
    assert 0.03 < len(test) / len(pairs) < 0.07 and len(train) + len(val) + len(test) == len(pairs)
    with pytest.raises(DataError, match="too few"):
        split_pairs(pairs[:1], 0.1)


def test_long_pairs_are_dropped_not_truncated():
    en = ["a b", "a b c d e f g h", "c d"]
    it = ["x y", "x y", "z w v u t s r q p"]
    src_tok, tgt_tok = build_tokenizer(en, 1), build_tokenizer(it, 1)
    pairs = list(zip(en, it))
    examples, kept = encode_pairs(pairs, src_tok, tgt_tok, seq_len=6)
    assert kept == [("a b", "x y")]  # 8 source words + 2 specials > 6; 9 target words + 1 > 6
    assert examples[0].src[0] == SOS_ID and examples[0].src[-1] == EOS_ID and len(examples[0].tgt) == 2
    examples, kept = encode_pairs(pairs, src_tok, tgt_tok, seq_len=10)
    assert kept == pairs and all(len(e.src) <= 10 and len(e.tgt) + 1 <= 10 for e in examples)


def test_hub_failure_points_to_data(monkeypatch):
    def unreachable(*args, **kwargs):
        raise ConnectionError("Couldn't reach the Hugging Face Hub")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=unreachable))
    with pytest.raises(DataError) as exc:
        load_hub_pairs("Helsinki-NLP/opus_books", "en", "it")
    message = str(exc.value)
    assert "Helsinki-NLP/opus_books" in message and "en-it" in message
    assert "--data" in message and "Couldn't reach" in message


# ---------------------------------------------------------------- bucketed batches


@pytest.mark.parametrize(("batch_size", "max_tokens"), [(8, 0), (32, 0), (8, 600), (8, 50)])
def test_every_example_appears_exactly_once_per_epoch(batch_size, max_tokens):
    examples = random_examples(1234)
    for seed in range(3):
        batches = make_batches(examples, batch_size, max_tokens, seed)
        flat = [i for b in batches for i in b]
        assert sorted(flat) == list(range(len(examples)))
        assert all(batches)
        if not max_tokens:
            assert all(len(b) <= batch_size for b in batches)


def test_batches_are_shuffled_per_epoch_and_reproducible():
    examples = random_examples(500)
    a, b, again = make_batches(examples, 8, 0, 1), make_batches(examples, 8, 0, 2), make_batches(examples, 8, 0, 1)
    assert a == again
    assert a != b
    assert [sorted(x) for x in a] != [sorted(x) for x in b]  # different groupings, not just a different order


def test_token_budget_is_respected_unless_a_single_example():
    examples = random_examples(800, max_len=120)
    for budget in (100, 400, 2000):
        for indices in make_batches(examples, 8, budget, 0):
            longest = max(examples[i].size for i in indices)
            assert len(indices) * longest * 2 <= budget or len(indices) == 1
            src, dec, lab = collate([examples[i] for i in indices])
            assert src.numel() + dec.numel() <= budget or len(indices) == 1


def test_buckets_pad_far_less_than_random_batches():
    examples = random_examples(3000)

    def padding_fraction(batches):
        real = padded = 0
        for indices in batches:
            src, dec, lab = collate([examples[i] for i in indices])
            real += int((src != PAD_ID).sum() + (lab != PAD_ID).sum())
            padded += src.numel() + lab.numel()
        return 1 - real / padded

    rng = random.Random(0)
    order = list(range(len(examples)))
    rng.shuffle(order)
    unbucketed = [order[i : i + 16] for i in range(0, len(order), 16)]
    bucketed = make_batches(examples, 16, 0, 0)
    assert padding_fraction(bucketed) < 0.1
    assert padding_fraction(bucketed) < padding_fraction(unbucketed) / 3


def test_collate_pads_each_batch_to_its_own_longest_sentence():
    batch = [Example([SOS_ID, 7, 8, EOS_ID], [9, 10, 11]), Example([SOS_ID, 7, EOS_ID], [9])]
    src, dec, lab = collate(batch)
    assert src.tolist() == [[SOS_ID, 7, 8, EOS_ID], [SOS_ID, 7, EOS_ID, PAD_ID]]
    assert dec.tolist() == [[SOS_ID, 9, 10, 11], [SOS_ID, 9, PAD_ID, PAD_ID]]
    assert lab.tolist() == [[9, 10, 11, EOS_ID], [9, EOS_ID, PAD_ID, PAD_ID]]
    examples = random_examples(400)
    for indices in make_batches(examples, 8, 0, 0):
        chosen = [examples[i] for i in indices]
        src, dec, lab = collate(chosen)
        assert src.shape == (len(chosen), max(len(e.src) for e in chosen))
        assert dec.shape == lab.shape == (len(chosen), max(len(e.tgt) for e in chosen) + 1)
        assert (src != PAD_ID).sum() == sum(len(e.src) for e in chosen)  # nothing cut
