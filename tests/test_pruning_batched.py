"""The pruning curve decodes every step in the same batches, each row with its own heads switched off
(core.analysis.importance.pruned_translations, over greedy_batch with per-row limits and gates, rows leaving the
batch as they end): checked against one translate() per sentence and step, with that step's heads off and the
decoding limit evaluate() gives the sentence."""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from conftest import digit_string, reverse_words  # noqa: E402
from heads_fixtures import tiny_bundle, toy_pairs  # noqa: E402

from core import translate  # noqa: E402
from core.analysis.importance import importance_order, pruned_translations, pruning_counts, pruning_curve  # noqa: E402
from core.attention import KINDS  # noqa: E402
from core.decoding import greedy_batch  # noqa: E402
from core.evaluation import evaluate, lowercases  # noqa: E402
from core.heads_off import HeadsOff  # noqa: E402
from core.metrics import score  # noqa: E402

torch.set_num_threads(1)
SHORT = ("the house is big", "la casa è grande")


def limits_as_evaluate_sets_them(bundle, pairs) -> list[int]:
    """Twice the longest reference (in tokens) of the pair's batch of 64, in file order, plus 10; at most seq_len."""
    lengths = [len(bundle.tgt_tokenizer.encode(target).ids) for _, target in pairs]
    batches = [lengths[start : start + 64] for start in range(0, len(lengths), 64)]
    return [min(bundle.config.seq_len, 2 * max(batch) + 10) for batch in batches for _ in batch]


def random_order(bundle, seed: int) -> list[tuple[str, int, int]]:
    """Every head once, in a seeded random order (any order will do: the curve only follows it)."""
    generator = torch.Generator().manual_seed(seed)
    scores = {
        kind: torch.rand(bundle.config.n_layers, bundle.config.n_heads, generator=generator).numpy() for kind in KINDS
    }
    return importance_order(scores)


def one_by_one(bundle, pairs, head_sets: list[HeadsOff]) -> list[list[str]]:
    """[set][pair] translate() of each sentence alone with those heads off and evaluate()'s limit."""
    limits = limits_as_evaluate_sets_them(bundle, pairs)
    return [
        [
            translate(bundle, source, max_len=limit, head_mask=off).translation
            for (source, _), limit in zip(pairs, limits)
        ]
        for off in head_sets
    ]


def reverser_pairs(n: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    sources = [digit_string(rng, 1, 8) for _ in range(n)]  # longer and shorter than trained: some never end
    return [(source, reverse_words(source)) for source in sources]


@dataclass
class Case:
    bundle: object
    pairs: list[tuple[str, str]]
    order: list[tuple[str, int, int]]
    step: int
    expected: list[list[str]] = field(default_factory=list)  # [step][pair] from translate()

    @property
    def head_sets(self) -> list[HeadsOff]:
        return [HeadsOff(frozenset(self.order[:k])) for k in pruning_counts(len(self.order), self.step)]


@pytest.fixture(scope="module")
def cases(reverser_bundle) -> list[Case]:
    """An untrained model, whose translations run to their limit (which differs between evaluate's two batches of
    these pairs), [UNK]s written as source words; and a trained one, whose translations end at different steps."""
    tiny = Case(tiny_bundle(layers=2, heads=2, seed=3), toy_pairs(64) + [SHORT] * 6, [], 5)
    limits = limits_as_evaluate_sets_them(tiny.bundle, tiny.pairs)
    assert limits[0] != limits[-1]  # the second batch decodes fewer tokens
    reverser = Case(reverser_bundle, reverser_pairs(30, seed=5), [], 10)
    for case, seed in ((tiny, 1), (reverser, 2)):
        case.order = random_order(case.bundle, seed)
        case.expected = one_by_one(case.bundle, case.pairs, case.head_sets)
    return [tiny, reverser]


def test_batched_steps_write_what_translate_writes_with_those_heads_off(cases):
    for case in cases:
        for rows_per_batch in (512, 7):  # one batch, or many with every step's rows of a sentence split up
            hyps, kept = pruned_translations(case.bundle, case.pairs, case.head_sets, rows_per_batch=rows_per_batch)
            assert kept == case.pairs
            assert hyps == case.expected
        assert len({tuple(h) for h in case.expected}) == len(case.head_sets)  # every step changed a translation


def test_the_curve_scores_each_steps_translations(cases):
    for case in cases:
        curve = pruning_curve(case.bundle, case.pairs, case.order, case.step)
        assert [p["heads_off"] for p in curve] == pruning_counts(len(case.order), case.step)
        references = [target for _, target in case.pairs]
        for point, hyps in zip(curve, case.expected):
            expected = score(hyps, references, lowercase=lowercases(case.bundle))
            assert point["chrf"] == pytest.approx(expected["chrf"]) and point["bleu"] == pytest.approx(expected["bleu"])
        assert curve[0]["chrf"] == pytest.approx(evaluate(case.bundle, case.pairs, progress=False)[0]["chrf"])
    assert curve[0]["chrf"] > curve[-1]["chrf"]  # the reverser with every head off: the task is gone


def test_greedy_batch_rows_leave_at_their_own_limit_with_their_own_gates(reverser_bundle):
    """Per-row limits and gates, rows ending at different steps: each row as translate() decodes it alone, its
    cross-attention rows (the mean over layers and heads, what [UNK] copying reads) included."""
    bundle = reverser_bundle
    rng = random.Random(9)
    sentences = [digit_string(rng, 1, 8) for _ in range(12)]
    limits = [rng.randint(2, 10) for _ in sentences]
    gates = torch.ones(len(sentences), 2, 4)
    gates[::3, 1, :3] = 0.0  # every third row loses three heads of the second layer's cross-attention
    results = [
        translate(bundle, s, max_len=limit, head_mask={"cross": g}) for s, limit, g in zip(sentences, limits, gates)
    ]
    outputs, cross = greedy_batch(
        bundle.model, [r.source_ids for r in results], limits, need_cross=True, head_mask={"cross": gates}
    )
    assert outputs == [[i for i in r.output_ids if i != bundle.specials.eos] for r in results]
    assert len({len(o) for o in outputs}) > 3  # rows really ended at different steps
    for rows, ids, result in zip(cross, outputs, results):
        ended = result.output_ids[-1:] == [bundle.specials.eos]
        assert len(rows) == len(ids) + ended  # one row per step it ran (translate feeds a last token once more)
        expected = result.attention.weights("cross").mean((0, 1))[: len(rows)]  # (T, S) of this source
        torch.testing.assert_close(rows[:, : expected.size(1)], expected, atol=1e-5, rtol=1e-4)
        assert not rows[:, expected.size(1) :].any()  # the batch's source padding gets no attention
