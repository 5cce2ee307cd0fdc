"""Make a shippable model file from training checkpoints: weights only (no optimizer), 16-bit, with a model card.

    python -m core export --checkpoint work/run/tmodel_05.pt --card card.json --out checkpoints/default.pt

Given several checkpoints of one run (`--checkpoint a.pt b.pt c.pt`), it writes their average, a common way
to get a slightly better model than any single one of them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.checkpoint import CheckpointError, export_checkpoint


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core export", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, nargs="+", help="one checkpoint, or several to average")
    parser.add_argument("--out", required=True, help="file to write (for the app: checkpoints/NAME.pt)")
    parser.add_argument("--card", help="JSON file with the model card (description, data, metrics, examples, ...)")
    parser.add_argument("--float32", action="store_true", help="keep 32-bit weights (default: 16-bit storage)")
    parser.add_argument(
        "--int8",
        action="store_true",
        help="store weight matrices as 8-bit integers with a scale per row (a quarter of float32; the loader "
        "turns them back into float32)",
    )
    args = parser.parse_args(argv)
    try:
        card = json.loads(Path(args.card).read_text(encoding="utf-8")) if args.card else None
        path = export_checkpoint(args.checkpoint, args.out, card, half=not args.float32, bits=8 if args.int8 else 16)
    except (CheckpointError, OSError, json.JSONDecodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
