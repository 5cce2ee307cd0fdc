"""core.analysis.head_roles on hand-made attention whose role is known by construction (each pattern gets exactly
its role; reversed offsets, uniform rows and the most frequent word get something else), at its thresholds, and
on a tiny model trained here to copy its input (a cross head lines words up)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path[:0] = [str(Path(__file__).resolve().parent)]
from heads_fixtures import bundle_of, copy_bundle, word_map_model, word_map_pairs  # noqa: E402

from core import Attention  # noqa: E402
from core.analysis.head_report import reference_attentions  # noqa: E402
from core.analysis.head_roles import (  # noqa: E402
    ALIGNMENT_LIFT,
    BROAD_ENTROPY,
    MIXED,
    POSITION_LIFT,
    RARE_WORD_LIFT,
    ROLES,
    SINK_LIFT,
    count_roles,
    describe_counts,
    head_role,
    head_roles,
    most_important,
    role_names,
    role_statistics,
    roles_switched_off,
    token_counts,
)
from core.analysis.head_stats import (  # noqa: E402
    choice_rows,
    diagonal_keys,
    normalised_entropy,
    offset_share,
    rare_token_share,
    rarest_keys,
    sink_share,
    uniform_weights,
)
from core.attention import KIND, KINDS  # noqa: E402

torch.set_num_threads(1)
# Three sentences: "elephant", "saw" and "the" occur in each; "ox", "bee" and "emu" once each, at different places
# (the rare word is shorter than the frequent ones, so counting, not length, decides).
SOURCES = [
    ("[SOS]", "the", "elephant", "saw", "ox", ".", "[EOS]"),
    ("[SOS]", "bee", "saw", "the", "elephant", ".", "[EOS]"),
    ("[SOS]", "the", "emu", "saw", "elephant", "!", "[EOS]"),
]
TARGETS = [  # "il", "vide" and "elefante" in each; "bue", "ape" and "emu" once
    ("[SOS]", "bue", "vide", "il", "elefante", "."),
    ("[SOS]", "il", "ape", "vide", "elefante", "."),
    ("[SOS]", "il", "elefante", "vide", "emu", "!"),
]
RARE_SOURCE = ["ox", "bee", "emu"]
# The rarest word each causal decoder row can see, worked out by hand: row 0 sees only [SOS] (left out); before
# the rare word comes, all words seen are equally frequent and the longer wins ("elefante" over "il").
RAREST_SEEN = [[0, 1, 1, 1, 1, 1], [0, 1, 2, 2, 2, 2], [0, 1, 2, 2, 4, 4]]


def one_hot(columns, n_keys: int) -> np.ndarray:
    w = np.zeros((len(columns), n_keys))
    w[np.arange(len(columns)), columns] = 1.0
    return w


def uniform(n_rows: int, n_keys: int, causal: bool = False) -> np.ndarray:
    return uniform_weights(n_rows, n_keys, causal)[0, 0]


def column(tokens, word: str) -> int:
    return tokens.index(word)


def shape(kind: str, s, t) -> tuple[int, int]:
    return {"encoder": (len(s), len(s)), "decoder": (len(t), len(t)), "cross": (len(t), len(s))}[kind]


def patterned(patterns: dict, kind: str) -> list[Attention]:
    """One Attention per sentence pair, one layer: head h of `kind` is the h-th pattern (a function of the source
    and target tokens returning a (Tq, Tk) map); the other kinds' heads are uniform."""
    result = []
    for n, (src, tgt) in enumerate(zip(SOURCES, TARGETS)):
        maps = []
        for k in KINDS:
            heads = [make(src, tgt, n) for make in patterns.values()] if k == kind else None
            heads = heads or [uniform(*shape(k, src, tgt), KIND[k].causal)] * len(patterns)
            maps.append(torch.tensor(np.stack(heads))[None])
        result.append(Attention(*maps, src, tgt))
    return result


