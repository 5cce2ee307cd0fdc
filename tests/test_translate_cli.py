"""The command line: python -m core translate, run in-process (`cli`), plus one subprocess smoke test."""

from __future__ import annotations

import json

from conftest import cli_subprocess


def test_plain_output_one_line_per_sentence(tiny_checkpoint, cli):
    run = cli(
        "translate", "--checkpoint", tiny_checkpoint, "--max-len", "5", "the cat sleeps .", "where is the station ?"
    )
    assert run.returncode == 0, run.stderr
    assert len(run.stdout.splitlines()) == 2
    assert run.stderr == ""


def test_json_schema_and_shapes(tiny_checkpoint, tiny_config, cli):
    run = cli("translate", "--checkpoint", tiny_checkpoint, "--json", "--max-len", "6", "the cat sleeps .", "a dog")
    assert run.returncode == 0, run.stderr
    records = [json.loads(line) for line in run.stdout.splitlines()]
    assert [r["source"] for r in records] == ["the cat sleeps .", "a dog"]
    for record in records:
        assert set(record) == {
            "source",
            "translation",
            "source_tokens",
            "target_tokens",
            "output_ids",
            "copied",
            "attention",
        }
        s, t = len(record["source_tokens"]), len(record["target_tokens"])
        assert record["source_tokens"][0] == "[SOS]" and record["source_tokens"][-1] == "[EOS]"
        assert record["target_tokens"][0] == "[SOS]" and t <= 6
        assert isinstance(record["translation"], str) and all(isinstance(i, int) for i in record["output_ids"])
        expected = {"encoder": (s, s), "decoder": (t, t), "cross": (t, s)}
        for name, (rows, cols) in expected.items():
            maps = record["attention"][name]
            assert len(maps) == tiny_config.n_layers and all(len(layer) == tiny_config.n_heads for layer in maps)
            for head in (head for layer in maps for head in layer):
                assert len(head) == rows and all(len(row) == cols for row in head)
                assert all(abs(sum(row) - 1) < 1e-4 for row in head)


def test_reference_mode(tiny_checkpoint, cli):
    run = cli(
        "translate", "--checkpoint", tiny_checkpoint, "--json", "--reference", "il gatto dorme .", "the cat sleeps ."
    )
    assert run.returncode == 0, run.stderr
    record = json.loads(run.stdout)
    assert record["target_tokens"] == ["[SOS]", "il", "gatto", "dorme", "."]
    assert record["translation"] == "il gatto dorme."


def test_empty_sentence_is_an_error_but_others_are_translated(tiny_checkpoint, cli):
    run = cli("translate", "--checkpoint", tiny_checkpoint, "--max-len", "4", "the cat", "  ", "a dog")
    assert run.returncode == 1
    assert len(run.stdout.splitlines()) == 2
    assert "error: the sentence is empty" in run.stderr
    assert "Traceback" not in run.stderr


def test_overlong_sentence_names_the_limit(tiny_checkpoint, tiny_config, cli):
    run = cli("translate", "--checkpoint", tiny_checkpoint, " ".join(["cat"] * tiny_config.seq_len))
    assert run.returncode == 1
    assert f"at most {tiny_config.seq_len - 2}" in run.stderr and "Traceback" not in run.stderr


def test_bad_checkpoint_path(tmp_path, cli):
    run = cli("translate", "--checkpoint", tmp_path / "nope.pt", "hello")
    assert run.returncode == 2
    assert run.stderr.strip() == f"error: checkpoint not found: {tmp_path / 'nope.pt'}"
    assert run.stdout == ""


def test_not_a_checkpoint(tmp_path, cli):
    (tmp_path / "notes.txt").write_text("hello")
    run = cli("translate", "--checkpoint", tmp_path / "notes.txt", "hello")
    assert run.returncode == 2 and run.stderr.startswith("error: not a checkpoint") and "Traceback" not in run.stderr


def test_sentences_from_stdin(tiny_checkpoint, cli):
    run = cli("translate", "--checkpoint", tiny_checkpoint, "--max-len", "4", stdin="the cat\n\na dog\n")
    assert run.returncode == 0, run.stderr
    assert len(run.stdout.splitlines()) == 2


def test_tutorial_checkpoint_note(tmp_path, cli):
    from test_checkpoint import tutorial_state_dict, write_tokenizers, write_tutorial_checkpoint

    write_tokenizers(tmp_path)
    write_tutorial_checkpoint(tmp_path / "tmodel_00.pt", tutorial_state_dict())
    run = cli("translate", "--checkpoint", tmp_path / "tmodel_00.pt", "--max-len", "3", "en1 en2")
    assert run.returncode == 0, run.stderr
    assert "note: tutorial checkpoints do not record the head count; assumed 8" in run.stderr
    run = cli("translate", "--checkpoint", tmp_path / "tmodel_00.pt", "--heads", "4", "--max-len", "3", "en1 en2")
    assert run.returncode == 0 and "note:" not in run.stderr


def test_stdin_bytes_that_are_not_utf8_reject_that_line_only(tiny_checkpoint):
    """The smoke test: `python -m core translate` in a fresh interpreter, real bytes on stdin."""
    run = cli_subprocess(
        "translate", "--checkpoint", tiny_checkpoint, "--json", "--max-len", "4", stdin=b"\xff\xfe bad\r\nthe cat\r\n"
    )
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert "error: the sentence is not UTF-8 text" in run.stderr
    records = [json.loads(line) for line in run.stdout.splitlines()]
    assert [r["source"] for r in records] == ["the cat"]  # the Windows line ending is not part of the sentence


def test_argument_errors_are_one_line(tiny_checkpoint, tmp_path, cli):
    run = cli("translate", "--checkpoint", tiny_checkpoint, "--threads", "0", "the cat")
    assert run.returncode == 2 and "--threads: expected a whole number of at least 1" in run.stderr
    run = cli("translate", "--checkpoint", tiny_checkpoint, "--reference", "il gatto .", "the cat", "a dog")
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.strip() == "error: --reference is the translation of one sentence; got 2 sentences"
    (tmp_path / "runs" / "small").mkdir(parents=True)
    (tmp_path / "runs" / "small" / "tmodel_05.pt").write_bytes(b"")
    run = cli("translate", "--checkpoint", tmp_path / "runs", "the cat")
    assert (
        run.returncode == 2
        and run.stderr.strip()
        == f"error: {tmp_path / 'runs'} is a folder, not a checkpoint file, and not a Hugging Face model folder (no config.json)"
    )
    run = cli("translate", "--checkpoint", tmp_path / "runs" / "small", "the cat")
    assert run.stderr.strip().endswith("not a Hugging Face model folder (no config.json); it holds tmodel_05.pt")
    assert "Traceback" not in run.stderr


def test_output_cut_short_by_its_reader_ends_quietly(tiny_checkpoint):
    """`python -m core translate --json ... | head -c 100`: the reader closes the pipe early; no traceback."""
    import subprocess
    import sys

    from conftest import ROOT

    proc = subprocess.Popen(
        [sys.executable, "-m", "core", "translate", "--checkpoint", str(tiny_checkpoint), "--json", "--max-len", "8"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdin.write(b"the cat sat on the mat\n" * 400)  # far more JSON than a pipe holds (64 KB)
    proc.stdin.close()
    assert proc.stdout.read(100)
    proc.stdout.close()  # the reader goes away
    stderr = proc.stderr.read().decode()
    assert proc.wait(120) == 1
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr
