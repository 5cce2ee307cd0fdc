"""Greedy decoding speed: our key/value cache against the tutorial's way, on the same random weights.

    python bench/decode.py [--threads 1] [--repeats 5] [--steps 20]

Both ways decode exactly --steps tokens of a 20-token source sentence (the [EOS] logit is pushed down in
the shared weights, so neither stops early) and compute every attention map (need_weights=True):
- ours: `core.decode.greedy_decode`, what the app and `translate` run: the source unpadded, encoded once;
  one new token per step through the decoder, with the keys and values of earlier tokens (self-attention)
  and of the source (cross-attention) cached; it also feeds the last token once more for its attention
  row, collects every map and the top-5 probabilities of every row;
- the tutorial's: the source padded to seq_len with an encoder mask, encoded once; the decoder re-run
  over the whole prefix every step with a causal mask (cross-attention keys and values recomputed).
Prints the median milliseconds of each, whether the generated ids agree, and ends with
`speedup: <ratio>x` for the full (tutorial) size.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from core import ModelConfig, Transformer, decode  # noqa: E402
from core.model import causal_mask, padding_mask  # noqa: E402
from core.tokenizer import EOS_ID, PAD_ID, SOS_ID  # noqa: E402

SIZES = {
    "full": ModelConfig(src_vocab_size=15700, tgt_vocab_size=22400),  # the tutorial's d512, 6 layers, 8 heads
    "small": ModelConfig(src_vocab_size=8000, tgt_vocab_size=8000, d_model=256, n_layers=4, n_heads=8, d_ff=1024),
}


def ours(model: Transformer, src_ids: list[int], steps: int) -> list[int]:
    """KV-cache greedy decoding as the app runs it: `steps` tokens (max_len counts [SOS])."""
    return decode.greedy_decode(model, src_ids, steps + 1)[1]


@torch.inference_mode()
def tutorial(model: Transformer, src_ids: list[int], steps: int) -> list[int]:
    """The tutorial's greedy decoding, forced to run `steps` steps."""
    src = torch.tensor([src_ids + [PAD_ID] * (model.config.seq_len - len(src_ids))])  # (1, seq_len)
    src_mask = padding_mask(src, PAD_ID)  # (1, 1, 1, seq_len)
    memory, _ = model.encode(src, src_mask, need_weights=True)
    dec = torch.tensor([[SOS_ID]])  # (1, T), grows by one per step
    for _ in range(steps):
        hidden, _, _ = model.decode(dec, memory, src_mask, causal_mask(dec.size(1)), True)  # (1, T, D)
        next_id = model.project(hidden[:, -1]).argmax(-1, keepdim=True)  # (1, 1)
        dec = torch.cat([dec, next_id], dim=1)
    return dec[0, 1:].tolist()


def streamed_mb_per_step(model: Transformer) -> float:
    """Weights one cached decoding step must read: the decoder (less the cached cross keys/values) and the projection."""
    skip = (".cross_attention_block.w_k.", ".cross_attention_block.w_v.")
    decoder = sum(p.numel() for n, p in model.decoder.named_parameters() if not any(s in "." + n for s in skip))
    projection = sum(p.numel() for p in model.projection_layer.parameters())
    return (decoder + projection) * 4 / 1e6


def median_ms(fn, repeats: int) -> tuple[float, list[int]]:
    fn()  # warm-up
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per way, after one warm-up")
    parser.add_argument("--steps", type=int, default=20, help="tokens generated per run")
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), default=["small", "full"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.steps} steps, median of {args.repeats}")
    speedup = None
    for name in args.sizes:
        config = SIZES[name]
        torch.manual_seed(0)
        model = Transformer(config).eval()
        with torch.no_grad():
            model.projection_layer.proj.bias[EOS_ID] = -1e4  # never stop early: both ways do `steps` steps
        gen = torch.Generator().manual_seed(1)
        src_ids = [SOS_ID, *torch.randint(4, config.src_vocab_size, (20,), generator=gen).tolist(), EOS_ID]
        ours_ms, ours_ids = median_ms(lambda m=model, s=src_ids: ours(m, s, args.steps), args.repeats)
        tut_ms, tut_ids = median_ms(lambda m=model, s=src_ids: tutorial(m, s, args.steps), args.repeats)
        ratio = tut_ms / ours_ms
        print(
            f"{name}: d_model {config.d_model}, {config.n_layers} layers, {config.n_heads} heads, d_ff {config.d_ff}, "
            f"vocab {config.src_vocab_size}/{config.tgt_vocab_size}, seq_len {config.seq_len}"
        )
        print(f"  ours (kv cache):      {ours_ms:8.1f} ms")
        print(f"  tutorial (recompute): {tut_ms:8.1f} ms")
        print(f"  same ids: {ours_ids == tut_ids} ({len(ours_ids)} tokens, "
              f"{ours_ids.count(EOS_ID)} of them [EOS])")
        mb = streamed_mb_per_step(model)
        print(f"  ours streams {mb:.0f} MB of weights per step: {mb * args.steps / ours_ms:.1f} GB/s "
              "of effective weight bandwidth")
        print(f"  ratio: {ratio:.1f}x")
        if name == "full" or speedup is None:
            speedup = ratio
    print(f"speedup: {speedup:.1f}x")


if __name__ == "__main__":
    main()
