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
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from tokenizers import Tokenizer
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from core.checkpoint import (
    POSITION_KEYS,
    CheckpointError,
    ModelBundle,
    ResumePoint,
    TrainingState,
    load_checkpoint,
    read_resume_point,
    save_checkpoint,
)
from core.config import ModelConfig, TrainConfig
from core.data import (
    Example,
    Pair,
    collate,
    encode_pairs,
    load_hub_pairs,
    make_batches,
    parse_data_spec,
    read_tsv,
    split_pairs,
)
from core.evaluation import batch_translations
from core.guided_alignment import TokenLinks, alignment_targets, guided_loss, read_links_file, token_links
from core.metrics import score
from core.model import Transformer, causal_mask, padding_mask
from core.tokenizer import PAD_ID, build_tokenizer, load_tokenizer, raw_tokenizer

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


def find_resume_point(cfg: TrainConfig, log) -> ResumePoint | None:
    """The checkpoint to resume from, per cfg.preload; an unreadable newest file falls back to the one before."""
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
            return read_resume_point(path)
        except CheckpointError as exc:
            if cfg.preload != "latest":
                raise
            log(f"warning: cannot resume from {path} ({exc}); falling back to the previous checkpoint")
    return None


# ---------------------------------------------------------------- the process, the data, the model


