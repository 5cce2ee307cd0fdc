"""Train the Transformer (the command: `python -m core train`, core/cli/train.py), alone or under torchrun.

Checkpoints (`{model_folder}/{model_basename}{epoch:02d}.pt` at each epoch end, and
`...{epoch:02d}-step{step:08d}.pt` every --save-every steps) are our self-describing format and carry
everything needed to resume exactly: optimizer, scheduler, position in the epoch, and RNG state.
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
import re
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from core.checkpoint import CheckpointError, ModelBundle, load_checkpoint, read_checkpoint, save_checkpoint
from core.config import ModelConfig, TrainConfig
from core.data import (
    collate,
    encode_pairs,
    load_hub_pairs,
    make_batches,
    parse_data_spec,
    read_tsv,
    split_pairs,
)
from core.decoding import greedy_batch
from core.metrics import score
from core.model import Transformer, causal_mask, padding_mask
from core.tokenizer import PAD_ID, build_tokenizer, ids_to_text, load_tokenizer

CHECKPOINT_NAME = re.compile(r"(\d+)(?:-step(\d+))?\.pt$")


# ---------------------------------------------------------------- checkpoints of a run


def checkpoint_progress(path: Path) -> tuple[int, int] | None:
    """(epoch, step) ordering key of a run's checkpoint file name; an epoch-end file sorts after its steps."""
    m = CHECKPOINT_NAME.search(path.name)
    if not m:
        return None
    epoch = int(m.group(1))
    return (epoch, int(m.group(2))) if m.group(2) else (epoch + 1, -1)


def run_checkpoints(cfg: TrainConfig) -> list[Path]:
    """This run's checkpoint files, oldest first."""
    folder = Path(cfg.model_folder)
    files = [p for p in folder.glob(f"{cfg.model_basename}*.pt") if checkpoint_progress(p) is not None]
    return sorted(files, key=checkpoint_progress)


def load_resume_state(cfg: TrainConfig, log) -> tuple[Path, dict] | None:
    """The payload to resume from, per cfg.preload; an unreadable newest file falls back to the one before."""
    if cfg.preload == "none":
        return None
    if cfg.preload == "latest":
        candidates = run_checkpoints(cfg)[::-1]
    else:
        path = Path(cfg.model_folder) / f"{cfg.model_basename}{int(cfg.preload):02d}.pt"
        if not path.is_file():
            raise ValueError(f"--preload {cfg.preload}: no checkpoint {path}")
        candidates = [path]
    for path in candidates:
        try:
            payload = read_checkpoint(path)
            if not isinstance(payload, dict) or "training_state" not in payload:
                raise CheckpointError("it holds no training state to resume from")
            return path, payload
        except CheckpointError as exc:
            if cfg.preload != "latest":
                raise
            log(f"warning: cannot resume from {path} ({exc}); falling back to the previous checkpoint")
    return None


# ---------------------------------------------------------------- the loop


def lr_factor(step: int, warmup: int) -> float:
    """Multiplier of cfg.lr at a step: constant, or linear warm-up then inverse square root (peak = lr)."""
    if not warmup:
        return 1.0
    step = step + 1
    return min(step / warmup, math.sqrt(warmup / step))


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def prepare_data(cfg: TrainConfig, log, init: ModelBundle | None = None):
    """Read and split the pairs, load or build the tokenizers (or take init's); returns (train, val, test, tokenizers)."""
    if cfg.data:
        specs = [parse_data_spec(s) for s in cfg.data]
        files = [(read_tsv(path), times) for path, times in specs]
        pairs = [p for rows, _ in files for p in rows]
    else:
        pairs = load_hub_pairs(cfg.datasource, cfg.lang_src, cfg.lang_tgt)
        files = [(pairs, 1)]
    train, val, test = split_pairs(pairs, cfg.val_fraction, cfg.test_fraction, cfg.seed)
    if any(times > 1 for _, times in files):  # repeat oversampled files inside the training split only
        train_set = set(train)
        train = [p for rows, times in files for _ in range(times) for p in rows if p in train_set]
    folder = Path(cfg.model_folder)
    paths = [folder / cfg.tokenizer_file.format(lang) for lang in (cfg.lang_src, cfg.lang_tgt)]
    tokenizers = []
    inherited = (init.src_tokenizer, init.tgt_tokenizer) if init else (None, None)
    for path, side, cap, given in zip(paths, (0, 1), (cfg.src_vocab_size, cfg.tgt_vocab_size), inherited):
        if path.is_file():
            tok = load_tokenizer(path)
            if given is not None and tok.get_vocab() != given.get_vocab():
                raise ValueError(f"{path} is not the tokenizer of --init-from {cfg.init_from}: use a new model folder")
            tokenizers.append(tok)
            continue
        tok = given or build_tokenizer((p[side] for p in train), cfg.min_frequency, cap or None, cfg.lowercase)
        path.parent.mkdir(parents=True, exist_ok=True)
        tok.save(str(path))
        log(f"{'copied' if given else 'built'} {path} ({tok.get_vocab_size()} tokens)")
        tokenizers.append(tok)
    return train, val, test, tokenizers[0], tokenizers[1]


