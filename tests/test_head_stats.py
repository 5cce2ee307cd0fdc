"""core.analysis.head_stats on hand-made attention whose statistics are known by construction."""

import math

import numpy as np
import pytest
import torch

from core import Attention
from core.analysis.alignment import format_links, parse_links
from core.analysis.head_stats import (
    confidence,
    diagonal_keys,
    diagonality,
    entropy,
    head_statistics,
    mean_distance,
    mean_offset,
    mean_statistics,
    normalised_entropy,
    sink_share,
)


def uniform(tq: int, tk: int) -> torch.Tensor:
    return torch.full((1, 1, tq, tk), 1.0 / tk)


def one_hot(rows: list[int], tk: int) -> torch.Tensor:
    w = torch.zeros(1, 1, len(rows), tk)
    w[0, 0, torch.arange(len(rows)), torch.tensor(rows)] = 1.0
    return w


def test_uniform_rows_have_entropy_log_n_and_one_hot_rows_zero():
    assert entropy(uniform(3, 7))[0, 0] == pytest.approx(math.log(7))
    assert normalised_entropy(uniform(3, 7))[0, 0] == pytest.approx(1.0)
    assert entropy(one_hot([0, 3, 2], 5))[0, 0] == pytest.approx(0.0)
    assert confidence(one_hot([0, 3, 2], 5))[0, 0] == pytest.approx(1.0)
    assert confidence(uniform(2, 4))[0, 0] == pytest.approx(0.25)


def test_causal_normalisation_uses_the_keys_each_row_may_see():
    w = torch.zeros(1, 1, 4, 4)
    for i in range(4):
        w[0, 0, i, : i + 1] = 1.0 / (i + 1)  # uniform over the visible keys: normalised entropy 1 (row 0: 0)
    assert normalised_entropy(w, causal=True)[0, 0] == pytest.approx(3 / 4)
    expected = np.mean([math.log(i + 1) for i in range(4)])
    assert entropy(w)[0, 0] == pytest.approx(expected)


def test_offsets_of_a_previous_token_head():
    w = one_hot([0, 0, 1, 2, 3], 5)  # row i looks at i - 1 (row 0 at itself)
    assert mean_offset(w)[0, 0] == pytest.approx(-4 / 5)
    assert mean_distance(w)[0, 0] == pytest.approx(4 / 5)
    assert mean_offset(one_hot([0, 1, 2], 3))[0, 0] == 0.0


def test_sink_share_counts_specials_and_punctuation():
    keys = ["[SOS]", "the", "cat", ".", "[EOS]"]
    assert sink_share(one_hot([0, 3, 4], 5), keys)[0, 0] == pytest.approx(1.0)
    assert sink_share(one_hot([1, 2, 1], 5), keys)[0, 0] == pytest.approx(0.0)
    assert sink_share(uniform(2, 5), keys)[0, 0] == pytest.approx(3 / 5)
    with pytest.raises(ValueError):
        sink_share(uniform(2, 5), keys[:-1])


def test_shifted_diagonal_scores_one_and_far_from_it_scores_zero():
    # 4 target rows ([SOS] + 3 words) over 5 source keys ([SOS] + 3 words + [EOS]): row i predicts word i + 1
    assert diagonal_keys(4, 5).tolist() == [1, 2, 3, 4]
    assert diagonality(one_hot([1, 2, 3, 4], 5))[0, 0] == pytest.approx(1.0)
    assert diagonality(one_hot([4, 4, 0, 0], 5))[0, 0] == pytest.approx(0.0)
    assert 0 < diagonality(uniform(4, 5))[0, 0] < 1


def test_head_statistics_per_kind_and_mean_over_sentences():
    src, tgt = ("[SOS]", "a", "b", "[EOS]"), ("[SOS]", "x", "y")
    enc = torch.cat([uniform(4, 4), one_hot([0, 1, 2, 3], 4)], dim=1)  # (1, 2, 4, 4): head 1 uniform, 2 self
    att = Attention(enc, torch.stack([torch.eye(3)] * 2)[None], one_hot([1, 2, 3], 4).expand(1, 2, 3, 4), src, tgt)
    stats = head_statistics(att, "encoder")
    assert set(stats) >= {"entropy", "confidence", "sink_share", "mean_offset"} and "diagonality" not in stats
    assert stats["entropy"].shape == (1, 2)
    assert stats["entropy"][0].tolist() == pytest.approx([math.log(4), 0.0])
    assert head_statistics(att, "cross")["diagonality"][0].tolist() == pytest.approx([1.0, 1.0])
    with pytest.raises(ValueError):
        mean_statistics([], "encoder")


