"""Guided alignment training (Garg et al. 2019, "Jointly Learning to Align and Translate with Transformer
Models"; Marian's --guided-alignment): an extra loss pulls one cross-attention head towards given word links.

Words and tokens. A links file (Pharaoh `i-j` pairs, one line per sentence pair, as `python -m core
align-corpus` writes it) indexes the words that single spaces separate in each side's text (XL-WA's
convention), while the model reads tokens. A link between source word i and target word j links every token
of word i with every token of word j (`core.analysis.alignment.word_of_token` says which word a token comes
from: `dell'acqua` is one word of three word-level tokens, and a subword tokenizer's pieces map the same way).

The target distribution of decoder row t, the row that predicts target token t (its input is the token before
it), is that token's links spread evenly over their source tokens (columns after [SOS]); rows of target tokens
without a link, and the [EOS] row, have no target and add nothing. The loss is Garg et al.'s cross-entropy
-sum G log A over the batch, divided like the translation loss by the number of target tokens ([EOS]
included), then weighted by --alignment-weight.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from tokenizers import Tokenizer
from torch import Tensor

from core.analysis.alignment import parse_links, word_of_token
from core.data import DataError, Pair

Links = frozenset[tuple[int, int]]
TokenLinks = tuple[tuple[int, int], ...]  # (target token, source token) positions, without specials


def read_links_file(path: str | Path, pairs: Sequence[Pair]) -> list[Links]:
    """One set of (source word, target word) links per pair, from a Pharaoh file with a line per pair.

    DataError, naming the file and line, when the line count differs from the pairs' or a link is malformed
    or points past the end of its sentence. An empty line is a pair without links.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"alignments file not found: {path}")
    lines = path.read_text(encoding="utf-8").split("\n")
    if lines[-1] == "":  # the newline that ends the last line
        lines.pop()
    if len(lines) != len(pairs):
        raise DataError(
            f"{path} has {len(lines)} lines but the --data files hold {len(pairs)} sentence pairs: it needs one line "
            "of i-j links per pair, in the same order (blank lines of a TSV file are not pairs)"
        )
    result = []
    for n, (line, (source, target)) in enumerate(zip(lines, pairs), 1):
        try:
            links = parse_links(line)
        except ValueError as exc:
            raise DataError(f"{path}:{n}: {exc}") from None
        n_source, n_target = len(source.split(" ")), len(target.split(" "))
        outside = [f"{i}-{j}" for i, j in sorted(links) if i >= n_source or j >= n_target]
        if outside:
            raise DataError(
                f"{path}:{n}: link {outside[0]} is outside its pair ({n_source} source and {n_target} target "
                "words): is the file made for these --data files, in this order?"
            )
        result.append(links)
    return result


def _tokens_of_words(tokenizer: Tokenizer, text: str) -> dict[int, list[int]]:
    """{space-separated word index: its token positions} for text as the tokenizer reads it."""
    _, word_of = word_of_token(tokenizer, text.split(" "))
    tokens: dict[int, list[int]] = {}
    for position, word in enumerate(word_of):
        tokens.setdefault(word, []).append(position)
    return tokens


def token_links(src_tokenizer: Tokenizer, tgt_tokenizer: Tokenizer, pair: Pair, links: Links) -> TokenLinks:
    """Word links of a pair as (target token, source token) links: every token of one word with every token of
    the other (see the module docstring)."""
    source_tokens = _tokens_of_words(src_tokenizer, pair[0])
    target_tokens = _tokens_of_words(tgt_tokenizer, pair[1])
    return tuple(
        sorted(
            {(t, s) for i, j in links for t in target_tokens.get(j, ()) for s in source_tokens.get(i, ())}
        )  # a word the tokenizer drops entirely (only spaces) has no tokens: its links vanish
    )


def alignment_targets(batch: Sequence[TokenLinks], rows: int, columns: int, device=None) -> Tensor:
    """(B, rows, columns) target distributions over encoder columns ([SOS] first) for the decoder rows."""
    targets = torch.zeros(len(batch), rows, columns)
    for b, links in enumerate(batch):
        if links:
            target_token, source_token = torch.tensor(links).T
            targets[b, target_token, source_token + 1] = 1.0
    return (targets / targets.sum(-1, keepdim=True).clamp_min(1.0)).to(device)


def guided_loss(head: Tensor, targets: Tensor, target_tokens: int) -> Tensor:
    """-sum(G * log A) / target_tokens for one head's (B, T, S) probabilities A and targets G of that shape."""
    log_probs = head.float().clamp_min(torch.finfo(torch.float32).tiny).log()  # 0 * log(0) must be 0, not nan
    return -(targets * log_probs).sum() / target_tokens