def validate(model: Transformer, examples, tgt_tok, cfg: TrainConfig, val_pairs, log) -> dict[str, float]:
    """Greedy-decode validation sentences; print a few, return BLEU, chrF, CER and WER."""
    model.eval()
    chosen = list(range(min(cfg.val_sentences, len(examples))))
    hyps, refs = [], []
    for start in range(0, len(chosen), 64):
        batch = [examples[i] for i in chosen[start : start + 64]]
        max_len = min(cfg.seq_len, max(len(e.tgt) for e in batch) * 2 + 10)
        hyps += [ids_to_text(tgt_tok, ids) for ids in greedy_batch(model, [e.src for e in batch], max_len)]
    refs = [val_pairs[i][1] for i in chosen]  # the real text, not its tokens: [UNK] must not match [UNK]
    for i in chosen[: cfg.val_examples]:
        log(f"{'SOURCE:':>12} {val_pairs[i][0]}\n{'TARGET:':>12} {val_pairs[i][1]}\n{'PREDICTED:':>12} {hyps[i]}")
    model.train()
    return score(hyps, refs, lowercase=cfg.lowercase) if hyps else {}


def train(cfg: TrainConfig) -> Path | None:
    """Run training per cfg; returns the last checkpoint written (rank 0) or None."""
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    rank, world, local_rank = 0, 1, 0
    if distributed:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        backend = "nccl" if torch.cuda.is_available() and cfg.device != "cpu" else "gloo"
        dist.init_process_group(backend)
        rank, world = dist.get_rank(), dist.get_world_size()
    device = resolve_device(cfg.device, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    main_process = rank == 0

    def log(message: str) -> None:
        if main_process:
            tqdm.write(message)

    init = None
    if cfg.init_from:
        init = load_checkpoint(cfg.init_from)
    if distributed and not main_process:
        dist.barrier()  # wait until rank 0 has written the tokenizers (else two ranks race to write them)
    train_pairs, val_pairs, test_pairs, src_tok, tgt_tok = prepare_data(cfg, log, init)
    if distributed and main_process:
        dist.barrier()
    train_set, kept_train = encode_pairs(train_pairs, src_tok, tgt_tok, cfg.seq_len)
    val_set, kept_val = encode_pairs(val_pairs, src_tok, tgt_tok, cfg.seq_len)
    dropped_train, dropped_val = len(train_pairs) - len(kept_train), len(val_pairs) - len(kept_val)
    val_pairs = kept_val
    log(
        f"{len(train_set)} training and {len(val_set)} validation pairs; dropped as longer than seq_len "
        f"{cfg.seq_len}: {dropped_train} training, {dropped_val} validation"
    )
    if main_process and test_pairs:
        test_path = Path(cfg.model_folder) / "test.tsv"
        test_path.write_text("".join(f"{s}\t{t}\n" for s, t in test_pairs), encoding="utf-8")
        log(f"held out {len(test_pairs)} test pairs in {test_path}")

    model_config = ModelConfig(
        src_tok.get_vocab_size(),
        tgt_tok.get_vocab_size(),
        cfg.d_model,
        cfg.layers,
        cfg.heads,
        cfg.d_ff,
        cfg.dropout,
        cfg.seq_len,
        init.config.attention_bias if init else False,
    )  # no flag: older tutorial layouts
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    model = Transformer(model_config).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, eps=1e-9)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, cfg.warmup_steps))
    epoch, batch_in_epoch, global_step = 0, 0, 0
    resumed = load_resume_state(cfg, log)
    if resumed:
        path, payload = resumed
        saved = payload["model_config"]
        if ModelConfig.from_dict(saved) != model_config:
            raise ValueError(f"{path} was trained with a different model config: {saved}")
        model.load_state_dict({**model.state_dict(), **{k: v.float() for k, v in payload["model_state_dict"].items()}})
        state = payload["training_state"]
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if scheduler.base_lrs != [cfg.lr]:  # a new --lr on resume takes effect from here (flags win)
            log(f"learning rate {scheduler.base_lrs[0]:g} -> {cfg.lr:g}")
            scheduler.base_lrs = [cfg.lr]
            for group in optimizer.param_groups:
                group["lr"] = cfg.lr * lr_factor(scheduler.last_epoch, cfg.warmup_steps)
        epoch, batch_in_epoch, global_step = state["epoch"], state["batch_in_epoch"], state["global_step"]
        torch.set_rng_state(state["torch_rng"])
        random.setstate(_as_random_state(state["python_rng"]))
        if device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], device)
        log(f"resumed from {path}: epoch {epoch:02d}, batch {batch_in_epoch}, step {global_step}")
    elif init is not None:
        wanted = dataclasses.replace(init.config, dropout=cfg.dropout)
        if wanted != model_config:
            differ = [
                f"{f.name} {getattr(init.config, f.name)} (this run: {getattr(model_config, f.name)})"
                for f in dataclasses.fields(ModelConfig)
                if getattr(wanted, f.name) != getattr(model_config, f.name)
            ]
            raise ValueError(f"--init-from {cfg.init_from} has " + ", ".join(differ) + ": pass the same model flags")
        model.load_state_dict(init.model.state_dict())
        log(f"initialized from {cfg.init_from} ({init.kind} checkpoint)")

    net = DistributedDataParallel(model) if distributed else model
    if cfg.compile and device.type == "cuda":
        net = torch.compile(net)
    writer = None
    if main_process:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(cfg.experiment_name)

    loss_sum, loss_batches = 0.0, 0  # this epoch's training loss (the batches this process ran)

    def save(path: Path, metrics: dict | None = None) -> None:
        training_state = {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "epoch": epoch,
            "batch_in_epoch": batch_in_epoch,
            "global_step": global_step,
            "torch_rng": torch.get_rng_state(),
            "python_rng": random.getstate(),
            "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        }
        metadata = {
            "train_config": cfg.to_dict(),
            "epoch": epoch,
            "global_step": global_step,
            "metrics": metrics or {},
            "train_loss": loss_sum / loss_batches if loss_batches else None,
            "pairs": {"train": len(train_set), "validation": len(val_set)},
        }
        save_checkpoint(
            path, model, src_tok, tgt_tok, metadata=metadata, training_state=training_state, half=cfg.save_half
        )
        for old in run_checkpoints(cfg)[: -cfg.keep_last]:
            old.unlink(missing_ok=True)

    folder = Path(cfg.model_folder)
    last_path = None
    model.train()
    stop = False
    while epoch < cfg.epochs and not stop:
        batches = make_batches(train_set, cfg.batch_size, cfg.max_tokens, cfg.seed + epoch)
        batches = batches[: len(batches) // world * world][rank::world]  # each rank its shard, same count
        bar = tqdm(
            batches[batch_in_epoch:],
            desc=f"epoch {epoch:02d}",
            initial=batch_in_epoch,
            total=len(batches),
            disable=not main_process,
            dynamic_ncols=True,
        )
        tokens_seen, started = 0, time.perf_counter()
        loss_sum, loss_batches = 0.0, 0
        for indices in bar:
            src, dec, lab = collate([train_set[i] for i in indices], device)
            src_mask = padding_mask(src, PAD_ID)
            tgt_mask = padding_mask(dec, PAD_ID) & causal_mask(dec.size(1), device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.amp and device.type == "cuda"):
                logits = net(src, dec, src_mask, tgt_mask)
            loss = F.cross_entropy(
                logits.float().view(-1, logits.size(-1)),
                lab.view(-1),
                ignore_index=PAD_ID,
                label_smoothing=cfg.label_smoothing,
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            global_step += 1
            batch_in_epoch += 1
            tokens_seen += int((src != PAD_ID).sum() + (lab != PAD_ID).sum()) * world
            rate = tokens_seen / (time.perf_counter() - started)
            loss_value = loss.item()
            loss_sum, loss_batches = loss_sum + loss_value, loss_batches + 1
            bar.set_postfix(loss=f"{loss_value:.3f}", tok_s=f"{rate:,.0f}")
            if writer is not None:
                writer.add_scalar("train loss", loss_value, global_step)
                writer.add_scalar("learning rate", scheduler.get_last_lr()[0], global_step)
                writer.add_scalar("tokens per second", rate, global_step)
            if cfg.save_every and global_step % cfg.save_every == 0 and main_process:
                last_path = folder / f"{cfg.model_basename}{epoch:02d}-step{global_step:08d}.pt"
                save(last_path)
            if cfg.max_steps and global_step >= cfg.max_steps:
                stop = True
                break
        bar.close()
        if stop and batch_in_epoch < len(batches):
            if main_process and not (cfg.save_every and global_step % cfg.save_every == 0):
                last_path = folder / f"{cfg.model_basename}{epoch:02d}-step{global_step:08d}.pt"
                save(last_path)  # stopped by --max-steps mid-epoch: keep the work, resumable
            break
        metrics = {}
        if main_process:
            metrics = validate(model, val_set, tgt_tok, cfg, val_pairs, log)
            log(f"epoch {epoch:02d}: " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
            for name, value in metrics.items():
                writer.add_scalar(f"validation {name}", value, global_step)
            if val_set:
                writer.add_text(
                    "validation sample", f"{val_pairs[0][0]} → {greedy_text(model, val_set[0], tgt_tok)}", global_step
                )
        epoch, batch_in_epoch = epoch + 1, 0
        if main_process:
            last_path = folder / f"{cfg.model_basename}{epoch - 1:02d}.pt"
            save(last_path, metrics)
    if writer is not None:
        writer.close()
    if distributed:
        dist.barrier()
        dist.destroy_process_group()
    return last_path


def greedy_text(model: Transformer, example, tgt_tok) -> str:
    model.eval()
    text = ids_to_text(
        tgt_tok, greedy_batch(model, [example.src], min(model.config.seq_len, len(example.tgt) * 2 + 10))[0]
    )
    model.train()
    return text


def _as_random_state(state):
    """random.getstate() comes back from a checkpoint with lists where tuples were."""
    version, internal, gauss = state
    return version, tuple(internal), gauss
