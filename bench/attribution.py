"""Attribution speed on the shipped model: every method on one sentence, and the leaderboard, against naive loops.

    python bench/attribution.py [--checkpoint checkpoints/default.pt] [--repeats 3] [--limit 100] [--naive 3]
                                [--gold ../shared/data/xlwa.en-it.dev.gold.tsv] [--threads 1]

1. Methods. `core.analysis.attribution.attribute(bundle, translation, method)` of every method in METHODS, for
   all the output tokens of a 20-token English sentence (its greedy translation): median CPU and wall
   milliseconds of --repeats runs after a warm-up, against the targets (200 ms each, 2 s for integrated
   gradients, 32 steps). Beside the three that loop over tokens in their plain form, that form, run once and
   checked to give the same scores:
   - gradient: one forward and one backward pass per output row (ours: the sentence repeated along the batch,
     one backward pass for all rows);
   - value zeroing: the whole model rerun, teacher-forced, once per value vector zeroed, for every key of every
     attention block (ours: one batched pass of each layer);
   - integrated gradients: one Captum call per output row, on a decoder input cut after that row (32 steps in
     one batch).
2. Leaderboard. `core.analysis.attribution_eval.leaderboard`, what `python -m core attribution-eval` runs, with
   every method, over the first --limit sentences of checkpoints/heads_sample.en-it.tsv (deletion, soft
   sufficiency and comprehensiveness) and, with --gold FILE, as many gold pairs (AER); target 3 minutes. Beside
   it the naive leaderboard on the first --naive sentences (and gold pairs): the naive methods above, one pass
   per deleted word, one pass per output row per draw of the soft metrics; its figures checked against ours on
   the same sentences, its time extrapolated to --limit.

Times are CPU seconds (time.process_time) beside wall seconds: the machine is shared, and CPU time is what the
work costs whatever else runs. One torch thread by default. Ends with `speedup: <naive / ours>x`, the
leaderboard's CPU time on the sentences both ran.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]  # run as a script from anywhere

from timing import Timer  # noqa: E402

from core import load_checkpoint, translate  # noqa: E402
from core.analysis import attribution_eval as board_module  # noqa: E402
from core.analysis.alignment import read_gold  # noqa: E402
from core.analysis.attribution import METHODS, attribute  # noqa: E402
from core.analysis.attribution import _baseline as ig_baseline  # noqa: E402
from core.analysis.contributions import _cosine_distance, _rows_or_self, rollout, rows_to_one  # noqa: E402
from core.analysis.relevance import decoder_relevance, row_outputs  # noqa: E402
from core.data import read_tsv  # noqa: E402
from core.seam import DecoderStep, LayerStep, causal_mask  # noqa: E402

SENTENCE = "Tom is going to be punished for what he did, and he knows that he really deserves it."
TARGET_MS = {"integrated-gradients": 2000.0}
DEFAULT_TARGET_MS = 200.0
LEADERBOARD_TARGET_S = 180.0


# ---------------------------------------------------------------- the naive methods


def naive_gradient(model, src_ids: list[int], dec_ids: list[int], outputs: list[int]) -> torch.Tensor:
    """Chefer et al.'s gradient-weighted rules, one forward and one backward pass per output row."""
    src, tgt = torch.tensor([src_ids]), torch.tensor([dec_ids])
    rows = []
    for t, token in enumerate(outputs):
        with torch.enable_grad():
            memory, enc_maps = model.encode(src, None, True)
            hidden, self_maps, cross_maps = model.decode(tgt, memory, None, causal_mask(len(dec_ids)), True)
            maps = [*enc_maps, *self_maps, *cross_maps]
            grads = torch.autograd.grad(model.project(hidden[0, t])[token], maps)
        weighted = [(g * m).clamp_min(0).mean(1).detach() for g, m in zip(grads, maps)]
        n = len(enc_maps)
        relevance = decoder_relevance(*(torch.stack(weighted[i * n : (i + 1) * n], dim=1) for i in range(3)))
        rows.append(relevance[0, t])
    return rows_to_one(torch.stack(rows))


