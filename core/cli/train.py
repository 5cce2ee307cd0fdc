"""Train the Transformer: `python -m core train --data pairs.tsv [flags]`, or `torchrun ... -m core train ...`.

Every TrainConfig field is a flag (--batch-size for batch_size) and a key of an optional --config file
(JSON or TOML); flags win. The loop itself is core/training.py.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tomllib
from pathlib import Path

from tqdm import tqdm

from core.checkpoint import CheckpointError
from core.config import TrainConfig
from core.data import DataError
from core.training import train


def _parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    """One flag per TrainConfig field (--batch-size for batch_size), plus --config FILE."""
    parser = argparse.ArgumentParser(prog="python -m core train", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="JSON or TOML file of TrainConfig fields (flags override it)")
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        help_text = f.metadata["help"]
        if f.name == "data":
            parser.add_argument(flag, action="append", default=None, metavar="FILE", help=help_text)
        elif isinstance(f.default, bool):
            parser.add_argument(
                flag,
                type=_parse_bool,
                nargs="?",
                const=True,
                default=None,
                metavar="BOOL",
                help=f"{help_text} (a bare flag means true; default: {str(f.default).lower()})",
            )
        else:
            shown = f.default if f.default != "" else "none"
            parser.add_argument(flag, type=type(f.default), default=None, help=f"{help_text} (default: {shown})")
    return parser


def config_from_args(argv: list[str] | None = None) -> TrainConfig:
    args = build_parser().parse_args(argv)
    values: dict = {}
    if args.config:
        path = Path(args.config)
        if not path.is_file():
            raise ValueError(f"config file not found: {path}")
        text = path.read_text(encoding="utf-8")
        values = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    values.update({k: v for k, v in vars(args).items() if k != "config" and v is not None})
    return TrainConfig.from_dict(values)


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = config_from_args(argv)
        last = train(cfg)
    except (ValueError, DataError, CheckpointError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the last checkpoint written is intact; resume with --preload latest", file=sys.stderr)
        return 130
    if last is not None:
        tqdm.write(f"last checkpoint: {last}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
