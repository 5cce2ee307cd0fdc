"""Shared fixtures: tiny seeded models, tokenizers and checkpoints, all on CPU with one thread."""

from __future__ import annotations

import io
import os
import random
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from app_fixtures import cache_file

from core import ModelConfig, Transformer, load_checkpoint, save_checkpoint
from core.model import causal_mask, padding_mask
from core.tokenizer import EOS_ID, PAD_ID, SOS_ID, build_tokenizer

torch.set_num_threads(1)  # the box has 2 shared cores; one thread is as fast and immune to contention

EN_SENTENCES = [
    "the cat sleeps on the mat .",
    "a dog runs in the park !",
    "i don't like cold water , thanks .",
    "where is the station ?",
    "the book is on the table .",
    "she reads a long book every night .",
]
IT_SENTENCES = [
    "il gatto dorme sul tappeto .",
    "un cane corre nel parco !",
    "non mi piace l' acqua fredda , grazie .",
    "dov' è la stazione ?",
    "il libro è sul tavolo .",
    "lei legge un libro lungo ogni sera .",
]


@pytest.fixture(scope="session")
def src_tokenizer():
    return build_tokenizer(EN_SENTENCES, min_frequency=1)


@pytest.fixture(scope="session")
def tgt_tokenizer():
    return build_tokenizer(IT_SENTENCES, min_frequency=1)


@pytest.fixture(scope="session")
def tiny_config(src_tokenizer, tgt_tokenizer) -> ModelConfig:
    return ModelConfig(
        src_vocab_size=src_tokenizer.get_vocab_size(),
        tgt_vocab_size=tgt_tokenizer.get_vocab_size(),
        d_model=32,
        n_layers=2,
        n_heads=4,
        d_ff=64,
        dropout=0.0,
        seq_len=24,
    )


@pytest.fixture
def tiny_model(tiny_config) -> Transformer:
    torch.manual_seed(0)
    return Transformer(tiny_config).eval()


@pytest.fixture
def tiny_checkpoint(tmp_path, tiny_model, src_tokenizer, tgt_tokenizer):
    """Path of a native checkpoint holding tiny_model and the tiny tokenizers."""
    path = tmp_path / "tiny.pt"
    save_checkpoint(path, tiny_model, src_tokenizer, tgt_tokenizer, metadata={"note": "test"})
    return path


@pytest.fixture
def tiny_bundle(tiny_checkpoint):
    return load_checkpoint(tiny_checkpoint)


def digit_string(rng: random.Random, low: int = 3, high: int = 6) -> str:
    """A random string of low..high digits, one word per digit: '4 0 7'."""
    return " ".join(rng.choice("0123456789") for _ in range(rng.randint(low, high)))


def reverse_words(text: str) -> str:
    return " ".join(reversed(text.split()))


def _padded(rows: list[list[int]]) -> torch.Tensor:
    width = max(map(len, rows))
    return torch.tensor([row + [PAD_ID] * (width - len(row)) for row in rows])


def train_reverser(steps: int = 600, batch_size: int = 64, seed: int = 0) -> tuple[Transformer, object]:
    """Train a small model to reverse digit strings ('1 2 3' -> '3 2 1'): about 10 s on one CPU thread."""
    tokenizer = build_tokenizer([" ".join("0123456789")], min_frequency=1)
    vocab = tokenizer.get_vocab_size()
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model = Transformer(ModelConfig(vocab, vocab, d_model=64, n_layers=2, n_heads=4, d_ff=128, dropout=0.0, seq_len=10))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(steps):
        words = [tokenizer.encode(digit_string(rng)).ids for _ in range(batch_size)]
        src = _padded([[SOS_ID, *w, EOS_ID] for w in words])  # (B, S)
        dec_in = _padded([[SOS_ID, *w[::-1]] for w in words])  # (B, T)
        labels = _padded([[*w[::-1], EOS_ID] for w in words])  # (B, T)
        tgt_mask = padding_mask(dec_in, PAD_ID) & causal_mask(dec_in.size(1))
        logits = model(src, dec_in, padding_mask(src, PAD_ID), tgt_mask)  # (B, T, V)
        loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=PAD_ID)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval(), tokenizer


@pytest.fixture(scope="session")
def reverser_checkpoint(tmp_path_factory):
    """Path of a checkpoint holding the digit-reversing model, trained once per test session (or once for all
    sessions, with $ATTN_TEST_CACHE: see app_fixtures.cache_file)."""
    path = cache_file("reverser.pt") or tmp_path_factory.mktemp("reverser") / "reverser.pt"
    if not path.is_file():
        model, tokenizer = train_reverser()
        save_checkpoint(path, model, tokenizer, tokenizer, metadata={"task": "reverse digit strings"})
    return path


@pytest.fixture(scope="session")
def reverser_bundle(reverser_checkpoint):
    return load_checkpoint(reverser_checkpoint)


# ---- running the commands ---------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class CommandRun:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(capsys, monkeypatch):
    """Run `python -m core <command> args...` in this process (fast): cli("translate", "--checkpoint", p, ...)."""
    from core.__main__ import main

    def run(command: str, *args, stdin: str | None = None) -> CommandRun:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin or ""))
        capsys.readouterr()  # drop what earlier calls in the same test printed
        try:
            code = main([command, *map(str, args)])
        except SystemExit as exc:  # argparse reports bad arguments this way
            code = exc.code
        out = capsys.readouterr()
        return CommandRun(code, out.out, out.err)

    return run


def cli_subprocess(command: str, *args, stdin: bytes | None = None, timeout: float = 120) -> CommandRun:
    """The same in a fresh interpreter, as a user runs it: one smoke test per command uses this."""
    run = subprocess.run(
        [sys.executable, "-m", "core", command, *map(str, args)],
        input=stdin,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
        capture_output=True,
        timeout=timeout,
    )
    return CommandRun(run.returncode, run.stdout.decode(), run.stderr.decode())
