"""Make a shippable model file from a training checkpoint: weights only (no optimizer), 16-bit, with a model card.

    python -m core.export --checkpoint work/run/tmodel_05.pt --card card.json --out checkpoints/default.pt
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


def export(checkpoint: str | Path, out: str | Path, card: dict | None = None, half: bool = True) -> Path:
    """Write `out` with the checkpoint's weights, tokenizers, config, metadata and the model card."""
    bundle = load_checkpoint(checkpoint)
    metadata = {**bundle.metadata, "model_card": card} if card else dict(bundle.metadata)
    save_checkpoint(out, bundle.model, bundle.src_tokenizer, bundle.tgt_tokenizer, metadata=metadata, half=half)
    return Path(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.export", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--card", help="JSON file with the model card (description, data, metrics, examples, ...)")
    parser.add_argument("--float32", action="store_true", help="keep 32-bit weights (default: 16-bit storage)")
    args = parser.parse_args(argv)
    try:
        card = json.loads(Path(args.card).read_text(encoding="utf-8")) if args.card else None
        path = export(args.checkpoint, args.out, card, half=not args.float32)
    except (CheckpointError, OSError, json.JSONDecodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
