"""Subword (BPE) tokenizers: pieces as the model sees them, text joined back, word-level ones unchanged."""

from __future__ import annotations

import torch

from core import ModelConfig, Transformer, load_checkpoint, save_checkpoint, translate
from core.analysis.alignment import word_of_token
from core.decoding import copied_text
from core.guided_alignment import token_links
from core.tokenizer import (
    SPECIAL_TOKENS,
    UNK_ID,
    build_tokenizer,
    detokenize,
    encode,
    ids_to_text,
    is_subword,
    join_pieces,
)

IT = ["Ho visto una zebra nell'acqua.", "La zebra beve l'acqua fredda.", "Un po' di pane, grazie!", "Dov'è Tom?"] * 3
EN = ["I saw a zebra in the water.", "The zebra drinks cold water.", "Some bread, thanks!", "Where is Tom?"] * 3


def test_subword_pieces_keep_case_and_join_back_into_the_text():
    tok = build_tokenizer(IT, min_frequency=1, vocab_size=60, subword=True)
    assert is_subword(tok) and [tok.id_to_token(i) for i in range(4)] == SPECIAL_TOKENS
    ids, tokens, _ = encode(tok, "La zebra beve l'acqua fredda.")
    assert any(t.startswith("##") for t in tokens) and tokens[0].startswith("L")  # cased
    assert ids_to_text(tok, ids) == "La zebra beve l'acqua fredda."
    assert ids_to_text(tok, encode(tok, "Un po' di pane, grazie!")[0]) == "Un po' di pane, grazie!"
    unseen = encode(tok, "Ho visto una zebra ♞.")
    assert unseen[1][-2] == "[UNK]" and unseen[0][-2] == UNK_ID  # only a character never seen is unknown


def test_join_pieces_and_word_level_tokenizers_are_untouched():
    assert join_pieces(["zeb", "##ra", "beve", "##", "##x"]) == ["zebra", "beve", "##x"]  # a bare ## stays
    words = build_tokenizer(["a ## b"], min_frequency=1)
    assert not is_subword(words)
    assert ids_to_text(words, encode(words, "a ## b")[0]) == "a ## b" == detokenize(["a", "##", "b"])


def test_a_model_with_subword_tokenizers_translates_and_shows_pieces(tmp_path):
    src = build_tokenizer(EN, min_frequency=1, vocab_size=70, subword=True)
    tgt = build_tokenizer(IT, min_frequency=1, vocab_size=70, subword=True)
    config = ModelConfig(src.get_vocab_size(), tgt.get_vocab_size(), 32, 2, 4, 64, 0.0, 40)
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "m.pt", Transformer(config), src, tgt)
    bundle = load_checkpoint(tmp_path / "m.pt")
    result = translate(bundle, "The zebra drinks water.", reference="La zebra beve l'acqua.")
    assert result.translation == "La zebra beve l'acqua."  # the reference, joined back from its pieces
    assert any(t.startswith("##") for t in result.source_tokens + result.target_tokens)  # labelled as seen
    assert result.attention.cross.shape[-2:] == (len(result.target_tokens), len(result.source_tokens))


def test_a_copied_unknown_piece_is_written_as_the_source_text():
    tgt = build_tokenizer(IT, min_frequency=1, vocab_size=60, subword=True)
    ids = encode(tgt, "Ho visto una zebra")[0] + [UNK_ID]
    assert copied_text(tgt, ids, [(len(ids) - 1, 5, "♞")]) == "Ho visto una zebra ♞"


def test_subword_pieces_map_to_their_words_for_guided_alignment():
    src = build_tokenizer(EN, min_frequency=1, vocab_size=60, subword=True)
    tgt = build_tokenizer(IT, min_frequency=1, vocab_size=60, subword=True)
    pair = ("I saw a zebra.", "Ho visto una zebra.")
    _, src_words = word_of_token(src, pair[0].split(" "))
    _, tgt_words = word_of_token(tgt, pair[1].split(" "))
    assert len(src_words) > 5 and src_words[-1] == 3  # 'zebra.' is several pieces and a full stop, all word 3
    links = token_links(src, tgt, pair, frozenset({(3, 3)}))
    expected = {(t, s) for t, tw in enumerate(tgt_words) if tw == 3 for s, sw in enumerate(src_words) if sw == 3}
    assert set(links) == expected and len(expected) >= 4
