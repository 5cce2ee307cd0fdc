"""Which heads matter and what each one does: `python -m core heads --checkpoint PATH --data pairs.tsv`.

Prints, per attention kind, layers x heads tables of each statistic and of importance (ablation and the
gradient score, with their Spearman correlation), each head's role and the roles of the most important heads,
the most and least important heads, and the pruning curves with the roles each step switches off; --json writes
the same as one object, with each role's evidence. --save-report computes what the Heads page shows instead (its
pruning step, no encoder-only curve) and saves it for the app with the SHA-256 of both files
(core/analysis/report_file.py): the shipped checkpoints/heads_report.json is written this way. The methods are in
core/analysis/ (head_stats, head_roles, importance, head_report).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from core.analysis.head_report import MEASURE_LABELS, HeadReport, head_report
from core.analysis.head_roles import SHORT, RoleGrid, describe_counts, most_important, roles_switched_off
from core.analysis.report_file import PAGE_PRUNING_STEP, save_report, sha256_file
from core.attention import KIND_LABELS, KINDS
from core.checkpoint import CheckpointError, load_checkpoint
from core.data import DataError, read_tsv


def table(values: np.ndarray, indent: str = "  ") -> str:
    """(L, H) -> a text table, layers down, heads across."""
    header = indent + "       " + "".join(f"{'h' + str(h + 1):>9}" for h in range(values.shape[1]))
    rows = [indent + f"layer {layer + 1}" + "".join(f"{v:9.4f}" for v in row) for layer, row in enumerate(values)]
    return "\n".join([header, *rows])


def role_table(grid: RoleGrid, indent: str = "  ") -> str:
    """L x H roles -> a text table of their short names, layers down, heads across."""
    header = indent + "       " + "".join(f"{'h' + str(h + 1):>9}" for h in range(len(grid[0])))
    rows = [
        indent + f"layer {layer + 1}" + "".join(f"{SHORT[r.role]:>9}" for r in row) for layer, row in enumerate(grid)
    ]
    return "\n".join([header, *rows])


ROLE_LEGEND = ", ".join(f"{short} = {name}" for name, short in SHORT.items())


class Bars:
    """One tqdm bar per stage of head_report, on stderr."""

    def __init__(self) -> None:
        self.bars: dict[str, tqdm] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        bar = self.bars.get(stage)
        if bar is None:  # stages run one after the other: a new one ends the previous bar
            self.close()
            bar = self.bars[stage] = tqdm(total=total, desc=stage, file=sys.stderr)
        bar.update(done - bar.n)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        self.bars.clear()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core heads", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="a checkpoint of ours (or a tutorial file)")
    parser.add_argument("--data", required=True, help="TSV file of 'english<TAB>italian' pairs")
    parser.add_argument("--limit", type=int, default=200, help="use the first N pairs (default 200)")
    parser.add_argument("--json", metavar="OUT", help="also write everything to this JSON file")
    parser.add_argument("--step", type=int, help="heads switched off per pruning step (default 8)")
    parser.add_argument(
        "--save-report",
        metavar="OUT",
        help=f"compute the Heads page's report (pruning step {PAGE_PRUNING_STEP}, every pair of --data) and save it for "
        "the app with the SHA-256 of the checkpoint and data files (checkpoints/heads_report.json)",
    )
    parser.add_argument("--top", type=int, default=5, help="print this many most and least important heads")
    parser.add_argument(
        "--top-roles", type=int, default=10, help="count the roles of this many most important heads per kind"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = parser.parse_args(argv)
    if args.save_report and args.step is not None:
        print(
            f"error: --save-report uses the Heads page's pruning step ({PAGE_PRUNING_STEP}): drop --step",
            file=sys.stderr,
        )
        return 2
    step = PAGE_PRUNING_STEP if args.save_report else 8 if args.step is None else args.step
    if min(args.limit, step, args.threads, args.top_roles) < 1:
        print("error: --limit, --step, --top-roles and --threads must be at least 1", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    try:
        bundle = load_checkpoint(args.checkpoint)
        every_pair = read_tsv(args.data)
    except (CheckpointError, DataError, OSError, UnicodeDecodeError) as exc:
        print(f"error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        return 2
    pairs = every_pair[: args.limit]
    if args.save_report and (len(pairs) < len(every_pair) or not Path(args.checkpoint).is_file()):
        print(
            f"error: --save-report analyses every pair of --data (it has {len(every_pair)}: raise --limit) "
            "of a checkpoint file (not a Hugging Face model)",
            file=sys.stderr,
        )
        return 2
    bars = Bars()
    try:
        encoder_step = None if args.save_report else max(1, step // 2)
        report = head_report(bundle, pairs, pruning_step=step, encoder_pruning_step=encoder_step, progress=bars)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        bars.close()
    print(
        f"{report.sentences} sentence pairs, {report.tokens} reference tokens; mean log-prob {report.base_logprob:.4f}"
    )
    print(f"Roles in the tables: {ROLE_LEGEND} (their evidence is in --json)")
    for kind in KINDS:
        print(f"\n== {KIND_LABELS[kind]} ({kind}) ==")
        for name, values in report.measures[kind].items():
            print(f"{MEASURE_LABELS[name]}:\n{table(values)}")
        print(f"Spearman(ablation drop, gradient importance): {report.spearman[kind]:.3f}")
        grid = report.roles[kind]
        print(f"Roles:\n{role_table(grid)}")
        top = most_important(grid, -report.measures[kind]["ablation_delta_logprob"], args.top_roles)
        print(f"the {len(top)} most important heads (ablation): {describe_counts(top)}")
    print(f"\nSpearman over all heads: {report.spearman['all']:.3f}")
    drop = {kind: -report.measures[kind]["ablation_delta_logprob"] for kind in KINDS}
    for title, heads in (
        ("most important", report.order[::-1][: args.top]),
        ("least important", report.order[: args.top]),
    ):
        print(f"{title} heads (ablation):")
        for kind, layer, head in heads:
            print(
                f"  {kind} layer {layer} head {head}: mean log-prob {-drop[kind][layer - 1, head - 1]:+.4f} when off, "
                f"gradient {report.measures[kind]['gradient_importance'][layer - 1, head - 1]:.4f}; "
                f"{report.roles[kind][layer - 1][head - 1].role}"
            )
    encoder_order = [head for head in report.order if head[0] == "encoder"]
    for name, curve, order in (
        ("all heads", report.pruning_curve, report.order),
        ("encoder heads only", report.pruning_curve_encoder, encoder_order),
    ):
        if not curve:
            continue
        print(f"pruning curve ({name}, least important first): heads off -> chrF / BLEU   (roles switched off)")
        steps = roles_switched_off(order, report.roles, [point["heads_off"] for point in curve])
        for point, step in zip(curve, steps):
            print(
                f"  {point['heads_off']:3d} -> {point['chrf']:6.2f} / {point['bleu']:6.2f}"
                + (f"   ({step})" if step else "")
            )
    return write_outputs(args, report)


def write_outputs(args: argparse.Namespace, report: HeadReport) -> int:
    """--json and --save-report; 2 after a message when a file cannot be written."""
    try:
        if args.json:
            Path(args.json).write_text(json.dumps(report.to_json(), indent=1), encoding="utf-8")
        if args.save_report:
            command = f"python -m core heads --checkpoint {args.checkpoint} --data {args.data} --save-report {args.save_report}"
            save_report(args.save_report, report, sha256_file(args.checkpoint), sha256_file(args.data), command)
            print(f"saved the Heads page's report to {args.save_report}")
    except OSError as exc:
        print(f"error: cannot write {exc.filename}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
