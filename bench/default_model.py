"""The shipped model's decoding time against the model it replaced, on the same sentence.

    python bench/default_model.py [--baseline-rev REV] [--threads 1] [--repeats 9] [--steps 20]

Both files are loaded as the app loads them (checkpoints/default.pt here; the baseline is the same path at git
revision REV, by default the last commit before the model changed), each a copy whose [EOS] logit is pushed
down so that both write exactly --steps tokens, and both run `greedy_decode` (every attention map and the
top-5 probabilities of every row, what the app runs) on the same 20-word English source, interleaved on this
shared machine. Prints the median milliseconds of each and their parameters and file sizes, and ends with
`speedup: <baseline / shipped>x` (issue 29 asks for at most 1.5x the old time, a speedup of at least 0.67x).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from decode import interleaved_medians  # noqa: E402

from core import load_checkpoint  # noqa: E402
from core.decoding import greedy_decode  # noqa: E402

SENTENCE = (
    "The committee said on Tuesday that the new rules would protect workers in small firms from unfair contracts."
)
BASELINE_REV = "5f4bf73"  # the last commit that shipped the previous default model


def never_stops(path: Path):
    """The model of the file at path, with [EOS] made unreachable, and the source ids of SENTENCE."""
    bundle = load_checkpoint(path)
    with torch.no_grad():
        bundle.model.projection_layer.proj.bias[bundle.specials.eos] = -1e4
    return bundle, bundle.specials.frame_source(bundle.src_tokenizer.encode(SENTENCE).ids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-rev", default=BASELINE_REV)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        baseline = Path(tmp) / "baseline.pt"
        blob = subprocess.run(
            ["git", "show", f"{args.baseline_rev}:checkpoints/default.pt"], cwd=ROOT, capture_output=True, check=True
        ).stdout
        baseline.write_bytes(blob)
        paths = {"previous default": baseline, "shipped default": ROOT / "checkpoints" / "default.pt"}
        cases = {name: never_stops(path) for name, path in paths.items()}
        ways = {
            name: (lambda b=bundle, s=src: greedy_decode(b.model, s, args.steps + 1)[1])
            for name, (bundle, src) in cases.items()
        }
        medians, results = interleaved_medians(ways, args.repeats)
        for name, (bundle, src) in cases.items():
            params = sum(p.numel() for p in bundle.model.parameters())
            size = paths[name].stat().st_size / 1e6
            print(
                f"{name:<17} {medians[name]:7.1f} ms for {len(results[name])} tokens "
                f"({len(src)} source pieces, {params / 1e6:.1f} M parameters, file {size:.1f} MB)"
            )
    print(f"threads {args.threads}, median of {args.repeats}")
    print(f"speedup: {medians['previous default'] / medians['shipped default']:.2f}x")


if __name__ == "__main__":
    main()
