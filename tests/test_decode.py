"""KV-cache greedy decoding against the tutorial's way of decoding, and max_len semantics."""

from __future__ import annotations

import random

import pytest
import torch
from conftest import digit_string

from core import translate
from core.decoding import copied_text, copy_sources, copy_unknown_words, greedy_batch, teacher_forced
from core.evaluation import evaluate
from core.model import Transformer, causal_mask, padding_mask
from core.tokenizer import EOS_ID, PAD_ID, SOS_ID, UNK_ID, build_tokenizer, detokenize, ids_to_text


@torch.no_grad()
def tutorial_greedy(model: Transformer, src_ids: list[int], max_len: int):
    """Greedy decoding done the tutorial's way, as a reference: the source padded to seq_len with an
    encoder mask, the decoder re-run over the whole prefix every step with a causal mask, argmax of the
    last position, stopping at [EOS] or when the decoder input reaches max_len tokens.

    Returns (decoder input ids without a final [EOS], output ids, attention of the last step as
    (L, H, Tq, Tk) tensors: encoder, decoder self, cross).
    """
    seq_len = model.config.seq_len
    src = torch.tensor([src_ids + [PAD_ID] * (seq_len - len(src_ids))])  # (1, seq_len)
    src_mask = padding_mask(src, PAD_ID)  # (1, 1, 1, seq_len)
    memory, enc_probs = model.encode(src, src_mask, need_weights=True)
    dec = torch.tensor([[SOS_ID]])
    outputs = []
    while dec.size(1) < max_len:
        hidden, self_probs, cross_probs = model.decode(dec, memory, src_mask, causal_mask(dec.size(1)), True)
        next_id = int(model.project(hidden[:, -1]).argmax(-1))
        outputs.append(next_id)
        if next_id == EOS_ID:
            break
        dec = torch.cat([dec, torch.tensor([[next_id]])], dim=1)
    maps = (torch.stack(p)[:, 0] for p in (enc_probs, self_probs, cross_probs))
    return dec[0].tolist(), outputs, *maps


def check_against_tutorial(bundle, sentence: str, max_len: int | None = None) -> None:
    result = translate(bundle, sentence, max_len=max_len)
    model, t, s = bundle.model, len(result.target_ids), len(result.source_ids)
    inputs, outputs, enc, dec, cross = tutorial_greedy(model, result.source_ids, max_len or bundle.config.seq_len)
    assert result.output_ids == outputs
    assert result.target_ids == inputs
    # The tutorial's last step saw all rows but the last one when max_len stopped it (the newest token is
    # never fed), all rows when [EOS] did. Padded source keys got exactly 0.
    rows = t if outputs[-1] == EOS_ID else t - 1
    assert dec.shape[-2] == cross.shape[-2] == rows
    assert torch.allclose(result.attention.decoder[:, :, :rows, :rows], dec, atol=1e-5)
    assert torch.allclose(result.attention.cross[:, :, :rows], cross[..., :s], atol=1e-5)
    assert (cross[..., s:] == 0).all() and (enc[..., s:] == 0).all()
    assert torch.allclose(result.attention.encoder, enc[:, :, :s, :s], atol=1e-5)
    # Every row equals one teacher-forced pass over the final decoder input.
    _, _, top_ids, top_probs, forced = teacher_forced(model, result.source_ids, result.target_ids[1:])
    assert forced[1].shape == result.attention.decoder.shape == (*forced[0].shape[:2], t, t)
    assert result.attention.cross.shape[-2:] == (t, s)
    for name, maps in zip(("encoder", "decoder", "cross"), forced):
        assert torch.allclose(getattr(result.attention, name), maps, atol=1e-5), name
    assert torch.equal(result.top_ids, top_ids)
    assert torch.allclose(result.top_probs, top_probs, atol=1e-5)


@pytest.mark.parametrize("sentence", ["the cat sleeps on the mat .", "where is the station ?", "a dog"])
def test_cache_matches_tutorial_on_random_model(tiny_bundle, sentence):
    check_against_tutorial(tiny_bundle, sentence)  # an untrained model runs to max_len: the long path
    check_against_tutorial(tiny_bundle, sentence, max_len=5)


