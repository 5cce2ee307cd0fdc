"""The model shipped in checkpoints/ loads, carries its model card, and translates everyday sentences."""

from pathlib import Path

import pytest

from core import load_checkpoint, translate

DEFAULT = Path(__file__).resolve().parents[1] / "checkpoints" / "default.pt"
pytestmark = pytest.mark.skipif(not DEFAULT.is_file(), reason="checkpoints/default.pt is not there")


@pytest.fixture(scope="module")
def bundle():
    return load_checkpoint(DEFAULT)


def test_file_is_small_enough_to_ship():
    assert DEFAULT.stat().st_size <= 30 * 1024 * 1024


def test_model_card_names_data_licences_and_scores(bundle):
    card = bundle.metadata["model_card"]
    text = str(card)
    for needle in ("Tatoeba", "CC BY 2.0 FR", "CC BY-NC-SA 4.0", "Europarl", "python -m core.train"):
        assert needle in text
    assert card["metrics"]["tatoeba_test"]["bleu"] > 0
    assert len(card["examples"]) == 5


def test_several_layers_and_heads_to_explore(bundle):
    assert bundle.config.n_layers >= 3 and bundle.config.n_heads >= 4


@pytest.mark.parametrize(
    ("sentence", "expected"),
    [
        ("I love you.", ("ti amo", "vi amo", "la amo", "ti voglio bene")),
        ("Where is the station?", ("dov'è", "dove")),
        ("Thank you very much.", ("grazie",)),
    ],
)
def test_translates_everyday_sentences_into_italian(bundle, sentence, expected):
    result = translate(bundle, sentence)
    text = result.translation.lower()
    assert text and result.output_ids[-1] == 3  # stopped by itself with [EOS]
    assert any(e in text for e in expected), text
    assert result.attention.cross.shape == (
        bundle.config.n_layers,
        bundle.config.n_heads,
        len(result.target_tokens),
        len(result.source_tokens),
    )


def test_generated_unknown_word_is_copied_from_the_source(bundle):
    result = translate(bundle, "I saw a zebra.")
    assert "[UNK]" in result.target_tokens and "zebra" in result.translation
    assert [(word, result.source_tokens[col]) for _, col, word in result.copied] == [("zebra", "[UNK]")]


TATOEBA = Path(__file__).resolve().parents[2] / "shared" / "data" / "tatoeba.en-it.tsv"


@pytest.mark.skipif(not TATOEBA.is_file(), reason="../shared/data is not there")
def test_held_out_tatoeba_scores_are_the_cards(bundle):
    from core.data import read_tsv, split_pairs
    from core.evaluation import evaluate

    _, _, test = split_pairs(read_tsv(TATOEBA), 0.05, 0.05, 0)
    metrics, _, kept = evaluate(bundle, test, progress=False)
    card = bundle.metadata["model_card"]["metrics"]["tatoeba_test"]
    assert len(kept) == card["sentences"] == 776
    assert metrics["bleu"] == pytest.approx(card["bleu"], abs=0.01) and metrics["bleu"] >= 25
    assert metrics["chrf"] == pytest.approx(card["chrf"], abs=0.01) and metrics["chrf"] >= 50
