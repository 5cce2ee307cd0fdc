"""Checkpoint fuzzing: mutated files of both formats either load (and translate) or raise CheckpointError.

A fixed seed and a modest count on a small model; `python bench/fuzz_checkpoint.py --count 2000` runs the
large count. The mutations are those of bench/fuzz_checkpoint.py: truncations, flipped bytes, appended junk,
zeroed ranges, a dropped zip entry, huge declared sizes (zip records, config, tensor shapes), wrong dtypes and
shapes, NaN and infinite weights, missing and unknown keys, entries of the wrong type.
"""

from __future__ import annotations

import io
import random

import pytest
import torch

from bench.fuzz_checkpoint import MUTATIONS, fuzz, mutate, outcome, small_native, tutorial_copy
from core import CheckpointError, load_checkpoint

CASES_PER_MUTATION = 4  # x 2 formats x 12 mutations = 96 cases, about 15 s here


@pytest.fixture(scope="module")
def native() -> bytes:
    return small_native(seed=0)


def test_every_mutated_checkpoint_loads_or_is_refused_with_checkpoint_error(native):
    tally, failures = fuzz(native, count=2 * len(MUTATIONS) * CASES_PER_MUTATION, seed=1234)
    assert failures == []
    for fmt in ("ours", "tutorial"):  # every mutation ran on both formats
        for name in MUTATIONS:
            assert sum(n for (f, m, _), n in tally.items() if (f, m) == (fmt, name)) == CASES_PER_MUTATION


def test_the_unmutated_files_load_and_translate(native):
    tutorial, src, tgt = tutorial_copy(native)
    assert outcome(native, None) == "loaded"
    assert outcome(tutorial, (src, tgt)) == "loaded"


@pytest.mark.parametrize("name", ["NaN/inf weight", "huge config", "missing/unknown key"])
def test_mutations_that_can_never_be_a_usable_model_are_always_refused(native, name):
    rng = random.Random(7)
    tutorial, src, tgt = tutorial_copy(native)
    for _ in range(5):
        assert outcome(mutate(native, name, rng), None) == "refused"
        assert outcome(mutate(tutorial, name, rng), (src, tgt)) == "refused"


def test_a_huge_config_is_refused_before_any_memory_is_allocated_for_it(native):
    payload = torch.load(io.BytesIO(native), weights_only=True)
    payload["model_config"]["d_ff"] = 2**40  # 4 TB per feed-forward matrix if the model were built first
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    with pytest.raises(CheckpointError, match="shape mismatch"):
        load_checkpoint(buffer.getvalue())


@pytest.mark.parametrize(
    ("entry", "value"),
    [
        ("model_config", {"d_model": 2**40}),  # d_model x d_model overflows torch's sizes even on the meta device
        ("metadata", 3),
        ("model_state_dict", [("a", 1)]),
        ("model_state_dict", {1: torch.ones(1)}),
        ("src_tokenizer", 3),
    ],
)
def test_cases_the_large_fuzz_run_found_are_refused(native, entry, value):
    payload = torch.load(io.BytesIO(native), weights_only=True)
    payload[entry] = {**payload[entry], **value} if entry == "model_config" else value
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    with pytest.raises(CheckpointError):
        load_checkpoint(buffer.getvalue())