@dataclass(frozen=True)
class Session:
    """This process's place in a run: rank, world size and device. Only rank 0 prints, logs and saves."""

    device: torch.device
    rank: int = 0
    world: int = 1
    distributed: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0

    def log(self, message: str) -> None:
        if self.main:
            tqdm.write(message)

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def start_session(cfg: TrainConfig) -> Session:
    """Join the torchrun process group when there is one, pick the device, set the thread count."""
    rank, world, local_rank, distributed = 0, 1, 0, int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        dist.init_process_group("nccl" if torch.cuda.is_available() and cfg.device != "cpu" else "gloo")
        rank, world = dist.get_rank(), dist.get_world_size()
    device = resolve_device(cfg.device, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    return Session(device, rank, world, distributed)


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@dataclass(frozen=True)
class RunData:
    """The encoded training and validation sets (pairs longer than seq_len dropped) and the tokenizers."""

    train_set: list[Example]
    val_set: list[Example]
    val_pairs: list[Pair]  # the text of val_set, for scoring against real references
    src_tok: Tokenizer
    tgt_tok: Tokenizer
    train_links: list[TokenLinks] | None = None  # per training example, with --alignments


def load_run_data(cfg: TrainConfig, session: Session, init: ModelBundle | None) -> RunData:
    """Read, split and encode the pairs; rank 0 writes the tokenizers (and test.tsv) while the others wait."""
    if not session.main:
        session.barrier()  # wait until rank 0 has written the tokenizers (else two ranks race to write them)
    train_pairs, val_pairs, test_pairs, src_tok, tgt_tok, links_of = prepare_data(cfg, session.log, init)
    if session.main:
        session.barrier()
    train_set, kept_train = encode_pairs(train_pairs, src_tok, tgt_tok, cfg.seq_len)
    val_set, kept_val = encode_pairs(val_pairs, src_tok, tgt_tok, cfg.seq_len)
    session.log(
        f"{len(train_set)} training and {len(val_set)} validation pairs; dropped as longer than seq_len "
        f"{cfg.seq_len}: {len(train_pairs) - len(kept_train)} training, {len(val_pairs) - len(kept_val)} validation"
    )
    if session.main and test_pairs:
        test_path = Path(cfg.model_folder) / "test.tsv"
        test_path.write_text("".join(f"{s}\t{t}\n" for s, t in test_pairs), encoding="utf-8")
        session.log(f"held out {len(test_pairs)} test pairs in {test_path}")
    train_links = None
    if links_of is not None:
        train_links = [token_links(src_tok, tgt_tok, pair, links_of[pair]) for pair in kept_train]
        linked = sum(bool(links) for links in train_links)
        session.log(f"guided alignment: {linked} of {len(train_links)} training pairs have links")
    return RunData(train_set, val_set, kept_val, src_tok, tgt_tok, train_links)


def prepare_data(cfg: TrainConfig, log, init: ModelBundle | None = None):
    """Read and split the pairs, load or build the tokenizers (or take init's), read --alignments.

    Returns (train, val, test, source tokenizer, target tokenizer, links of each pair or None); a pair
    that occurs twice takes the links of its first line.
    """
    if cfg.data:
        specs = [parse_data_spec(s) for s in cfg.data]
        files = [(read_tsv(path), times) for path, times in specs]
        pairs = [p for rows, _ in files for p in rows]
    elif cfg.alignments:
        raise ValueError("--alignments needs --data files: its lines follow their pairs")
    else:
        pairs = load_hub_pairs(cfg.datasource, cfg.lang_src, cfg.lang_tgt)
        files = [(pairs, 1)]
    links_of = None
    if cfg.alignments:
        links_of = {}
        for pair, links in zip(pairs, read_links_file(cfg.alignments, pairs)):
            links_of.setdefault(pair, links)
    train, val, test = split_pairs(pairs, cfg.val_fraction, cfg.test_fraction, cfg.seed)
    if any(times > 1 for _, times in files):  # repeat oversampled files inside the training split only
        train_set = set(train)
        train = [p for rows, times in files for _ in range(times) for p in rows if p in train_set]
    folder = Path(cfg.model_folder)
    paths = [folder / cfg.tokenizer_file.format(lang) for lang in (cfg.lang_src, cfg.lang_tgt)]
    tokenizers = []
    inherited = (raw_tokenizer(init.src_tokenizer), raw_tokenizer(init.tgt_tokenizer)) if init else (None, None)
    for path, side, cap, given in zip(paths, (0, 1), (cfg.src_vocab_size, cfg.tgt_vocab_size), inherited):
        if path.is_file():
            tok = load_tokenizer(path)
            if given is not None and tok.get_vocab() != given.get_vocab():
                raise ValueError(f"{path} is not the tokenizer of --init-from {cfg.init_from}: use a new model folder")
            tokenizers.append(tok)
            continue
        tok = given or build_tokenizer(
            (p[side] for p in train), cfg.min_frequency, cap or None, cfg.lowercase, subword=cfg.subword
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        tok.save(str(path))
        log(f"{'copied' if given else 'built'} {path} ({tok.get_vocab_size()} tokens)")
        tokenizers.append(tok)
    return train, val, test, tokenizers[0], tokenizers[1], links_of


def model_config_for(cfg: TrainConfig, data: RunData, init: ModelBundle | None) -> ModelConfig:
    return ModelConfig(
        data.src_tok.get_vocab_size(),
        data.tgt_tok.get_vocab_size(),
        cfg.d_model,
        cfg.layers,
        cfg.heads,
        cfg.d_ff,
        cfg.dropout,
        cfg.seq_len,
        init.config.attention_bias if init else False,  # no flag: older tutorial layouts only
    )


def check_init_config(cfg: TrainConfig, init: ModelBundle, model_config: ModelConfig) -> None:
    """ValueError naming each size where --init-from's model differs from this run's flags.

    Dropout and seq_len may differ: the positions are computed from seq_len, not stored, so a model can go on
    training on longer sentences than it was trained on.
    """
    wanted = dataclasses.replace(init.config, dropout=cfg.dropout, seq_len=cfg.seq_len)
    if wanted != model_config:
        differ = [
            f"{f.name} {getattr(init.config, f.name)} (this run: {getattr(model_config, f.name)})"
            for f in dataclasses.fields(ModelConfig)
            if getattr(wanted, f.name) != getattr(model_config, f.name)
        ]
        raise ValueError(f"--init-from {cfg.init_from} has " + ", ".join(differ) + ": pass the same model flags")


# ---------------------------------------------------------------- the training state


@dataclass
class Progress:
    """Where the loop stands; the counters of TrainingState."""

    epoch: int = 0
    batch_in_epoch: int = 0
    global_step: int = 0


def lr_factor(step: int, warmup: int) -> float:
    """Multiplier of cfg.lr at a step: constant, or linear warm-up then inverse square root (peak = lr)."""
    if not warmup:
        return 1.0
    step = step + 1
    return min(step / warmup, math.sqrt(warmup / step))


def capture_state(progress: Progress, optimizer, scheduler, device: torch.device) -> TrainingState:
    return TrainingState(
        epoch=progress.epoch,
        batch_in_epoch=progress.batch_in_epoch,
        global_step=progress.global_step,
        optimizer=optimizer.state_dict(),
        scheduler=scheduler.state_dict(),
        torch_rng=torch.get_rng_state(),
        python_rng=random.getstate(),
        cuda_rng=torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
    )


def restore_state(state: TrainingState, optimizer, scheduler, device: torch.device, lr: float, warmup: int, log):
    """Put the optimizer, schedule and random generators back as saved; returns the loop's Progress.

    A --lr other than the saved one takes effect from here (flags win).
    """
    optimizer.load_state_dict(state.optimizer)
    scheduler.load_state_dict(state.scheduler)
    if scheduler.base_lrs != [lr]:
        log(f"learning rate {scheduler.base_lrs[0]:g} -> {lr:g}")
        scheduler.base_lrs = [lr]
        for group in optimizer.param_groups:
            group["lr"] = lr * lr_factor(scheduler.last_epoch, warmup)
    torch.set_rng_state(state.torch_rng)
    random.setstate(state.python_rng)
    if device.type == "cuda" and state.cuda_rng is not None:
        torch.cuda.set_rng_state(state.cuda_rng, device)
    return Progress(state.epoch, state.batch_in_epoch, state.global_step)


# ---------------------------------------------------------------- the loop


def validate(model: Transformer, data: RunData, cfg: TrainConfig, log) -> dict[str, float]:
    """Greedy-decode the first cfg.val_sentences validation pairs; print a few, return BLEU, chrF, CER and WER."""
    chosen = data.val_set[: cfg.val_sentences]
    hyps = batch_translations(model, chosen, data.tgt_tok)
    refs = [target for _, target in data.val_pairs[: len(chosen)]]  # real text: [UNK] must not match [UNK]
    for (source, target), hyp in list(zip(data.val_pairs, hyps))[: cfg.val_examples]:
        log(f"{'SOURCE:':>12} {source}\n{'TARGET:':>12} {target}\n{'PREDICTED:':>12} {hyp}")
    return score(hyps, refs, lowercase=cfg.lowercase) if hyps else {}


@dataclass
class Trainer:
    """One run's model, optimizer and schedule, the step, and the epoch loop over them."""

    cfg: TrainConfig
    session: Session
    data: RunData
    model: Transformer
    net: torch.nn.Module  # the model, or its DDP / compiled wrapper: what the step calls
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    progress: Progress
    writer: object | None  # TensorBoard SummaryWriter on rank 0
    last_path: Path | None = None  # the last checkpoint written
    loss_sum: float = 0.0  # this epoch's training loss over the batches this process ran
    loss_batches: int = 0

    def step(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """One optimizer step on the training examples at indices; returns (src (B, S), labels (B, T), losses).

        losses holds the translation loss ("train loss") and, with --alignments, the guided alignment loss
        (core/guided_alignment.py) that the step also minimises, weighted by --alignment-weight.
        """
        cfg, device = self.cfg, self.session.device
        src, dec, lab = collate([self.data.train_set[i] for i in indices], device)
        src_mask = padding_mask(src, PAD_ID)
        tgt_mask = padding_mask(dec, PAD_ID) & causal_mask(dec.size(1), device)
        guided = self.data.train_links is not None
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.amp and device.type == "cuda"):
            if guided:
                logits, head = self.net(src, dec, src_mask, tgt_mask, align_head=cfg.guided_head)  # head: (B, T, S)
            else:
                logits = self.net(src, dec, src_mask, tgt_mask)
        loss = F.cross_entropy(
            logits.float().view(-1, logits.size(-1)),
            lab.view(-1),
            ignore_index=PAD_ID,
            label_smoothing=cfg.label_smoothing,
        )
        losses = {"train loss": loss}
        if guided:
            targets = alignment_targets([self.data.train_links[i] for i in indices], *head.shape[1:], device)
            losses["alignment loss"] = guided_loss(head, targets, int((lab != PAD_ID).sum()))
            loss = loss + cfg.alignment_weight * losses["alignment loss"]
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.progress.global_step += 1
        self.progress.batch_in_epoch += 1
        return src, lab, losses

    def run_epoch(self) -> bool:
        """Train on the rest of the current epoch's batches; False when --max-steps stopped it midway."""
        cfg, progress, world = self.cfg, self.progress, self.session.world
        batches = make_batches(self.data.train_set, cfg.batch_size, cfg.max_tokens, cfg.seed + progress.epoch)
        batches = batches[: len(batches) // world * world][self.session.rank :: world]  # same count on each rank
        bar = tqdm(
            batches[progress.batch_in_epoch :],
            desc=f"epoch {progress.epoch:02d}",
            initial=progress.batch_in_epoch,
            total=len(batches),
            disable=not self.session.main,
            dynamic_ncols=True,
        )
        tokens_seen, started = 0, time.perf_counter()
        self.loss_sum, self.loss_batches = 0.0, 0
        for indices in bar:
            src, lab, losses = self.step(indices)
            tokens_seen += int((src != PAD_ID).sum() + (lab != PAD_ID).sum()) * world
            rate = tokens_seen / (time.perf_counter() - started)
            values = {name: value.item() for name, value in losses.items()}
            self.loss_sum, self.loss_batches = self.loss_sum + values["train loss"], self.loss_batches + 1
            bar.set_postfix(loss=f"{values['train loss']:.3f}", tok_s=f"{rate:,.0f}")
            self.log_scalars({**values, "learning rate": self.scheduler.get_last_lr()[0], "tokens per second": rate})
            if cfg.save_every and progress.global_step % cfg.save_every == 0:
                self.save_step_checkpoint()
            if self.reached_max_steps():
                break
        bar.close()
        return progress.batch_in_epoch >= len(batches)

    def end_epoch(self) -> None:
        """Validate (rank 0), then move to the next epoch and write its checkpoint."""
        metrics = {}
        if self.session.main:
            metrics = validate(self.model, self.data, self.cfg, self.session.log)
            self.session.log(
                f"epoch {self.progress.epoch:02d}: " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items())
            )
            self.log_scalars({f"validation {name}": value for name, value in metrics.items()})
            if self.data.val_set:
                sample = batch_translations(self.model, self.data.val_set[:1], self.data.tgt_tok)[0]
                self.writer.add_text(
                    "validation sample", f"{self.data.val_pairs[0][0]} → {sample}", self.progress.global_step
                )
        self.progress.epoch, self.progress.batch_in_epoch = self.progress.epoch + 1, 0
        self.save(f"{self.progress.epoch - 1:02d}", metrics)

    def reached_max_steps(self) -> bool:
        return bool(self.cfg.max_steps) and self.progress.global_step >= self.cfg.max_steps

    def save_step_checkpoint(self) -> None:
        self.save(f"{self.progress.epoch:02d}-step{self.progress.global_step:08d}")

    def save(self, suffix: str, metrics: dict | None = None) -> None:
        """Rank 0: write {model_basename}{suffix}.pt with the training state, then prune to --keep-last."""
        if not self.session.main:
            return
        cfg = self.cfg
        path = Path(cfg.model_folder) / f"{cfg.model_basename}{suffix}.pt"
        metadata = {
            "train_config": cfg.to_dict(),
            "epoch": self.progress.epoch,
            "global_step": self.progress.global_step,
            "metrics": metrics or {},
            "train_loss": self.loss_sum / self.loss_batches if self.loss_batches else None,
            "pairs": {"train": len(self.data.train_set), "validation": len(self.data.val_set)},
        }
        if self.data.train_links is not None:
            layer, head = cfg.guided_head
            metadata["guided_alignment"] = {"layer": layer + 1, "head": head + 1, "weight": cfg.alignment_weight}
        state = capture_state(self.progress, self.optimizer, self.scheduler, self.session.device)
        save_checkpoint(
            path,
            self.model,
            self.data.src_tok,
            self.data.tgt_tok,
            metadata=metadata,
            training_state=state,
            half=cfg.save_half,
        )
        for old in run_checkpoints(cfg)[: -cfg.keep_last]:
            old.unlink(missing_ok=True)
        self.last_path = path

    def log_scalars(self, values: dict[str, float]) -> None:
        if self.writer is not None:
            for name, value in values.items():
                self.writer.add_scalar(name, value, self.progress.global_step)


def build_trainer(cfg: TrainConfig, session: Session) -> Trainer:
    """Data, model, optimizer and schedule for cfg: fresh (seeded), resumed per --preload, or from --init-from."""
    init = load_checkpoint(cfg.init_from) if cfg.init_from else None
    data = load_run_data(cfg, session, init)
    model_config = model_config_for(cfg, data, init)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    model = Transformer(model_config).to(session.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, eps=1e-9)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, cfg.warmup_steps))
    progress = Progress()
    resume = find_resume_point(cfg, session.log)
    if resume:
        if resume.config != model_config:
            raise ValueError(f"{resume.path} was trained with a different model config: {resume.config.to_dict()}")
        model.load_state_dict({**model.state_dict(), **{k: v.float() for k, v in resume.weights.items()}})
        progress = restore_state(
            resume.state, optimizer, scheduler, session.device, cfg.lr, cfg.warmup_steps, session.log
        )
        session.log(
            f"resumed from {resume.path}: epoch {progress.epoch:02d}, batch {progress.batch_in_epoch}, "
            f"step {progress.global_step}"
        )
    elif init is not None:
        check_init_config(cfg, init, model_config)
        inherited = {k: v for k, v in init.model.state_dict().items() if k not in POSITION_KEYS}
        model.load_state_dict({**model.state_dict(), **inherited})
        session.log(f"initialized from {cfg.init_from} ({init.kind} checkpoint)")
    net = DistributedDataParallel(model) if session.distributed else model
    if cfg.compile and session.device.type == "cuda":
        net = torch.compile(net)
    writer = None
    if session.main:
        from torch.utils.tensorboard import SummaryWriter  # imported late: slow, and rank 0 only

        writer = SummaryWriter(cfg.experiment_name)
    model.train()
    return Trainer(cfg, session, data, model, net, optimizer, scheduler, progress, writer)


def train(cfg: TrainConfig) -> Path | None:
    """Run training per cfg; returns the last checkpoint written (rank 0) or None."""
    session = start_session(cfg)
    trainer = build_trainer(cfg, session)
    while trainer.progress.epoch < cfg.epochs:
        if not trainer.run_epoch():  # stopped by --max-steps mid-epoch: keep the work, resumable
            if not (cfg.save_every and trainer.progress.global_step % cfg.save_every == 0):
                trainer.save_step_checkpoint()
            break
        trainer.end_epoch()
        if trainer.reached_max_steps():
            break
    if trainer.writer is not None:
        trainer.writer.close()
    if session.distributed:
        dist.barrier()
        dist.destroy_process_group()
    return trainer.last_path
