"""A head report saved for the app (core/analysis/report_file.py, `python -m core heads --save-report`): it reads
back as the report that was saved, only for the files it was computed from, and a damaged or foreign file is
refused with a reason (the app then computes the report)."""

from __future__ import annotations

import copy
import hashlib
import json
import math
import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from app_fixtures import write_tiny_checkpoint  # noqa: E402
from heads_fixtures import toy_pairs  # noqa: E402

from core import load_checkpoint  # noqa: E402
from core.analysis.head_report import head_report  # noqa: E402
from core.analysis.report_file import OtherFiles, ReportFileError, load_report, save_report  # noqa: E402

torch.set_num_threads(1)
MODEL_SHA, DATA_SHA = "a" * 64, "b" * 64
PAIRS = toy_pairs(6)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """(the report of a tiny 2 x 2 model as the Heads page computes it, its saved JSON document)."""
    folder = tmp_path_factory.mktemp("report")
    bundle = load_checkpoint(write_tiny_checkpoint(folder / "tiny.pt", layers=2, heads=2, seed=5))
    report = head_report(bundle, PAIRS, pruning_step=16)
    save_report(folder / "report.json", report, MODEL_SHA, DATA_SHA, "python -m core heads ...")
    return report, json.loads((folder / "report.json").read_text(encoding="utf-8"))


def write(tmp_path: Path, document) -> Path:
    path = tmp_path / "report.json"
    path.write_text(document if isinstance(document, str) else json.dumps(document), encoding="utf-8")
    return path


def test_a_saved_report_reads_back_as_it_was(saved, tmp_path):
    report, document = saved
    loaded = load_report(write(tmp_path, document), MODEL_SHA, DATA_SHA, 2, 2)
    assert (loaded.sentences, loaded.tokens, loaded.order) == (report.sentences, report.tokens, report.order)
    assert loaded.base_logprob == pytest.approx(report.base_logprob, abs=1e-6)
    assert loaded.measures.keys() == report.measures.keys()
    for kind, measures in report.measures.items():
        assert list(loaded.measures[kind]) == list(measures)  # the page lists them in this order
        for name, values in measures.items():
            np.testing.assert_allclose(loaded.measures[kind][name], values, atol=1e-6)
        for got, want in zip(sum(loaded.roles[kind], []), sum(report.roles[kind], [])):
            assert (got.role, got.cites, got.statistic, got.evidence) == (
                want.role,
                want.cites,
                want.statistic,
                want.evidence,
            )
            for a, b in ((got.value, want.value), (got.uniform, want.uniform), (got.score, want.score)):
                assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, abs=1e-6)
    assert loaded.spearman == pytest.approx(report.spearman, abs=1e-6, nan_ok=True)
    assert loaded.pruning_curve == report.pruning_curve and [p["heads_off"] for p in report.pruning_curve] == [0, 12]


def test_it_is_kept_only_for_the_files_it_was_computed_from(saved, tmp_path):
    _, document = saved
    path = write(tmp_path, document)
    with pytest.raises(OtherFiles, match="another model file"):
        load_report(path, "c" * 64, DATA_SHA, 2, 2)
    with pytest.raises(OtherFiles, match="another file of sentence pairs"):
        load_report(path, MODEL_SHA, "c" * 64, 2, 2)
    assert issubclass(OtherFiles, ReportFileError)


def changed(document: dict, where: str, value) -> dict:
    """A copy with the value at a dotted path (list indices as numbers) replaced; value DELETE drops the key."""
    document = copy.deepcopy(document)
    *parents, last = [int(p) if p.isdigit() else p for p in where.split(".")]
    node = document
    for key in parents:
        node = node[key]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return document


DELETE = object()
BAD = [
    ("format", 2, "format 2; this version reads format 1"),
    ("pruning_step", 8, "pruning step 8; the Heads page uses 16"),
    ("extra", 1, "unknown keys ['extra']"),
    ("report.spearman", DELETE, "the report lacks ['spearman']"),
    ("report.sentences", 0, "sentences 0 and tokens"),
    ("report.base_logprob", None, "base_logprob is None, not a finite number"),
    (
        "report.kinds.cross.ablation_delta_logprob.1",
        DELETE,
        "kinds.cross.ablation_delta_logprob is not 2 layers x 2 heads",
    ),
    ("report.kinds.cross.ablation_delta_logprob.1", [0.1, 0.2, 0.3], "is not 2 layers x 2 heads"),
    ("report.kinds.encoder.gradient_importance.0.1", None, "gradient_importance is None, not a finite number"),
    ("report.kinds.encoder.entropy.0.0", "1.5", "kinds.encoder.entropy is '1.5', not a number"),
    (
        "report.kinds.encoder.diagonality",
        [[0.0, 0.0], [0.0, 0.0]],
        "kinds.encoder lacks [] or has unknown keys ['diagonality']",
    ),
    ("report.kinds.decoder.confidence", DELETE, "kinds.decoder lacks ['confidence']"),
    ("report.kinds.cross", DELETE, "kinds lacks ['cross']"),
    ("report.roles.decoder.0.0", "alignment", "'alignment' is not a role a decoder head can have"),
    ("report.role_evidence.cross.1.1.statistic", "entropy", "is not its role's statistic"),
    ("report.role_evidence.cross.1", [], "role_evidence.cross is not 2 layers x 2 heads"),
    ("report.role_thresholds.sink", 0.4, "other thresholds"),
    ("report.pruning_order.0", ["cross", 9, 1], "pruning_order is not each of the 12 heads once"),
    ("report.pruning_order", [], "pruning_order is not each of the 12 heads once"),
    ("report.pruning_curve.1.heads_off", 8, "pruning_curve is not one point per 16 heads off"),
    ("report.pruning_curve.0.chrf", "high", "pruning_curve.chrf is 'high', not a finite number"),
    ("report.pruning_curve.0", {"heads_off": 0}, "a point of pruning_curve lacks ['bleu', 'chrf']"),
]


