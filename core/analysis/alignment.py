"""Which cross-attention heads align words? Score every head against gold word alignments.

    python -m core alignment --checkpoint checkpoints/default.pt --data xlwa.en-it.dev.gold.tsv

The data is XL-WA's format: `english tokens<TAB>italian tokens<TAB>i-j ...` (space-separated words,
0-based English index i, Italian index j). For each pair the decoder is fed the Italian sentence
(teacher forcing); each Italian word is linked to the English word that a head attends to most, and
the links are scored with the alignment error rate (AER, lower is better; all gold links count as
sure). Rows are read at the step that *predicts* each word (its decoder input is the previous word);
a diagonal aligner (word j to word j * len(en) / len(it)) is printed as the baseline.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.checkpoint import ModelBundle
from core.decoding import translate

Links = set[tuple[int, int]]


@dataclass(frozen=True)
class GoldPair:
    source_words: list[str]
    target_words: list[str]
    links: frozenset[tuple[int, int]]  # (source word, target word)


def parse_links(text: str) -> frozenset[tuple[int, int]]:
    """Pharaoh links 'i-j i-j ...' (0-based source word i, target word j) -> {(i, j)}; ValueError if malformed."""
    links = set()
    for item in text.split():
        source, dash, target = item.partition("-")
        if not dash or not source.isdigit() or not target.isdigit():
            raise ValueError(f"{item!r} is not a link: expected i-j with 0-based word indexes, e.g. 0-0 1-2")
        links.add((int(source), int(target)))
    return frozenset(links)


def format_links(links) -> str:
    """{(i, j)} -> 'i-j ...' in Pharaoh order (by source word, then target word)."""
    return " ".join(f"{i}-{j}" for i, j in sorted(links))


def read_gold(path: str | Path) -> list[GoldPair]:
    """XL-WA lines: source words, target words, and 'i-j' links, tab-separated."""
    pairs = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        cols = line.split("\t")
        if len(cols) != 3:
            raise ValueError(f"{path}:{n}: expected 3 tab-separated columns")
        try:
            links = parse_links(cols[2])
        except ValueError as exc:
            raise ValueError(f"{path}:{n}: {exc}") from None
        pairs.append(GoldPair(cols[0].split(" "), cols[1].split(" "), links))
    return pairs


def word_of_token(tokenizer, words: list[str]) -> tuple[str, list[int]]:
    """The sentence text and, for each of its tokens, the index of the gold word it comes from."""
    text = " ".join(words)
    starts = np.cumsum([0] + [len(w) + 1 for w in words[:-1]])
    offsets = tokenizer.encode(text, add_special_tokens=False).offsets
    return text, [int(np.searchsorted(starts, a, side="right") - 1) for a, _ in offsets]


def word_matrix(weights: np.ndarray, row_words: list[int], col_words: list[int], n_rows: int, n_cols: int):
    """(..., tokens_q, tokens_k) -> (..., words_q, words_k): mean over a word's rows, sum over its columns."""
    rows = np.zeros(weights.shape[:-2] + (n_rows, weights.shape[-1]))
    counts = np.zeros(n_rows)
    for token, word in enumerate(row_words):
        rows[..., word, :] += weights[..., token, :]
        counts[word] += 1
    rows /= np.maximum(counts, 1)[:, None]
    out = np.zeros(weights.shape[:-2] + (n_rows, n_cols))
    for token, word in enumerate(col_words):
        out[..., word] += rows[..., token]
    return out


def aer(predicted: Links, gold: Links) -> float:
    """Alignment error rate with every gold link sure: 1 - 2|A & S| / (|A| + |S|)."""
    return 1.0 - 2 * len(predicted & gold) / max(1, len(predicted) + len(gold))


def head_links(bundle: ModelBundle, pair: GoldPair) -> np.ndarray:
    """(L, H, target words) -> the source word each head links each target word to."""
    src_text, src_words = word_of_token(bundle.src_tokenizer, pair.source_words)
    tgt_text, tgt_words = word_of_token(bundle.tgt_tokenizer, pair.target_words)
    result = translate(bundle, src_text, reference=tgt_text)
    cross = result.attention.cross.numpy()  # (L, H, T, S) with T = 1 + target tokens, S = 2 + source tokens
    predicting = cross[:, :, :-1, 1:-1]  # row t predicts target token t; [SOS]/[EOS] columns dropped
    words = word_matrix(predicting, tgt_words, src_words, len(pair.target_words), len(pair.source_words))
    return words.argmax(-1)


def score_heads(bundle: ModelBundle, pairs: list[GoldPair]) -> tuple[np.ndarray, float]:
    """(L, H) AER of each head over all pairs (links pooled), and the diagonal baseline's AER."""
    cfg = bundle.config
    hits, predicted, gold_total = np.zeros((cfg.n_layers, cfg.n_heads)), 0, 0
    diag: Links = set()
    gold_all: Links = set()
    for n, pair in enumerate(pairs):
        links = head_links(bundle, pair)  # (L, H, target words)
        n_src, n_tgt = len(pair.source_words), len(pair.target_words)
        gold = np.zeros((n_src, n_tgt), dtype=bool)
        for s, t in pair.links:
            gold[s, t] = True
        hits += gold[links, np.arange(n_tgt)].sum(-1)  # (L, H): predicted links that are gold
        predicted += links.shape[-1]
        gold_total += len(pair.links)
        diag |= {(n, min(n_src - 1, t * n_src // n_tgt), t) for t in range(n_tgt)}
        gold_all |= {(n, s, t) for s, t in pair.links}
    rates = 1.0 - 2 * hits / (predicted + gold_total)
    return rates, aer(diag, gold_all)
