"""How far to trust each attribution method (core/analysis/attribution.py): a leaderboard of scores computed the
same way for every method, on one model.

- AER against gold word alignments (XL-WA's format): each gold pair is fed to the decoder (teacher forcing on its
  Italian words); a method's (T, S) scores become word scores as the alignment code reads attention (a target
  word's rows averaged, a source word's columns summed, the framing columns left out; rows read where the word is
  predicted); each Italian word is linked to its highest English word (argmax); links of all pairs pooled, every
  gold link sure: AER = 1 - 2|A & G| / (|A| + |G|).
- Deletion: each sentence of the data is translated greedily; for each output token but the end of sentence,
  the source word a method ranks first (its tokens' scores summed) is deleted, and the drop of that token's
  probability is read, teacher-forced on the same decoder input. Beside the methods: the mean drop over all
  words (what a ranking by chance gives) and the largest (the best a ranking can do).
- Soft sufficiency and soft comprehensiveness (Zhao & Aletras 2023): each token's score, min-max normalised over
  the row's word tokens into s_j in [0, 1] (framing tokens 1, never perturbed), keeps each dimension of its
  embedding with probability s_j (sufficiency: the input the method says matters) or 1 - s_j
  (comprehensiveness: the input without it); with p the probability of the output token and p0 its probability
  when every word's embedding is zeroed: S = 1 - max(0, p(x) - p(x~)), S0 = S with x~ the words zeroed,
  NS = max(0, S - S0) / (1 - S0), NC = max(0, p(x) - p(x~)) / (1 - S0), each clipped to [0, 1] and averaged
  over DRAWS seeded draws, the rows and the sentences. Higher is better for both.
- Time: seconds per sentence of the method itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from core.analysis.alignment import GoldPair, Score, encode_pair, links_of, shares, word_attention
from core.analysis.attribution import METHODS, attribute
from core.analysis.relevance import row_outputs
from core.bundle import ModelBundle
from core.decoding import translate
from core.seam import causal_mask, length_mask, model_device, pad_rows

DRAWS = 4


@dataclass
class Tally:
    """Pooled counts and sums of one method."""

    hits: float = 0.0
    predicted: float = 0.0
    gold: float = 0.0
    drop: float = 0.0
    rows: int = 0
    sufficiency: float = 0.0
    comprehensiveness: float = 0.0
    soft_rows: int = 0
    seconds: float = 0.0
    sentences: int = 0

    def result(self) -> dict:
        aer = Score.of_counts(self.hits, self.predicted, self.gold).aer if self.gold else None
        return {
            "aer": aer,
            "deletion_drop": self.drop / self.rows if self.rows else None,
            "soft_sufficiency": self.sufficiency / self.soft_rows if self.soft_rows else None,
            "soft_comprehensiveness": self.comprehensiveness / self.soft_rows if self.soft_rows else None,
            "seconds_per_sentence": self.seconds / self.sentences if self.sentences else None,
        }


@dataclass
class Leaderboard:
    methods: dict[str, Tally]
    random_drop: float = 0.0
    best_drop: float = 0.0
    rows: int = 0
    gold_pairs: int = 0
    sentences: int = 0
    skipped: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "methods": {name: tally.result() for name, tally in self.methods.items()},
            "deletion_random": self.random_drop / self.rows if self.rows else None,
            "deletion_best": self.best_drop / self.rows if self.rows else None,
            "gold_pairs": self.gold_pairs,
            "sentences": self.sentences,
            "rows": self.rows,
        }


def _timed(bundle: ModelBundle, result, method: str, tally: Tally) -> Tensor:
    started = time.perf_counter()
    scores = attribute(bundle, result, method).source
    tally.seconds += time.perf_counter() - started
    tally.sentences += 1
    return scores


def fed(bundle: ModelBundle, source_words: list[str], target_words: list[str]):
    """(the pair as the model reads it, the teacher-forced Translation), or None when it is too long."""
    encoded = encode_pair(bundle, source_words, target_words)
    if encoded is None:
        return None
    return encoded, translate(bundle, " ".join(source_words), reference=" ".join(target_words))


def word_links(encoded, scores: Tensor) -> frozenset[tuple[int, int]]:
    """(source word, target word) argmax links of a method's (T, S) scores of one teacher-forced pair."""
    e = encoded
    words = word_attention(scores.numpy()[None, None], e.src_words, e.tgt_words, e.n_src, e.n_tgt, "predict", e.first)
    return links_of(shares(words[0, 0]), "argmax")


