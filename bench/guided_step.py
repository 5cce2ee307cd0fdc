"""Cost of guided alignment in a training step, on a small model (4 layers x 4 heads, d_model 256, CPU).

    python bench/guided_step.py [--rounds 15] [--batch 32]

Three steps (forward, backward, Adam) on the same random batch: without alignments; with the guided loss on
one head computed beside the fused attention kernel, its targets built from token links in the step (what
`train --alignments` runs); and with the same loss
read from every attention map of every layer (return_attention=True: the explicit kernel everywhere), the
faithful way to get a head without the one-head path. Rounds interleave the three and medians are shown.
The last line is the speedup of the one-head path over the all-maps path.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.guided_alignment import alignment_targets, guided_loss  # noqa: E402
from core.model import ModelConfig, Transformer, causal_mask, padding_mask  # noqa: E402
from core.tokenizer import PAD_ID  # noqa: E402

VOCAB = 8000


def batch(size: int, generator: torch.Generator):
    """Random (src, decoder input, labels, token links) with lengths 8..24, each target token linked to one or
    two source tokens."""
    lengths = torch.randint(8, 25, (size,), generator=generator)
    width = int(lengths.max()) + 2
    src = torch.full((size, width), PAD_ID)
    dec = torch.full((size, width - 1), PAD_ID)
    links = []
    for row, n in enumerate(lengths.tolist()):
        src[row, : n + 2] = torch.randint(4, VOCAB, (n + 2,), generator=generator)
        dec[row, : n + 1] = torch.randint(4, VOCAB, (n + 1,), generator=generator)
        order = torch.randperm(n, generator=generator).tolist()
        links.append(tuple(sorted({(t, order[t]) for t in range(n)} | {(t, order[t - 1]) for t in range(1, n, 3)})))
    lab = torch.roll(dec, -1, 1)
    return src, dec, lab, links


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    config = ModelConfig(VOCAB, VOCAB, d_model=256, n_layers=4, n_heads=4, d_ff=1024, dropout=0.1, seq_len=64)
    model = Transformer(config).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    src, dec, lab, links = batch(args.batch, torch.Generator().manual_seed(0))
    src_mask, tgt_mask = padding_mask(src, PAD_ID), padding_mask(dec, PAD_ID) & causal_mask(dec.size(1))
    tokens = int((lab != PAD_ID).sum())
    layer, head = config.n_layers - 2, 0  # the default: penultimate layer

    def step(mode: str) -> float:
        start = time.process_time()  # CPU time of this one-thread process: steadier than wall time on a shared box
        if mode == "plain":
            logits = model(src, dec, src_mask, tgt_mask)
            extra = 0.0
        elif mode == "one head":
            logits, probs = model(src, dec, src_mask, tgt_mask, align_head=(layer, head))
            extra = guided_loss(probs, alignment_targets(links, *probs.shape[1:]), tokens)
        else:
            logits, (_, _, cross) = model(src, dec, src_mask, tgt_mask, return_attention=True)
            probs = cross[layer, :, head]
            extra = guided_loss(probs, alignment_targets(links, *probs.shape[1:]), tokens)
        loss = F.cross_entropy(logits.flatten(0, 1), lab.flatten(), ignore_index=PAD_ID) + 0.05 * extra
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return (time.process_time() - start) * 1000

    modes = ("plain", "one head", "all maps")
    for mode in modes:  # warm-up
        step(mode)
    times = {mode: [] for mode in modes}
    for _ in range(args.rounds):
        for mode in modes:
            times[mode].append(step(mode))
    median = {mode: statistics.median(values) for mode, values in times.items()}
    print(
        f"batch {args.batch} pairs, {tokens} target tokens; median CPU ms per training step over {args.rounds} rounds:"
    )
    for mode in modes:
        print(f"  {mode:<9} {median[mode]:8.1f} ms  ({median[mode] / median['plain']:.3f} x plain)")
    print(f"speedup: {median['all maps'] / median['one head']:.2f}x")


if __name__ == "__main__":
    main()
