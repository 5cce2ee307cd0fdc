"""Beam search speed: batched beams against greedy decoding, and against the same search beam by beam.

    python bench/beam.py [--threads 1] [--repeats 5] [--steps 20] [--beam 4] [--sizes full]

All three ways decode exactly --steps tokens of a 20-token source sentence on the same random weights at
the tutorial's full size (the [EOS] logit is pushed down, so no way stops early) and return every
attention map:
- greedy: `core.decoding.greedy_decode`, what `translate` runs by default;
- beam (batched): `core.decoding.beam_search`, what `translate(beam_size=K)` runs: the K beams of the
  sentence in one decoder call per step, the self-attention key/value cache reordered by beam index;
- beam, one by one: the same search (2K candidates per step, the best K kept) with each beam decoded in
  its own decoder call over its own key/value cache (copied from its parent's): the faithful naive way.
Prints the median milliseconds of each, whether both beam searches found the same best hypothesis, beam
over greedy (the target is at most 2x) and ends with `speedup: <ratio>x`, one by one over batched.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from bench.decode import SIZES, decoding_case, interleaved_medians  # noqa: E402
from core import Transformer  # noqa: E402
from core.decoding import beam_search, greedy_decode  # noqa: E402
from core.model import KVCache  # noqa: E402
from core.tokenizer import EOS_ID, SOS_ID  # noqa: E402


@torch.inference_mode()
def beam_one_by_one(model: Transformer, src_ids: list[int], beam_size: int, max_len: int):
    """The search beam_search runs, each beam decoded alone. Returns (best output ids, its (decoder, cross)
    attention as (L, H, T, T) and (L, H, T, S)); max_len counts [SOS], as in beam_search."""
    memory, _ = model.encode(torch.tensor([src_ids]), None, need_weights=True)
    # (log-probability, tokens, cache, self rows, cross rows) per live beam
    beams = [(0.0, [SOS_ID], model.new_cache(), [], [])]
    finished = []
    for pos in range(max_len):
        stepped = []
        for log_prob, tokens, cache, self_rows, cross_rows in beams:
            token = torch.tensor([[tokens[-1]]])
            hidden, self_p, cross_p = model.decode(token, memory, None, None, True, cache, start=pos)
            self_rows = [*self_rows, torch.stack(self_p)[:, 0, :, 0]]  # (L, H, pos + 1)
            cross_rows = [*cross_rows, torch.stack(cross_p)[:, 0, :, 0]]  # (L, H, S)
            scores = log_prob + model.project(hidden[:, -1])[0].float().log_softmax(-1)  # (V,)
            stepped.append((tokens, cache, self_rows, cross_rows, scores))
        if pos == max_len - 1:
            beams = [(b[0], *s[:4]) for b, s in zip(beams, stepped)]
            break
        flat = torch.cat([s[4] for s in stepped])  # (live beams * V,)
        vocab = stepped[0][4].numel()
        top_scores, top_index = flat.topk(min(2 * beam_size, flat.numel()))
        chosen = []
        for rank, (score, index) in enumerate(zip(top_scores.tolist(), top_index.tolist())):
            parent, token = divmod(index, vocab)
            tokens, cache, self_rows, cross_rows, _ = stepped[parent]
            if token == EOS_ID:
                if rank < beam_size:
                    finished.append((score, [*tokens, token], self_rows, cross_rows))
            elif len(chosen) < beam_size:
                own = [(KVCache(k=s.k, v=s.v), c) for s, c in cache]  # a decode step appends to a new tensor
                chosen.append((score, [*tokens, token], own, self_rows, cross_rows))
        if len(finished) >= beam_size or not chosen:
            beams = []
            break
        beams = chosen
    pool = finished + [(b[0], b[1], b[3], b[4]) for b in beams]
    _, tokens, self_rows, cross_rows = max(pool, key=lambda p: p[0])
    t = len(self_rows)
    decoder = torch.zeros(*self_rows[0].shape[:2], t, t)
    for i, row in enumerate(self_rows):
        decoder[:, :, i, : i + 1] = row
    return tokens[1:], (decoder, torch.stack(cross_rows, dim=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each way (interleaved), after a warm-up")
    parser.add_argument("--steps", type=int, default=20, help="tokens generated per run")
    parser.add_argument("--beam", type=int, default=4, help="beam size (default 4)")
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), default=["full"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {args.threads} thread(s), beam {args.beam}, {args.steps} steps, "
        f"median of {args.repeats}, every attention map returned"
    )
    speedup = None
    for name in args.sizes:
        config = SIZES[name]
        model, src_ids = decoding_case(config)
        max_len = args.steps + 1  # counts [SOS]
        ms, results = interleaved_medians(
            {
                "greedy": lambda m=model, s=src_ids, n=max_len: greedy_decode(m, s, n),
                "batched": lambda m=model, s=src_ids, n=max_len: beam_search(m, s, args.beam, n)[0][0],
                "one_by_one": lambda m=model, s=src_ids, n=max_len: beam_one_by_one(m, s, args.beam, n),
            },
            args.repeats,
        )
        best, (naive_ids, (naive_dec, naive_cross)) = results["batched"], results["one_by_one"]
        same = best.output_ids == naive_ids
        close = (
            same
            and torch.allclose(best.maps[1], naive_dec, atol=1e-5)
            and torch.allclose(best.maps[2], naive_cross, atol=1e-5)
        )
        print(
            f"{name}: d_model {config.d_model}, {config.n_layers} layers, {config.n_heads} heads, d_ff {config.d_ff}, "
            f"vocab {config.src_vocab_size}/{config.tgt_vocab_size}"
        )
        print(f"  greedy:                  {ms['greedy']:8.1f} ms ({len(results['greedy'][1])} tokens)")
        print(f"  beam {args.beam}, batched:         {ms['batched']:8.1f} ms ({len(best.output_ids)} tokens)")
        print(f"  beam {args.beam}, beam by beam:    {ms['one_by_one']:8.1f} ms")
        print(f"  same best hypothesis and attention (1e-5): {same and close}")
        print(f"  batched beam / greedy: {ms['batched'] / ms['greedy']:.2f}x (target: at most 2x)")
        ratio = ms["one_by_one"] / ms["batched"]
        print(f"  beam by beam / batched: {ratio:.2f}x")
        if name == "full" or speedup is None:
            speedup = ratio
    print(f"speedup: {speedup:.2f}x")


if __name__ == "__main__":
    main()
