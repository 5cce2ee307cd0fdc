"""Two Gloo processes under torchrun on CPU: identical weights on both ranks, equal to one process.

DDP averages the ranks' gradients. Rank r trains on batches[r::2] of the epoch's bucketed list, so one
DDP step sees batches[2i] + batches[2i+1]; the single-process reference is the same train() with
make_batches wrapped to return exactly those unions. The mean of the two ranks' mean losses equals
the mean loss over the union only when both batches hold as many target tokens, so every sentence of
the corpus has the same length. With dropout 0 the two runs then compute the same update up to
floating-point summation order.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import core.training
from core.cli.train import config_from_args
from core.training import train

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
WORDS_EN = ["red", "blue", "green", "cat", "dog", "house", "big", "small", "runs", "sleeps"]
WORDS_IT = ["rosso", "blu", "verde", "gatto", "cane", "casa", "grande", "piccolo", "corre", "dorme"]

WORKER = """
import os, sys
import torch
import core.cli.train
import core.training
from core.model import Transformer

made = []

class Recording(Transformer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        made.append(self)

core.training.Transformer = Recording
code = core.cli.train.main(sys.argv[2:])
state = {k: v.detach().clone() for k, v in made[0].state_dict().items()}
torch.save(state, os.path.join(sys.argv[1], f"rank{os.environ['RANK']}.pt"))
sys.exit(code)
"""


def equal_length_corpus(path: Path, n: int = 72, words: int = 4) -> Path:
    rng = random.Random(0)
    lines = []
    for _ in range(n):
        idx = [rng.randrange(len(WORDS_EN)) for _ in range(words)]
        lines.append(" ".join(WORDS_EN[i] for i in idx) + "\t" + " ".join(WORDS_IT[i] for i in idx))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def argv_for(run: Path, data: Path) -> list[str]:
    return [
        "--data",
        str(data),
        "--model-folder",
        str(run / "weights"),
        "--experiment-name",
        str(run / "tb"),
        "--d-model",
        "32",
        "--layers",
        "2",
        "--heads",
        "4",
        "--d-ff",
        "64",
        "--seq-len",
        "16",
        "--batch-size",
        "4",
        "--min-frequency",
        "1",
        "--threads",
        "1",
        "--val-sentences",
        "2",
        "--dropout",
        "0",
        "--lr",
        "1e-3",
        "--epochs",
        "1",
        "--max-steps",
        "3",
        "--device",
        "cpu",
        "--seed",
        "5",
    ]


@pytest.mark.skipif(
    not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
    reason="needs torch.distributed with Gloo",
)
def test_two_gloo_processes_match_each_other_and_one_process(tmp_path, monkeypatch):
    data = equal_length_corpus(tmp_path / "pairs.tsv")
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            str(script),
            str(out),
            *argv_for(tmp_path / "ddp", data),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rank0, rank1 = torch.load(out / "rank0.pt", weights_only=True), torch.load(out / "rank1.pt", weights_only=True)
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key
    # only rank 0 writes: one checkpoint (the --max-steps stop) and one TensorBoard folder
    written = sorted(p.name for p in (tmp_path / "ddp" / "weights").glob("*.pt"))
    assert written == ["tmodel_00-step00000003.pt"]
    assert len(list((tmp_path / "ddp" / "tb").glob("events.out.tfevents.*"))) == 1

    # single process, same seed and tokenizers, each step on the union of the two ranks' batches
    single = tmp_path / "single"
    (single / "weights").mkdir(parents=True)
    for name in ("tokenizer_en.json", "tokenizer_it.json"):
        shutil.copy(tmp_path / "ddp" / "weights" / name, single / "weights" / name)
    real_make_batches = core.training.make_batches

    def union_of_rank_batches(examples, batch_size, max_tokens, seed):
        batches = real_make_batches(examples, batch_size, max_tokens, seed)
        return [batches[i] + batches[i + 1] for i in range(0, len(batches) - 1, 2)]

    made = []

    class Recording(core.training.Transformer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(core.training, "make_batches", union_of_rank_batches)
    monkeypatch.setattr(core.training, "Transformer", Recording)
    train(config_from_args(argv_for(single, data)))
    reference = made[0].state_dict()
    assert rank0.keys() == reference.keys()
    gap = {k: (rank0[k] - reference[k]).abs().max().item() for k in reference}
    print(f"largest DDP vs single-process difference: {max(gap.values()):.3g}")
    assert max(gap.values()) < 1e-5, sorted(gap.items(), key=lambda kv: -kv[1])[:3]
    # and the comparison is not vacuous: three steps moved the weights by far more than the tolerance
    torch.manual_seed(5)
    fresh = core.training.Transformer(made[0].config).state_dict()
    initial_gap = max((fresh[k] - reference[k]).abs().max().item() for k in reference)
    assert initial_gap > 1e-3
