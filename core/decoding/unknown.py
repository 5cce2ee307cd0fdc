"""Unknown words in the output: a generated unknown token is written as the source word its row's
cross-attention peaks on, as phrase-based systems pass unknown words through and as Luong et al. (2015) do with
attention. The tokens, ids and attention keep the unknown token the model really wrote."""

from __future__ import annotations

import torch
from torch import Tensor

from core.seam import Specials
from core.tokenizer import SPECIALS, UNK, as_tokenizer

Copy = tuple[int, int, str]  # (output position, source position, word as shown)


def copy_sources(
    cross: Tensor,
    output_ids: list[int],
    source_tokens: list[str],
    source_words: list[str],
    specials: Specials = SPECIALS,
    unknown: str = UNK,
) -> list[tuple[int, int]]:
    """Where each generated unknown token copies from: (output position, source position).

    cross is (T, S) attention of the decoder rows on the encoder input, averaged over layers and heads;
    source_tokens/source_words are the words only (the encoder input without its framing); unknown is the label
    of an unknown source token. An unknown output token takes the most attended source word that has a letter or
    digit, preferring words the model read as unknown itself (a name or rare word it cannot translate is what it
    cannot spell either).
    """
    first = len(specials.source_prefix)  # encoder position of the first word
    readable = [any(ch.isalnum() for ch in w) for w in source_words]
    unread = [r and t == unknown for r, t in zip(readable, source_tokens)]
    allowed = torch.tensor(unread if any(unread) else readable, device=cross.device)
    if not allowed.any():
        return []
    copies = []
    for row, token_id in enumerate(output_ids):
        if token_id == specials.unk:
            scores = cross[row, first : first + len(source_words)].masked_fill(~allowed, -1.0)
            copies.append((row, int(scores.argmax()) + first))
    return copies


def copy_unknown_words(
    tgt_tokenizer,
    cross: Tensor,
    output_ids: list[int],
    source_tokens: list[str],
    source_words: list[str],
    specials: Specials = SPECIALS,
) -> list[Copy]:
    """(output position, source position, word as shown) for each generated unknown token; see copy_sources.
    The word is written as the target side writes words (its tokenizer's normalization applied); both sides of a
    model share the label of an unknown token."""
    tokenizer, first = as_tokenizer(tgt_tokenizer), len(specials.source_prefix)
    found = copy_sources(cross, output_ids, source_tokens, source_words, specials, tokenizer.unk_token)
    return [(row, col, tokenizer.normalize(source_words[col - first])) for row, col in found]


def copied_text(tgt_tokenizer, output_ids: list[int], copies: list[Copy], specials: Specials = SPECIALS) -> str:
    """Output text with each copied unknown token (copy_unknown_words) written as its word."""
    tokenizer = as_tokenizer(tgt_tokenizer)
    replace = {row: word for row, _, word in copies}
    framing = {specials.pad, specials.start, specials.eos}
    tokens = [
        replace[row] if row in replace else tokenizer.id_to_token(token_id)
        for row, token_id in enumerate(output_ids)
        if token_id not in framing
    ]
    return tokenizer.text(tokens)
