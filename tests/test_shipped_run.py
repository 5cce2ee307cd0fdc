"""The training run shipped in checkpoints/run/: small enough, the default model's tokenizers, a card, and its
alignment head's attention visibly forming from the first checkpoint to the last."""

from pathlib import Path

import pytest

from core import load_checkpoint, translate
from core.analysis.alignment import recorded_alignment
from core.comparison import same_tokenizers
from core.runs import discover_runs

CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"
pytestmark = pytest.mark.skipif(not (CHECKPOINTS / "run").is_dir(), reason="checkpoints/run/ is not there")
SENTENCE = "The cat is sleeping on the chair."


@pytest.fixture(scope="module")
def run():
    (found,) = [r for r in discover_runs(CHECKPOINTS) if r.folder == CHECKPOINTS / "run"]
    return found


def test_five_checkpoints_in_at_most_15_mb_with_the_default_models_tokenizers(run):
    assert len(run.checkpoints) >= 5
    assert sum(c.path.stat().st_size for c in run.checkpoints) <= 15 * 1024 * 1024
    default = load_checkpoint(CHECKPOINTS / "default.pt")
    for checkpoint in run.checkpoints:
        bundle = load_checkpoint(checkpoint.path)
        assert same_tokenizers(bundle, default)  # Compare puts it beside the default token by token
        assert (bundle.config.n_layers, bundle.config.n_heads) == (default.config.n_layers, default.config.n_heads)
        card = bundle.metadata["model_card"]
        assert "python -m core train" in card["training_command"] and "CC BY-NC-SA 4.0" in str(card["data"])
        assert recorded_alignment(bundle).method.name.startswith("L3H1-")


def test_the_alignment_head_goes_from_an_even_spread_to_one_word_a_row(run):
    """On the sentence the Timeline opens on, fed the last checkpoint's translation: at the first checkpoint each
    row of decoder layer 3 head 1 spreads almost evenly over the source words (its largest weight near 1 / the
    number of words); at the last, most of a row's weight goes to one word."""
    bundles = [load_checkpoint(c.path) for c in (run.checkpoints[0], run.checkpoints[-1])]
    last = translate(bundles[1], SENTENCE)
    assert last.translation
    peaks = []
    for bundle in bundles:
        attention = translate(bundle, SENTENCE, reference=last.translation).attention
        words = attention.cross[2, 0][:, attention.source_words]  # layer 3, head 1: rows x source words
        peaks.append(float(words.max(dim=-1).values.mean()))
    n_words = len(SENTENCE.split()) + 1  # the tokenizer splits off the full stop
    assert peaks[0] < 2 / n_words < 0.5 < peaks[1]
