"""Training pipeline: config from flags/files, loss falls, exact stop-and-resume, crash-safe checkpoints."""

from __future__ import annotations

import dataclasses
import json
import random
import sys
import types
from pathlib import Path

import pytest
import torch
from conftest import cli_subprocess

from core import load_checkpoint, translate
from core.checkpoint import read_checkpoint
from core.cli.train import config_from_args, main
from core.config import TrainConfig
from core.training import run_checkpoints, train

torch.set_num_threads(1)

EN = ["red", "blue", "green", "cat", "dog", "house", "big", "small", "runs", "sleeps", "sees", "the"]
IT = ["rosso", "blu", "verde", "gatto", "cane", "casa", "grande", "piccolo", "corre", "dorme", "vede", "il"]


def write_corpus(path: Path, n: int = 120, seed: int = 0, lengths: tuple[int, int] = (2, 7)) -> Path:
    """Word-by-word 'translations' of random word sequences: a task a tiny model learns in a few epochs."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        idx = [rng.randrange(len(EN)) for _ in range(rng.randint(*lengths))]
        lines.append(" ".join(EN[i] for i in idx) + "\t" + " ".join(IT[i] for i in idx))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def tiny_argv(run: Path, data: Path, *extra: str) -> list[str]:
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
        "32",
        "--batch-size",
        "8",
        "--min-frequency",
        "1",
        "--threads",
        "1",
        "--val-sentences",
        "4",
        "--val-examples",
        "1",
        "--device",
        "cpu",
        "--lr",
        "1e-3",
        *extra,
    ]


def weights(path: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(path)["model_state_dict"]


# ---------------------------------------------------------------- a trained tiny model, shared by several tests


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("trained")
    data = write_corpus(run / "pairs.tsv", n=200)
    argv = tiny_argv(
        run, data, "--epochs", "8", "--batch-size", "16", "--dropout", "0.0", "--lr", "3e-3", "--keep-last", "10"
    )
    cfg = config_from_args(argv)
    last = train(cfg)
    return run, data, cfg, last


def test_loss_falls_on_a_synthetic_corpus(trained):
    _, _, cfg, _ = trained
    files = run_checkpoints(cfg)
    losses = [read_checkpoint(p)["metadata"]["train_loss"] for p in files]
    assert [p.name for p in files] == [f"tmodel_{e:02d}.pt" for e in range(8)]
    assert all(isinstance(x, float) for x in losses)
    assert losses[-1] < 0.6 * losses[0], losses
    assert losses[-1] == min(losses) or losses[-1] < 1.05 * min(losses), losses


def test_checkpoints_load_translate_and_record_the_config(trained):
    run, _, cfg, last = trained
    assert last == Path(cfg.model_folder) / "tmodel_07.pt"
    bundle = load_checkpoint(last)
    assert bundle.kind == "native"
    assert bundle.config.d_model == 32 and bundle.config.n_layers == 2 and bundle.config.seq_len == 32
    assert bundle.metadata["train_config"] == cfg.to_dict()
    assert TrainConfig.from_dict(bundle.metadata["train_config"]) == cfg
    assert bundle.metadata["epoch"] == 8 and bundle.metadata["global_step"] > 0
    assert set(bundle.metadata["metrics"]) == {"bleu", "chrf", "cer", "wer"}
    result = translate(bundle, "the red cat sleeps")
    assert isinstance(result.translation, str) and result.source_tokens[0] == "[SOS]"
    # tokenizers were written to the run folder and are reused by the next run
    assert (Path(cfg.model_folder) / "tokenizer_en.json").is_file()
    assert (Path(cfg.model_folder) / "tokenizer_it.json").is_file()
    assert any((run / "tb").glob("events.out.tfevents.*"))  # TensorBoard scalars were written


# ---------------------------------------------------------------- exact stop-and-resume


def test_stop_and_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path, capsys):
    data = write_corpus(tmp_path / "pairs.tsv", n=100)
    common = ("--epochs", "2", "--dropout", "0.2", "--seed", "3")
    # A: stop mid-epoch 0 after 5 steps (a step checkpoint exists at step 5); B: resume it to the end
    assert main(tiny_argv(tmp_path / "ab", data, *common, "--max-steps", "5", "--save-every", "5")) == 0
    folder = tmp_path / "ab" / "weights"
    assert [p.name for p in sorted(folder.glob("*.pt"))] == ["tmodel_00-step00000005.pt"]
    state = read_checkpoint(folder / "tmodel_00-step00000005.pt")["training_state"]
    assert (state["epoch"], state["batch_in_epoch"], state["global_step"]) == (0, 5, 5)
    assert main(tiny_argv(tmp_path / "ab", data, *common, "--preload", "latest")) == 0
    assert "resumed from" in capsys.readouterr().out
    # C: the same run without interruption
    assert main(tiny_argv(tmp_path / "c", data, *common)) == 0
    resumed, straight = weights(folder / "tmodel_01.pt"), weights(tmp_path / "c" / "weights" / "tmodel_01.pt")
    assert resumed.keys() == straight.keys()
    for key in straight:
        assert torch.equal(resumed[key], straight[key]), key
    a_meta = read_checkpoint(folder / "tmodel_01.pt")["metadata"]
    assert (
        a_meta["global_step"] == read_checkpoint(tmp_path / "c" / "weights" / "tmodel_01.pt")["metadata"]["global_step"]
    )


def test_max_steps_without_save_every_leaves_a_resumable_checkpoint(tmp_path):
    data = write_corpus(tmp_path / "pairs.tsv", n=100)
    assert main(tiny_argv(tmp_path, data, "--epochs", "1", "--max-steps", "3")) == 0
    files = run_checkpoints(config_from_args(tiny_argv(tmp_path, data)))
    assert [p.name for p in files] == ["tmodel_00-step00000003.pt"]
    assert read_checkpoint(files[0])["training_state"]["global_step"] == 3


def test_resume_from_an_epoch_number_and_bad_preload(tmp_path, capsys):
    data = write_corpus(tmp_path / "pairs.tsv", n=60)
    assert main(tiny_argv(tmp_path, data, "--epochs", "1")) == 0
    assert main(tiny_argv(tmp_path, data, "--epochs", "2", "--preload", "0")) == 0
    assert "resumed from" in capsys.readouterr().out
    assert main(tiny_argv(tmp_path, data, "--epochs", "3", "--preload", "7")) == 2
    assert "no checkpoint" in capsys.readouterr().err


# ---------------------------------------------------------------- crash-safe saving


def test_a_save_killed_midway_leaves_the_previous_checkpoint_loadable(tmp_path, monkeypatch, capsys):
    data = write_corpus(tmp_path / "pairs.tsv", n=60)
    argv = tiny_argv(tmp_path, data, "--epochs", "2")
    real_save = torch.save
    calls = []

    def dying_save(obj, f, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the epoch-1 checkpoint: write part of it, then "die"
            f.write(b"PK\x03\x04 partial checkpoint bytes")
            raise KeyboardInterrupt
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", dying_save)
    assert main(argv) == 130
    monkeypatch.setattr(torch, "save", real_save)
    folder = tmp_path / "weights"
    assert sorted(p.name for p in folder.iterdir() if p.suffix != ".json") == ["tmodel_00.pt"]  # no temp left
    before = (folder / "tmodel_00.pt").read_bytes()
    assert load_checkpoint(folder / "tmodel_00.pt").metadata["epoch"] == 1
    # a hard kill (no cleanup) leaves a temp file behind: it must not be taken for a checkpoint
    (folder / ".tmodel_01.pt.abc123.tmp").write_bytes(b"PK\x03\x04 partial")
    capsys.readouterr()
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "resumed from" in out and "tmodel_00.pt" in out and "warning" not in out
    assert load_checkpoint(folder / "tmodel_01.pt").metadata["epoch"] == 2
    assert (folder / "tmodel_00.pt").read_bytes() == before


def test_an_unreadable_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, capsys):
    data = write_corpus(tmp_path / "pairs.tsv", n=60)
    assert main(tiny_argv(tmp_path, data, "--epochs", "1")) == 0
    folder = tmp_path / "weights"
    (folder / "tmodel_01.pt").write_bytes(b"\x00garbage")  # newest by name
    capsys.readouterr()
    assert main(tiny_argv(tmp_path, data, "--epochs", "2")) == 0
    out = capsys.readouterr().out
    assert "cannot resume from" in out and "tmodel_01.pt" in out and "falling back" in out
    assert "resumed from" in out and "tmodel_00.pt" in out
    assert load_checkpoint(folder / "tmodel_01.pt").metadata["epoch"] == 2


def test_keep_last_prunes_old_checkpoints(tmp_path):
    data = write_corpus(tmp_path / "pairs.tsv", n=60)
    assert main(tiny_argv(tmp_path, data, "--epochs", "3", "--keep-last", "2")) == 0
    assert sorted(p.name for p in (tmp_path / "weights").glob("*.pt")) == ["tmodel_01.pt", "tmodel_02.pt"]


def test_long_pairs_are_dropped_and_counted(tmp_path, capsys):
    data = write_corpus(tmp_path / "pairs.tsv", n=60, lengths=(2, 5))
    with data.open("a", encoding="utf-8") as f:
        for _ in range(7):
            f.write(" ".join(["the"] * 40) + "\t" + " ".join(["il"] * 40) + "\n")
    assert main(tiny_argv(tmp_path, data, "--epochs", "1")) == 0
    out = capsys.readouterr().out
    assert "dropped as longer than seq_len 32" in out
    counts = out.split("dropped as longer than seq_len 32:")[1].splitlines()[0]
    train_dropped, val_dropped = (int(s.split()[0]) for s in counts.split(","))
    assert train_dropped + val_dropped == 7  # all seven copies share a split (grouped by source sentence)


# ---------------------------------------------------------------- configuration and clear errors


def test_every_flag_says_what_it_does_and_its_default(capsys):
    with pytest.raises(SystemExit):
        config_from_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for f in dataclasses.fields(TrainConfig):
        assert f.metadata.get("help"), f.name
        assert " ".join(f.metadata["help"].split()) in text
    assert "if > 0: batches hold up to this many padded source+target tokens instead (default: 0)" in text
    assert "(a bare flag means true; default: false)" in text and "fine-tuning) (default: none)" in text


def test_every_field_is_a_flag_and_config_files_are_read(tmp_path):
    cfg = config_from_args(
        [
            "--data",
            "a.tsv",
            "--data",
            "b.tsv*2",
            "--epochs",
            "3",
            "--batch-size",
            "4",
            "--lr",
            "0.001",
            "--seq-len",
            "64",
            "--d-model",
            "64",
            "--layers",
            "2",
            "--heads",
            "2",
            "--d-ff",
            "128",
            "--dropout",
            "0",
            "--model-folder",
            "m",
            "--preload",
            "none",
            "--seed",
            "7",
            "--amp",
            "--lowercase",
            "false",
        ]
    )
    assert cfg.data == ("a.tsv", "b.tsv*2") and (cfg.epochs, cfg.batch_size, cfg.lr) == (3, 4, 0.001)
    assert (cfg.seq_len, cfg.d_model, cfg.layers, cfg.heads, cfg.d_ff, cfg.dropout) == (64, 64, 2, 2, 128, 0.0)
    assert (cfg.model_folder, cfg.preload, cfg.seed, cfg.amp, cfg.lowercase) == ("m", "none", 7, True, False)
    assert config_from_args([]) == TrainConfig()  # tutorial defaults
    assert (TrainConfig().batch_size, TrainConfig().seq_len, TrainConfig().d_model, TrainConfig().lr) == (
        8,
        350,
        512,
        1e-4,
    )
    (tmp_path / "c.json").write_text(json.dumps({"data": "x.tsv", "epochs": 5, "lr": 0.5, "preload": 2}))
    cfg = config_from_args(["--config", str(tmp_path / "c.json"), "--epochs", "9"])
    assert (cfg.data, cfg.epochs, cfg.lr, cfg.preload) == (("x.tsv",), 9, 0.5, "2")  # flags override the file
    (tmp_path / "c.toml").write_text('data = ["x.tsv", "y.tsv"]\nbatch_size = 3\nwarmup_steps = 100\n')
    cfg = config_from_args(["--config", str(tmp_path / "c.toml")])
    assert (cfg.data, cfg.batch_size, cfg.warmup_steps) == (("x.tsv", "y.tsv"), 3, 100)


@pytest.mark.parametrize(
    ("content", "suffix", "needle"),
    [
        ('{"epochs": 2, "bogus_key": 1}', ".json", "bogus_key"),
        ("epochs = 2\nbatchsize = 4\n", ".toml", "batchsize"),
        ('{"lr": "fast"}', ".json", "lr"),
        ('{"batch_size": -4}', ".json", "batch_size"),
        ('{"epochs": ', ".json", "Expecting value"),
    ],
)
def test_bad_config_files_exit_2_naming_the_problem(tmp_path, capsys, content, suffix, needle):
    path = tmp_path / f"bad{suffix}"
    path.write_text(content)
    assert main(["--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and needle in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--batch-size", "-1"], "batch_size must be a positive integer"),
        (["--epochs", "0"], "epochs must be a positive integer"),
        (["--dropout", "1.5"], "dropout"),
        (["--preload", "garbage"], "preload must be"),
        (["--d-model", "30", "--heads", "4"], "divisible"),
        (["--device", "tpu"], "device must be"),
        (["--val-fraction", "0"], "val_fraction"),
        (["--config", "no/such/file.json"], "config file not found"),
        (["--data", "no/such/pairs.tsv"], "data file not found: no/such/pairs.tsv"),
    ],
)
def test_bad_values_exit_2_with_a_clear_message(capsys, argv, needle):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_unknown_flag_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--bogus-flag", "3"])
    assert exc.value.code == 2
    assert "--bogus-flag" in capsys.readouterr().err


def test_no_data_and_no_hub_points_to_data(tmp_path, monkeypatch, capsys):
    def unreachable(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'Helsinki-NLP/opus_books' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=unreachable))
    assert main(["--model-folder", str(tmp_path / "w"), "--experiment-name", str(tmp_path / "tb")]) == 2
    err = capsys.readouterr().err
    assert "Helsinki-NLP/opus_books" in err and "--data" in err and "Traceback" not in err


def test_a_new_learning_rate_on_resume_takes_effect(tmp_path, capsys):
    data = write_corpus(tmp_path / "pairs.tsv", n=60)
    assert main(tiny_argv(tmp_path, data, "--epochs", "1")) == 0  # --lr 1e-3
    assert main(tiny_argv(tmp_path, data, "--epochs", "2", "--lr", "2e-4")) == 0
    assert "learning rate 0.001 -> 0.0002" in capsys.readouterr().out
    state = read_checkpoint(tmp_path / "weights" / "tmodel_01.pt")["training_state"]
    assert state["scheduler"]["base_lrs"] == [2e-4]
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(2e-4)


def test_init_from_starts_a_new_run_from_a_trained_model(trained, tmp_path, capsys):
    run, data, _, last = trained
    source = load_checkpoint(last)
    argv = tiny_argv(tmp_path, data, "--init-from", str(last), "--epochs", "1", "--lr", "1e-9", "--dropout", "0.0")
    assert main(argv) == 0
    assert "initialized from" in capsys.readouterr().out
    tuned = load_checkpoint(tmp_path / "weights" / "tmodel_00.pt")
    assert tuned.src_tokenizer.get_vocab() == source.src_tokenizer.get_vocab()
    assert tuned.tgt_tokenizer.get_vocab() == source.tgt_tokenizer.get_vocab()
    for key, value in source.model.state_dict().items():  # an lr of 1e-9 leaves the inherited weights
        torch.testing.assert_close(tuned.model.state_dict()[key], value, atol=1e-5, rtol=0)
    sentence = "the big dog sleeps"
    assert translate(tuned, sentence).translation == translate(source, sentence).translation


def test_init_from_may_train_on_longer_sentences(trained, tmp_path):
    """seq_len only sets how many computed positions there are: a longer one keeps every stored weight."""
    _, data, _, last = trained
    source = load_checkpoint(last)
    argv = tiny_argv(tmp_path, data, "--init-from", str(last), "--epochs", "1", "--lr", "1e-9", "--dropout", "0.0")
    argv[argv.index("--seq-len") + 1] = str(2 * source.config.seq_len)
    assert main(argv) == 0
    tuned = load_checkpoint(tmp_path / "weights" / "tmodel_00.pt")
    assert tuned.config.seq_len == 2 * source.config.seq_len
    weights = tuned.model.state_dict()
    for key, value in source.model.state_dict().items():
        if not key.endswith("pos.pe"):
            torch.testing.assert_close(weights[key], value, atol=1e-5, rtol=0)
    sentence = "the big dog sleeps"
    assert translate(tuned, sentence).translation == translate(source, sentence).translation


def test_init_from_with_other_model_flags_names_them(trained, tmp_path, capsys):
    _, data, _, last = trained
    argv = tiny_argv(tmp_path, data, "--init-from", str(last), "--epochs", "1", "--d-ff", "128")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "d_ff 64 (this run: 128)" in err and "Traceback" not in err
    assert main(tiny_argv(tmp_path, data, "--init-from", str(tmp_path / "missing.pt"))) == 2
    assert "missing.pt" in capsys.readouterr().err


# ---------------------------------------------------------------- the step, checked against the recipe written out


def test_train_is_bit_for_bit_the_recipe_written_out_by_hand(tmp_path):
    """Seeded init, Adam, warm-up schedule, label-smoothed loss, clipping, the epoch's bucketed batches: a plain
    loop over the same pieces gives exactly train()'s weights after 7 steps (dropout on, so RNG order counts)."""
    from core.data import collate, encode_pairs, make_batches, read_tsv, split_pairs
    from core.model import Transformer, causal_mask, padding_mask
    from core.tokenizer import PAD_ID, load_tokenizer

    data = write_corpus(tmp_path / "pairs.tsv", n=100)
    flags = ("--epochs", "1", "--dropout", "0.2", "--seed", "4", "--warmup-steps", "3", "--max-steps", "7")
    cfg = config_from_args(tiny_argv(tmp_path, data, *flags))
    last = train(cfg)
    src_tok, tgt_tok = (load_tokenizer(Path(cfg.model_folder) / f"tokenizer_{lang}.json") for lang in ("en", "it"))
    train_pairs, _, _ = split_pairs(read_tsv(data), cfg.val_fraction, cfg.test_fraction, cfg.seed)
    examples, _ = encode_pairs(train_pairs, src_tok, tgt_tok, cfg.seq_len)
    config = load_checkpoint(last).config
    torch.manual_seed(cfg.seed)
    model = Transformer(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, eps=1e-9)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min((step + 1) / 3, ((step + 1) / 3) ** -0.5))
    model.train()
    for indices in make_batches(examples, cfg.batch_size, 0, cfg.seed)[:7]:
        src, dec, lab = collate([examples[i] for i in indices])
        logits = model(src, dec, padding_mask(src, PAD_ID), padding_mask(dec, PAD_ID) & causal_mask(dec.size(1)))
        loss = torch.nn.functional.cross_entropy(
            logits.flatten(0, 1), lab.flatten(), ignore_index=PAD_ID, label_smoothing=0.1
        )
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
    trained_weights = weights(last)
    for key, value in trained_weights.items():
        assert torch.equal(value, model.state_dict()[key]), key


