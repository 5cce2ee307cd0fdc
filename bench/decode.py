"""Greedy decoding speed: our key/value cache against the tutorial's way, on the same random weights.

    python bench/decode.py [--threads 1] [--repeats 5] [--steps 20]

Both ways decode exactly --steps tokens of a 20-token source sentence (the [EOS] logit is pushed down in
the shared weights, so neither stops early) and compute every attention map (need_weights=True):
- ours: `core.decoding.greedy_decode`, what the app and `translate` run: the source unpadded, encoded once;
  one new token per step through the decoder, with the keys and values of earlier tokens (self-attention)
  and of the source (cross-attention) cached; it also feeds the last token once more for its attention
  row, collects every map and the top-5 probabilities of every row;
- the tutorial's: the source padded to seq_len with an encoder mask, encoded once; the decoder re-run
  over the whole prefix every step with a causal mask (cross-attention keys and values recomputed);
- the tutorial's loop on the unpadded source: the same loop over the 20-token source, so that its ratio to
  ours is the cache's own share, and its ratio to the padded loop is what dropping the padding alone gives.
Prints the median milliseconds of each, whether the generated ids agree, and the time of only the
matrix-vector products over the weights ours must read per step (one step's share of memory traffic,
nothing else): the floor for an exact float32 cached decoder at this moment's memory bandwidth. Ends
with `speedup: <ratio>x` for the full (tutorial) size: the tutorial's padded loop over ours, both changes
together (the lines above it split it into the padding's share and the cache's).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from core import ModelConfig, Transformer  # noqa: E402
from core.decoding import greedy_decode  # noqa: E402
from core.model import causal_mask, padding_mask  # noqa: E402
from core.tokenizer import EOS_ID, PAD_ID, SOS_ID  # noqa: E402

SIZES = {
    "full": ModelConfig(src_vocab_size=15700, tgt_vocab_size=22400),  # the tutorial's d512, 6 layers, 8 heads
    "small": ModelConfig(src_vocab_size=8000, tgt_vocab_size=8000, d_model=256, n_layers=4, n_heads=8, d_ff=1024),
}


def decoding_case(config: ModelConfig) -> tuple[Transformer, list[int]]:
    """A seeded random model that never writes [EOS] (so every way decodes the same number of steps) and a
    seeded 20-token source: the same case for every way and every bench."""
    torch.manual_seed(0)
    model = Transformer(config).eval()
    with torch.no_grad():
        model.projection_layer.proj.bias[EOS_ID] = -1e4
    gen = torch.Generator().manual_seed(1)
    return model, [SOS_ID, *torch.randint(4, config.src_vocab_size, (20,), generator=gen).tolist(), EOS_ID]


def ours(model: Transformer, src_ids: list[int], steps: int) -> list[int]:
    """KV-cache greedy decoding as the app runs it: `steps` tokens (max_len counts [SOS])."""
    return greedy_decode(model, src_ids, steps + 1)[1]


@torch.inference_mode()
def tutorial(model: Transformer, src_ids: list[int], steps: int, pad: bool = True) -> list[int]:
    """The tutorial's greedy decoding, forced to run `steps` steps; pad=False runs the same loop on the source
    as it is (no padding, no encoder mask)."""
    if pad:
        src = torch.tensor([src_ids + [PAD_ID] * (model.config.seq_len - len(src_ids))])  # (1, seq_len)
        src_mask = padding_mask(src, PAD_ID)  # (1, 1, 1, seq_len)
    else:
        src, src_mask = torch.tensor([src_ids]), None  # (1, S)
    memory, _ = model.encode(src, src_mask, need_weights=True)
    dec = torch.tensor([[SOS_ID]])  # (1, T), grows by one per step
    for _ in range(steps):
        hidden, _, _ = model.decode(dec, memory, src_mask, causal_mask(dec.size(1)), True)  # (1, T, D)
        next_id = model.project(hidden[:, -1]).argmax(-1, keepdim=True)  # (1, 1)
        dec = torch.cat([dec, next_id], dim=1)
    return dec[0, 1:].tolist()


def streamed_linears(model: Transformer) -> list[torch.nn.Linear]:
    """The layers whose weights one cached decoding step must read: the decoder's (less the cross-attention
    keys/values, computed once) and the projection."""
    skip = (".cross_attention_block.w_k", ".cross_attention_block.w_v")
    decoder = [
        m
        for n, m in model.decoder.named_modules()
        if isinstance(m, torch.nn.Linear) and not any(("." + n).endswith(s) for s in skip)
    ]
    return decoder + [model.projection_layer.proj]


@torch.inference_mode()
def weights_only(linears: list[torch.nn.Linear], steps: int) -> None:
    """Only the matrix-vector products of `steps` + 1 cached steps (ours feeds the last token once more):
    a floor on ours at this moment's memory bandwidth, with no other operation."""
    inputs = {m.in_features: torch.randn(1, 1, m.in_features) for m in linears}
    for _ in range(steps + 1):
        for m in linears:
            m(inputs[m.in_features])