def test_random_model_stopping_at_eos(tiny_bundle):
    # Make [EOS] likely after a few steps by raising its bias, so the EOS branch is covered too.
    model = tiny_bundle.model
    original = model.projection_layer.proj.bias.detach().clone()
    try:
        with torch.no_grad():
            model.projection_layer.proj.bias[EOS_ID] += 3.0
        result = translate(tiny_bundle, "the book is on the table .")
        assert result.output_ids[-1] == EOS_ID
        check_against_tutorial(tiny_bundle, "the book is on the table .")
    finally:
        with torch.no_grad():
            model.projection_layer.proj.bias.copy_(original)


def test_cache_matches_tutorial_on_trained_model(reverser_bundle):
    rng = random.Random(7)
    for _ in range(10):
        check_against_tutorial(reverser_bundle, digit_string(rng))
    check_against_tutorial(reverser_bundle, "9 8 7 6 5 4", max_len=4)


@pytest.mark.parametrize("max_len", [2, 3, 7])
def test_max_len_counts_sos(tiny_bundle, max_len):
    with torch.no_grad():
        tiny_bundle.model.projection_layer.proj.bias[EOS_ID] = -1e4  # [EOS] is never chosen: max_len is surely hit
    result = translate(tiny_bundle, "the cat sleeps", max_len=max_len)
    assert EOS_ID not in result.output_ids
    assert len(result.target_tokens) == max_len and result.target_tokens[0] == "[SOS]"
    assert result.target_ids == [SOS_ID, *result.output_ids]  # every generated token still has a row
    assert result.attention.decoder.shape[-2:] == (max_len, max_len)
    assert result.top_ids.shape[0] == max_len


def test_max_len_out_of_range(tiny_bundle):
    for bad in (1, tiny_bundle.config.seq_len + 1):
        with pytest.raises(ValueError, match="max_len"):
            translate(tiny_bundle, "the cat", max_len=bad)


def test_eos_is_output_never_a_row(reverser_bundle):
    result = translate(reverser_bundle, "3 1 4")
    assert result.output_ids == [*result.target_ids[1:], EOS_ID]
    assert "[EOS]" not in result.target_tokens
    assert result.attention.cross.shape[-2:] == (4, 5)


def test_reference_mode_feeds_the_reference(reverser_bundle):
    result = translate(reverser_bundle, "1 2 3", reference="3 2 9")
    assert result.target_tokens == ["[SOS]", "3", "2", "9"]
    assert result.translation == "3 2 9"
    assert result.output_ids[:2] == [reverser_bundle.tgt_tokenizer.token_to_id(d) for d in "32"]
    assert result.attention.decoder.shape[-2:] == (4, 4)


def test_empty_and_overlong_sentences(tiny_bundle):
    for empty in ("", "   \n"):
        with pytest.raises(ValueError, match="empty"):
            translate(tiny_bundle, empty)
    limit = tiny_bundle.config.seq_len - 2
    with pytest.raises(ValueError, match=f"at most {limit}"):
        translate(tiny_bundle, " ".join(["cat"] * (limit + 1)))
    assert len(translate(tiny_bundle, " ".join(["cat"] * limit)).source_tokens) == limit + 2


def test_unknown_words_are_kept_and_listed(tiny_bundle):
    result = translate(tiny_bundle, "the zebra sleeps on the sofa .")
    assert result.source_tokens == ["[SOS]", "the", "[UNK]", "sleeps", "on", "the", "[UNK]", ".", "[EOS]"]
    assert result.unknown_words == ("zebra", "sofa")


@pytest.mark.parametrize(
    "tokens,text",
    [
        (["l", "'", "acqua", ",", "grazie", "!"], "l'acqua, grazie!"),
        (["dov", "’", "è", "la", "stazione", "?"], "dov’è la stazione?"),
        (["(", "sì", ")", "e", "«", "no", "»", "."], "(sì) e «no»."),
        (["3", ",", "5", "%"], "3, 5%"),
        (["un", "po", "'", "di", "sale", "."], "un po' di sale."),  # a truncation keeps its space
        (["ancora", "un", "po", "'", "."], "ancora un po'."),
    ],
)
def test_detokenize_joins_punctuation(tokens, text):
    assert detokenize(tokens) == text


def test_decode_keeps_unk_visible_and_drops_specials(tgt_tokenizer):
    ids = [SOS_ID, tgt_tokenizer.token_to_id("il"), UNK_ID, tgt_tokenizer.token_to_id("."), EOS_ID, PAD_ID]
    assert ids_to_text(tgt_tokenizer, ids) == "il [UNK]."


