"""Word-level tokenizers (Hugging Face `tokenizers`), built as the tutorial builds them.

The special tokens and their ids are fixed, [UNK]=0, [PAD]=1, [SOS]=2, [EOS]=3, in both languages.
A tokenizer is saved as one JSON file (`tokenizer_en.json`, `tokenizer_it.json` in the tutorial).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, normalizers
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace
from tokenizers.trainers import WordLevelTrainer

UNK, PAD, SOS, EOS = "[UNK]", "[PAD]", "[SOS]", "[EOS]"
SPECIAL_TOKENS = [UNK, PAD, SOS, EOS]
UNK_ID, PAD_ID, SOS_ID, EOS_ID = range(4)


def build_tokenizer(
    sentences: Iterable[str], min_frequency: int = 2, vocab_size: int | None = None, lowercase: bool = False
) -> Tokenizer:
    """Train a word-level tokenizer on sentences; words seen fewer than min_frequency times become [UNK]."""
    tokenizer = Tokenizer(WordLevel(unk_token=UNK))
    if lowercase:
        tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = Whitespace()
    options = {"special_tokens": SPECIAL_TOKENS, "min_frequency": min_frequency}
    if vocab_size is not None:
        options["vocab_size"] = vocab_size
    tokenizer.train_from_iterator(sentences, trainer=WordLevelTrainer(**options))
    check_special_tokens(tokenizer)
    return tokenizer


def check_special_tokens(tokenizer: Tokenizer) -> None:
    """Raise ValueError unless the four special tokens have the ids the model was trained with."""
    for expected_id, token in enumerate(SPECIAL_TOKENS):
        if tokenizer.token_to_id(token) != expected_id:
            raise ValueError(f"tokenizer maps {token} to {tokenizer.token_to_id(token)}, expected {expected_id}")


def load_tokenizer(source: str | Path | bytes | Tokenizer) -> Tokenizer:
    """A tokenizer from a JSON file path, JSON text/bytes, or an existing Tokenizer."""
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


def ids_to_text(tokenizer: Tokenizer, ids: Iterable[int]) -> str:
    """Text of generated ids: [SOS]/[EOS]/[PAD] dropped, [UNK] kept visible (never silently dropped)."""
    tokens = [tokenizer.id_to_token(i) for i in ids if i not in (PAD_ID, SOS_ID, EOS_ID)]
    return detokenize(tokens)
