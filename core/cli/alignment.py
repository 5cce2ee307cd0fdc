"""Which cross-attention heads align words? `python -m core alignment --checkpoint PATH --data gold.tsv`.

Scores every head against gold word alignments (XL-WA's format); the method is core/analysis/alignment.py.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from core.analysis.alignment import read_gold, score_heads
from core.checkpoint import CheckpointError, load_checkpoint
from core.tokenizer import encode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core alignment", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data", required=True, help="XL-WA style file: en words, it words, i-j links")
    parser.add_argument("--top", type=int, default=5, help="print this many best heads")
    args = parser.parse_args(argv)
    try:
        bundle = load_checkpoint(args.checkpoint)
        pairs = read_gold(args.data)
    except (CheckpointError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    pairs = [
        p
        for p in pairs
        if len(encode(bundle.src_tokenizer, " ".join(p.source_words))[0]) + 2 <= bundle.config.seq_len
        and len(encode(bundle.tgt_tokenizer, " ".join(p.target_words))[0]) + 1 <= bundle.config.seq_len
    ]
    rates, baseline = score_heads(bundle, pairs)
    order = np.argsort(rates, axis=None)[: args.top]
    print(f"{len(pairs)} sentence pairs; AER (lower is better) of each cross-attention head, layers x heads:")
    for layer, row in enumerate(rates, 1):
        print(f"  layer {layer}: " + " ".join(f"{r:.2f}" for r in row))
    for flat in order:
        layer, head = np.unravel_index(flat, rates.shape)
        print(f"best: layer {layer + 1} head {head + 1}: AER {rates[layer, head]:.3f}")
    print(f"diagonal baseline: AER {baseline:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
