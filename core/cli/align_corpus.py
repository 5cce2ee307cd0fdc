"""Word-align training pairs with eflomal for guided alignment training:
`python -m core align-corpus --data pairs.tsv --out links.txt`.

Writes one line of Pharaoh links (`i-j`: 0-based indexes of the words that single spaces separate in the
English and the Italian text) per pair of the --data files, in order (each file once, whatever its `*N`), so
the file goes with the same --data flags to `python -m core train --alignments links.txt`. eflomal runs both
ways and the two alignments are symmetrised with grow-diag-final-and (core/aligner.py). --gold FILE
(XL-WA's format) aligns that file's pairs along with the data, then scores them: AER, precision and recall
against its links (all links sure); they are not written to --out. Needs `pip install eflomal`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tqdm import tqdm

from core.aligner import align_corpus
from core.analysis.alignment import aer, format_links, read_gold
from core.config import positive_int
from core.data import DataError, parse_data_spec, read_tsv


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core align-corpus", description=__doc__.splitlines()[0])
    parser.add_argument("--data", action="append", required=True, metavar="FILE", help="TSV en<TAB>it; repeatable")
    parser.add_argument("--out", required=True, help="Pharaoh links file to write, one line per --data pair")
    parser.add_argument("--gold", help="XL-WA style file (en words, it words, i-j links) to align and score too")
    parser.add_argument("--samplers", type=positive_int, default=2, help="eflomal's parallel samplers (default: 2)")
    args = parser.parse_args(argv)
    try:
        pairs = [pair for spec in args.data for pair in read_tsv(parse_data_spec(spec)[0])]
        gold = read_gold(args.gold) if args.gold else []
        gold_pairs = [(" ".join(g.source_words), " ".join(g.target_words)) for g in gold]
        tqdm.write(f"aligning {len(pairs)} pairs" + (f" and {len(gold)} gold pairs" if gold else "") + " with eflomal")
        started = time.perf_counter()
        links = align_corpus(pairs + gold_pairs, samplers=args.samplers, quiet=False)
        seconds = time.perf_counter() - started
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("".join(format_links(line) + "\n" for line in links[: len(pairs)]), encoding="utf-8")
    except (DataError, OSError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    tqdm.write(f"wrote {out} ({len(pairs)} lines) in {seconds:.0f} s")
    if gold:
        predicted = {(n, i, j) for n, line in enumerate(links[len(pairs) :]) for i, j in line}
        expected = {(n, i, j) for n, g in enumerate(gold) for i, j in g.links}
        hits = len(predicted & expected)
        precision, recall = hits / max(1, len(predicted)), hits / max(1, len(expected))
        rate = aer(predicted, expected)
        print(f"{args.gold}: AER {rate:.3f}, precision {precision:.3f}, recall {recall:.3f} ({len(gold)} pairs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