def interleaved_medians(ways: dict, repeats: int) -> tuple[dict[str, float], dict]:
    """Median milliseconds and last result of each way. Every repeat runs each way once, in turn, so all
    see the same moments of this shared machine (its memory bandwidth drifts from second to second)."""
    results = {name: fn() for name, fn in ways.items()}  # warm-up
    times = {name: [] for name in ways}
    for _ in range(repeats):
        for name, fn in ways.items():
            start = time.perf_counter()
            results[name] = fn()
            times[name].append((time.perf_counter() - start) * 1000)
    return {name: statistics.median(t) for name, t in times.items()}, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument(
        "--repeats", type=int, default=5, help="timed runs of each way (interleaved), after one warm-up"
    )
    parser.add_argument("--steps", type=int, default=20, help="tokens generated per run")
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), default=["small", "full"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.steps} steps, median of {args.repeats}")
    speedup = None
    for name in args.sizes:
        config = SIZES[name]
        model, src_ids = decoding_case(config)
        linears = streamed_linears(model)
        ms, ids = interleaved_medians(
            {
                "ours": lambda m=model, s=src_ids: ours(m, s, args.steps),
                "tutorial": lambda m=model, s=src_ids: tutorial(m, s, args.steps),
                "unpadded": lambda m=model, s=src_ids: tutorial(m, s, args.steps, pad=False),
                "weights": lambda ls=linears: weights_only(ls, args.steps),
            },
            args.repeats,
        )
        ours_ms, tut_ms, bare_ms, floor_ms = ms["ours"], ms["tutorial"], ms["unpadded"], ms["weights"]
        ours_ids = ids["ours"]
        ratio = tut_ms / ours_ms
        print(
            f"{name}: d_model {config.d_model}, {config.n_layers} layers, {config.n_heads} heads, d_ff {config.d_ff}, "
            f"vocab {config.src_vocab_size}/{config.tgt_vocab_size}, seq_len {config.seq_len}"
        )
        padded = f"tutorial (recompute, source padded to {config.seq_len}):"
        print(f"  {'ours (kv cache, source unpadded):':<50}{ours_ms:8.1f} ms")
        print(f"  {padded:<50}{tut_ms:8.1f} ms")
        print(f"  {'the tutorial loop on the unpadded source:':<50}{bare_ms:8.1f} ms")
        same = ours_ids == ids["tutorial"] == ids["unpadded"]
        print(f"  same ids: {same} ({len(ours_ids)} tokens, {ours_ids.count(EOS_ID)} of them [EOS])")
        print(
            f"  padding's share: padded / unpadded tutorial {tut_ms / bare_ms:.1f}x; "
            f"the cache's own share: unpadded tutorial / ours {bare_ms / ours_ms:.1f}x"
        )
        mb = sum(p.numel() * p.element_size() for m in linears for p in m.parameters()) / 1e6
        print(
            f"  reading the {mb:.0f} MB of weights a cached step needs, {args.steps + 1} times, and nothing else: "
            f"{floor_ms:.1f} ms ({mb * (args.steps + 1) / floor_ms:.1f} GB/s); tutorial / that: "
            f"{tut_ms / floor_ms:.1f}x"
        )
        print(f"  ratio (padded tutorial / ours, both changes): {ratio:.1f}x")
        if name == "full" or speedup is None:
            speedup = ratio
    print(f"speedup: {speedup:.1f}x")


if __name__ == "__main__":
    main()
