"""Translate sentences from the command line, optionally as JSON with every attention map.

    python -m core translate --checkpoint checkpoints/default.pt "I love you." "Where is the station?"
    python -m core translate --checkpoint opus_books_weights/tmodel_19.pt --heads 8 --json "Hello."
    echo "Good morning." | python -m core translate --checkpoint checkpoints/default.pt
    python -m core translate --checkpoint checkpoints/default.pt --beam 4 --nbest 3 --json "I love you."
    python -m core translate --checkpoint checkpoints/default.pt --prefix "vi" "I love you."

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
from core.decoding import Translation, check_beam_options, prefix_ids, translate

JSON_DECIMALS = 6


def _rounded(tensor: torch.Tensor) -> list:
    """A tensor as nested lists of floats rounded to JSON_DECIMALS, to keep the output compact."""
    return tensor.double().round(decimals=JSON_DECIMALS).tolist()


def hypothesis_records(result: Translation) -> list[dict]:
    """The n best outputs of a beam search (or the greedy one), best first: text, score, tokens."""
    return [
        {
            "text": h.translation,
            "score": round(h.score, JSON_DECIMALS),  # log-probability over the length penalty
            "log_prob": round(h.log_prob, JSON_DECIMALS),
            "tokens": list(h.tokens),  # generated tokens, with the final [EOS] when it finished
            "finished": h.finished,
        }
        for h in result.hypotheses
    ]


def translation_record(result: Translation, with_hypotheses: bool = False) -> dict:
    """The --json record of one sentence; attention as [L][H][T_query][T_key] nested lists."""
    extra = {"hypotheses": hypothesis_records(result), "prefix_length": result.prefix_length} if with_hypotheses else {}
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
        **extra,
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
    parser.add_argument(
        "--beam", type=positive_int, help="beam search with this many beams (default: greedy; 1 is greedy too)"
    )
    parser.add_argument(
        "--nbest", type=positive_int, default=1, help="hypotheses kept, at most --beam (default 1; --json lists them)"
    )
    parser.add_argument(
        "--length-penalty",
        type=float,
        default=0.0,
        help="GNMT length penalty alpha: hypotheses rank by log-probability / ((5 + length) / 6) ** alpha (default 0)",
    )
    parser.add_argument(
        "--prefix",
        help="force these Italian words as the start of the translation, then let the model go on (what-if)",
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
    searching = args.beam is not None or args.prefix is not None
    beam = args.beam or 1
    try:
        check_beam_options(beam, args.nbest, args.length_penalty)
        prefix = None if args.prefix is None else prefix_ids(bundle.tgt_tokenizer, args.prefix)
        if args.reference is not None and searching:
            raise ValueError("--reference is fed to the decoder as it is: it takes no --beam or --prefix")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    status = 0
    for sentence in sentences:
        try:
            result = translate(
                bundle,
                sentence,
                max_len=args.max_len,
                reference=args.reference,
                copy_unknown=not args.keep_unk,
                beam_size=beam,
                nbest=args.nbest,
                length_penalty=args.length_penalty,
                prefix=prefix,
            )
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            status = 1
            continue
        print(
            json.dumps(translation_record(result, searching), ensure_ascii=False) if args.json else result.translation,
            flush=True,
        )
    return status


if __name__ == "__main__":
    sys.exit(main())
