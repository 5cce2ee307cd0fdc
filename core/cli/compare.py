"""Which heads differ between two models? `python -m core compare --a PATH --b PATH --data pairs.tsv`.

Both models are fed the same decoder input (model A's translation, or with --use-reference each pair's
Italian side) and every head's maps are compared: the mean over rows of the Jensen-Shannon divergence in
bits (0 = the same map, 1 = no key in common), averaged over the sentences. The method is
core/comparison.py and core/analysis/divergence.py.
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
from core.checkpoint import CheckpointError, load_checkpoint
from core.comparison import mean_divergence, same_tokenizers, shape_mismatch
from core.config import positive_int
from core.data import DataError, read_tsv


def format_grid(grid: np.ndarray) -> list[str]:
    """A layers x heads table, one line per layer."""
    header = "         " + " ".join(f"  h{h:<3}" for h in range(1, grid.shape[1] + 1))
    return [header] + [f"  layer {layer}" + " ".join(f" {v:.3f}" for v in row) for layer, row in enumerate(grid, 1)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core compare", description=__doc__.splitlines()[0])
    parser.add_argument("--a", required=True, help="model A: our checkpoint, or a tutorial tmodel_XX.pt")
    parser.add_argument(
        "--b", required=True, help="model B (same layers x heads as A; other tokenizers: compared word by word)"
    )
    parser.add_argument("--data", required=True, help="TSV of en<TAB>it pairs: the English side is compared")
    parser.add_argument(
        "--use-reference", action="store_true", help="feed both decoders the Italian side, not A's translation"
    )
    parser.add_argument("--heads", type=int, help="attention heads of tutorial checkpoints (default 8)")
    parser.add_argument("--limit", type=int, default=0, help="compare only the first N sentences")
    parser.add_argument("--json", metavar="OUT", help='also write {"sentences": n, "kinds": {kind: [[..]]}} to OUT')
    parser.add_argument("--threads", type=positive_int, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        a = load_checkpoint(args.a, heads=args.heads)
        b = load_checkpoint(args.b, heads=args.heads)
        pairs = read_tsv(args.data)
    except (CheckpointError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if problem := shape_mismatch(a, b):
        print(f"error: {problem}", file=sys.stderr)
        return 2
    pairs = pairs[: args.limit] if args.limit else pairs
    with tqdm(total=len(pairs), desc="sentences", file=sys.stderr, dynamic_ncols=True) as bar:
        try:
            count, grids, skipped = mean_divergence(a, b, pairs, args.use_reference, bar.update)
        except ValueError as exc:
            bar.close()
            print(f"error: {exc}", file=sys.stderr)
            return 1
    for source, reason in skipped:
        print(f"skipped: {source[:60]!r}: {reason}", file=sys.stderr)
    fed = "the reference" if args.use_reference else "A's translation"
    level = "token" if same_tokenizers(a, b) else "word"
    print(
        f"{count} sentences; decoder input: {fed}; compared {level} by {level}; "
        "mean Jensen-Shannon divergence (bits, 0 to 1) of A and B:"
    )
    for kind in KINDS:
        print(f"{kind}:")
        print("\n".join(format_grid(grids[kind])))
    if args.json:
        payload = {"sentences": count, "level": level, "kinds": {k: np.round(grids[k], 6).tolist() for k in KINDS}}
        try:
            Path(args.json).write_text(json.dumps(payload), encoding="utf-8")
        except OSError as exc:
            print(f"error: cannot write {args.json}: {exc}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