def add_gold(bundle: ModelBundle, pair: GoldPair, board: Leaderboard) -> None:
    """One gold pair's argmax links of every method, pooled into the board."""
    pass_ = fed(bundle, pair.source_words, pair.target_words)
    if pass_ is None:
        board.skipped.append(" ".join(pair.source_words)[:60])
        return
    encoded, result = pass_
    for method, tally in board.methods.items():
        links = word_links(encoded, _timed(bundle, result, method, tally))
        tally.hits += len(links & pair.links)
        tally.predicted += len(links)
        tally.gold += len(pair.links)
    board.gold_pairs += 1


@torch.inference_mode()
def _probabilities(
    bundle: ModelBundle, vectors: Tensor, target: tuple[list[int], Tensor], src_mask: Tensor | None = None, rows=None
) -> Tensor:
    """For a batch of source embeddings and one decoder input (target: decoder ids, (1, T) output tokens): (B, T)
    the probability of each row's output token, or with rows (B,) only row rows[b] of item b, (B,)."""
    model = bundle.model
    decoder_ids, outputs = target
    tgt = torch.tensor([decoder_ids], device=vectors.device).expand(len(vectors), -1)
    memory = model.encode_vectors(vectors, src_mask)
    hidden, _, _ = model.decode(tgt, memory, src_mask, causal_mask(len(decoder_ids), vectors.device))
    if rows is not None:  # one row per item: project only it (the vocabulary is most of the work)
        picked = outputs[0, rows]
        return (
            model.project(hidden[torch.arange(len(rows)), rows]).float().softmax(-1).gather(-1, picked[:, None])[:, 0]
        )
    probs = model.project(hidden).float().softmax(-1)  # (B, T, V)
    return probs.gather(-1, outputs.expand(len(vectors), -1)[..., None])[..., 0]


def _word_tokens(bundle: ModelBundle, sentence: str, source_ids: list[int]) -> list[list[int]]:
    """The encoder positions of each space-separated word of the sentence."""
    index = bundle.src_tokenizer.encode(sentence).word_index
    first = len(bundle.specials.source_prefix)
    words: list[list[int]] = [[] for _ in range(max(index, default=-1) + 1)]
    for token, word in enumerate(index):
        words[word].append(first + token)
    return [w for w in words if w]


def _soft_scores(scores: Tensor, words: slice) -> Tensor:
    """(T, S) scores -> (T, S) keep probabilities s: min-max over each row's word tokens, framing tokens 1."""
    s = torch.ones_like(scores)
    part = scores[:, words]
    low, high = part.min(-1, keepdim=True).values, part.max(-1, keepdim=True).values
    s[:, words] = torch.where(high > low, (part - low) / (high - low).clamp_min(1e-30), torch.ones_like(part))
    return s


