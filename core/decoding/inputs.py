"""The inputs of a decoding call, checked: a sentence or reference as token ids, and a forced prefix."""

from __future__ import annotations

from core.seam import Encoded, Specials
from core.tokenizer import SPECIALS, as_tokenizer


def encode_checked(tokenizer, text: str, limit: int, what: str) -> Encoded:
    """text tokenized, or a ValueError a user can act on (empty, unreadable, over `limit` tokens)."""
    if not text or not text.strip():
        raise ValueError(f"the {what} is empty: type a sentence to translate")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # bytes that were not UTF-8, surrogate-escaped by Python (command line, stdin)
        raise ValueError(f"the {what} is not UTF-8 text; save or type it as UTF-8") from None
    encoded = tokenizer.encode(text)
    if not encoded.ids:
        raise ValueError(f"the {what} has no words the tokenizer can read")
    if len(encoded.ids) > limit:
        raise ValueError(
            f"the {what} is {len(encoded.ids)} tokens long; this model takes at most {limit} "
            "(its seq_len counts the tokens that start and end a sentence too)"
        )
    return encoded


def prefix_ids(tgt_tokenizer, prefix: str | list[str | int], specials: Specials = SPECIALS) -> list[int]:
    """Target ids of a forced prefix: a text (split and normalized as the target tokenizer does), or a list of
    tokens (normalized the same way) or ids. Any token the model can write may be forced (an untrained model
    writes its start or pad token too); ValueError for a word outside the vocabulary, an id out of range, or the
    end-of-sentence token anywhere but last (it ends the translation)."""
    tokenizer = as_tokenizer(tgt_tokenizer)
    vocab = tokenizer.get_vocab_size()
    if isinstance(prefix, str):
        if not prefix.strip():
            return []
        encoded = tokenizer.encode(prefix)
        unknown = [w for w, t in zip(encoded.words, encoded.tokens) if t == tokenizer.unk_token]
        if unknown:
            raise ValueError(f"not in the model's target vocabulary: {', '.join(map(repr, unknown))}")
        items = encoded.ids
    else:
        items = list(prefix)
    out = []
    for item in items:
        if isinstance(item, str):
            token_id = tokenizer.token_to_id(item)  # a special token, or one already written as the vocabulary has it
            if token_id is None:
                token_id = tokenizer.token_to_id(tokenizer.normalize(item))
            if token_id is None:
                raise ValueError(f"{item!r} is not a token of the model's target vocabulary")
        elif isinstance(item, int) and 0 <= item < vocab:
            token_id = item
        else:
            raise ValueError(f"{item!r} is not a target token id (0 to {vocab - 1})")
        out.append(token_id)
    if specials.eos in out[:-1]:
        end = tokenizer.id_to_token(specials.eos)
        raise ValueError(f"{end} can be forced only as the last prefix token (it ends the translation)")
    return out