@torch.inference_mode()
def whole_pass(model, src_ids: list[int], dec_ids: list[int], zero: tuple[str, int, int] | None) -> dict:
    """One teacher-forced pass of the whole model with at most one value vector zeroed (kind, layer, key): the
    output of every layer, keyed (side, layer); the last of each side through its final norm."""
    n, s, t = model.n_layers, len(src_ids), len(dec_ids)
    kind, layer, key = zero if zero is not None else (None, -1, -1)

    def keep(size: int, this_kind: str, i: int):
        if this_kind != kind or i != layer:
            return None
        k = torch.ones(1, size)
        k[0, key] = 0
        return k

    outputs = {}
    x = model.embed_source(torch.tensor([src_ids]))
    for i in range(n):
        x, _ = model.encoder_layer(i, x, None, LayerStep(keep=keep(s, "encoder", i)))
        outputs[("encoder", i)] = model.finish_encoder(x) if i == n - 1 else x
    memory = model.finish_encoder(x)
    y, masks = model.embed_target(torch.tensor([dec_ids])), (None, causal_mask(t))
    for i in range(n):
        step = DecoderStep(keep=(keep(t, "decoder", i), keep(s, "cross", i)))
        y, _, _ = model.decoder_layer(i, y, memory, masks, step)
        outputs[("decoder", i)] = model.finish_decoder(y) if i == n - 1 else y
    model.project(model.finish_decoder(y))  # the whole model, as a plain rerun would
    return outputs


def naive_value_zeroing(model, src_ids: list[int], dec_ids: list[int]):
    """Value zeroing with one whole-model pass per zeroed value vector (every key of every block), normalised and
    rolled out as contributions.value_zeroing does."""
    s, t = len(src_ids), len(dec_ids)
    plain = whole_pass(model, src_ids, dec_ids, None)

    def distances(kind: str, side: str, layer: int, keys: int) -> torch.Tensor:  # (queries, keys)
        columns = []
        for j in range(keys):
            out = whole_pass(model, src_ids, dec_ids, (kind, layer, j))[(side, layer)]
            columns.append(_cosine_distance(out[0], plain[(side, layer)][0]))
        return torch.stack(columns, dim=1).double()

    eye_s, eye_t = torch.eye(s, dtype=torch.float64), torch.eye(t, dtype=torch.float64)
    encoder = [_rows_or_self(distances("encoder", "encoder", i, s), eye_s) for i in range(model.n_layers)]
    layers = []
    for i in range(model.n_layers):
        cross = distances("cross", "decoder", i, s)
        self_ = distances("decoder", "decoder", i, t).tril()
        own = torch.cat([torch.zeros_like(cross), eye_t], dim=-1)
        joint = _rows_or_self(torch.cat([cross, self_], dim=-1), own)
        c_src, c_self = joint[:, :s], joint[:, s:]
        layers.append((rows_to_one(c_self), c_src, c_self.sum(-1)))
    return rollout(layers, encoder)


def naive_integrated_gradients(bundle, translation) -> torch.Tensor:
    """(T, S) Captum's IntegratedGradients once per output row, the decoder input cut after that row."""
    from captum.attr import IntegratedGradients

    model = bundle.model
    src = torch.tensor([translation.source_ids])
    with torch.no_grad():
        vectors = model.source_vectors(src)
    baseline = ig_baseline(bundle, vectors, translation.source_ids)
    rows = []
    for row, token in enumerate(row_outputs(translation)):
        tgt = torch.tensor([translation.target_ids[: row + 1]])

        def forward(v, tgt=tgt, token=token):
            hidden, _, _ = model.decode(
                tgt.expand(len(v), -1), model.encode_vectors(v, None), None, causal_mask(tgt.size(1))
            )
            return model.project(hidden[:, -1]).float().log_softmax(-1)[:, token]

        with torch.enable_grad():
            scores = IntegratedGradients(forward).attribute(
                vectors, baselines=baseline, n_steps=32, internal_batch_size=32
            )
        rows.append(scores[0].sum(-1).detach())
    return torch.stack(rows)


def naive_attribute(bundle, translation, method: str) -> torch.Tensor:
    """A method's (T, S) source scores, by the naive loop where the method has one, else as ours."""
    model, src, dec = bundle.model, translation.source_ids, translation.target_ids
    if method == "gradient":
        return naive_gradient(model, src, dec, row_outputs(translation)).double()
    if method == "value-zeroing":
        return naive_value_zeroing(model, src, dec).source_distribution()
    if method == "integrated-gradients":
        return rows_to_one(naive_integrated_gradients(bundle, translation).abs()).double()
    return attribute(bundle, translation, method).source


# ---------------------------------------------------------------- the naive leaderboard