ENCODER_PATTERNS = {  # role -> (source, target, sentence index) -> (S, S) map
    "previous token": lambda s, t, n: one_hot([0, *range(len(s) - 1)], len(s)),
    "next token": lambda s, t, n: one_hot([*range(1, len(s)), len(s) - 1], len(s)),
    "same token": lambda s, t, n: np.eye(len(s)),
    "rare words": lambda s, t, n: one_hot([column(s, RARE_SOURCE[n])] * len(s), len(s)),
    "sink": lambda s, t, n: one_hot([len(s) - 1] * len(s), len(s)),  # all weight on the last column, [EOS]
    "broad": lambda s, t, n: uniform(len(s), len(s)),
    MIXED: lambda s, t, n: one_hot([column(s, "elephant")] * len(s), len(s)),  # the most frequent word
}
DECODER_PATTERNS = {
    "previous token": lambda s, t, n: one_hot([0, *range(len(t) - 1)], len(t)),
    "same token": lambda s, t, n: np.eye(len(t)),
    "rare words": lambda s, t, n: one_hot(RAREST_SEEN[n], len(t)),
    "sink": lambda s, t, n: one_hot([0] * len(t), len(t)),  # the start token
    "broad": lambda s, t, n: uniform(len(t), len(t), causal=True),
    MIXED: lambda s, t, n: one_hot([min(q, column(t, "vide")) for q in range(len(t))], len(t)),  # a frequent word
}
CROSS_PATTERNS = {
    "alignment": lambda s, t, n: one_hot(diagonal_keys(len(t), len(s)), len(s)),
    "sink": lambda s, t, n: one_hot([len(s) - 1] * len(t), len(s)),
    "broad": lambda s, t, n: uniform(len(t), len(s)),
    MIXED: lambda s, t, n: one_hot(len(s) - 1 - diagonal_keys(len(t), len(s)), len(s)),  # the diagonal reversed
}
PATTERNS = {"encoder": ENCODER_PATTERNS, "decoder": DECODER_PATTERNS, "cross": CROSS_PATTERNS}


@pytest.mark.parametrize("kind", KINDS)
def test_each_hand_made_pattern_gets_exactly_its_role(kind):
    patterns = PATTERNS[kind]
    roles = head_roles(patterned(patterns, kind), kinds=[kind])[kind]
    assert [r.role for r in roles[0]] == list(patterns)
    for expected, found in zip(patterns, roles[0]):
        if expected != MIXED:
            assert found.cites == expected and found.score >= ROLES[expected].threshold
            assert found.evidence  # the statistic in words
    assert set(patterns) - {MIXED} == set(KIND[kind].roles)  # every role of the kind has its pattern


def test_the_decoder_has_no_next_token_role_and_its_first_row_is_left_out():
    assert "next token" not in KIND["decoder"].roles
    # row 0 can only look at the start token: a head whose other rows look at themselves is a same-token head,
    # whichever way its first row is counted
    t = 6
    rows = choice_rows(t, t, causal=True)
    assert rows.tolist() == [False, True, True, True, True, True]
    w = np.eye(t)[None, None]
    assert offset_share(w, 0, rows)[0, 0] == 1.0
    # uniform causal rows: previous token 1/2, 1/3, 1/4, 1/5, 1/6 on rows 1..5
    expected = np.mean([1 / (q + 1) for q in range(1, t)])
    assert offset_share(uniform_weights(t, t, True), -1, rows)[0, 0] == pytest.approx(expected)
    assert normalised_entropy(uniform_weights(t, t, True), True, rows)[0, 0] == pytest.approx(1.0)
    assert normalised_entropy(uniform_weights(t, t, True), True)[0, 0] == pytest.approx(5 / 6)  # row 0 counts 0


