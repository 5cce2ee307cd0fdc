"""Head analyses on the default model: statistics, the full ablation sweep, the gradient score, relevance.

    python bench/heads.py [--checkpoint checkpoints/default.pt] [--data checkpoints/heads_sample.en-it.tsv]
                          [--limit 200] [--naive-sentences 20] [--seed 0] [--threads 1]

Times each piece on `--limit` pairs (all 3 x L x H heads), then the faithful baseline of the sweep: one
unbatched teacher-forced pass per head per sentence (the whole model rerun, no reuse), on --naive-sentences
pairs drawn at random (--seed), so their lengths are those of the whole set (printed next to it), extrapolated
by the number of sentences; it also checks that both give the same numbers on that sample. The batched sweep
does two things the naive one does not, and the run times them apart: the per-head work (every head of a layer
switched off in one pass, starting at that layer, what comes before computed once), timed with one sentence per
pass on all the pairs; and batching sentences (16 per pass) on top of that. Prints wall-clock and CPU seconds
(the CPU time says more on a busy machine), each share, and ends with `speedup: <ratio>x` (naive sweep / batched
sweep, wall clock, same run: both shares together).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

from timing import Timer  # noqa: E402

from core import load_checkpoint, translate  # noqa: E402
from core.analysis.head_report import reference_attentions  # noqa: E402
from core.analysis.head_stats import mean_statistics  # noqa: E402
from core.analysis.importance import ablation, encoded, gradient_importance  # noqa: E402
from core.analysis.relevance import source_relevance  # noqa: E402
from core.attention import KINDS  # noqa: E402
from core.data import read_tsv  # noqa: E402
from core.model import causal_mask  # noqa: E402
from core.tokenizer import EOS_ID, SOS_ID  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def sentence_logprob(model, example, head_mask=None) -> float:
    """Summed reference log-probability of one sentence: one unbatched teacher-forced pass."""
    dec = torch.tensor([[SOS_ID, *example.tgt]])
    labels = torch.tensor([*example.tgt, EOS_ID])
    logits = model(torch.tensor([example.src]), dec, None, causal_mask(dec.size(1)), head_mask=head_mask)[0]
    return logits.log_softmax(-1)[torch.arange(len(labels)), labels].sum().item()


@torch.inference_mode()
def naive_sweep(bundle, pairs) -> tuple[dict[str, np.ndarray], int]:
    """One plain pass per sentence with all heads, then one per head per sentence: (deltas as ablation(), tokens)."""
    model, cfg = bundle.model, bundle.config
    deltas = {kind: np.zeros((cfg.n_layers, cfg.n_heads)) for kind in KINDS}
    tokens = 0
    for example in encoded(bundle, pairs):
        base = sentence_logprob(model, example)
        tokens += len(example.tgt) + 1
        for kind in KINDS:
            for layer in range(cfg.n_layers):
                for head in range(cfg.n_heads):
                    gates = torch.ones(cfg.n_layers, cfg.n_heads)
                    gates[layer, head] = 0.0
                    deltas[kind][layer, head] += sentence_logprob(model, example, {kind: gates}) - base
    return {kind: d / tokens for kind, d in deltas.items()}, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=str(ROOT / "checkpoints" / "default.pt"))
    parser.add_argument("--data", default=str(ROOT / "checkpoints" / "heads_sample.en-it.tsv"))
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--naive-sentences", type=int, default=20, help="pairs drawn at random for the naive sweep")
    parser.add_argument("--seed", type=int, default=0, help="which pairs are drawn")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    bundle = load_checkpoint(args.checkpoint)
    cfg = bundle.config
    pairs = read_tsv(args.data)[: args.limit]
    n_heads = 3 * cfg.n_layers * cfg.n_heads
    print(f"{args.checkpoint}: {cfg.n_layers} layers x {cfg.n_heads} heads, {n_heads} heads in all; {len(pairs)} pairs")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")

    with Timer() as stats_time:
        attentions = reference_attentions(bundle, pairs)
        for kind in KINDS:
            mean_statistics(attentions, kind)
    print(f"statistics (teacher-forced attention + every statistic): {stats_time}")
    with Timer() as sweep_time:
        deltas, base, tokens = ablation(bundle, pairs)
    print(f"ablation sweep, batched ({n_heads} heads x {len(pairs)} sentences, {tokens} tokens): {sweep_time}")
    print(f"statistics + ablation: {stats_time.wall + sweep_time.wall:.2f} s wall (target < 60 s)")
    with Timer() as grad_time:
        gradient_importance(bundle, pairs)
    print(f"gradient score (one backward pass per batch): {grad_time} (target < 10 s)")

    result = translate(bundle, "The cat is sleeping on the chair.")
    for method in ("rollout", "gradient"):
        walls, cpus = [], []
        for _ in range(7):
            with Timer() as one:
                source_relevance(bundle.model, result, method)
            walls.append(one.wall)
            cpus.append(one.cpu)
        print(
            f"relevance of one sentence ({method}, {len(result.target_ids)} output tokens): "
            f"{1000 * statistics.median(walls):.1f} ms wall, {1000 * statistics.median(cpus):.1f} ms CPU, "
            "median of 7 (target < 100 ms)"
        )

    subset = random.Random(args.seed).sample(pairs, min(args.naive_sentences, len(pairs)))
    with Timer() as naive_time:
        naive, naive_tokens = naive_sweep(bundle, subset)
    batched_subset, _, _ = ablation(bundle, subset)
    gap = max(float(np.abs(naive[k] - batched_subset[k]).max()) for k in KINDS)
    all_examples, sample_examples = encoded(bundle, pairs), encoded(bundle, subset)
    scale = len(all_examples) / len(sample_examples)
    naive_wall, naive_cpu = naive_time.wall * scale, naive_time.cpu * scale
    print(
        f"naive sweep (one unbatched pass per head per sentence) on {len(subset)} random pairs: {naive_time}; "
        f"same numbers as the batched sweep (max difference {gap:.1e})"
    )
    print(
        f"  their mean length {mean_tokens(sample_examples):.1f} tokens (source + target), "
        f"all {len(pairs)} pairs' {mean_tokens(all_examples):.1f}"
    )
    print(
        f"naive sweep extrapolated to {len(pairs)} sentences (x{scale:.1f}): {naive_wall:.2f} s wall, {naive_cpu:.2f} s CPU"
    )
    with Timer() as single_time:
        ablation(bundle, pairs, batch_sentences=1)
    print(f"ablation sweep, one sentence per pass (the per-head work alone), {len(pairs)} sentences: {single_time}")
    print(
        f"shares, wall (CPU): per-head work {naive_wall / single_time.wall:.1f}x ({naive_cpu / single_time.cpu:.1f}x) "
        f"(naive / one sentence per pass), batching 16 sentences per pass {single_time.wall / sweep_time.wall:.1f}x "
        f"({single_time.cpu / sweep_time.cpu:.1f}x) (one per pass / batched)"
    )
    print(f"CPU-time ratio: {naive_cpu / sweep_time.cpu:.1f}x")
    print(f"speedup: {naive_wall / sweep_time.wall:.1f}x (naive / batched: the per-head work and batching together)")


def mean_tokens(examples) -> float:
    return sum(len(e.src) + len(e.tgt) for e in examples) / len(examples)


if __name__ == "__main__":
    main()