@torch.inference_mode()
def row_probability(bundle, vectors: torch.Tensor, dec_ids: list[int], row: int, token: int) -> float:
    """One unbatched teacher-forced pass: the probability of `token` at decoder row `row`."""
    model = bundle.model
    hidden, _, _ = model.decode(
        torch.tensor([dec_ids]), model.encode_vectors(vectors, None), None, causal_mask(len(dec_ids))
    )
    return float(model.project(hidden[0, row]).float().softmax(-1)[token])


def naive_sentence(bundle, sentence: str, board, seed: int) -> None:
    """board_module.add_sentence by plain loops: a pass per deleted word, a pass per row per draw."""
    result = translate(bundle, sentence)
    model, specials = bundle.model, bundle.specials
    ids, dec, outputs = result.source_ids, result.target_ids, row_outputs(result)
    keep = torch.tensor([o != specials.eos for o in outputs])
    words = board_module._word_tokens(bundle, sentence, ids)
    if len(words) < 2 or not keep.any():
        return
    with torch.inference_mode():
        vectors = model.source_vectors(torch.tensor([ids]))
    t = len(dec)
    base = torch.tensor([row_probability(bundle, vectors, dec, r, outputs[r]) for r in range(t)])
    drops = []
    for w in words:
        short = [tok for p, tok in enumerate(ids) if p not in set(w)]
        with torch.inference_mode():
            shorter = model.source_vectors(torch.tensor([short]))
        drops.append(base - torch.tensor([row_probability(bundle, shorter, dec, r, outputs[r]) for r in range(t)]))
    drops = torch.stack(drops)  # (W, T)
    board.random_drop += float(drops.mean(0)[keep].sum())
    board.best_drop += float(drops.max(0).values[keep].sum())
    board.rows += int(keep.sum())
    board.sentences += 1
    span = specials.words(ids)
    empty = vectors.clone()
    empty[:, span] = 0
    p_empty = torch.tensor([row_probability(bundle, empty, dec, r, outputs[r]) for r in range(t)])
    s0 = (1 - (base - p_empty).clamp_min(0)).clamp(0, 1)
    generator = torch.Generator().manual_seed(seed)
    for method, tally in board.methods.items():
        started = time.perf_counter()
        scores = naive_attribute(bundle, result, method).float()
        tally.seconds += time.perf_counter() - started
        tally.sentences += 1
        word_scores = torch.stack([scores[:, w].sum(-1) for w in words])
        top = word_scores.argmax(0)
        tally.drop += float(drops[top, torch.arange(t)][keep].sum())
        tally.rows += int(keep.sum())
        soft = board_module._soft_scores(scores, span)  # (T, S) keep probabilities
        noise = torch.rand((board_module.DRAWS, t, *vectors.shape[1:]), generator=generator)  # as ours draws it
        scale = (1 - s0).clamp_min(1e-6)
        for r in range(t):
            suff = comp = 0.0
            for d in range(board_module.DRAWS):
                kept = vectors[0] * (noise[d, r] < soft[r, :, None]).float()
                dropped = vectors[0] * (noise[d, r] < 1 - soft[r, :, None]).float()
                drop_kept = max(0.0, float(base[r]) - row_probability(bundle, kept[None], dec, r, outputs[r]))
                drop_out = max(0.0, float(base[r]) - row_probability(bundle, dropped[None], dec, r, outputs[r]))
                suff += min(1.0, max(0.0, 1 - drop_kept - float(s0[r])) / float(scale[r]))
                comp += min(1.0, drop_out / float(scale[r]))
            if keep[r]:
                tally.sufficiency += suff / board_module.DRAWS
                tally.comprehensiveness += comp / board_module.DRAWS
                tally.soft_rows += 1


def naive_gold(bundle, pair, board) -> None:
    """board_module.add_gold with the naive methods."""
    fed = board_module.fed(bundle, pair.source_words, pair.target_words)
    if fed is None:
        return
    encoded, result = fed
    for method, tally in board.methods.items():
        links = board_module.word_links(encoded, naive_attribute(bundle, result, method))
        tally.hits += len(links & pair.links)
        tally.predicted += len(links)
        tally.gold += len(pair.links)
    board.gold_pairs += 1


def naive_leaderboard(bundle, gold, sentences):
    board = board_module.Leaderboard({m: board_module.Tally() for m in METHODS})
    for pair in gold:
        naive_gold(bundle, pair, board)
    for n, sentence in enumerate(sentences):
        naive_sentence(bundle, sentence, board, seed=n)
    return board