def add_sentence(bundle: ModelBundle, sentence: str, board: Leaderboard, seed: int) -> None:
    """One data sentence: deletion and soft sufficiency / comprehensiveness of every method."""
    try:
        result = translate(bundle, sentence)
    except ValueError as exc:
        board.skipped.append(f"{sentence[:60]}: {exc}")
        return
    model, device, specials = bundle.model, model_device(bundle.model), bundle.specials
    ids, dec = result.source_ids, result.target_ids
    outputs = torch.tensor([row_outputs(result)], device=device)
    keep = torch.tensor([o != specials.eos for o in outputs[0].tolist()])
    words = _word_tokens(bundle, sentence, ids)
    if len(words) < 2 or not keep.any():
        board.skipped.append(sentence[:60])
        return
    base = _probabilities(bundle, model.source_vectors(torch.tensor([ids], device=device)), (dec, outputs))[0]
    drops = base[None] - _without_each_word(bundle, ids, words, (dec, outputs))  # (W, T)
    board.random_drop += float(drops.mean(0)[keep].sum())
    board.best_drop += float(drops.max(0).values[keep].sum())
    board.rows += int(keep.sum())
    board.sentences += 1
    vectors = model.source_vectors(torch.tensor([ids], device=device))
    span = specials.words(ids)
    empty = vectors.clone()
    empty[:, span] = 0
    p_empty = _probabilities(bundle, empty, (dec, outputs))[0]
    s0 = (1 - (base - p_empty).clamp_min(0)).clamp(0, 1)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    for method, tally in board.methods.items():
        scores = _timed(bundle, result, method, tally).float().to(device)  # (T, S)
        word_scores = torch.stack([scores[:, w].sum(-1) for w in words])  # (W, T)
        top = word_scores.argmax(0)
        tally.drop += float(drops[top, torch.arange(drops.size(1))][keep].sum())
        tally.rows += int(keep.sum())
        suff, comp = _soft(bundle, (vectors, dec, outputs), _soft_scores(scores, span), (base, s0), generator)
        tally.sufficiency += float(suff[keep].sum())
        tally.comprehensiveness += float(comp[keep].sum())
        tally.soft_rows += int(keep.sum())


@torch.inference_mode()
def _without_each_word(bundle: ModelBundle, ids: list[int], words: list[list[int]], target: tuple) -> Tensor:
    """(W, T) each row's probability of its output token with word w's tokens deleted from the source, one batch
    (the shorter variants padded and masked)."""
    device = model_device(bundle.model)
    variants = [[t for p, t in enumerate(ids) if p not in set(w)] for w in words]
    padded = pad_rows(variants, bundle.specials.pad, device)
    mask = length_mask([len(v) for v in variants], padded.size(1), device)
    return _probabilities(bundle, bundle.model.source_vectors(padded), target, mask)


@torch.inference_mode()
def _soft(bundle: ModelBundle, inputs: tuple, keep: Tensor, reference: tuple[Tensor, Tensor], generator) -> tuple:
    """(T,) soft sufficiency and soft comprehensiveness of one method's keep probabilities (T, S): the mean of
    DRAWS draws, every draw of both in one batch (row t of each draw is read in its own input)."""
    vectors, dec, outputs = inputs
    base, s0 = reference
    t = keep.size(0)
    noise = torch.rand((DRAWS, t, *vectors.shape[1:]), generator=generator).to(vectors.device)  # (R, T, S, D)
    kept = torch.stack([noise < keep[:, :, None], noise < 1 - keep[:, :, None]])  # (2, R, T, S, D)
    masked = vectors[0] * kept.to(vectors.dtype)
    rows = torch.arange(t, device=vectors.device).repeat(2 * DRAWS)
    p = _probabilities(bundle, masked.reshape(-1, *vectors.shape[1:]), (dec, outputs), rows=rows).view(2, DRAWS, t)
    drop = (base - p).clamp_min(0)
    scale = (1 - s0).clamp_min(1e-6)
    sufficiency = ((1 - drop[0] - s0).clamp_min(0) / scale).clamp(0, 1).mean(0)
    comprehensiveness = (drop[1] / scale).clamp(0, 1).mean(0)
    return sufficiency.cpu(), comprehensiveness.cpu()


def leaderboard(
    bundle: ModelBundle,
    gold: Sequence[GoldPair],
    sentences: Sequence[str],
    methods: Sequence[str] = tuple(METHODS),
    progress: Callable[[], None] | None = None,
) -> Leaderboard:
    """Every method scored on the gold pairs (AER) and the sentences (deletion, soft metrics, time)."""
    board = Leaderboard({m: Tally() for m in methods})
    for pair in gold:
        add_gold(bundle, pair, board)
        if progress:
            progress()
    for n, sentence in enumerate(sentences):
        add_sentence(bundle, sentence, board, seed=n)
        if progress:
            progress()
    return board
