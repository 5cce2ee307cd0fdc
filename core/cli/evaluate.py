"""Score a checkpoint on a test file: `python -m core evaluate --checkpoint PATH --data FILE`.

Prints corpus BLEU and chrF (sacrebleu), character and word error rates, as training does at each epoch end.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch
from tqdm import tqdm

from core.checkpoint import CheckpointError, load_checkpoint
from core.config import positive_int
from core.data import DataError, read_tsv
from core.evaluation import evaluate, lowercases


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="our checkpoint file, or a tutorial tmodel_XX.pt")
    parser.add_argument("--data", required=True, action="append", help="TSV of en<TAB>it pairs (repeatable)")
    parser.add_argument("--src-tokenizer", help="source tokenizer JSON (tutorial checkpoints: tokenizer_en.json)")
    parser.add_argument("--tgt-tokenizer", help="target tokenizer JSON (tutorial checkpoints: tokenizer_it.json)")
    parser.add_argument("--heads", type=int, help="attention heads of a tutorial checkpoint (default 8)")
    parser.add_argument("--limit", type=int, default=0, help="score only the first N pairs")
    parser.add_argument("--examples", type=int, default=3, help="print this many translations")
    parser.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    parser.add_argument("--threads", type=positive_int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument(
        "--keep-unk",
        action="store_true",
        help="score generated [UNK] as '[UNK]' instead of the source word it attended to",
    )
    parser.add_argument(
        "--beam", type=positive_int, default=1, help="beam search with this many beams (default 1: greedy)"
    )
    parser.add_argument(
        "--length-penalty", type=float, default=0.0, help="GNMT length penalty alpha for the beam (default 0: none)"
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        bundle = load_checkpoint(args.checkpoint, args.src_tokenizer, args.tgt_tokenizer, args.heads)
        pairs = [p for path in args.data for p in read_tsv(path)]
    except (CheckpointError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.limit:
        pairs = pairs[: args.limit]
    if not args.length_penalty >= 0:
        print(f"error: the length penalty must be 0 (none) or more, got {args.length_penalty}", file=sys.stderr)
        return 2
    metrics, hyps, kept = evaluate(
        bundle,
        pairs,
        progress=not args.json,
        copy_unknown=not args.keep_unk,
        beam_size=args.beam,
        length_penalty=args.length_penalty,
    )
    dropped = len(pairs) - len(kept)
    if args.json:
        print(json.dumps({**metrics, "sentences": len(kept), "dropped": dropped}))
        return 0
    for (src, ref), hyp in list(zip(kept, hyps))[: args.examples]:
        tqdm.write(f"{'SOURCE:':>12} {src}\n{'TARGET:':>12} {ref}\n{'PREDICTED:':>12} {hyp}")
    print(f"sentences {len(kept)} (dropped as too long: {dropped})")
    print(
        f"BLEU {metrics['bleu']:.2f}  chrF {metrics['chrf']:.2f}  CER {metrics['cer']:.4f}  WER {metrics['wer']:.4f}"
        + ("  (lowercased)" if lowercases(bundle) else "")
        + (f"  (beam {args.beam}, length penalty {args.length_penalty:g})" if args.beam > 1 else "  (greedy)")
        + ("  ([UNK] kept)" if args.keep_unk else "  (generated [UNK] shown as the source word attended to)")
    )
    print(
        f"output/source pieces {metrics['length_ratio']:.2f} on average; under half the reference's length: "
        f"{metrics['short_share']:.1%} of sentences"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