def test_greedy_batch_matches_one_at_a_time(reverser_bundle, tiny_bundle):
    rng = random.Random(3)
    sentences = [digit_string(rng) for _ in range(6)] + ["1 2 3 4 5 6 7 8"]  # the last is longer than trained
    for bundle, max_len in ((reverser_bundle, 10), (reverser_bundle, 4), (tiny_bundle, 6)):
        results = [translate(bundle, s, max_len=max_len) for s in sentences]
        batch = greedy_batch(bundle.model, [r.source_ids for r in results], max_len)
        assert batch == [[i for i in r.output_ids if i != EOS_ID] for r in results]


# ---------------------------------------------------------------- generated [UNK]: copied from the source


def always_unk(bundle):
    """The bundle with its projection rigged to write [UNK] at every step."""
    with torch.no_grad():
        bundle.model.projection_layer.proj.bias[UNK_ID] += 1e4
    return bundle


def test_copy_sources_prefers_unknown_source_words_and_skips_punctuation():
    cross = torch.tensor(
        [
            [0.0, 0.1, 0.2, 0.0, 0.6, 0.1],  # (T, S) over [SOS] w1 w2 w3 w4 [EOS]
            [0.0, 0.5, 0.1, 0.3, 0.1, 0.0],
            [0.0, 0.1, 0.1, 0.2, 0.6, 0.0],
        ]
    )
    words, output_ids = ["Kyoto", "is", "far", "!"], [UNK_ID, 9, UNK_ID]
    assert copy_sources(cross, output_ids, ["[UNK]", "is", "[UNK]", "!"], words) == [(0, 1), (2, 3)]
    # no unknown source word: any word with a letter or digit, never the "!" the row peaks on
    assert copy_sources(cross, output_ids, ["kyoto", "is", "far", "!"], words) == [(0, 2), (2, 3)]
    assert copy_sources(cross, output_ids, ["kyoto", "is", "far", "[UNK]"], ["a", "b", "c", "?"]) == [(0, 2), (2, 3)]
    assert copy_sources(cross, output_ids, [".", ",", "!", "?"], [".", ",", "!", "?"]) == []


def test_generated_unk_shows_the_attended_source_word(tiny_bundle):
    bundle = always_unk(tiny_bundle)
    sentence = "the Zebra sleeps on the sofa ."
    kept = translate(bundle, sentence, max_len=4, copy_unknown=False)
    result = translate(bundle, sentence, max_len=4)
    assert kept.translation == "[UNK] [UNK] [UNK]" and kept.copied == ()
    assert result.output_ids == kept.output_ids == [UNK_ID] * 3
    assert result.target_tokens == ["[SOS]", "[UNK]", "[UNK]", "[UNK]"]  # labels stay what the model saw
    mean_cross = result.attention.cross.mean((0, 1))  # (T, S)
    expected = []
    for row in range(3):
        col = 2 if mean_cross[row, 2] >= mean_cross[row, 6] else 6  # "Zebra" and "sofa" are the unknown words
        expected.append((row, col, {2: "Zebra", 6: "sofa"}[col]))  # this target tokenizer keeps case
    assert result.copied == tuple(expected)
    assert result.translation == " ".join(word for _, _, word in expected)


def test_copied_word_is_normalized_like_the_target_side(tiny_bundle):
    lowercasing = build_tokenizer(["il gatto"], min_frequency=1, lowercase=True)
    cross = torch.tensor([[0.0, 0.2, 0.7, 0.1]])  # (T, S) over [SOS] the Zebra [EOS]
    assert copy_unknown_words(lowercasing, cross, [UNK_ID], ["the", "[UNK]"], ["the", "Zebra"]) == [(0, 2, "zebra")]
    gatto = lowercasing.token_to_id("gatto")
    assert copied_text(lowercasing, [gatto, UNK_ID, EOS_ID], [(1, 2, "zebra")]) == "gatto zebra"


def test_evaluate_scores_the_text_translate_shows(tiny_bundle):
    bundle = always_unk(tiny_bundle)
    pairs = [("the zebra sleeps .", "la zebra dorme ."), ("a Dog runs in the park !", "un cane corre nel parco !")]
    for copy in (True, False):
        _, hyps, _ = evaluate(bundle, pairs, progress=False, copy_unknown=copy)
        max_len = min(bundle.config.seq_len, max(len(bundle.tgt_tokenizer.encode(t).ids) for _, t in pairs) * 2 + 10)
        assert hyps == [translate(bundle, s, max_len=max_len, copy_unknown=copy).translation for s, _ in pairs]
    assert hyps[0].startswith("[UNK] [UNK]")
