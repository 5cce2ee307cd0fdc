"""The Heads page's pruning curve: every step decoded in the same batches against one evaluate() per step.

    python bench/pruning.py [--checkpoint checkpoints/default.pt] [--data checkpoints/heads_sample.en-it.tsv]
                            [--limit 200] [--step 16] [--repeats 3] [--threads 1]

The heads go least important first by ablation (computed once, not timed), `--step` at a time (the app: 16).
Three ways, taking turns within each repeat so all see the same moments of a busy machine:

- before: the code before the change, kept here as it was: for each step, evaluate()'s batches of 64 pairs in
  file order, each decoded by the old greedy loop, which runs every row until the batch's last one ends;
- per step: one evaluate() per step, as before, over today's greedy_batch (a row leaves when it ends);
- batched: core.analysis.importance.pruning_curve, every step's rows in the same batches, each with its gates.

Checks that all three write the same translation of every pair at every step, and prints the median wall-clock
and CPU seconds of each (the CPU time says more on a busy machine), ending with `speedup: <ratio>x` (before /
batched, median CPU time).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

from timing import Timer  # noqa: E402

from core import load_checkpoint  # noqa: E402
from core.analysis.importance import (  # noqa: E402
    ablation,
    importance_order,
    pruned_translations,
    pruning_counts,
    pruning_curve,
)
from core.attention import KINDS  # noqa: E402
from core.data import bundle_examples, read_tsv  # noqa: E402
from core.evaluation import evaluate, hypothesis_text, lowercases  # noqa: E402
from core.heads_off import HeadsOff  # noqa: E402
from core.metrics import score  # noqa: E402
from core.seam import model_device, pad_rows, padding_mask  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@torch.inference_mode()
def old_greedy_batch(model, sources, max_len, need_cross=False, *, head_mask=None):
    """core.decoding.greedy_batch before the change: every row decoded until all have ended."""
    specials, device = model.specials, model_device(model)
    src = pad_rows(sources, specials.pad, device)
    src_mask = padding_mask(src, specials.pad)
    memory, _ = model.encode(src, src_mask, head_mask=head_mask)
    caches = model.new_cache()
    tokens = torch.full((len(sources), 1), specials.start, dtype=torch.long, device=device)
    done = torch.zeros(len(sources), dtype=torch.bool, device=device)
    generated, cross_rows = [], []
    for step in range(max_len - 1):
        hidden, _, cross = model.decode(
            tokens, memory, src_mask, None, need_cross, caches, start=step, head_mask=head_mask
        )
        if need_cross:
            cross_rows.append(torch.stack(cross)[:, :, :, -1].mean((0, 2)))
        tokens = specials.choosable(model.project(hidden[:, -1])).argmax(-1, keepdim=True)
        generated.append(tokens[:, 0])
        done |= tokens[:, 0] == specials.eos
        if done.all():
            break
    eos = specials.eos
    out = [row[: row.index(eos)] if eos in row else row for row in torch.stack(generated, dim=1).tolist()]
    if not need_cross:
        return out
    cross = torch.stack(cross_rows, dim=1).cpu()
    return out, [cross[b, : len(ids) + 1] for b, ids in enumerate(out)]


def old_evaluate(bundle, pairs, head_mask):
    """evaluate(bundle, pairs, progress=False, head_mask=...) before the change: (chrF, BLEU, translations)."""
    model, specials = bundle.model, bundle.specials
    examples, kept = bundle_examples(bundle, pairs)
    hyps = []
    for start in range(0, len(examples), 64):
        batch = examples[start : start + 64]
        max_len = min(model.config.seq_len, max(len(e.tgt) for e in batch) * 2 + 10)
        outputs, crosses = old_greedy_batch(model, [e.src for e in batch], max_len, True, head_mask=head_mask)
        for (source, _), ids, cross in zip(kept[start : start + 64], outputs, crosses):
            hyps.append(hypothesis_text(bundle.tgt_tokenizer, ids, cross, (bundle.src_tokenizer, source), specials))
    metrics = score(hyps, [t for _, t in kept], lowercase=lowercases(bundle))
    return metrics["chrf"], metrics["bleu"], hyps


def step_masks(bundle, order, step):
    cfg = bundle.config
    return [
        (k, HeadsOff(frozenset(order[:k])).mask(cfg.n_layers, cfg.n_heads) or None)
        for k in pruning_counts(len(order), step)
    ]


def before(bundle, pairs, order, step):
    """The old pruning_curve: one old evaluate() per step. ([(k, chrF, BLEU)], [step][pair] translations)."""
    runs = [(k, *old_evaluate(bundle, pairs, mask)) for k, mask in step_masks(bundle, order, step)]
    return [(k, chrf, bleu) for k, chrf, bleu, _ in runs], [hyps for *_, hyps in runs]


def per_step(bundle, pairs, order, step):
    """One evaluate() per step over today's greedy_batch."""
    runs = [(k, evaluate(bundle, pairs, progress=False, head_mask=mask)) for k, mask in step_masks(bundle, order, step)]
    return [(k, m["chrf"], m["bleu"]) for k, (m, _, _) in runs], [hyps for _, (_, hyps, _) in runs]


def batched(bundle, pairs, order, step):
    curve = pruning_curve(bundle, pairs, order, step)
    return [(p["heads_off"], p["chrf"], p["bleu"]) for p in curve], None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=str(ROOT / "checkpoints" / "default.pt"))
    parser.add_argument("--data", default=str(ROOT / "checkpoints" / "heads_sample.en-it.tsv"))
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--step", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    bundle = load_checkpoint(args.checkpoint)
    pairs = read_tsv(args.data)[: args.limit]
    cfg = bundle.config
    print(f"{args.checkpoint}: {cfg.n_layers} layers x {cfg.n_heads} heads; {len(pairs)} pairs; step {args.step}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    deltas, _, _ = ablation(bundle, pairs)
    order = importance_order({kind: -deltas[kind] for kind in KINDS})
    ways = {"before": before, "per step": per_step, "batched": batched}
    times = {name: [] for name in ways}
    results = {}
    for _ in range(args.repeats):
        for name, way in ways.items():
            with Timer() as timer:
                results[name] = way(bundle, pairs, order, args.step)
            times[name].append(timer)
    hyps, _ = pruned_translations(bundle, pairs, [HeadsOff(frozenset(order[:k])) for k, *_ in results["batched"][0]])
    same_text = hyps == results["before"][1] == results["per step"][1]
    same_curve = results["before"][0] == results["per step"][0] == results["batched"][0]
    print(
        "heads off -> chrF / BLEU (batched):", ", ".join(f"{k}: {c:.2f} / {b:.2f}" for k, c, b in results["batched"][0])
    )
    print(f"same translations at every step: {same_text}; same curve: {same_curve}")
    for name, runs in times.items():
        wall, cpu = statistics.median(t.wall for t in runs), statistics.median(t.cpu for t in runs)
        print(f"{name:>9}: {wall:7.2f} s wall, {cpu:7.2f} s CPU (median of {len(runs)})")
    cpu = {name: statistics.median(t.cpu for t in runs) for name, runs in times.items()}
    wall = {name: statistics.median(t.wall for t in runs) for name, runs in times.items()}
    print(f"per step / batched: {cpu['per step'] / cpu['batched']:.2f}x CPU")
    print(f"wall-clock ratio (before / batched): {wall['before'] / wall['batched']:.2f}x")
    print(f"speedup: {cpu['before'] / cpu['batched']:.2f}x")


if __name__ == "__main__":
    main()