@pytest.mark.parametrize(("where", "value", "reason"), BAD, ids=[case[0] for case in BAD])
def test_a_damaged_file_is_refused_with_its_reason(saved, tmp_path, where, value, reason):
    _, document = saved
    with pytest.raises(ReportFileError) as refused:
        load_report(write(tmp_path, changed(document, where, value)), MODEL_SHA, DATA_SHA, 2, 2)
    assert reason in str(refused.value) and not isinstance(refused.value, OtherFiles)


def test_files_that_are_no_report_at_all_are_refused(saved, tmp_path):
    _, document = saved
    cases = {
        "is not JSON": json.dumps(document)[:-40],
        "is not a JSON object": "[1, 2]",
        "is larger than": " " * (1 << 20) + "{}",
        "nesting": "[" * 100_000,  # too deep for the parser: still only a refusal
    }
    for reason, text in cases.items():
        with pytest.raises(ReportFileError, match="is not JSON" if reason == "nesting" else reason):
            load_report(write(tmp_path, text), MODEL_SHA, DATA_SHA, 2, 2)
    with pytest.raises(ReportFileError, match="cannot read"):
        load_report(tmp_path / "missing.json", MODEL_SHA, DATA_SHA, 2, 2)
    with pytest.raises(ReportFileError, match="is not 2 layers x 4 heads"):  # a model of another shape
        load_report(write(tmp_path, document), MODEL_SHA, DATA_SHA, 2, 4)


def test_the_command_saves_what_the_heads_page_computes(tmp_path, cli):
    checkpoint = write_tiny_checkpoint(tmp_path / "tiny.pt", layers=2, heads=2, seed=5)
    data = tmp_path / "pairs.tsv"
    data.write_text("".join(f"{en}\t{it}\n" for en, it in PAIRS), encoding="utf-8")
    out = tmp_path / "heads_report.json"
    run = cli("heads", "--checkpoint", checkpoint, "--data", data, "--save-report", out)
    assert run.returncode == 0 and f"saved the Heads page's report to {out}" in run.stdout
    digest = {path: hashlib.sha256(path.read_bytes()).hexdigest() for path in (checkpoint, data)}
    loaded = load_report(out, digest[checkpoint], digest[data], 2, 2)
    expected = head_report(load_checkpoint(checkpoint), PAIRS, pruning_step=16)  # as ui/sections/head_report runs it
    assert loaded.pruning_curve == expected.pruning_curve and loaded.order == expected.order
    for kind, measures in expected.measures.items():
        for name, values in measures.items():
            np.testing.assert_allclose(loaded.measures[kind][name], values, atol=1e-6)
    document = json.loads(out.read_text(encoding="utf-8"))
    assert document["regenerate"] == f"python -m core heads --checkpoint {checkpoint} --data {data} --save-report {out}"
    assert "encoder heads only" not in run.stdout  # the page draws no encoder-only curve, so none is computed


def test_the_command_refuses_what_the_page_would_not_compute(tmp_path, cli):
    checkpoint = write_tiny_checkpoint(tmp_path / "tiny.pt", layers=2, heads=2, seed=5)
    data = tmp_path / "pairs.tsv"
    data.write_text("".join(f"{en}\t{it}\n" for en, it in PAIRS), encoding="utf-8")
    out = tmp_path / "heads_report.json"
    run = cli("heads", "--checkpoint", checkpoint, "--data", data, "--save-report", out, "--step", 8)
    assert run.returncode == 2 and "drop --step" in run.stderr
    run = cli("heads", "--checkpoint", checkpoint, "--data", data, "--save-report", out, "--limit", 3)
    assert run.returncode == 2 and "every pair of --data (it has 6: raise --limit)" in run.stderr
    assert not out.exists()


def nodes(value, path=()):
    """Every (path, value) of a JSON document, the root first."""
    yield path, value
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        yield from nodes(item, (*path, key))


def test_any_value_anywhere_is_read_or_refused_never_an_exception(saved, tmp_path):
    """A seeded fuzz: 400 documents, each with one node replaced by another JSON value."""
    _, document = saved
    paths = [path for path, _ in nodes(document) if path]
    values = [None, True, -1, 0, 3, 1e308, "x", "cross", [], [[]], [1, 2], {}, {"a": 1}, float("nan")]
    rng = random.Random(0)
    refused = 0
    for _ in range(400):
        broken = copy.deepcopy(document)
        *parents, last = rng.choice(paths)
        node = broken
        for key in parents:
            node = node[key]
        node[last] = rng.choice(values)
        try:
            load_report(write(tmp_path, broken), MODEL_SHA, DATA_SHA, 2, 2)
        except ReportFileError:
            refused += 1
    assert refused > 300  # most changes break something; some (an evidence number, a text) are still a report
