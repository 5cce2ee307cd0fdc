"""Translate sentences from the command line, optionally as JSON with every attention map.

    python -m core translate --checkpoint checkpoints/default.pt "I love you." "Where is the station?"
    python -m core translate --checkpoint opus_books_weights/tmodel_19.pt --heads 8 --json "Hello."
    echo "Good morning." | python -m core translate --checkpoint checkpoints/default.pt

Exit status: 0 when every sentence was translated, 1 when some sentence was rejected (empty, too long
or not UTF-8 text; the others are still translated), 2 when the checkpoint could not be loaded or the
arguments do not fit together.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from core.checkpoint import CheckpointError, load_checkpoint
from core.config import positive_int
from core.decoding import Translation, translate

JSON_DECIMALS = 6


def _rounded(tensor: torch.Tensor) -> list:
    """A tensor as nested lists of floats rounded to JSON_DECIMALS, to keep the output compact."""
    return tensor.double().round(decimals=JSON_DECIMALS).tolist()


def translation_record(result: Translation) -> dict:
    """The --json record of one sentence; attention as [L][H][T_query][T_key] nested lists."""
    return {
        "source": result.source,
        "translation": result.translation,
        "source_tokens": result.source_tokens,
        "target_tokens": result.target_tokens,
        "output_ids": result.output_ids,
        "copied": [list(c) for c in result.copied],  # [output position, source position, word] per copied [UNK]
        "attention": {
            "encoder": _rounded(result.attention.encoder),  # [L][H][S][S]
            "decoder": _rounded(result.attention.decoder),  # [L][H][T][T]
            "cross": _rounded(result.attention.cross),  # [L][H][T][S]
        },
    }


def stdin_sentences() -> list[str]:
    """Non-blank lines of stdin (blank lines separate nothing; an empty argument, though, is an error).
    Bytes that are not UTF-8 come through surrogate-escaped, so translate() rejects that sentence alone;
    a Windows line ending is not part of a sentence."""
    if hasattr(sys.stdin, "reconfigure"):
        sys.stdin.reconfigure(errors="surrogateescape")
    return [line.rstrip("\r\n") for line in sys.stdin if line.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m core translate", description=__doc__.splitlines()[0])
    parser.add_argument("sentences", nargs="*", help="sentences to translate (default: one per line from stdin)")
    parser.add_argument("--checkpoint", required=True, help="our checkpoint file, or a tutorial tmodel_XX.pt")
    parser.add_argument("--src-tokenizer", help="source tokenizer JSON (tutorial checkpoints: tokenizer_en.json)")
    parser.add_argument("--tgt-tokenizer", help="target tokenizer JSON (tutorial checkpoints: tokenizer_it.json)")
    parser.add_argument("--heads", type=int, help="attention heads of a tutorial checkpoint (default 8)")
    parser.add_argument("--max-len", type=int, help="most decoder tokens, [SOS] included (default: seq_len)")
    parser.add_argument(
        "--reference",
        help="feed this Italian translation to the decoder instead of decoding greedily (one sentence only)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per sentence, with attention maps")
    parser.add_argument(
        "--keep-unk",
        action="store_true",
        help="print a generated [UNK] as [UNK], not as the source word it attended to",
    )
    parser.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads (default 1)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        bundle = load_checkpoint(args.checkpoint, args.src_tokenizer, args.tgt_tokenizer, heads=args.heads)
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for note in bundle.notes:
        print(f"note: {note}", file=sys.stderr)
    sentences = args.sentences or stdin_sentences()
    if args.reference is not None and len(sentences) > 1:
        print(f"error: --reference is the translation of one sentence; got {len(sentences)} sentences", file=sys.stderr)
        return 2
    status = 0
    for sentence in sentences:
        try:
            result = translate(
                bundle, sentence, max_len=args.max_len, reference=args.reference, copy_unknown=not args.keep_unk
            )
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            status = 1
            continue
        print(
            json.dumps(translation_record(result), ensure_ascii=False) if args.json else result.translation, flush=True
        )
    return status


if __name__ == "__main__":
    sys.exit(main())
