"""A tiny model trained inside the test suite learns a synthetic task: reversing digit strings."""

from __future__ import annotations

import random

from conftest import digit_string, reverse_words

from core import translate


def test_reverser_learns_the_task(reverser_bundle):
    rng = random.Random(1234)  # held-out strings: a different stream from the training one
    samples = [digit_string(rng) for _ in range(200)]
    correct = sum(translate(reverser_bundle, s).translation == reverse_words(s) for s in samples)
    assert correct / len(samples) > 0.95, f"sequence accuracy {correct / len(samples):.1%}"


def test_reverser_rows_are_labelled_with_its_own_tokens(reverser_bundle):
    result = translate(reverser_bundle, "1 2 3 4 5")
    assert result.translation == "5 4 3 2 1"
    assert result.source_tokens == ["[SOS]", "1", "2", "3", "4", "5", "[EOS]"]
    assert result.target_tokens == ["[SOS]", "5", "4", "3", "2", "1"]
    assert result.attention.cross.shape == (2, 4, 6, 7)  # (L, H, T, S)