def test_resume_goes_through_the_checkpoint_module_and_refuses_a_damaged_state(tmp_path, capsys):
    from core.checkpoint import CheckpointError, read_resume_point

    data = write_corpus(tmp_path / "pairs.tsv", n=60)
    assert main(tiny_argv(tmp_path, data, "--epochs", "1")) == 0
    path = tmp_path / "weights" / "tmodel_00.pt"
    point = read_resume_point(path)
    assert (point.state.epoch, point.state.batch_in_epoch) == (1, 0) and point.state.global_step > 0
    assert isinstance(point.state.python_rng, tuple) and isinstance(point.state.python_rng[1], tuple)
    assert point.config == load_checkpoint(path).config
    payload = read_checkpoint(path)
    del payload["training_state"]["optimizer"]
    torch.save(payload, tmp_path / "weights" / "tmodel_01.pt")
    with pytest.raises(CheckpointError, match="lacks optimizer"):
        read_resume_point(tmp_path / "weights" / "tmodel_01.pt")
    capsys.readouterr()
    assert main(tiny_argv(tmp_path, data, "--epochs", "2", "--preload", "1")) == 2
    assert "lacks optimizer" in capsys.readouterr().err


def test_train_command_smoke(tmp_path):
    """`python -m core train` in a fresh interpreter: two steps, one loadable checkpoint."""
    data = write_corpus(tmp_path / "pairs.tsv", n=40)
    run = cli_subprocess("train", *tiny_argv(tmp_path, data, "--epochs", "1", "--max-steps", "2", "--save-every", "2"))
    assert run.returncode == 0, run.stderr[-2000:]
    saved = sorted((tmp_path / "weights").glob("*.pt"))
    assert saved and load_checkpoint(saved[-1]).kind == "native"