def test_offsets_and_rare_words_worked_out_by_hand():
    prev = one_hot([0, 0, 1, 2], 4)[None, None]  # row 0 has no previous token and is left out
    assert offset_share(prev, -1)[0, 0] == 1.0
    assert offset_share(prev, 1)[0, 0] == 0.0
    assert offset_share(uniform_weights(4, 4), 1)[0, 0] == pytest.approx(0.25)
    tokens = ["[SOS]", "the", "elephant", "saw", "ox", ".", "[EOS]"]
    counts = {"the": 3, "elephant": 3, "saw": 3, "ox": 1}
    assert rarest_keys(tokens, counts, 7).tolist() == [4] * 7
    assert rarest_keys(tokens, counts, 7, causal=True).tolist() == [-1, 1, 2, 2, 4, 4, 4]  # ties: the longer
    assert rarest_keys(tokens, {}, 3).tolist() == [2] * 3  # all tied: the longest word
    w = np.full((1, 1, 7, 7), 0.0)
    w[..., 4] = 0.5
    w[..., 0] = 0.5
    assert rare_token_share(w, tokens, counts)[0, 0] == pytest.approx(0.5)
    assert sink_share(w, tokens)[0, 0] == pytest.approx(0.5)
    # causal: row 0 sees no word and is left out; rows 1-3 see no rare word yet, rows 4-6 see "ox"
    assert rare_token_share(w, tokens, counts, causal=True)[0, 0] == pytest.approx(3 * 0.5 / 6)


def test_token_counts_are_over_the_data_set_and_leave_the_framing_out():
    counts = token_counts(patterned(ENCODER_PATTERNS, "encoder"), "encoder")
    assert counts["elephant"] == 3 and counts["saw"] == 3 and counts["ox"] == 1
    assert "[SOS]" not in counts and "[EOS]" not in counts


def mixture(pattern: np.ndarray, share: float, causal: bool = False) -> np.ndarray:
    """share x pattern + (1 - share) x uniform rows: the lift of any share role over uniform rows is `share`."""
    return share * pattern + (1 - share) * uniform(*pattern.shape, causal)


@pytest.mark.parametrize(
    ("kind", "role", "threshold"),
    [
        ("encoder", "previous token", POSITION_LIFT),
        ("encoder", "next token", POSITION_LIFT),
        ("decoder", "same token", POSITION_LIFT),
        ("encoder", "rare words", RARE_WORD_LIFT),
        ("encoder", "sink", SINK_LIFT),
        ("cross", "alignment", ALIGNMENT_LIFT),
    ],
)
def test_a_share_role_starts_at_its_threshold_of_lift_over_uniform_rows(kind, role, threshold):
    """Mixing a pattern with uniform rows at weight a gives a lift of exactly a: just above the threshold the head
    has the role, just below it does not, though its raw share is past the threshold (uniform rows add to it)."""
    pattern, causal = PATTERNS[kind][role], KIND[kind].causal
    below, above = threshold - 0.02, threshold + 0.02
    heads = {a: (lambda s, t, n, a=a: mixture(pattern(s, t, n), a, causal)) for a in (below, above)}
    atts = patterned(heads, kind)
    found = head_roles(atts, kinds=[kind])[kind][0]
    assert found[1].role == role and found[1].score == pytest.approx(above)
    assert found[0].role != role
    values, uniform_values = role_statistics(atts, kind)
    share, base = values[ROLES[role].statistic][0, 0], uniform_values[ROLES[role].statistic]
    assert (share - base) / (1 - base) == pytest.approx(below)
    assert share > threshold


