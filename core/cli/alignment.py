"""Word alignment from cross-attention, scored against gold links: `python -m core alignment --checkpoint PATH
--data gold.tsv [--method M] [--json OUT] [--links OUT]`.

--data is XL-WA's format (English words, Italian words, 'i-j' links; words separated by single spaces),
or, with --links and a method (--method, or the one the model card records), a plain 'English<TAB>Italian'
TSV to align without gold. Every method (each head and each layer's mean of heads; rows read where a
word is predicted or where it is the decoder input, Shift-Att; argmax or threshold per target word) is
scored by AER, precision and recall (sure = possible = gold) next to a diagonal baseline; the methods are
described in core/analysis/alignment.py. --links OUT writes one line of Pharaoh 'i-j' links per pair of
--data with the best method (or --method). --method also takes an attribution method of
core/analysis/attribution.py (norm, alti, value-zeroing, integrated-gradients, ...): each Italian word is then
linked to the English word that method ranks first (argmax), so --links makes any of them an aligner.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from core.analysis.alignment import (
    DECISIONS,
    DEFAULT_THRESHOLD,
    ROWS,
    Method,
    Tally,
    all_methods,
    cross_attention,
    encode_pair,
    format_links,
    gold_matrix,
    links_of,
    method_matrix,
    pair_readings,
    parse_method,
    read_gold,
    read_pairs,
    recorded_alignment,
    tune_thresholds,
    word_attention,
)
from core.checkpoint import CheckpointError, load_checkpoint
from core.config import positive_int


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a share between 0 and 1, got {text}")
    return value


def _is_gold(path: str) -> bool:
    """A gold file has a third column (links) on its first line."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.readline().count("\t") >= 2
    except OSError:
        return True  # read_gold says why it cannot be read


def _write(path: str, text: str) -> bool:
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        print(f"error: cannot write {path}: {exc.strerror or exc}", file=sys.stderr)
        return False
    return True


def _encoded(bundle, pairs):
    """Encoded pairs (None for those too long for the model) and how many were too long."""
    encoded = [encode_pair(bundle, src, tgt) for src, tgt in pairs]
    return encoded, sum(e is None for e in encoded)


def _maps(bundle, encoded, desc: str):
    """(index, encoded pair, cross-attention) for each pair that fits, with a progress bar over all pairs."""
    fitting = [(n, e) for n, e in enumerate(encoded) if e is not None]
    bar = tqdm(total=len(encoded), desc=desc, unit="pair", file=sys.stderr)
    for (n, pair), cross in zip(fitting, cross_attention(bundle, [e for _, e in fitting])):
        bar.update(n + 1 - bar.n)
        yield n, pair, cross
    bar.update(len(encoded) - bar.n)
    bar.close()


def _tune(bundle, path: str) -> np.ndarray:
    gold_pairs = read_gold(path)
    encoded, _ = _encoded(bundle, [(p.source_words, p.target_words) for p in gold_pairs])
    return tune_thresholds(
        (pair_readings(cross, pair), gold_matrix(gold_pairs[n].links, pair.n_src, pair.n_tgt))
        for n, pair, cross in _maps(bundle, encoded, f"tuning thresholds on {Path(path).name}")
    )


def _print_table(tally: Tally, thresholds: np.ndarray, methods: list[Method], best: Method, heads: np.ndarray) -> None:
    n_heads = tally.n_heads
    scores = tally.scores(methods)
    print(f"{'method':<36} {'AER':>6} {'prec':>6} {'recall':>6}  threshold")
    families = [(r, d) for d in DECISIONS for r in ROWS if any(m.rows == r and m.decision == d for m in methods)]
    for rows, decision in families:
        family = [m for m in methods if m.rows == rows and m.decision == decision]
        shown = [m for m in family if m.head is None] + sorted(
            (m for m in family if m.head is not None), key=lambda m: scores[m.name].aer
        )[:1]
        for method in shown:
            s = scores[method.name]
            tau = f"{thresholds[method.index(n_heads)[1:]]:.2f}" if decision == "threshold" else ""
            label = method.name + ("  (best head)" if method.head is not None and len(family) > 1 else "")
            print(f"{label:<36} {s.aer:6.3f} {s.precision:6.3f} {s.recall:6.3f}  {tau}")
    print(f"AER of each head ({best.rows} rows, {best.decision}), layers down, heads across:")
    for layer, row in enumerate(heads, 1):
        print(f"  layer {layer}: " + " ".join(f"{r:.3f}" for r in row))


