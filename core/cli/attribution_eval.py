"""Which attribution method to trust for a model: `python -m core attribution-eval --checkpoint P --gold GOLD.tsv
--data PAIRS.tsv [--limit N] [--methods M,M] [--json OUT]`.

For each method (core/analysis/attribution.py): AER of its argmax links against the gold alignments (XL-WA's
format), the deletion test (mean drop of an output token's probability when the source word the method ranks
first is deleted; a random ranking and the best possible beside it), soft sufficiency and soft comprehensiveness
(Zhao & Aletras 2023), and the seconds per sentence; definitions in core/analysis/attribution_eval.py. --limit N
uses the first N gold pairs and the first N data sentences.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from core.analysis.alignment import read_gold
from core.analysis.attribution import METHODS
from core.analysis.attribution_eval import leaderboard
from core.checkpoint import CheckpointError, load_checkpoint
from core.config import positive_int
from core.data import DataError, read_tsv


def _methods(text: str) -> list[str]:
    names = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in names if m not in METHODS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown method {unknown[0] if unknown else text!r}: use {', '.join(METHODS)}"
        )
    return names


def _cell(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core attribution-eval", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="a checkpoint, a Hugging Face folder or hf:ORG/NAME")
    parser.add_argument("--gold", required=True, help="gold alignments: English words, Italian words, i-j links")
    parser.add_argument("--data", required=True, help="sentence pairs (en<TAB>it): the English side is translated")
    parser.add_argument("--limit", type=positive_int, default=100, help="gold pairs and sentences used (default 100)")
    parser.add_argument("--methods", type=_methods, default=list(METHODS), help="comma-separated (default: all)")
    parser.add_argument("--json", metavar="OUT", help="write the leaderboard as JSON")
    parser.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads (default 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        bundle = load_checkpoint(args.checkpoint)
        gold = read_gold(args.gold)[: args.limit]
        sentences = [en for en, _ in read_tsv(args.data)][: args.limit]
    except (CheckpointError, DataError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with tqdm(total=len(gold) + len(sentences), desc="pairs", file=sys.stderr, dynamic_ncols=True) as bar:
        board = leaderboard(bundle, gold, sentences, args.methods, bar.update)
    result = board.to_json()
    print(
        f"{board.gold_pairs} gold pairs (AER, lower is better), {board.sentences} sentences, {board.rows} output "
        "tokens (deletion drop, soft sufficiency and comprehensiveness: higher is better)"
    )
    print(f"{'method':<22} {'AER':>6} {'deletion':>9} {'soft-suff':>9} {'soft-comp':>9} {'s/sentence':>10}")
    for name, row in result["methods"].items():
        print(
            f"{name:<22} {_cell(row['aer'], '6.3f')} {_cell(row['deletion_drop'], '9.3f')} "
            f"{_cell(row['soft_sufficiency'], '9.3f')} {_cell(row['soft_comprehensiveness'], '9.3f')} "
            f"{_cell(row['seconds_per_sentence'], '10.3f')}"
        )
    print(f"{'random word':<22} {'':>6} {_cell(result['deletion_random'], '9.3f')}")
    print(f"{'best word':<22} {'':>6} {_cell(result['deletion_best'], '9.3f')}")
    for skipped in board.skipped[:10]:
        print(f"skipped: {skipped}", file=sys.stderr)
    if args.json:
        try:
            Path(args.json).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        except OSError as exc:
            print(f"error: cannot write {args.json}: {exc}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