@pytest.mark.parametrize("kind", ["encoder", "decoder"])
def test_broad_starts_at_its_entropy_threshold(kind):
    """Rows that put weight a on one fixed word and spread the rest evenly: broad once their normalised entropy
    (over the rows that have a choice) reaches BROAD_ENTROPY, not before. The decoder's first row, which can only
    look at [SOS], is not counted as a row of entropy 0."""
    causal = KIND[kind].causal

    def head(a):
        def make(s, t, n):
            tokens = t if causal else s
            fixed = column(tokens, "vide" if causal else "saw")
            return mixture(one_hot([min(q, fixed) for q in range(len(tokens))], len(tokens)), a, causal)

        return make

    def entropy_at(a):
        maps = [head(a)(s, t, n)[None, None] for n, (s, t) in enumerate(zip(SOURCES, TARGETS))]
        return np.mean([normalised_entropy(w, causal, choice_rows(*w.shape[-2:], causal))[0, 0] for w in maps])

    lo, hi = 0.0, 1.0  # entropy falls as a grows: find where it crosses the threshold
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if entropy_at(mid) > BROAD_ENTROPY else (lo, mid)
    spread, focused = lo - 0.01, hi + 0.01
    assert entropy_at(spread) > BROAD_ENTROPY > entropy_at(focused)
    roles = head_roles(patterned({"spread": head(spread), "focused": head(focused)}, kind), [kind])[kind][0]
    assert [r.role for r in roles] == ["broad", MIXED]
    assert roles[0].value == pytest.approx(entropy_at(spread))


def test_the_largest_lift_wins_and_any_share_role_beats_broad():
    """head_role is a pure function of the statistics: two share roles that clear, the larger lift wins whatever
    the kind's order; a share role that clears wins over broad."""
    base = {"previous_token_share": 0.2, "next_token_share": 0.2, "same_token_share": 0.2, "rare_token_share": 0.2}
    uniform_values = base | {"sink_share": 0.4, "normalised_entropy": 1.0}
    quiet = base | {"sink_share": 0.4, "normalised_entropy": 0.3}
    sink_more = quiet | {"previous_token_share": 0.7, "sink_share": 0.95}  # lifts 0.625 and 0.917
    previous_more = quiet | {"previous_token_share": 0.95, "sink_share": 0.75}  # lifts 0.9375 and 0.583
    assert head_role("encoder", sink_more, uniform_values).role == "sink"
    assert head_role("encoder", previous_more, uniform_values).role == "previous token"
    spread_sink = quiet | {"sink_share": 0.75, "normalised_entropy": 0.9}
    assert head_role("encoder", spread_sink, uniform_values).role == "sink"
    spread = quiet | {"normalised_entropy": 0.9}
    assert head_role("encoder", spread, uniform_values).role == "broad"
    close = quiet | {"same_token_share": 0.55}  # lift 0.4375: 0.875 of its threshold, the closest
    found = head_role("encoder", close, uniform_values)
    assert (found.role, found.cites, found.score) == (MIXED, "same token", pytest.approx(0.4375))


def test_the_decoders_statistics_leave_its_first_row_out():
    """Worked out by hand on the previous-token pattern: rows 1-5 look at keys 0-4, of which only key 0 ([SOS]) is a
    sink: 1/5 (counting row 0, which must look at [SOS], would give 2/6)."""
    values, uniform_values = role_statistics(patterned(DECODER_PATTERNS, "decoder"), "decoder")
    assert values["sink_share"][0, 0] == pytest.approx(1 / 5)
    sinks_seen = [[1, 1, 1, 1, 2], [1, 1, 1, 1, 2], [1, 1, 1, 1, 2]]  # sinks among keys 0..q, rows 1-5
    expected = np.mean([np.mean([k / (q + 1) for q, k in enumerate(row, 1)]) for row in sinks_seen])
    assert uniform_values["sink_share"] == pytest.approx(expected)


def test_mixed_names_the_closest_role_and_uniform_rows_get_no_share_role():
    roles = head_roles(patterned(ENCODER_PATTERNS, "encoder"), kinds=["encoder"])["encoder"][0]
    broad, frequent = roles[list(ENCODER_PATTERNS).index("broad")], roles[-1]
    assert broad.score == pytest.approx(1.0)  # normalised entropy of uniform rows
    assert frequent.role == MIXED and frequent.evidence.startswith("no clear role; closest:")
    # the most frequent word: nothing rare about it
    values, _ = role_statistics(patterned(ENCODER_PATTERNS, "encoder"), "encoder")
    assert values["rare_token_share"][0, -1] == 0.0
    assert values["rare_token_share"][0, list(ENCODER_PATTERNS).index("rare words")] == 1.0