def largest_difference(a: dict, b: dict) -> float:
    """The largest absolute difference between two leaderboards' figures (seconds left out)."""
    diffs = [abs(a[k] - b[k]) for k in ("deletion_random", "deletion_best") if a[k] is not None]
    for method, row in a["methods"].items():
        for key, value in row.items():
            if key != "seconds_per_sentence" and value is not None:
                diffs.append(abs(value - b["methods"][method][key]))
    return max(diffs, default=0.0)


# ---------------------------------------------------------------- main


def time_methods(bundle, result, repeats: int) -> None:
    print(f"1. every method, all {len(result.target_ids)} output rows (median of {repeats}, after a warm-up):")
    for method in METHODS:
        attribute(bundle, result, method)
        cpu, wall = [], []
        for _ in range(repeats):
            with Timer() as timer:
                attribute(bundle, result, method)
            cpu.append(timer.cpu * 1000)
            wall.append(timer.wall * 1000)
        target = TARGET_MS.get(method, DEFAULT_TARGET_MS)
        ms = statistics.median(cpu)
        verdict = "under" if ms < target else "OVER"
        print(
            f"  {method:<21} {ms:8.1f} ms CPU {statistics.median(wall):8.1f} ms wall  ({verdict} the {target:.0f} ms target)"
        )
    print("  naive loops, once each:")
    for method in ("gradient", "value-zeroing", "integrated-gradients"):
        ours = attribute(bundle, result, method).source
        with Timer() as timer:
            naive = naive_attribute(bundle, result, method)
        print(
            f"  {method:<21} {timer.cpu * 1000:8.1f} ms CPU {timer.wall * 1000:8.1f} ms wall  (largest difference "
            f"from ours {float((naive - ours).abs().max()):.1e})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=str(ROOT / "checkpoints" / "default.pt"))
    parser.add_argument("--data", default=str(ROOT / "checkpoints" / "heads_sample.en-it.tsv"))
    parser.add_argument(
        "--gold", help="gold alignments (XL-WA's format) to add to the leaderboard, as the command does"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each method, after a warm-up")
    parser.add_argument("--limit", type=int, default=100, help="sentences (and gold pairs) of the leaderboard")
    parser.add_argument("--naive", type=int, default=3, help="sentences (and gold pairs) of the naive leaderboard")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--skip-methods", action="store_true", help="only the leaderboard")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    bundle = load_checkpoint(args.checkpoint)
    result = translate(bundle, SENTENCE)
    print(
        f"torch {torch.__version__}, {args.threads} thread(s); {args.checkpoint}; sentence of "
        f"{len(bundle.src_tokenizer.encode(SENTENCE).ids)} tokens: {SENTENCE}"
    )
    if not args.skip_methods:
        time_methods(bundle, result, args.repeats)
    sentences = [en for en, _ in read_tsv(args.data)][: args.limit]
    gold = read_gold(args.gold)[: args.limit] if args.gold else []
    few_gold, few = gold[: args.naive], sentences[: args.naive]
    print(
        f"2. leaderboard, {len(METHODS)} methods: {len(sentences)} sentences of {Path(args.data).name}"
        + (f" and {len(gold)} gold pairs of {Path(args.gold).name}" if gold else "")
    )
    with Timer() as ours_few:
        small = board_module.leaderboard(bundle, few_gold, few)
    with Timer() as naive_few:
        naive = naive_leaderboard(bundle, few_gold, few)
    difference = largest_difference(small.to_json(), naive.to_json())
    with Timer() as ours_all:
        board_module.leaderboard(bundle, gold, sentences)
    scale = (len(sentences) + len(gold)) / max(1, len(few) + len(few_gold))
    verdict = "under" if ours_all.cpu < LEADERBOARD_TARGET_S else "OVER"
    print(f"  ours:  {ours_all.cpu:7.1f} s CPU {ours_all.wall:7.1f} s wall  ({verdict} the 3-minute target)")
    print(
        f"  on the first {len(few)} sentences" + (f" and {len(few_gold)} gold pairs" if few_gold else "") + ": "
        f"ours {ours_few.cpu:.1f} s CPU, naive {naive_few.cpu:.1f} s CPU ({naive_few.wall:.1f} s wall); largest "
        f"difference of their figures {difference:.1e}"
    )
    print(f"  naive, extrapolated to all: {naive_few.cpu * scale:7.1f} s CPU")
    print(f"speedup: {naive_few.cpu / ours_few.cpu:.1f}x")


if __name__ == "__main__":
    main()