def _attribution_run(bundle, method: str, pairs: list, gold_pairs: list | None, args) -> int:
    """--method names an attribution method: its argmax links scored against the gold, and/or written."""
    from core.analysis.alignment import Score
    from core.analysis.attribution import attribute
    from core.analysis.attribution_eval import fed, word_links

    lines, hits, predicted, expected, scored = [""] * len(pairs), 0, 0, 0, 0
    for n, (source, target) in enumerate(tqdm(pairs, desc=f"aligning with {method}", unit="pair", file=sys.stderr)):
        pass_ = fed(bundle, source, target)
        if pass_ is None:
            continue  # too long for the model: an empty line
        encoded, result = pass_
        links = word_links(encoded, attribute(bundle, result, method).source)
        lines[n] = format_links(links)
        if gold_pairs is not None:
            gold = gold_pairs[n].links
            hits, predicted, expected, scored = (
                hits + len(links & gold),
                predicted + len(links),
                expected + len(gold),
                scored + 1,
            )
    if gold_pairs is not None:
        if not scored:
            print("error: no pair fits the model: nothing to score", file=sys.stderr)
            return 2
        score = Score.of_counts(hits, predicted, expected)
        print(f"{scored} sentence pairs, {expected} gold links (sure = possible = gold); lower AER is better")
        print(f"{method} (argmax): AER {score.aer:.3f}, precision {score.precision:.3f}, recall {score.recall:.3f}")
        report = {"methods": {method: score.as_dict()}, "best": {"method": method, "aer": score.aer}}
        if args.json and not _write(args.json, json.dumps(report, indent=1) + "\n"):
            return 2
    if args.links:
        if not _write(args.links, "".join(line + "\n" for line in lines)):
            return 2
        print(f"links of {len(lines)} pairs ({method}) written to {args.links}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m core alignment",
        description=__doc__.split("\n\n")[0].replace("\n", " "),
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--checkpoint", required=True, help="our checkpoint file")
    parser.add_argument(
        "--data",
        required=True,
        help="gold file: English words, Italian words, i-j links (with --links and a method: a plain en<TAB>it TSV)",
    )
    parser.add_argument(
        "--method",
        help="score (and write --links with) only this method, e.g. L3H5-input-argmax, or an attribution method "
        "(norm, alti, value-zeroing, integrated-gradients, ...)",
    )
    parser.add_argument("--json", metavar="OUT", help="write the scores as JSON to this file")
    parser.add_argument("--links", metavar="OUT", help="write one line of Pharaoh i-j links per pair of --data")
    parser.add_argument(
        "--threshold",
        type=_fraction,
        help="share of a target word's attention a source word needs in the threshold methods (default: the "
        f"model card's for its recorded method, else {DEFAULT_THRESHOLD})",
    )
    parser.add_argument(
        "--tune-on", metavar="GOLD", help="choose each threshold method's threshold on this other gold file instead"
    )
    parser.add_argument("--batch-size", type=positive_int, default=32, help="pairs per forward pass (default 32)")
    parser.add_argument("--threads", type=positive_int, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from core.analysis.attribution import METHODS as ATTRIBUTIONS

    try:
        bundle = load_checkpoint(args.checkpoint)
        cfg = bundle.config
        recorded = recorded_alignment(bundle)
        if args.method in ATTRIBUTIONS:
            gold_pairs = read_gold(args.data) if _is_gold(args.data) else None
            if gold_pairs is None and not args.links:
                raise ValueError(f"{args.data} has no gold links (2 columns): align it with --links OUT")
            pairs = [(p.source_words, p.target_words) for p in gold_pairs] if gold_pairs else read_pairs(args.data)
            return _attribution_run(bundle, args.method, pairs, gold_pairs, args)
        chosen = parse_method(args.method, cfg.n_layers, cfg.n_heads) if args.method else None
        gold = _is_gold(args.data)
        if gold:
            gold_pairs = read_gold(args.data)
            pairs = [(p.source_words, p.target_words) for p in gold_pairs]
        else:
            pairs = read_pairs(args.data)
            chosen = chosen or (recorded.method if recorded else None)
            if not args.links or chosen is None:
                raise ValueError(
                    f"{args.data} has no gold links (2 columns): align it with --links OUT and --method M "
                    "(or a model whose card records its alignment method)"
                )
        tau = args.threshold or (recorded.threshold if recorded and chosen == recorded.method else None)
        thresholds = np.full((len(ROWS), cfg.n_layers, cfg.n_heads + 1), tau or DEFAULT_THRESHOLD)
        if args.tune_on:
            thresholds = _tune(bundle, args.tune_on)
    except (CheckpointError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    encoded, too_long = _encoded(bundle, pairs)
    if too_long:
        print(
            f"note: {too_long} of {len(pairs)} pairs are too long for the model (seq_len {cfg.seq_len})",
            file=sys.stderr,
        )
    best = chosen
    if gold:
        methods = [chosen] if chosen else all_methods(cfg.n_layers, cfg.n_heads)
        tally = Tally(cfg.n_layers, cfg.n_heads)
        for n, pair, cross in _maps(bundle, encoded, "scoring"):
            tally.add(pair_readings(cross, pair), gold_matrix(gold_pairs[n].links, pair.n_src, pair.n_tgt), thresholds)
        if not tally.pairs:
            print("error: no pair fits the model: nothing to score", file=sys.stderr)
            return 2
        scores = tally.scores(methods)
        best = chosen or min(methods, key=lambda m: scores[m.name].aer)
        heads = tally.head_aer(best.rows, best.decision)
        print(f"{tally.pairs} sentence pairs, {tally.gold} gold links (sure = possible = gold); lower AER is better")
        _print_table(tally, thresholds, methods, best, heads)
        print(f"diagonal baseline: AER {tally.baseline().aer:.3f}")
        print(f"best: {best.name}: AER {scores[best.name].aer:.3f}")
        if args.json:
            report = {
                "methods": {name: s.as_dict() for name, s in scores.items()},
                "heads": heads.round(6).tolist(),
                "baseline": tally.baseline().aer,
                "best": {"method": best.name, "aer": scores[best.name].aer},
            }
            if not _write(args.json, json.dumps(report, indent=1) + "\n"):
                return 2
    if args.links:
        tau = float(thresholds[best.index(cfg.n_heads)[1:]])
        lines = [""] * len(encoded)  # a pair too long for the model gets an empty line
        for n, pair, cross in _maps(bundle, encoded, f"aligning with {best.name}"):
            words = word_attention(cross, pair.src_words, pair.tgt_words, pair.n_src, pair.n_tgt, best.rows, pair.first)
            lines[n] = format_links(links_of(method_matrix(words, best), best.decision, tau))
        if not _write(args.links, "".join(line + "\n" for line in lines)):
            return 2
        print(f"links of {len(lines)} pairs ({best.name}) written to {args.links}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