def test_uniform_rows_are_each_statistics_baseline():
    """role_statistics's uniform values are the statistics of uniform maps over the same sentences."""
    atts = patterned(ENCODER_PATTERNS, "encoder")
    values, uniform_values = role_statistics(atts, "encoder")
    broad = list(ENCODER_PATTERNS).index("broad")
    for name, value in uniform_values.items():
        assert values[name][0, broad] == pytest.approx(value)
    sinks = np.mean([sum(t in (".", "!", "[SOS]", "[EOS]") for t in s) / len(s) for s in SOURCES])
    assert uniform_values["sink_share"] == pytest.approx(sinks)


def test_summaries_count_roles():
    roles = head_roles(patterned(CROSS_PATTERNS, "cross"), kinds=["cross"])
    grid = roles["cross"]
    assert role_names(grid).tolist() == [list(CROSS_PATTERNS)]
    assert most_important(grid, np.array([[0.1, 0.5, 0.3, 0.2]]), top=2) == ["sink", "broad"]
    assert count_roles(["sink", "mixed", "sink", "alignment"]) == [("sink", 2), ("alignment", 1), ("mixed", 1)]
    assert describe_counts(["mixed", "alignment", "alignment"]) == "2 alignment, 1 mixed"
    order = [("cross", 1, 4), ("cross", 1, 2), ("cross", 1, 1), ("cross", 1, 3)]
    assert roles_switched_off(order, roles, [0, 2, 4]) == ["", "1 sink, 1 mixed", "1 alignment, 1 broad"]


def test_a_model_trained_to_copy_its_input_has_alignment_heads_and_an_untrained_one_none():
    pairs = word_map_pairs(40, seed=5)
    trained = head_roles(reference_attentions(copy_bundle(), pairs), kinds=["cross"])["cross"]
    names = role_names(trained)
    assert (names == "alignment").any(), names
    for row in trained:
        for r in row:
            if r.role == "alignment":
                assert r.value > r.uniform and r.statistic == "diagonality"
    untrained = head_roles(reference_attentions(bundle_of(*word_map_model(0)), pairs), kinds=["cross"])["cross"]
    assert not (role_names(untrained) == "alignment").any()


def test_nan_statistics_never_clear_a_threshold():
    nans = {ROLES[name].statistic: math.nan for name in KIND["encoder"].roles}
    found = head_role("encoder", nans, nans)
    assert found.role == MIXED and "no row" in found.evidence


def test_marian_framing_counts_its_own_start_and_end_tokens():
    """A Marian source has no start token and ends with </s>; its decoder starts with <pad>. Attention.framing says
    so, and the roles read it: weight on </s> or <pad> is a sink, and neither is ever a word."""
    src, tgt = ("▁I", "▁love", "▁you", ".", "</s>"), ("<pad>", "▁Ti", "▁amo", ".")
    s, t = len(src), len(tgt)
    maps = {
        "encoder": np.stack([one_hot([s - 1] * s, s), np.eye(s)]),
        "decoder": np.stack([one_hot([0] * t, t), np.eye(t)]),
        "cross": np.stack([one_hot([s - 1] * t, s), uniform(t, s)]),
    }
    att = Attention(*(torch.tensor(maps[k])[None] for k in KINDS), src, tgt, source_frame=(0, 1))
    roles = head_roles([att])
    assert [r.role for r in roles["encoder"][0]] == ["sink", "same token"]
    assert [r.role for r in roles["decoder"][0]] == ["sink", "same token"]
    assert [r.role for r in roles["cross"][0]] == ["sink", "broad"]
    assert set(token_counts([att], "encoder")) == {"▁I", "▁love", "▁you", "."}
    assert set(token_counts([att], "decoder")) == {"▁Ti", "▁amo", "."}
    assert rarest_keys(list(src), token_counts([att], "encoder"), 1, att.framing("encoder")).tolist() == [1]
