"""Does relevance point at the source word an output token needs? A deletion test on real sentences.

    python bench/relevance_deletion.py [--checkpoint checkpoints/default.pt]
                                       [--data checkpoints/heads_sample.en-it.tsv] [--limit 100]

For each English sentence (greedy-translated) and each output token but [EOS], the source word a method
ranks first is deleted and the probability of the same output token is read again (teacher-forced on
the same output); a larger mean drop means the method found a word the token depended on. Methods:
core.analysis.relevance (rollout + Chefer rules, gradient-weighted Chefer rules, raw last-layer
cross-attention), with the mean over all words ("random") and the most damaging word ("best") as bounds.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core import load_checkpoint  # noqa: E402
from core.analysis.relevance import METHOD_LABELS, deletion_test  # noqa: E402
from core.data import read_tsv  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=str(ROOT / "checkpoints" / "default.pt"))
    parser.add_argument("--data", default=str(ROOT / "checkpoints" / "heads_sample.en-it.tsv"))
    parser.add_argument("--limit", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(1)
    bundle = load_checkpoint(args.checkpoint)
    sentences = [en for en, _ in read_tsv(args.data)[: args.limit]]
    start = time.perf_counter()
    result = deletion_test(bundle, sentences)
    print(f"{result['sentences']} sentences, {result['rows']} output tokens ({time.perf_counter() - start:.1f} s)")
    print("mean drop of the output token's probability when the top-ranked source word is deleted:")
    labels = METHOD_LABELS | {
        "random": "a word at random (mean over words)",
        "best": "the most damaging word (ceiling)",
    }
    for name in sorted(labels, key=lambda n: -result[n]):
        print(f"  {result[name]:.4f}  {labels[name]}")


if __name__ == "__main__":
    main()
