"""Training throughput: our length-bucketed batches versus the tutorial's fixed padding, in one run.

    python bench/train_throughput.py                # tutorial size (d512, 6 layers, 8 heads, d_ff 2048)
    python bench/train_throughput.py --small --seconds 20

Both sides run the same step on the same core.model.Transformer: forward, label-smoothed cross
entropy ignoring [PAD], backward, Adam. Sentence lengths come from ../shared/data/*.en-it.tsv
(counted as the tokenizer's whitespace/punctuation pre-tokenizer splits them), or from a synthetic
distribution when that folder is absent; token ids are random. "Ours" batches with
core.data.make_batches (a padded-token budget, or a batch size) and pads each batch to its own
longest sentence; "tutorial" takes 8 sentences at a time, each padded to seq_len (350). The figure
of merit is real (non-pad) source + target tokens trained per second.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.config import ModelConfig  # noqa: E402
from core.data import Example, collate, make_batches  # noqa: E402
from core.model import Transformer, causal_mask, padding_mask  # noqa: E402
from core.tokenizer import EOS_ID, PAD_ID, SOS_ID  # noqa: E402

DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"
PRETOKENS = re.compile(r"\w+|[^\w\s]+")  # what the tokenizers' Whitespace pre-tokenizer splits a sentence into


def length_mix(data_dir: Path, sample: int, seq_len: int, seed: int) -> tuple[list[tuple[int, int]], str]:
    """(source tokens, target tokens) per sentence pair, from the shared data or a synthetic mix."""
    rng = random.Random(seed)
    files = sorted(data_dir.glob("*.en-it.tsv")) if data_dir.is_dir() else []
    lengths = []
    for path in files:
        with path.open(encoding="utf-8") as f:
            for line in f:
                cols = line.rstrip("\n").split("\t")
                if len(cols) >= 2 and cols[0].strip() and cols[1].strip():
                    lengths.append((len(PRETOKENS.findall(cols[0])), len(PRETOKENS.findall(cols[1]))))
    if lengths:
        source = f"{len(lengths):,} pairs of {', '.join(p.name for p in files)}"
    else:  # roughly the shape of book sentences: many short, a long tail
        source = "synthetic log-normal lengths"
        for _ in range(sample):
            n = max(1, round(rng.lognormvariate(2.7, 0.7)))
            lengths.append((n, max(1, round(n * rng.uniform(0.8, 1.25)))))
    lengths = [(s, t) for s, t in lengths if s + 2 <= seq_len and t + 1 <= seq_len]  # training drops longer ones
    rng.shuffle(lengths)
    return lengths[:sample], source


def make_examples(lengths, src_vocab: int, tgt_vocab: int, seed: int) -> list[Example]:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for s, t in lengths:
        src = torch.randint(4, src_vocab, (s,), generator=gen).tolist()
        tgt = torch.randint(4, tgt_vocab, (t,), generator=gen).tolist()
        out.append(Example([SOS_ID, *src, EOS_ID], tgt))
    return out


def tutorial_batch(examples: list[Example], seq_len: int):
    """The tutorial's tensors: every sentence padded to seq_len on both sides."""
    n = len(examples)
    src = torch.full((n, seq_len), PAD_ID, dtype=torch.long)
    dec = torch.full((n, seq_len), PAD_ID, dtype=torch.long)
    lab = torch.full((n, seq_len), PAD_ID, dtype=torch.long)
    for row, e in enumerate(examples):
        src[row, : len(e.src)] = torch.tensor(e.src)
        dec[row, : len(e.tgt) + 1] = torch.tensor([SOS_ID, *e.tgt])
        lab[row, : len(e.tgt) + 1] = torch.tensor([*e.tgt, EOS_ID])
    return src, dec, lab


