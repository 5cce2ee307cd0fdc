"""One sentence through every checkpoint of a run: `python -m core timeline --run DIR --sentence "..."`.

Loads the run's checkpoints one at a time (one model in memory), in training order, and prints each one's
translation, the log-probability of the shared decoder input (the reference, or the last checkpoint's
translation) and head statistics: entropy (nats), confidence, diagonality of cross-attention, as the mean
over every layer and head or for one head (--layer, --head). The method is core/runs.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from core.attention import KINDS
from core.checkpoint import CheckpointError
from core.config import positive_int
from core.runs import TIMELINE_STATISTICS, Timeline, discover_runs, follow_sentence, runs_in_folder


def timeline_json(timeline: Timeline, folder: Path) -> dict:
    return {
        "run": str(folder),
        "sentence": timeline.sentence,
        "reference": timeline.reference,
        "decoder_input": list(timeline.epochs[-1].attention.target_tokens),
        "epochs": [
            {
                "checkpoint": e.checkpoint.path.name,
                "epoch": e.checkpoint.epoch,
                "step": e.checkpoint.step,
                "translation": e.translation,
                "log_probability": round(e.log_probability, 6),
                "statistics": {
                    kind: {name: np.round(grid, 6).tolist() for name, grid in e.statistics[kind].items()}
                    for kind in KINDS
                },
            }
            for e in timeline.epochs
        ],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core timeline", description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="folder of a run's tmodel_NN.pt files (ours or the tutorial's)")
    parser.add_argument("--sentence", required=True, help="the English sentence to follow")
    parser.add_argument("--reference", help="an Italian translation to feed every checkpoint's decoder")
    parser.add_argument("--stem", help="the file name stem when the folder holds several runs (e.g. tmodel_)")
    parser.add_argument("--heads", type=int, help="attention heads of tutorial checkpoints (default 8)")
    parser.add_argument("--layer", type=positive_int, help="print this layer's statistics (1-based; with --head)")
    parser.add_argument("--head", type=positive_int, help="print this head's statistics (1-based; with --layer)")
    parser.add_argument("--json", metavar="OUT", help="also write every epoch's translation and (L, H) statistics")
    parser.add_argument("--threads", type=positive_int, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if (args.layer is None) != (args.head is None):
        print("error: give --layer and --head together (or neither, for the mean over all heads)", file=sys.stderr)
        return 2
    runs = [r for r in runs_in_folder(args.run) if args.stem in (None, r.stem)]
    if not runs:
        inside = [str(r.folder) for r in discover_runs(args.run)]
        print(
            f"error: {args.run} holds no run (two or more checkpoints named like tmodel_00.pt)"
            + (f"; runs below it: {', '.join(inside[:5])}" if inside else ""),
            file=sys.stderr,
        )
        return 2
    if len(runs) > 1:
        print(
            f"error: {args.run} holds several runs; pick one with --stem ({', '.join(r.stem for r in runs)})",
            file=sys.stderr,
        )
        return 2
    run = runs[0]
    with tqdm(total=len(run.checkpoints), desc="checkpoints", file=sys.stderr, dynamic_ncols=True) as bar:
        try:
            timeline = follow_sentence(
                run, args.sentence, args.reference, args.heads, on_epoch=lambda done, total, view: bar.update()
            )
        except (CheckpointError, ValueError) as exc:
            bar.close()
            print(f"error: {exc}", file=sys.stderr)
            return 2
    for note in dict.fromkeys(n for e in timeline.epochs for n in e.notes):
        print(f"note: {note}", file=sys.stderr)
    which = f"layer {args.layer} head {args.head}" if args.layer else "mean over all layers and heads"
    print(f"decoder input: {timeline.decoder_input}; statistics: {which}")
    att = timeline.epochs[-1].attention
    if args.layer and (args.layer > att.n_layers or args.head > att.n_heads):
        print(f"error: the model has {att.n_layers} layers x {att.n_heads} heads", file=sys.stderr)
        return 2
    for e in timeline.epochs:
        print(f"{e.checkpoint.label}  log p {e.log_probability:9.2f}  {e.translation}")
        for kind in KINDS:
            values = (
                {n: e.statistics[kind][n][args.layer - 1, args.head - 1] for n in TIMELINE_STATISTICS[kind]}
                if args.layer
                else {n: e.statistics[kind][n].mean() for n in TIMELINE_STATISTICS[kind]}
            )
            print(f"  {kind:<8}" + "".join(f"  {n} {v:.3f}" for n, v in values.items()))
    if args.json:
        try:
            Path(args.json).write_text(json.dumps(timeline_json(timeline, run.folder), ensure_ascii=False), "utf-8")
        except OSError as exc:
            print(f"error: cannot write {args.json}: {exc}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
