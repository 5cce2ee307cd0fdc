"""Runs: discovered in both layouts and ordered by training; one sentence followed with one model at a time."""

from __future__ import annotations

import json
import weakref

import pytest
import torch
from app_fixtures import tiny_bundle_parts, write_tutorial_run

import core.runs
from core import load_checkpoint, save_checkpoint, translate
from core.analysis.head_stats import head_statistics
from core.cli import timeline as timeline_cli
from core.runs import discover_runs, follow_sentence, runs_in_folder, statistic_series

SENTENCE = "the cat sat on the mat"  # 8 tokens: the timeline allows 2 x 8 + 10 rows, capped at seq_len 24


def write_ours(folder, names):
    """Our layout: self-describing checkpoints, one seeded model per file."""
    for seed, name in enumerate(names):
        model, src, tgt = tiny_bundle_parts(seed=seed)
        save_checkpoint(folder / name, model, src, tgt, metadata={"seed": seed})
    return folder


def test_our_run_is_ordered_by_epoch_with_step_files_before_their_epoch_end(tmp_path):
    names = ["tmodel_10.pt", "tmodel_02.pt", "tmodel_00.pt", "tmodel_01-step00000040.pt", "tmodel_01.pt"]
    write_ours(tmp_path, names)
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    (tmp_path / "default.pt").write_bytes(b"not numbered")
    (run,) = runs_in_folder(tmp_path)
    assert [c.path.name for c in run.checkpoints] == [
        "tmodel_00.pt",
        "tmodel_01-step00000040.pt",
        "tmodel_01.pt",
        "tmodel_02.pt",
        "tmodel_10.pt",
    ]
    assert [c.label for c in run.checkpoints][:2] == ["epoch 00", "epoch 01 step 40"]
    assert run.stem == "tmodel_"


def test_tutorial_run_with_tokenizers_one_folder_up_is_found_and_followed(tmp_path):
    folder = write_tutorial_run(tmp_path / "course", [2, 0, 1])
    write_ours(tmp_path / "ours", ["tmodel_00.pt", "tmodel_01.pt"])
    (tmp_path / "single").mkdir()
    write_ours(tmp_path / "single", ["tmodel_00.pt"])  # one checkpoint is not a run
    runs = discover_runs(tmp_path)
    assert [r.folder for r in runs] == [folder, tmp_path / "ours"]
    assert [c.epoch for c in runs[0].checkpoints] == [0, 1, 2]
    timeline = follow_sentence(runs[0], SENTENCE, heads=2)  # tutorial files do not record it
    assert [e.checkpoint.epoch for e in timeline.epochs] == [0, 1, 2]
    last = load_checkpoint(folder / "tmodel_02.pt", heads=2)
    assert timeline.epochs[-1].translation == translate(last, SENTENCE).translation


def test_every_epoch_is_fed_the_last_checkpoints_translation(tmp_path):
    (run,) = runs_in_folder(write_ours(tmp_path, ["tmodel_00.pt", "tmodel_01.pt", "tmodel_02.pt"]))
    timeline = follow_sentence(run, SENTENCE)
    rows = {e.attention.target_tokens for e in timeline.epochs}
    assert len(rows) == 1  # the same decoder input everywhere: the maps line up
    for epoch in timeline.epochs:
        bundle = load_checkpoint(epoch.checkpoint.path)
        own = translate(bundle, SENTENCE)
        assert epoch.translation == own.translation  # each epoch's own text is still shown
        assert (
            epoch.statistics["cross"]["entropy"].tolist()
            == head_statistics(epoch.attention, "cross")["entropy"].tolist()
        )
    last_own = translate(
        load_checkpoint(run.checkpoints[-1].path), SENTENCE
    )  # 8 source tokens allow 26 rows: capped at seq_len 24
    assert timeline.epochs[0].attention.target_tokens == tuple(last_own.target_tokens)
    torch.testing.assert_close(timeline.epochs[-1].attention.cross, last_own.attention.cross, atol=1e-5, rtol=1e-4)


