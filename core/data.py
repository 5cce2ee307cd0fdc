"""Sentence pairs: loading (local TSV or the Hugging Face hub), grouped splits, and length-bucketed batches."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer

from core.tokenizer import EOS_ID, PAD_ID, SOS_ID, raw_tokenizer

Pair = tuple[str, str]


class DataError(ValueError):
    """Training data that cannot be read; the message says what to do."""


def read_tsv(path: str | Path) -> list[Pair]:
    """Pairs from a UTF-8 file of `source<TAB>target` lines (extra columns ignored, blank lines skipped)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    with path.open(encoding="utf-8") as f:
        return parse_tsv(f, str(path))


def parse_tsv(lines, name: str) -> list[Pair]:
    """Pairs from `source<TAB>target` lines (read_tsv's rules); name is where they come from, for messages."""
    pairs = []
    for n, line in enumerate(lines, 1):
        line = line.rstrip("\n")
        if not line.strip():
            continue
        cols = line.split("\t")
        if len(cols) < 2 or not cols[0].strip() or not cols[1].strip():
            raise DataError(f"{name}:{n}: expected 'source<TAB>target', got {line[:60]!r}")
        pairs.append((cols[0].strip(), cols[1].strip()))
    if not pairs:
        raise DataError(f"{name} holds no sentence pairs")
    return pairs


def parse_data_spec(spec: str) -> tuple[str, int]:
    """'file.tsv*3' -> ('file.tsv', 3): a training file and how many times to repeat it."""
    path, _, times = spec.rpartition("*")
    if path and times.isdigit() and int(times) > 0:
        return path, int(times)
    return spec, 1


def load_hub_pairs(datasource: str, lang_src: str, lang_tgt: str) -> list[Pair]:
    """The tutorial's data: a Hugging Face translation dataset (needs internet on first use)."""
    try:
        from datasets import load_dataset

        raw = load_dataset(datasource, f"{lang_src}-{lang_tgt}", split="train")
        return [(item["translation"][lang_src], item["translation"][lang_tgt]) for item in raw]
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(
            f"could not load {datasource} ({lang_src}-{lang_tgt}) from the Hugging Face hub: {first}. "
            "Without internet, train on local files: --data pairs.tsv (one 'en<TAB>it' pair per line)"
        ) from None


def split_key(source: str, seed: int) -> float:
    """A stable number in [0, 1) per source sentence, so all translations of one sentence share a split."""
    digest = hashlib.sha256(f"{seed}\t{' '.join(source.lower().split())}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_pairs(
    pairs: Sequence[Pair], val_fraction: float, test_fraction: float = 0.0, seed: int = 0
) -> tuple[list[Pair], list[Pair], list[Pair]]:
    """Deterministic train/validation/test split, grouped by source sentence."""
    train, val, test = [], [], []
    for pair in pairs:
        key = split_key(pair[0], seed)
        (test if key < test_fraction else val if key < test_fraction + val_fraction else train).append(pair)
    if not train or not val:
        raise DataError(f"{len(pairs)} pairs are too few to split into training and validation sets")
    return train, val, test


@dataclass(frozen=True)
class Example:
    src: list[int]  # [SOS] + source ids + [EOS]
    tgt: list[int]  # target ids, without specials

    @property
    def size(self) -> int:
        return max(len(self.src), len(self.tgt) + 1)


def encode_pairs(
    pairs: Sequence[Pair], src_tok: Tokenizer, tgt_tok: Tokenizer, seq_len: int
) -> tuple[list[Example], list[Pair]]:
    """Tokenize pairs; returns the examples that fit seq_len and their pairs (long ones are dropped, never cut)."""
    src_tok, tgt_tok = raw_tokenizer(src_tok), raw_tokenizer(tgt_tok)
    src_ids = [e.ids for e in src_tok.encode_batch([p[0] for p in pairs], add_special_tokens=False)]
    tgt_ids = [e.ids for e in tgt_tok.encode_batch([p[1] for p in pairs], add_special_tokens=False)]
    examples, kept = [], []
    for pair, s, t in zip(pairs, src_ids, tgt_ids):
        if s and t and len(s) + 2 <= seq_len and len(t) + 1 <= seq_len:
            examples.append(Example([SOS_ID, *s, EOS_ID], list(t)))
            kept.append(pair)
    return examples, kept


def bundle_examples(bundle, pairs: Sequence[Pair]) -> tuple[list[Example], list[Pair]]:
    """encode_pairs for any model family (a core.seam.ModelBundle): the source framed with the model's own special
    tokens, pairs longer than its seq_len dropped."""
    src_ids = bundle.src_tokenizer.encode_ids([p[0] for p in pairs])
    tgt_ids = bundle.tgt_tokenizer.encode_ids([p[1] for p in pairs])
    specials, seq_len = bundle.specials, bundle.config.seq_len
    examples, kept = [], []
    for pair, s, t in zip(pairs, src_ids, tgt_ids):
        if s and t and len(s) + specials.source_specials <= seq_len and len(t) + 1 <= seq_len:
            examples.append(Example(specials.frame_source(s), list(t)))
            kept.append(pair)
    return examples, kept


def make_batches(examples: Sequence[Example], batch_size: int, max_tokens: int, seed: int) -> list[list[int]]:
    """Length-bucketed batches of example indices, shuffled by seed (e.g. seed + epoch).

    Indices are shuffled, cut into pools of about 100 batches, sorted by length inside each pool and
    batched, so each batch holds sentences of similar length; the batch order is then shuffled.
    With max_tokens, a batch grows while (its longest example) x (its size) x 2 fits the budget.
    """
    rng = random.Random(seed)
    order = list(range(len(examples)))
    rng.shuffle(order)
    pool = 100 * (max(1, max_tokens // 20) if max_tokens else batch_size)  # about 100 batches per sorted pool
    batches: list[list[int]] = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start : start + pool], key=lambda i: examples[i].size)
        batch: list[int] = []
        longest = 0
        for i in chunk:
            grown = max(longest, examples[i].size)
            full = (len(batch) + 1) * grown * 2 > max_tokens if max_tokens else len(batch) >= batch_size
            if batch and full:
                batches.append(batch)
                batch, longest = [], 0
            batch.append(i)
            longest = max(longest, examples[i].size)
        if batch:
            batches.append(batch)
    rng.shuffle(batches)
    return batches


def collate(examples: Sequence[Example], device: torch.device | str = "cpu", specials=None):
    """Pad a batch to its own longest sentence: (src (B, S), decoder input (B, T), labels (B, T)).

    specials (core.seam.Specials, default ours) give the decoder's first input, [EOS] and the padding."""
    start, eos, pad = (SOS_ID, EOS_ID, PAD_ID) if specials is None else (specials.start, specials.eos, specials.pad)
    s = max(len(e.src) for e in examples)
    t = max(len(e.tgt) for e in examples) + 1
    src = torch.full((len(examples), s), pad, dtype=torch.long)
    dec = torch.full((len(examples), t), pad, dtype=torch.long)
    lab = torch.full((len(examples), t), pad, dtype=torch.long)
    for row, e in enumerate(examples):
        src[row, : len(e.src)] = torch.tensor(e.src)
        dec[row, : len(e.tgt) + 1] = torch.tensor([start, *e.tgt])
        lab[row, : len(e.tgt) + 1] = torch.tensor([*e.tgt, eos])
    return src.to(device), dec.to(device), lab.to(device)
