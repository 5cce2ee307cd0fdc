"""The shipped model's scores on a sample that ships with it, checked in CI (the model card's own test split is in
../shared, which CI does not have).

checkpoints/default_scores.json records what `evaluate` gave for checkpoints/default.pt (by its SHA-256) on the
first 100 pairs of checkpoints/heads_sample.en-it.tsv (held-out Tatoeba pairs; attribution in heads_sample.md):
corpus BLEU and chrF (sacrebleu, cased), CER and WER. A change to decoding, tokenizing, detokenizing or scoring
that changes a single translation moves them, and this test fails. After replacing the shipped model, write the
file again:

    python tests/test_default_scores.py --write
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "checkpoints" / "default.pt"
SAMPLE = ROOT / "checkpoints" / "heads_sample.en-it.tsv"
SCORES = ROOT / "checkpoints" / "default_scores.json"
PAIRS = 100
WRITE = "python tests/test_default_scores.py --write"
pytestmark = pytest.mark.skipif(not DEFAULT.is_file(), reason="checkpoints/default.pt is not there")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def measure(bundle):
    """(metrics, hypotheses, pairs scored) of greedy decoding over the sample, as `python -m core evaluate` runs it."""
    from core.data import read_tsv
    from core.evaluation import evaluate

    return evaluate(bundle, read_tsv(SAMPLE)[:PAIRS], progress=False)


@pytest.fixture(scope="module")
def bundle():
    import torch

    from core import load_checkpoint

    torch.set_num_threads(1)
    return load_checkpoint(DEFAULT)


def test_the_scores_file_is_the_shipped_models():
    recorded = json.loads(SCORES.read_text(encoding="utf-8"))
    assert recorded["sha256"] == sha256(DEFAULT), f"checkpoints/default.pt changed: write the scores again with {WRITE}"
    assert recorded["data"] == "checkpoints/heads_sample.en-it.tsv" and recorded["sentences"] == PAIRS


def test_the_shipped_model_scores_what_the_file_records(bundle):
    from sacrebleu.metrics import BLEU, CHRF

    from core import translate
    from core.evaluation import lowercases

    recorded = json.loads(SCORES.read_text(encoding="utf-8"))
    metrics, hyps, kept = measure(bundle)
    assert len(kept) == len(hyps) == recorded["sentences"]
    assert metrics["bleu"] == pytest.approx(recorded["bleu"], abs=0.01)
    assert metrics["chrf"] == pytest.approx(recorded["chrf"], abs=0.01)
    assert metrics["cer"] == pytest.approx(recorded["cer"], abs=1e-4)
    assert metrics["wer"] == pytest.approx(recorded["wer"], abs=1e-4)
    # and the numbers are what they claim: sacrebleu's own scores of the hypotheses against the references, the
    # hypotheses being what translate() writes for each sentence alone (here the first 15, to keep this quick)
    refs, lower = [it for _, it in kept], lowercases(bundle)
    assert metrics["bleu"] == pytest.approx(BLEU(lowercase=lower).corpus_score(hyps, [refs]).score, abs=1e-9)
    assert metrics["chrf"] == pytest.approx(CHRF(lowercase=lower).corpus_score(hyps, [refs]).score, abs=1e-9)
    assert [translate(bundle, en).translation for en, _ in kept[:15]] == hyps[:15]


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        raise SystemExit(f"usage: {WRITE}")
    sys.path.insert(0, str(ROOT))
    import torch

    from core import load_checkpoint

    torch.set_num_threads(1)
    metrics, _, kept = measure(load_checkpoint(DEFAULT))
    record = {
        "checkpoint": "checkpoints/default.pt",
        "sha256": sha256(DEFAULT),
        "data": "checkpoints/heads_sample.en-it.tsv",
        "sentences": len(kept),
        "decoding": "greedy (python -m core evaluate's defaults)",
        **{name: round(metrics[name], 4) for name in ("bleu", "chrf", "cer", "wer")},
        "written_by": WRITE,
    }
    SCORES.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(record, indent=2))