def test_reference_is_fed_and_its_log_probability_charted(tmp_path):
    (run,) = runs_in_folder(write_ours(tmp_path, ["tmodel_00.pt", "tmodel_01.pt"]))
    timeline = follow_sentence(run, SENTENCE, reference="il gatto era sul tappeto")
    assert timeline.decoder_input == "the reference"
    assert all(e.attention.target_tokens[1:3] == ("il", "gatto") for e in timeline.epochs)
    rows = statistic_series(timeline, "cross", 1, 2)
    assert {r["statistic"] for r in rows} == {"entropy", "confidence", "diagonality", "log_probability"}
    second = [r for r in rows if r["position"] == 1]
    assert {r["statistic"]: r["value"] for r in second}["diagonality"] == pytest.approx(
        float(timeline.epochs[1].statistics["cross"]["diagonality"][0, 1])
    )
    assert {r["statistic"]: r["value"] for r in second}["log_probability"] == timeline.epochs[1].log_probability


def test_no_model_outlives_its_epoch(tmp_path, monkeypatch):
    (run,) = runs_in_folder(write_ours(tmp_path, [f"tmodel_{e:02d}.pt" for e in range(4)]))
    models: list[weakref.ref] = []

    def loading(*args, **kwargs):
        bundle = load_checkpoint(*args, **kwargs)
        models.append(weakref.ref(bundle.model))
        return bundle

    def after_epoch(done, total, view):
        assert len(models) == done  # one checkpoint loaded per epoch, never ahead
        assert all(ref() is None for ref in models), "a model was kept after its epoch was computed"

    monkeypatch.setattr(core.runs, "load_checkpoint", loading)
    timeline = follow_sentence(run, SENTENCE, on_epoch=after_epoch)
    assert len(timeline.epochs) == len(models) == 4
    assert not any(isinstance(v, torch.nn.Module) for e in timeline.epochs for v in vars(e).values())


def test_cli_prints_each_epoch_and_writes_json(tmp_path, capsys):
    folder = write_tutorial_run(tmp_path, [0, 1])
    out = tmp_path / "timeline.json"
    code = timeline_cli.main(
        ["--run", str(folder), "--sentence", SENTENCE, "--json", str(out), "--layer", "1", "--head", "2"]
    )
    assert code == 0
    printed = capsys.readouterr()
    assert "epoch 00" in printed.out and "epoch 01" in printed.out and "diagonality" in printed.out
    assert "assumed 8" in printed.err  # the tutorial's files do not record the head count
    payload = json.loads(out.read_text())
    assert [e["epoch"] for e in payload["epochs"]] == [0, 1]
    assert len(payload["epochs"][0]["statistics"]["cross"]["entropy"]) == 2  # layers


def test_cli_explains_a_folder_without_a_run(tmp_path, capsys):
    write_ours(tmp_path / "inner", ["tmodel_00.pt", "tmodel_01.pt"])
    assert timeline_cli.main(["--run", str(tmp_path), "--sentence", SENTENCE]) == 2
    assert "runs below it" in capsys.readouterr().err


def test_checkpoints_of_different_models_in_one_folder_get_a_message(tmp_path):
    write_ours(tmp_path, ["tmodel_00.pt"])
    model, src, tgt = tiny_bundle_parts(layers=3)
    save_checkpoint(tmp_path / "tmodel_01.pt", model, src, tgt)
    (run,) = runs_in_folder(tmp_path)
    with pytest.raises(ValueError, match="tmodel_00.pt has 2 layers x 2 heads"):
        follow_sentence(run, SENTENCE)


def test_a_loaded_model_keeps_nothing_of_its_memory_mapped_file(tmp_path):
    """load_checkpoint maps the file (optimizer state never read) but copies the weights: overwriting the file in
    place afterwards (as the tutorial's torch.save does) leaves the model as it was."""
    folder = write_tutorial_run(tmp_path, [0])
    path = folder / "tmodel_00.pt"
    bundle = load_checkpoint(path, heads=2)
    before = {k: v.clone() for k, v in bundle.model.state_dict().items()}
    size = path.stat().st_size
    with path.open("r+b") as f:  # same inode: a mapping that was still in use would now see zeros
        f.seek(size // 4)
        f.write(bytes(size // 2))
    after = bundle.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert translate(bundle, SENTENCE).translation
