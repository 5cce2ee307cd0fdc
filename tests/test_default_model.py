"""The model shipped in checkpoints/ loads, carries its model card, and translates everyday sentences."""

from pathlib import Path

import pytest

from core import load_checkpoint, translate
from core.tokenizer import UNK_ID

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
    for needle in ("Tatoeba", "CC BY 2.0 FR", "CC BY-NC-SA 4.0", "Europarl v7", "CC BY 3.0", "MPL-2.0", "eflomal"):
        assert needle in text
    assert "python -m core train" in card["training_command"] and "--seq-len 256" in card["training_command"]
    for name in ("tatoeba_test", "europarl_test", "ntrex128_news"):
        new, old = card["metrics"][name], card["metrics"][name + "_previous_default"]
        assert new["chrf"] > old["chrf"] > 0 and 0.8 <= new["length_ratio"] <= 1.3  # better, and translated whole
    news = [e for e in card["examples"] if len(e["source"].split()) >= 15]
    assert len(card["examples"]) >= 5 and news and all(e["translation"] and e["previous_default"] for e in news)


def test_card_records_the_guided_alignment_head(bundle):
    from core.analysis.alignment import recorded_alignment

    recorded = recorded_alignment(bundle)
    assert recorded is not None and recorded.method.name.startswith("L3H1-") and 0 < recorded.aer < 1


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
def test_translates_everyday_sentences_into_cased_italian(bundle, sentence, expected):
    result = translate(bundle, sentence)
    text = result.translation
    assert text and result.output_ids[-1] == 3  # stopped by itself with [EOS]
    assert text[0].isupper(), text  # cased English in, cased Italian out
    assert any(e in text.lower() for e in expected), text
    assert result.attention.cross.shape == (
        bundle.config.n_layers,
        bundle.config.n_heads,
        len(result.target_tokens),
        len(result.source_tokens),
    )


def test_i_love_you_is_ti_amo(bundle):
    assert translate(bundle, "I love you.").translation == "Ti amo."  # the previous default wrote "ti amo."


# Held-out Europarl v7 sentences (P. Koehn, 2005, Europarl: A Parallel Corpus for Statistical Machine Translation,
# MT Summit X; European Parliament proceedings, https://www.europarl.europa.eu), from the model's test split.
LONG = [
    "Madam President, excuse me, I had already asked to speak before the vote, but since the problem is likely "
    "to recur, my intervention is not without purpose.",
    "The rapporteur says that it is too early to make a definite decision on Slovakia's application for membership "
    "before the end of 1998, but that Parliament should be given another opportunity to express its opinion before "
    "May at the latest.",
    "Although I am not against the principle of taxing polluting emissions, I do believe that these measures must "
    "respect two principles. On the one hand they must try to guarantee tax neutrality and, on the other, they must "
    "cover the whole of the industrialised world, or at least the OECD, so that ecological dumping or competition "
    "distortions do not arise.",
]


@pytest.mark.parametrize("sentence", LONG)
def test_long_sentences_are_read_and_translated_whole(bundle, sentence):
    """The previous default dropped the end of sentences over ~35 pieces; this one writes about as many pieces
    as it reads, and stops by itself."""
    result = translate(bundle, sentence)
    assert result.output_ids[-1] == 3 and len(result.source_ids) > 30
    assert 0.6 <= len(result.output_ids) / len(result.source_ids) <= 1.5, result.translation
    assert bundle.config.seq_len == 256


def test_names_keep_their_capitals_and_a_rare_word_is_read_in_pieces_not_as_unk(bundle):
    result = translate(bundle, "Tom and Mary live in Boston.")
    assert all(name in result.translation for name in ("Tom", "Mary", "Boston")), result.translation
    rare = translate(bundle, "I saw a zebra.")
    assert "[UNK]" not in rare.source_tokens and "[UNK]" not in rare.target_tokens
    assert any(t.startswith("##") for t in rare.source_tokens)  # "zebra" is not one of its 8,000 pieces


TATOEBA = Path(__file__).resolve().parents[2] / "shared" / "data" / "tatoeba.en-it.tsv"


@pytest.mark.skipif(not TATOEBA.is_file(), reason="../shared/data is not there")
def test_held_out_tatoeba_scores_are_the_cards(bundle):
    from core.data import read_tsv, split_pairs
    from core.evaluation import evaluate

    _, _, test = split_pairs(read_tsv(TATOEBA), 0.05, 0.05, 0)
    metrics, _, kept = evaluate(bundle, test, progress=False)
    card = bundle.metadata["model_card"]["metrics"]["tatoeba_test"]
    assert len(kept) == card["sentences"] == 776
    assert metrics["bleu"] == pytest.approx(card["bleu"], abs=0.01) and metrics["bleu"] >= 30  # cased, sacrebleu
    assert metrics["chrf"] == pytest.approx(card["chrf"], abs=0.01) and metrics["chrf"] >= 52
    italian_ids = [i for _, it in test for i in bundle.tgt_tokenizer.encode(it).ids]
    assert sum(i == UNK_ID for i in italian_ids) / len(italian_ids) < 0.001  # the word-level default: 6.1%