def measure(
    name: str, config: ModelConfig, batches, seconds: float, warmup: int, seed: int, real_per_step: float | None = None
) -> dict:
    """Train on batches (cycled) for about `seconds` after `warmup` untimed steps; tokens per second.

    real_per_step: for fixed-shape batches, whose step time does not depend on the sentences in them,
    count the mix's expected real tokens per step instead of those of the few batches timed.
    """
    torch.manual_seed(seed)
    model = Transformer(config).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, eps=1e-9)

    def step(src, dec, lab) -> None:
        src_mask = padding_mask(src, PAD_ID)
        tgt_mask = padding_mask(dec, PAD_ID) & causal_mask(dec.size(1))
        logits = model(src, dec, src_mask, tgt_mask)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), lab.view(-1), ignore_index=PAD_ID, label_smoothing=0.1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for i in range(warmup):
        step(*batches(i))
    real = padded = steps = 0
    started = time.perf_counter()
    while steps == 0 or time.perf_counter() - started < seconds:
        src, dec, lab = batches(warmup + steps)
        step(src, dec, lab)
        steps += 1
        real += int((src != PAD_ID).sum() + (lab != PAD_ID).sum())
        padded += src.numel() + lab.numel()
    elapsed = time.perf_counter() - started
    measured = real / elapsed
    if real_per_step is not None:
        real = real_per_step * steps
    result = {
        "steps": steps,
        "seconds": elapsed,
        "real_tok_s": real / elapsed,
        "padded_tok_s": padded / elapsed,
        "pad_fraction": 1 - real / padded,
    }
    note = f"; {measured:,.1f} in the batches timed" if real_per_step is not None else ""
    print(
        f"{name:>9}: {steps} steps in {elapsed:.1f} s ({elapsed / steps:.2f} s/step), "
        f"{result['real_tok_s']:,.1f} real source+target tokens/s{note} "
        f"({result['padded_tok_s']:,.0f} with padding; {result['pad_fraction']:.0%} padding)",
        flush=True,
    )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d-model", type=int, default=512)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--d-ff", type=int, default=2048)
    parser.add_argument("--src-vocab", type=int, default=15700)
    parser.add_argument("--tgt-vocab", type=int, default=22400)
    parser.add_argument("--small", action="store_true", help="d_model 128, 2 layers, 4 heads, d_ff 512, vocab 8000")
    parser.add_argument("--seq-len", type=int, default=350, help="the tutorial's padded length")
    parser.add_argument("--tutorial-batch", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=4000, help="our padded-token budget per batch")
    parser.add_argument("--batch-size", type=int, default=0, help=">0: our batches by sentence count instead")
    parser.add_argument("--seconds", type=float, default=60, help="timed wall budget per side (at least one step)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per side first")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sample", type=int, default=20000, help="sentence pairs in the length mix")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.small:
        args.d_model, args.layers, args.heads, args.d_ff, args.src_vocab, args.tgt_vocab = 128, 2, 4, 512, 8000, 8000
    torch.set_num_threads(args.threads)

    config = ModelConfig(
        args.src_vocab, args.tgt_vocab, args.d_model, args.layers, args.heads, args.d_ff, 0.1, args.seq_len
    )
    lengths, source = length_mix(args.data_dir, args.sample, args.seq_len, args.seed)
    examples = make_examples(lengths, args.src_vocab, args.tgt_vocab, args.seed)
    mean_src = sum(len(e.src) for e in examples) / len(examples)
    mean_tgt = sum(len(e.tgt) + 1 for e in examples) / len(examples)
    print(
        f"model: d_model {args.d_model}, {args.layers} layers, {args.heads} heads, d_ff {args.d_ff}, "
        f"vocab {args.src_vocab}/{args.tgt_vocab}; {args.threads} thread(s)"
    )
    print(
        f"length mix: {len(examples):,} pairs from {source}; mean {mean_src:.1f} source / {mean_tgt:.1f} target "
        "tokens with specials"
    )

    ours_batches = make_batches(examples, args.batch_size or 8, 0 if args.batch_size else args.max_tokens, args.seed)
    rng = random.Random(args.seed)
    order = list(range(len(examples)))
    rng.shuffle(order)
    k = args.tutorial_batch
    tutorial_batches = [order[i : i + k] for i in range(0, len(order) - k + 1, k)]
    how = f"batch size {args.batch_size}" if args.batch_size else f"max {args.max_tokens} padded tokens"
    print(f"ours: bucketed, {how}, padded per batch; tutorial: batch {k}, padded to {args.seq_len}")

    ours = measure(
        "ours",
        config,
        lambda i: collate([examples[j] for j in ours_batches[i % len(ours_batches)]]),
        args.seconds,
        args.warmup,
        args.seed,
    )
    tutorial = measure(
        "tutorial",
        config,
        lambda i: tutorial_batch([examples[j] for j in tutorial_batches[i % len(tutorial_batches)]], args.seq_len),
        args.seconds,
        args.warmup,
        args.seed,
        real_per_step=k * (mean_src + mean_tgt),
    )
    print(f"speedup: {ours['real_tok_s'] / tutorial['real_tok_s']:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