def test_mean_statistics_weighs_each_sentence_the_same():
    # Two sentences of different lengths whose statistics are known: a 4-token sentence whose one encoder head is
    # uniform (entropy log 4, confidence 1/4) and a 3-token one whose head looks at each token itself (0 and 1).
    # The mean is their plain average: not the first sentence's, not the rows pooled (4 rows against 3).
    def sentence(weights, src):
        tgt = ("[SOS]", "x")
        return Attention(weights, torch.eye(2)[None, None], torch.full((1, 1, 2, len(src)), 1 / len(src)), src, tgt)

    long = sentence(uniform(4, 4), ("[SOS]", "a", "b", "[EOS]"))
    short = sentence(one_hot([0, 1, 2], 3), ("[SOS]", "c", "[EOS]"))
    mean = mean_statistics([long, short], "encoder")
    assert mean["entropy"][0, 0] == pytest.approx(math.log(4) / 2)
    assert mean["confidence"][0, 0] == pytest.approx((0.25 + 1.0) / 2)
    assert mean["mean_distance"][0, 0] == pytest.approx((1.25 + 0.0) / 2)  # uniform over 4 keys: rows 3/2, 1, 1, 3/2
    assert mean["sink_share"][0, 0] == pytest.approx((0.5 + 2 / 3) / 2)  # [SOS] and [EOS]: 2 of 4 keys; 2 of 3 rows
    assert mean_statistics([short, long], "encoder")["entropy"][0, 0] == pytest.approx(math.log(4) / 2)


def test_pharaoh_links_round_trip_and_errors():
    assert parse_links("0-0 2-1 1-1") == {(0, 0), (2, 1), (1, 1)}
    assert format_links({(2, 1), (0, 0), (1, 1)}) == "0-0 1-1 2-1"
    assert parse_links("") == frozenset()
    for bad in ("0-", "a-1", "1:2", "-1-2"):
        with pytest.raises(ValueError, match="not a link"):
            parse_links(bad)


# ---- cases mutation testing found unchecked (bench/mutation.py) --------------------------------------------------


def test_a_key_one_off_the_diagonal_is_within_the_band():
    # 4 rows over 5 keys: diagonal keys 1, 2, 3, 4; each row one key left of it still counts, two keys left does not
    assert diagonality(one_hot([0, 1, 2, 3], 5))[0, 0] == pytest.approx(1.0)
    assert diagonality(one_hot([0, 1, 2, 3], 5), band=0)[0, 0] == pytest.approx(0.0)
    assert diagonality(one_hot([1, 0, 1, 2], 5))[0, 0] == pytest.approx(1 / 4)  # only row 0 (diagonal 1) is near


def test_framing_positions_and_punctuation_are_both_sinks():
    keys = ["a", ".", "b", "</s>"]  # Marian's source: no start token, its end token is </s>
    w = one_hot([0, 1, 3], 4)
    assert sink_share(w, keys, framing=frozenset({3}))[0, 0] == pytest.approx(2 / 3)  # '.' and </s>
    assert sink_share(w, keys)[0, 0] == pytest.approx(1 / 3)  # by name only '.' : </s> is not [EOS]
    with pytest.raises(ValueError, match="3 key tokens for 4 keys"):
        sink_share(w, keys[:3])


def test_head_statistics_read_each_kinds_framing_and_causality():
    # A Marian-like source (a b </s>, frame (0, 1)) whose encoder head looks at </s>; a decoder head uniform over the
    # keys each row may see (normalised entropy 1 on every row but the first, which sees one key and counts 0).
    enc = one_hot([2, 2, 2], 3)
    dec = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [1 / 3, 1 / 3, 1 / 3]])[None, None]
    att = Attention(enc, dec, torch.full((1, 1, 3, 3), 1 / 3), ("a", "b", "</s>"), ("<pad>", "x", "y"), (0, 1))
    assert head_statistics(att, "encoder")["sink_share"][0, 0] == pytest.approx(1.0)
    assert head_statistics(att, "decoder")["normalised_entropy"][0, 0] == pytest.approx(2 / 3)
    only = mean_statistics([att], "decoder")  # one sentence: its own statistics
    assert only["normalised_entropy"][0, 0] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="no sentences to average over"):
        mean_statistics([], "decoder")
    with pytest.raises(ValueError, match=r"expected \(layers, heads, queries, keys\) weights, got shape \(3, 3\)"):
        entropy(np.eye(3))
