"""Make a shippable model file from training checkpoints: weights only (no optimizer), 16-bit, with a model card.

    python -m core.export --checkpoint work/run/tmodel_05.pt --card card.json --out checkpoints/default.pt

Given several checkpoints of one run (`--checkpoint a.pt b.pt c.pt`), it writes their average, a common way
to get a slightly better model than any single one of them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from core.checkpoint import CheckpointError, ModelBundle, load_checkpoint, save_checkpoint


def average(bundles: list[ModelBundle]) -> None:
    """Replace the first bundle's weights with the mean of all bundles' weights (same config and vocabularies)."""
    first = bundles[0]
    for other in bundles[1:]:
        if other.config != first.config or other.tgt_tokenizer.get_vocab() != first.tgt_tokenizer.get_vocab() \
                or other.src_tokenizer.get_vocab() != first.src_tokenizer.get_vocab():
            raise CheckpointError(f"cannot average {other.source} with {first.source}: different model or vocabulary")
    states = [b.model.state_dict() for b in bundles]
    with torch.no_grad():
        for key, tensor in first.model.state_dict().items():
            tensor.copy_(torch.stack([state[key].float() for state in states]).mean(0))


def export(checkpoints: list[str | Path], out: str | Path, card: dict | None = None, half: bool = True) -> Path:
    """Write `out` with the (averaged) weights, tokenizers, config and metadata of the checkpoints, plus the card."""
    bundles = [load_checkpoint(path) for path in checkpoints]
    if len(bundles) > 1:
        average(bundles)
    first = bundles[0]
    metadata = dict(first.metadata)
    if len(bundles) > 1:
        metadata["averaged_from"] = [Path(b.source).name for b in bundles]
    if card:
        metadata["model_card"] = card
    save_checkpoint(out, first.model, first.src_tokenizer, first.tgt_tokenizer, metadata=metadata, half=half)
    return Path(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.export", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, nargs="+", help="one checkpoint, or several to average")
    parser.add_argument("--out", required=True, help="file to write (for the app: checkpoints/NAME.pt)")
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
