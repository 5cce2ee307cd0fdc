"""Tiny checkpoints for the app tests (made in seconds, never trained): shared by test_app*.py and test_browser.py."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from core import ModelConfig, Transformer, save_checkpoint
from core.tokenizer import build_tokenizer

EN = ["the cat sat on the mat", "a dog runs in the park", "i like green tea", "the house is big"]
IT = ["il gatto era sul tappeto", "un cane corre nel parco", "mi piace il tè verde", "la casa è grande"]


def cache_file(name: str) -> Path | None:
    """Where a model trained by the tests is kept across test sessions: $ATTN_TEST_CACHE/name, or None (the
    default: trained once per session). bench/mutation.py sets it, so its thousands of short test runs train each
    model once."""
    folder = os.environ.get("ATTN_TEST_CACHE")
    if not folder:
        return None
    Path(folder).mkdir(parents=True, exist_ok=True)
    return Path(folder) / name


def tiny_bundle_parts(layers: int = 2, heads: int = 2, seed: int = 0):
    """(model, src tokenizer, tgt tokenizer) of a seeded, untrained 2-layer 2-head model."""
    torch.manual_seed(seed)
    src, tgt = build_tokenizer(EN, min_frequency=1), build_tokenizer(IT, min_frequency=1)
    config = ModelConfig(
        src_vocab_size=src.get_vocab_size(),
        tgt_vocab_size=tgt.get_vocab_size(),
        d_model=16,
        n_layers=layers,
        n_heads=heads,
        d_ff=32,
        dropout=0.0,
        seq_len=24,
    )
    return Transformer(config).eval(), src, tgt


def write_tiny_checkpoint(path: Path, layers: int = 2, heads: int = 2, seed: int = 0, card: bool = True) -> Path:
    """Save a tiny native checkpoint (with a small model card) at path."""
    model, src, tgt = tiny_bundle_parts(layers, heads, seed)
    metadata = (
        {
            "model_card": {
                "description": "tiny untrained test model",
                "data": "4 toy sentences",
                "metrics": {"toy_test": {"bleu": 12.5, "chrf": 40.0}},
            }
        }
        if card
        else {}
    )
    save_checkpoint(path, model, src, tgt, metadata=metadata)
    return path


def write_tutorial_files(folder: Path, layers: int = 2, heads: int = 2) -> tuple[Path, Path, Path]:
    """A tutorial-style tmodel_00.pt (state dict only) plus tokenizer_en.json / tokenizer_it.json."""
    model, src, tgt = tiny_bundle_parts(layers, heads)
    folder.mkdir(parents=True, exist_ok=True)
    ckpt = folder / "tmodel_00.pt"
    torch.save({"epoch": 0, "model_state_dict": model.state_dict()}, ckpt)
    src_path, tgt_path = folder / "tokenizer_en.json", folder / "tokenizer_it.json"
    src.save(str(src_path))
    tgt.save(str(tgt_path))
    return ckpt, src_path, tgt_path


def write_tutorial_run(root: Path, epochs: list[int]) -> Path:
    """The tutorial's layout: root/opus_books_weights/tmodel_NN.pt (weights and Adam state, no head count) with
    tokenizer_en.json / tokenizer_it.json one folder up, in root. Returns the weights folder."""
    folder = root / "opus_books_weights"
    folder.mkdir(parents=True)
    for epoch in epochs:
        model, src, tgt = tiny_bundle_parts(seed=epoch)
        optimizer = torch.optim.Adam(model.parameters())
        payload = {"epoch": epoch, "model_state_dict": model.state_dict(), "global_step": 10 * epoch}
        torch.save(payload | {"optimizer_state_dict": optimizer.state_dict()}, folder / f"tmodel_{epoch:02d}.pt")
    src.save(str(root / "tokenizer_en.json"))
    tgt.save(str(root / "tokenizer_it.json"))
    return folder
