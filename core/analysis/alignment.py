"""Word alignment from cross-attention: methods, tokens mapped to words, and scores (AER, precision, recall).

    python -m core alignment --checkpoint checkpoints/default.pt --data xlwa.en-it.dev.gold.tsv

Everything here except `encode_pair` and `cross_attention` (which run the tokenizers and the model) is a
pure function of attention arrays. Conventions:

- **Words** are the space-separated words of a sentence (XL-WA's convention). A link (i, j), written
  `i-j` in Pharaoh text, joins source (English) word i and target (Italian) word j, both 0-based.
- **Tokens to words**: each token belongs to the word holding its first non-space character (offsets
  from the tokenizer), so the two tokens `dell` `'` of a word-level tokenizer, the pieces `ac` `##qua` of
  WordPiece and a Metaspace/ByteLevel piece whose span starts on the space before it (`▁fredda`) all land
  on their own word.
- **Rows**: the decoder input is [SOS], y0, y1, ...; cross-attention row r has input y(r-1) and predicts
  y(r). `predict` reads target token m at row m (the row that predicts it, whose input is the previous
  token); `input` reads it at row m + 1, where it is the decoder input (Shift-Att, Chen et al. 2020).
- **Word matrix**: the mean of a target word's rows, summed over each source word's tokens; the [SOS]
  and [EOS] columns are dropped and each row renormalised over the source words (for a layer's mean,
  after averaging the heads), so the weight a head parks on [EOS] does not count and a threshold
  compares shares of the words.
- **Decisions**: `argmax` links each target word to its most attended source word (one link per target
  word); `threshold` links it to every source word whose share is at least tau (none, one or several).
- **Heads**: each head of each layer, or `mean`, the mean of a layer's heads. A method is named
  `L<layer>H<head>-<rows>-<decision>` or `L<layer>mean-<rows>-<decision>`, layers and heads 1-based.
- **Scores**: gold files like XL-WA have no sure/possible distinction, so sure = possible = gold:
  AER = 1 - 2|A & G| / (|A| + |G|) (that is 1 - F1), precision |A & G| / |A|, recall |A & G| / |G|; over
  a corpus the links of all pairs are pooled. The diagonal baseline links target word j to source word
  floor(j * n_src / n_tgt).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from core.attention import Attention
from core.bundle import ModelBundle
from core.seam import causal_mask, pad_rows, padding_mask, token_word_index  # noqa: F401 (API)
from core.tokenizer import as_tokenizer

Links = frozenset[tuple[int, int]]  # (source word, target word)
ROWS = ("predict", "input")
DECISIONS = ("argmax", "threshold")
# The threshold tune_thresholds picks on XL-WA's silver train file for checkpoints/default.pt's best method
# (L3mean-predict-threshold; docs/analyses.md, "Which heads align words?"); the gold dev file it is scored on played no part.
DEFAULT_THRESHOLD = 0.25
THRESHOLD_GRID = tuple(round(0.05 * k, 2) for k in range(1, 20))  # 0.05 .. 0.95, for tune_thresholds
_METHOD_NAME = re.compile(r"L(\d+)(?:H(\d+)|mean)-(predict|input)-(argmax|threshold)")


@dataclass(frozen=True)
class GoldPair:
    source_words: list[str]
    target_words: list[str]
    links: Links


@dataclass(frozen=True)
class Method:
    """How links are read from cross-attention: which head (None: the layer's mean), which rows, which decision."""

    layer: int  # 1-based
    head: int | None  # 1-based; None is the mean of the layer's heads
    rows: str = "input"
    decision: str = "argmax"

    @property
    def name(self) -> str:
        return f"L{self.layer}{'mean' if self.head is None else f'H{self.head}'}-{self.rows}-{self.decision}"

    def index(self, n_heads: int) -> tuple[int, int, int, int]:
        """(decision, rows, layer, head) into a Tally's arrays; the head mean sits after the heads."""
        head = n_heads if self.head is None else self.head - 1
        return DECISIONS.index(self.decision), ROWS.index(self.rows), self.layer - 1, head


def parse_method(name: str, n_layers: int, n_heads: int) -> Method:
    """'L3H5-input-argmax' or 'L2mean-predict-threshold' -> Method; ValueError naming the problem."""
    match = _METHOD_NAME.fullmatch(name.strip())
    if not match:
        raise ValueError(
            f"{name!r} is not a method: write L<layer>H<head>-<rows>-<decision> or L<layer>mean-<rows>-<decision>, "
            "rows predict or input, decision argmax or threshold, e.g. L3H5-input-argmax"
        )
    layer, head, rows, decision = match.groups()
    method = Method(int(layer), None if head is None else int(head), rows, decision)
    if not 1 <= method.layer <= n_layers or not (method.head is None or 1 <= method.head <= n_heads):
        raise ValueError(f"{name!r}: this model has layers 1-{n_layers} and heads 1-{n_heads}")
    return method


def all_methods(n_layers: int, n_heads: int) -> list[Method]:
    """Every head and every layer mean, with both row readings and both decisions."""
    return [
        Method(layer, head, rows, decision)
        for decision in DECISIONS
        for rows in ROWS
        for layer in range(1, n_layers + 1)
        for head in [*range(1, n_heads + 1), None]
    ]


# --- Pharaoh text and gold files -------------------------------------------------------------------------


def parse_links(text: str) -> Links:
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


def check_links(links: Links, n_src: int, n_tgt: int) -> None:
    """ValueError unless every link joins one of n_src source words and one of n_tgt target words."""
    outside = sorted((i, j) for i, j in links if i >= n_src or j >= n_tgt)
    if outside:
        i, j = outside[0]
        raise ValueError(
            f"link {i}-{j} is outside the sentences ({n_src} English and {n_tgt} Italian words, counted from 0)"
        )


def _read_lines(path: str | Path) -> list[str]:
    try:
        return Path(path).read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None


def read_gold(path: str | Path) -> list[GoldPair]:
    """XL-WA lines: source words, target words, and 'i-j' links, tab-separated; ValueError naming the line."""
    pairs = []
    for n, line in enumerate(_read_lines(path), 1):
        cols = line.split("\t")
        if len(cols) != 3:
            raise ValueError(f"{path}:{n}: expected 3 tab-separated columns (English, Italian, i-j links)")
        source, target = cols[0].split(), cols[1].split()
        if not source or not target:
            raise ValueError(f"{path}:{n}: a sentence is empty")
        try:
            links = parse_links(cols[2])
            check_links(links, len(source), len(target))
        except ValueError as exc:
            raise ValueError(f"{path}:{n}: {exc}") from None
        pairs.append(GoldPair(source, target, links))
    if not pairs:
        raise ValueError(f"{path}: no sentence pairs")
    return pairs


def read_pairs(path: str | Path) -> list[tuple[list[str], list[str]]]:
    """Plain pairs to align: 'english words<TAB>italian words' (a third column, such as gold links, is ignored)."""
    pairs = []
    for n, line in enumerate(_read_lines(path), 1):
        cols = line.split("\t")
        if len(cols) not in (2, 3):
            raise ValueError(f"{path}:{n}: expected 2 tab-separated columns (English, Italian), found {len(cols)}")
        source, target = cols[0].split(), cols[1].split()
        if not source or not target:
            raise ValueError(f"{path}:{n}: a sentence is empty")
        pairs.append((source, target))
    if not pairs:
        raise ValueError(f"{path}: no sentence pairs")
    return pairs


# --- Tokens to words ---------------------------------------------------------------------------------------


def word_of_token(tokenizer, words: list[str]) -> tuple[str, list[int]]:
    """The sentence text (words joined by single spaces) and, for each of its tokens, the index of its word."""
    text = " ".join(words)
    return text, as_tokenizer(tokenizer).encode(text).word_index


# --- Word matrices and links (pure) -------------------------------------------------------------------------


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


def word_attention(
    cross: np.ndarray, src_words: list[int], tgt_words: list[int], n_src: int, n_tgt: int, rows: str, first: int = 1
) -> np.ndarray:
    """(L, H, T, S) teacher-forced cross-attention -> (L, H, target words, source words) weight on each word.

    cross has T = 1 + target tokens rows and S = source tokens + framing columns: `first` framing tokens before
    the words ([SOS] in ours, none in Marian's) and one end of sentence after them; src_words / tgt_words give
    each token's word. The framing columns are dropped, so rows sum to the weight on words (`shares`
    renormalises them); a target word without tokens gets a zero row."""
    if rows not in ROWS:
        raise ValueError(f"unknown rows {rows!r}: use one of {', '.join(ROWS)}")
    cross = np.asarray(cross, dtype=np.float64)
    n_rows = len(tgt_words)
    if cross.shape[-2:] != (n_rows + 1, len(src_words) + first + 1):
        raise ValueError(
            f"cross-attention {cross.shape} does not fit {len(tgt_words)} target and {len(src_words)} source tokens"
        )
    words = slice(first, first + len(src_words))
    read = cross[..., :-1, words] if rows == "predict" else cross[..., 1:, words]  # (L, H, target tokens, source)
    return word_matrix(read, tgt_words, src_words, n_tgt, n_src)


def shares(words: np.ndarray) -> np.ndarray:
    """(..., target words, source words) weights -> each row's share on each source word (rows sum to 1, or 0)."""
    mass = words.sum(-1, keepdims=True)
    return np.divide(words, mass, out=np.zeros_like(words), where=mass > 0)


def with_layer_means(words: np.ndarray) -> np.ndarray:
    """(L, H, Tw, Sw) word_attention -> (L, H + 1, Tw, Sw) shares of every head, then of the mean of the layer's
    heads (the mean of the weights, as the app's head average shows, renormalised)."""
    return shares(np.concatenate([words, words.mean(1, keepdims=True)], axis=1))


def link_matrix(matrix: np.ndarray, decision: str, threshold: float | np.ndarray = 0.5) -> np.ndarray:
    """(..., target words, source words) shares -> boolean links of the same shape.

    argmax: the most attended source word of each target word (none for a zero row); threshold: every
    source word with share >= threshold (a scalar, or an array broadcast over the leading axes)."""
    if decision == "argmax":
        best = np.zeros(matrix.shape, dtype=bool)
        np.put_along_axis(best, matrix.argmax(-1)[..., None], True, axis=-1)
        return best & (matrix.sum(-1, keepdims=True) > 0)
    if decision == "threshold":
        tau = np.asarray(threshold, dtype=np.float64)
        return matrix >= tau.reshape(tau.shape + (1, 1))
    raise ValueError(f"unknown decision {decision!r}: use one of {', '.join(DECISIONS)}")


def links_of(matrix: np.ndarray, decision: str, threshold: float = 0.5) -> Links:
    """(target words, source words) shares of one method -> links {(source word, target word)}."""
    target, source = np.nonzero(link_matrix(matrix, decision, threshold))
    return frozenset(zip(source.tolist(), target.tolist()))


def method_matrix(words: np.ndarray, method: Method) -> np.ndarray:
    """(L, H, Tw, Sw) word_attention of the method's row reading -> (Tw, Sw) shares of its head or layer mean."""
    layer = words[method.layer - 1]
    return shares(layer.mean(0) if method.head is None else layer[method.head - 1])


def diagonal_links(n_src: int, n_tgt: int) -> Links:
    """The baseline: target word j linked to source word floor(j * n_src / n_tgt)."""
    return frozenset((min(n_src - 1, j * n_src // n_tgt), j) for j in range(n_tgt))


def gold_matrix(links: Links, n_src: int, n_tgt: int) -> np.ndarray:
    """Links -> (target words, source words) booleans, the layout of word matrices."""
    gold = np.zeros((n_tgt, n_src), dtype=bool)
    for i, j in links:
        gold[j, i] = True
    return gold


@dataclass(frozen=True)
class Score:
    aer: float
    precision: float
    recall: float

    @classmethod
    def of_counts(cls, hits: float, predicted: float, gold: float) -> Score:
        """From |A & G|, |A| and |G| (sure = possible = gold); an empty A has precision 0 here."""
        return cls(1.0 - 2.0 * hits / max(1.0, predicted + gold), hits / max(1.0, predicted), hits / max(1.0, gold))

    def as_dict(self) -> dict[str, float]:
        return {"aer": self.aer, "precision": self.precision, "recall": self.recall}


def score_links(predicted: Links, gold: Links) -> Score:
    return Score.of_counts(len(set(predicted) & set(gold)), len(predicted), len(gold))


def aer(predicted: Links, gold: Links) -> float:
    """Alignment error rate with every gold link sure: 1 - 2|A & G| / (|A| + |G|)."""
    return score_links(predicted, gold).aer


class Tally:
    """Pooled link counts of every method over a corpus, as (decision, rows, layer, head or mean) arrays."""

    def __init__(self, n_layers: int, n_heads: int):
        self.n_layers, self.n_heads = n_layers, n_heads
        shape = (len(DECISIONS), len(ROWS), n_layers, n_heads + 1)
        self.hits, self.predicted = np.zeros(shape), np.zeros(shape)
        self.gold = 0
        self.diagonal_hits = self.diagonal_predicted = 0
        self.pairs = 0

    def add(self, readings: np.ndarray, gold: np.ndarray, thresholds: np.ndarray) -> None:
        """readings (rows, L, H + 1, Tw, Sw) (with_layer_means of each row reading), gold (Tw, Sw) booleans,
        thresholds (rows, L, H + 1) for the threshold decision."""
        for d, decision in enumerate(DECISIONS):
            links = link_matrix(readings, decision, thresholds)  # (rows, L, H + 1, Tw, Sw)
            self.hits[d] += (links & gold).sum((-1, -2))
            self.predicted[d] += links.sum((-1, -2))
        n_tgt, n_src = gold.shape
        diagonal = gold_matrix(diagonal_links(n_src, n_tgt), n_src, n_tgt)
        self.diagonal_hits += int((diagonal & gold).sum())
        self.diagonal_predicted += n_tgt
        self.gold += int(gold.sum())
        self.pairs += 1

    def score(self, method: Method) -> Score:
        at = method.index(self.n_heads)
        return Score.of_counts(self.hits[at], self.predicted[at], self.gold)

    def scores(self, methods: Iterable[Method]) -> dict[str, Score]:
        return {m.name: self.score(m) for m in methods}

    def baseline(self) -> Score:
        return Score.of_counts(self.diagonal_hits, self.diagonal_predicted, self.gold)

    def head_aer(self, rows: str, decision: str) -> np.ndarray:
        """(L, H) AER of each head with one row reading and decision."""
        d, r = DECISIONS.index(decision), ROWS.index(rows)
        return 1.0 - 2.0 * self.hits[d, r, :, :-1] / np.maximum(1.0, self.predicted[d, r, :, :-1] + self.gold)


def tune_thresholds(items: Iterable[tuple[np.ndarray, np.ndarray]], grid=THRESHOLD_GRID) -> np.ndarray:
    """(rows, L, H + 1) threshold of lowest pooled AER for each method, from (readings, gold) pairs as Tally.add
    takes them. Choose it on data you do not score on."""
    grid = np.asarray(grid, dtype=np.float64)
    hits = predicted = None
    gold = 0
    for readings, gold_pair in items:
        links = readings[None] >= grid[:, None, None, None, None, None]  # (G, rows, L, H + 1, Tw, Sw)
        pair_hits, pair_predicted = (links & gold_pair).sum((-1, -2)), links.sum((-1, -2))
        hits = pair_hits if hits is None else hits + pair_hits
        predicted = pair_predicted if predicted is None else predicted + pair_predicted
        gold += int(gold_pair.sum())
    if hits is None:
        raise ValueError("no sentence pairs to tune the thresholds on")
    rates = 1.0 - 2.0 * hits / np.maximum(1.0, predicted + gold)  # (G, rows, L, H + 1)
    return grid[rates.argmin(0)]


@dataclass(frozen=True)
class SentenceAlignment:
    """The links one method reads from one sentence's cross-attention, on the words of both sides."""

    source_words: list[str]  # the sentence's space-separated words
    target_words: list[str]  # the reference's space-separated words, or the generated tokens
    matrix: np.ndarray  # (target words, source words) shares the method read
    links: Links


def align_sentence(
    attention: Attention,
    src_tokenizer,
    tgt_tokenizer,
    source: str,
    reference: str | None,
    method: Method,
    threshold: float = 0.5,
) -> SentenceAlignment:
    """Links of one translated sentence (`translate(bundle, source, reference=reference)`'s attention).

    With a reference, target words are its space-separated words; without, each generated token is
    one target word (generated text has no character offsets to map tokens back to). The tokenizers
    only give each token's characters; the model is not run."""
    src_words = as_tokenizer(src_tokenizer).encode(source).word_index
    n_tgt_tokens = len(attention.target_tokens) - 1
    if reference is None:
        target_words, tgt_words = list(attention.target_tokens[1:]), list(range(n_tgt_tokens))
    else:
        target_words = reference.split()
        tgt_words = as_tokenizer(tgt_tokenizer).encode(reference).word_index
    first = attention.source_frame[0]
    if len(src_words) + first + 1 != len(attention.source_tokens) or len(tgt_words) != n_tgt_tokens:
        raise ValueError("the texts do not tokenize to the tokens this attention was computed on")
    source_words = source.split()
    cross = attention.cross.float().numpy()
    words = word_attention(cross, src_words, tgt_words, len(source_words), len(target_words), method.rows, first)
    matrix = method_matrix(words, method)
    return SentenceAlignment(source_words, target_words, matrix, links_of(matrix, method.decision, threshold))


# --- Running the model --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EncodedPair:
    """One sentence pair as the model reads it, with each token's word."""

    src_ids: list[int]  # source tokens, without [SOS]/[EOS]
    tgt_ids: list[int]  # target tokens, without [SOS]
    src_words: list[int]  # word index of each source token
    tgt_words: list[int]
    n_src: int
    n_tgt: int
    first: int = 1  # framing tokens before the source words (the model's Specials.source_prefix)


def encode_pair(bundle: ModelBundle, source_words: list[str], target_words: list[str]) -> EncodedPair | None:
    """Tokenize a pair of word lists; None when it does not fit the model's seq_len."""
    src = bundle.src_tokenizer.encode(" ".join(source_words))
    tgt = bundle.tgt_tokenizer.encode(" ".join(target_words))
    seq_len, specials = bundle.config.seq_len, bundle.specials
    if not src.ids or not tgt.ids or len(src.ids) + specials.source_specials > seq_len or len(tgt.ids) + 1 > seq_len:
        return None
    first = len(specials.source_prefix)
    return EncodedPair(src.ids, tgt.ids, src.word_index, tgt.word_index, len(source_words), len(target_words), first)


@torch.inference_mode()
def cross_attention(bundle: ModelBundle, pairs: list[EncodedPair], batch_size: int = 32) -> Iterator[np.ndarray]:
    """Teacher-forced cross-attention of each pair, in order: (L, H, 1 + target tokens, 2 + source tokens).

    Pairs run in padded batches; padded keys get zero weight, so each map equals a pass of its pair alone."""
    model, specials = bundle.model, bundle.specials
    device = next(model.parameters()).device
    for first in range(0, len(pairs), batch_size):
        batch = pairs[first : first + batch_size]
        sources = [specials.frame_source(p.src_ids) for p in batch]
        targets = [[specials.start, *p.tgt_ids] for p in batch]
        src, tgt = pad_rows(sources, specials.pad, device), pad_rows(targets, specials.pad, device)
        src_mask = padding_mask(src, specials.pad)  # (B, 1, 1, S)
        tgt_mask = causal_mask(tgt.size(1), device)  # padding comes last: a real row never sees it
        memory, _ = model.encode(src, src_mask)
        _, _, cross = model.decode(tgt, memory, src_mask, tgt_mask, need_weights=True)
        maps = torch.stack(cross).float().cpu().numpy()  # (L, B, H, T, S)
        for row, (s, t) in enumerate(zip(sources, targets)):
            yield maps[:, row, :, : len(t), : len(s)]


def pair_readings(cross: np.ndarray, pair: EncodedPair) -> np.ndarray:
    """(L, H, T, S) cross-attention of one pair -> (rows, L, H + 1, target words, source words), as Tally takes."""
    return np.stack(
        [
            with_layer_means(
                word_attention(cross, pair.src_words, pair.tgt_words, pair.n_src, pair.n_tgt, rows, pair.first)
            )
            for rows in ROWS
        ]
    )


# --- What a model card records -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedAlignment:
    """The alignment method a model card names (card key "alignment"), with the AER it was measured at."""

    method: Method
    aer: float | None
    threshold: float | None  # for a threshold method
    data: str  # where the AER was measured


def recorded_alignment(bundle: ModelBundle) -> RecordedAlignment | None:
    """The card's {"alignment": {"method": "L3H5-input-argmax", "aer": 0.5, "data": "...", "threshold": t}},
    or None when the card has none or it does not fit this model."""
    entry = (bundle.metadata.get("model_card") or {}).get("alignment")
    if not isinstance(entry, dict) or not isinstance(entry.get("method"), str):
        return None
    try:
        method = parse_method(entry["method"], bundle.config.n_layers, bundle.config.n_heads)
        aer_value = None if entry.get("aer") is None else float(entry["aer"])
        threshold = None if entry.get("threshold") is None else float(entry["threshold"])
    except (TypeError, ValueError):
        return None
    return RecordedAlignment(method, aer_value, threshold, str(entry.get("data", "")))


@dataclass(frozen=True)
class OpeningHead:
    """The cross-attention head a view of one translation opens on, and one line saying what to look at."""

    layer: int  # 1-based
    head: int  # 1-based
    hint: str


def opening_head(bundle: ModelBundle, attention: Attention) -> OpeningHead:
    """The model card's alignment head when it names one; else the cross-attention head that puts the most weight
    on one source word per row of this translation (mean over rows of the largest weight on a word; the framing
    tokens do not count, so a head parked on the end-of-sentence token is not chosen)."""
    return opening_head_of(recorded_alignment(bundle), attention)


def opening_head_of(recorded: RecordedAlignment | None, attention: Attention) -> OpeningHead:
    """opening_head from the model's recorded alignment (recorded_alignment), for a model no longer held."""
    if recorded is not None and recorded.method.head is not None:
        layer, head = recorded.method.layer, recorded.method.head
        measured = f" (AER {recorded.aer:.2f} on {recorded.data})" if recorded.aer is not None and recorded.data else ""
        return OpeningHead(
            layer,
            head,
            f"Layer {layer}, head {head} is this model's alignment head{measured}: in each row, the Italian token "
            "being written looks at the English word it translates.",
        )
    peak = attention.cross[..., attention.source_words].amax(dim=-1).mean(dim=-1)  # (L, H)
    best = int(peak.argmax())
    layer, head = best // attention.n_heads + 1, best % attention.n_heads + 1
    return OpeningHead(
        layer,
        head,
        f"Layer {layer}, head {head} is the head that looks most sharply at single English words in this "
        f"translation (on average {float(peak.flatten()[best]):.0%} of a row's weight on one word): rows are the "
        "Italian tokens, columns the English ones.",
    )
