"""Word-level tokenizers (Hugging Face `tokenizers`), built as the tutorial builds them, or subword ones.

The special tokens and their ids are fixed, [UNK]=0, [PAD]=1, [SOS]=2, [EOS]=3, in both languages.
A tokenizer is saved as one JSON file (`tokenizer_en.json`, `tokenizer_it.json` in the tutorial).

A subword tokenizer (BPE, `build_tokenizer(..., subword=True)`) splits the same words (Whitespace
pre-tokenizer) into pieces; a piece that continues a word starts with `##` ("zebra" -> "zeb", "##ra"), so
the pieces are readable in the attention views as the model saw them and join back into words in
tokens_to_text. A [UNK] is then only a character never seen in training.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, normalizers
from tokenizers.models import BPE, WordLevel
from tokenizers.pre_tokenizers import Whitespace
from tokenizers.trainers import BpeTrainer, WordLevelTrainer

from core.seam import Encoded, Specials, token_word_index

UNK, PAD, SOS, EOS = "[UNK]", "[PAD]", "[SOS]", "[EOS]"
SPECIAL_TOKENS = [UNK, PAD, SOS, EOS]
UNK_ID, PAD_ID, SOS_ID, EOS_ID = range(4)
SPECIALS = Specials(start=SOS_ID, eos=EOS_ID, pad=PAD_ID, unk=UNK_ID, source_prefix=(SOS_ID,))  # core.seam
CONTINUES = "##"  # a subword piece that continues the word before it
SUBWORD_VOCAB_SIZE = 8000


def build_tokenizer(
    sentences: Iterable[str],
    min_frequency: int = 2,
    vocab_size: int | None = None,
    lowercase: bool = False,
    subword: bool = False,
) -> Tokenizer:
    """Train a tokenizer on sentences: word-level (words seen fewer than min_frequency times become [UNK]),
    or with subword, BPE pieces of the same words (vocab_size pieces, default SUBWORD_VOCAB_SIZE)."""
    if subword:
        tokenizer = Tokenizer(BPE(unk_token=UNK, continuing_subword_prefix=CONTINUES))
        trainer = BpeTrainer(
            vocab_size=vocab_size or SUBWORD_VOCAB_SIZE,
            min_frequency=min_frequency,
            special_tokens=SPECIAL_TOKENS,
            continuing_subword_prefix=CONTINUES,
        )
    else:
        tokenizer = Tokenizer(WordLevel(unk_token=UNK))
        options = {"special_tokens": SPECIAL_TOKENS, "min_frequency": min_frequency}
        if vocab_size is not None:
            options["vocab_size"] = vocab_size
        trainer = WordLevelTrainer(**options)
    if lowercase:
        tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = Whitespace()
    tokenizer.train_from_iterator(sentences, trainer=trainer)
    check_special_tokens(tokenizer)
    return tokenizer


def check_special_tokens(tokenizer: Tokenizer) -> None:
    """Raise ValueError unless the four special tokens have the ids the model was trained with."""
    for expected_id, token in enumerate(SPECIAL_TOKENS):
        if tokenizer.token_to_id(token) != expected_id:
            raise ValueError(f"tokenizer maps {token} to {tokenizer.token_to_id(token)}, expected {expected_id}")


def load_tokenizer(source: str | Path | bytes | Tokenizer) -> Tokenizer:
    """A tokenizer from a JSON file path, JSON text/bytes, or an existing Tokenizer."""
    if isinstance(source, JsonTokenizer):
        source = source.raw
    if isinstance(source, Tokenizer):
        tokenizer = source
    elif isinstance(source, bytes) or (isinstance(source, str) and source.lstrip().startswith("{")):
        text = source.decode("utf-8") if isinstance(source, bytes) else source
        try:
            tokenizer = Tokenizer.from_str(text)
        except Exception as exc:
            raise ValueError(f"not a tokenizer JSON file: {exc}") from None
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"tokenizer file not found: {path}")
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:
            raise ValueError(f"{path} is not a tokenizer JSON file: {exc}") from None
    check_special_tokens(tokenizer)
    return tokenizer


def encode(tokenizer: Tokenizer, text: str) -> tuple[list[int], list[str], list[str]]:
    """Ids, tokens as the model sees them ([UNK] for unknown words), and the words they came from."""
    enc = tokenizer.encode(text, add_special_tokens=False)
    words = [text[a:b] for a, b in enc.offsets]
    return list(enc.ids), list(enc.tokens), words


_NO_SPACE_BEFORE = re.compile(r" ([.,!?;:%)\]}»…]+)(?= |$)")
_NO_SPACE_AFTER = re.compile(r"(^| )([(\[{«¿¡]+) ")
_APOSTROPHE = re.compile(r"(\w) ([’']) (?=\w)")
_TRUNCATED = re.compile(r"\b([Pp]o|[Mm]o) ([’'])(?= |$)")  # "un po' di": a truncation, not an elision


def detokenize(tokens: list[str]) -> str:
    """Join word-level tokens into readable text: 'l ' acqua , grazie !' -> "l'acqua, grazie!"."""
    text = " ".join(tokens)
    text = _APOSTROPHE.sub(r"\1\2", _TRUNCATED.sub(r"\1\2", text))
    text = _NO_SPACE_BEFORE.sub(r"\1", text)
    return _NO_SPACE_AFTER.sub(r"\1\2", text)


