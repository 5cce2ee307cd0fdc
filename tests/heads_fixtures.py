"""Small models for the head tests: an untrained tiny bundle, a tiny model trained so that one head carries the
whole task, and one trained with every head on to copy its input word by word (shared by test_importance.py,
test_heads_cli.py and test_head_roles.py)."""

from __future__ import annotations

import functools
import random
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from app_fixtures import EN, IT, cache_file, tiny_bundle_parts  # noqa: E402

from core import ModelConfig, Transformer  # noqa: E402
from core.checkpoint import ModelBundle  # noqa: E402
from core.data import collate, encode_pairs  # noqa: E402
from core.model import causal_mask, padding_mask  # noqa: E402
from core.tokenizer import PAD_ID, build_tokenizer  # noqa: E402

SOURCE_WORDS = [f"w{i}" for i in range(10)]
TARGET_WORDS = [f"p{i}" for i in range(10)]
CARRIER = ("cross", 1, 2)  # the one head that runs in training (1-based layer and head)


def bundle_of(model, src, tgt) -> ModelBundle:
    return ModelBundle(model.eval(), src, tgt, model.config, "test", "native")


def tiny_bundle(layers: int = 2, heads: int = 2, seed: int = 0) -> ModelBundle:
    return bundle_of(*tiny_bundle_parts(layers, heads, seed))


def toy_pairs(n: int = 12) -> list[tuple[str, str]]:
    return [(EN[i % len(EN)], IT[i % len(IT)]) for i in range(n)]


def word_map_pairs(n: int, seed: int) -> list[tuple[str, str]]:
    """Random 3-6 word sentences over 10 words, 'translated' word by word (w_i -> p_i): only cross-attention
    can carry which word to write."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        idx = [rng.randrange(10) for _ in range(rng.randint(3, 6))]
        pairs.append((" ".join(SOURCE_WORDS[i] for i in idx), " ".join(TARGET_WORDS[i] for i in idx)))
    return pairs


def word_map_model(seed: int = 0):
    """(untrained 2-layer 2-head model, source tokenizer, target tokenizer) for word_map_pairs."""
    torch.manual_seed(seed)
    src = build_tokenizer(SOURCE_WORDS, min_frequency=1)
    tgt = build_tokenizer(TARGET_WORDS, min_frequency=1)
    cfg = ModelConfig(
        src_vocab_size=src.get_vocab_size(),
        tgt_vocab_size=tgt.get_vocab_size(),
        d_model=32,
        n_layers=2,
        n_heads=2,
        d_ff=64,
        dropout=0.0,
        seq_len=12,
    )
    return Transformer(cfg), src, tgt


def train_word_map(model, src, tgt, steps: int, gates=None) -> None:
    """Adam on word_map_pairs, batches of 32 (gates: a head mask applied in training)."""
    examples, _ = encode_pairs(word_map_pairs(2000, seed=1), src, tgt, model.config.seq_len)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for step in range(steps):
        batch = [examples[(step * 32 + i) % len(examples)] for i in range(32)]
        s, d, lab = collate(batch)
        logits = model(s, d, padding_mask(s, PAD_ID), causal_mask(d.size(1)), head_mask=gates)
        loss = F.cross_entropy(logits.flatten(0, 1), lab.flatten(), ignore_index=PAD_ID)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def copy_bundle(steps: int = 200, seed: int = 0) -> ModelBundle:
    """A 2-layer 2-head model trained with every head on to copy its input word by word (w_i -> p_i): a few
    seconds on one CPU thread."""
    model, src, tgt = word_map_model(seed)
    train_word_map(model, src, tgt, steps)
    return bundle_of(model, src, tgt)


@functools.cache
def carrier_bundle(steps: int = 300) -> ModelBundle:
    """A 2-layer 2-head model trained on word_map_pairs with every head but CARRIER switched off, whose
    other heads' output projections are then zeroed: by construction no other head can change anything.
    Trained once per test session (about 5 s), or read from $ATTN_TEST_CACHE; callers only read it."""
    model, src, tgt = word_map_model(0)
    cfg = model.config
    cached = cache_file(f"carrier_{steps}.pt")
    if cached is not None and cached.is_file():
        model.load_state_dict(torch.load(cached, weights_only=True))
        return bundle_of(model, src, tgt)
    kind, layer, head = CARRIER
    gates = {k: torch.zeros(2, 2) for k in ("encoder", "decoder", "cross")}
    gates[kind][layer - 1, head - 1] = 1.0
    train_word_map(model, src, tgt, steps, gates)
    dh = cfg.d_model // cfg.n_heads
    with torch.no_grad():
        for k, block in blocks(model):
            for li, attn in enumerate(block):
                for h in range(cfg.n_heads):
                    if (k, li + 1, h + 1) != CARRIER:
                        attn.w_o.weight[:, h * dh : (h + 1) * dh] = 0.0
    if cached is not None:
        torch.save(model.state_dict(), cached)
    return bundle_of(model, src, tgt)


def blocks(model: Transformer):
    """(kind, [attention block of each layer]) for the three kinds."""
    yield "encoder", [layer.self_attention_block for layer in model.encoder.layers]
    yield "decoder", [layer.self_attention_block for layer in model.decoder.layers]
    yield "cross", [layer.cross_attention_block for layer in model.decoder.layers]