def is_subword(tokenizer: Tokenizer) -> bool:
    return isinstance(tokenizer.model, BPE)


def join_pieces(tokens: list[str]) -> list[str]:
    """Subword pieces -> words: each `##` piece is glued to the one before ("zeb", "##ra" -> "zebra")."""
    words: list[str] = []
    for token in tokens:
        if token.startswith(CONTINUES) and len(token) > len(CONTINUES) and words:
            words[-1] += token[len(CONTINUES) :]
        else:
            words.append(token)
    return words


def tokens_to_text(tokenizer: Tokenizer, tokens: list[str]) -> str:
    """Readable text of a tokenizer's tokens: a subword tokenizer's pieces joined into words, then detokenize."""
    return detokenize(join_pieces(tokens) if is_subword(tokenizer) else tokens)


def ids_to_text(tokenizer: Tokenizer, ids: Iterable[int]) -> str:
    """Text of generated ids: [SOS]/[EOS]/[PAD] dropped, [UNK] kept visible (never silently dropped)."""
    tokens = [tokenizer.id_to_token(i) for i in ids if i not in (PAD_ID, SOS_ID, EOS_ID)]
    return tokens_to_text(tokenizer, tokens)


class JsonTokenizer:
    """One of our tokenizers (a `tokenizers` JSON file, as the tutorial and our training write them) behind the
    model seam's Tokenizer interface (core/seam.py). `raw` is the `tokenizers.Tokenizer` itself."""

    unk_token = UNK

    def __init__(self, raw: Tokenizer) -> None:
        self.raw = raw

    def encode(self, text: str) -> Encoded:
        enc = self.raw.encode(text, add_special_tokens=False)
        words = [text[a:b] for a, b in enc.offsets]
        return Encoded(list(enc.ids), list(enc.tokens), words, token_word_index(text, enc.offsets))

    def encode_ids(self, texts) -> list[list[int]]:
        return [e.ids for e in self.raw.encode_batch(list(texts), add_special_tokens=False)]

    def id_to_token(self, token_id: int) -> str:
        return self.raw.id_to_token(token_id)

    def token_to_id(self, token: str) -> int | None:
        return self.raw.token_to_id(token)

    def get_vocab_size(self) -> int:
        return self.raw.get_vocab_size()

    def get_vocab(self) -> dict[str, int]:
        return self.raw.get_vocab()

    def text(self, tokens) -> str:
        return tokens_to_text(self.raw, list(tokens))

    def normalize(self, word: str) -> str:
        return self.raw.normalizer.normalize_str(word) if self.raw.normalizer else word

    def to_str(self) -> str:
        return self.raw.to_str()


def as_tokenizer(tokenizer: Tokenizer | JsonTokenizer):
    """A seam Tokenizer: a `tokenizers.Tokenizer` wrapped in JsonTokenizer, anything else as it is."""
    return JsonTokenizer(tokenizer) if isinstance(tokenizer, Tokenizer) else tokenizer


def raw_tokenizer(tokenizer: Tokenizer | JsonTokenizer) -> Tokenizer:
    """The `tokenizers.Tokenizer` of a JsonTokenizer (or the tokenizer itself): what training and saving use."""
    return tokenizer.raw if isinstance(tokenizer, JsonTokenizer) else tokenizer
