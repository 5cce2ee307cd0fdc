"""Training runs: the checkpoints one run wrote into one folder, in training order, and one sentence
followed across them (the Timeline page and `python -m core timeline`).

Two layouts are runs, and both are read by `load_checkpoint`:
- ours (`python -m core train`): `tmodel_NN.pt` at each epoch end and `tmodel_NN-stepSSSSSSSS.pt` every
  --save-every steps, each self-describing (tokenizers inside);
- the tutorial's: `tmodel_NN.pt` holding the weights (and optimizer state), with `tokenizer_en.json` and
  `tokenizer_it.json` beside them or one folder up.
A run is at least two numbered checkpoints with the same name stem in one folder.

Memory stays bounded by one model: `follow_sentence` loads one checkpoint, keeps that epoch's attention
and statistics for the sentence (kilobytes), and drops the model before loading the next one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.analysis.alignment import RecordedAlignment, recorded_alignment
from core.analysis.head_stats import head_statistics
from core.attention import KIND, KINDS, Attention
from core.checkpoint import load_checkpoint
from core.comparison import feed_decoder, log_probability, translation_cap
from core.decoding import translate
from core.training import CHECKPOINT_NAME, checkpoint_progress

TIMELINE_STATISTICS = {name: kind.timeline for name, kind in KIND.items()}  # what the Timeline charts per kind


@dataclass(frozen=True)
class RunCheckpoint:
    path: Path
    epoch: int  # as in the file name: tmodel_03.pt is the end of epoch 3 (counting from 0)
    step: int | None  # the global step of a mid-epoch file, None at an epoch end

    @property
    def label(self) -> str:
        return f"epoch {self.epoch:02d}" + ("" if self.step is None else f" step {self.step}")

    @property
    def stamp(self) -> str:
        """Changes whenever the file does (modification time and size): part of every cache key."""
        stat = self.path.stat()
        return f"{stat.st_mtime_ns}:{stat.st_size}"


@dataclass(frozen=True)
class Run:
    folder: Path
    stem: str  # the name before the numbers: "tmodel_"
    checkpoints: tuple[RunCheckpoint, ...]  # training order: epochs ascending, a step file before its epoch's end

    @property
    def stamp(self) -> str:
        return ";".join(f"{c.path.name}:{c.stamp}" for c in self.checkpoints)


def _checkpoint(path: Path) -> RunCheckpoint:
    match = CHECKPOINT_NAME.search(path.name)
    return RunCheckpoint(path, int(match.group(1)), int(match.group(2)) if match.group(2) else None)


def runs_in_folder(folder: str | Path) -> list[Run]:
    """The runs directly inside one folder (one per name stem with two or more numbered checkpoints)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    by_stem: dict[str, list[Path]] = {}
    for path in folder.iterdir():
        if path.is_file() and checkpoint_progress(path) is not None:
            by_stem.setdefault(path.name[: CHECKPOINT_NAME.search(path.name).start()], []).append(path)
    return [
        Run(folder, stem, tuple(_checkpoint(p) for p in sorted(paths, key=checkpoint_progress)))
        for stem, paths in sorted(by_stem.items())
        if len(paths) >= 2
    ]


def discover_runs(root: str | Path, depth: int = 2) -> list[Run]:
    """Runs in root and in its subfolders down to `depth` levels (hidden folders skipped), by folder."""
    root = Path(root)
    found = runs_in_folder(root)
    if depth > 0 and root.is_dir():
        for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "__"))):
            found += discover_runs(sub, depth - 1)
    return found


@dataclass(frozen=True)
class EpochView:
    """What one checkpoint makes of the sentence; no model is kept."""

    checkpoint: RunCheckpoint
    translation: str  # its own greedy translation
    decoder_ids: tuple[int, ...]  # the shared decoder input (after [SOS]) it was fed for the maps
    attention: Attention  # maps on that decoder input: the same shapes at every epoch
    statistics: dict[str, dict[str, np.ndarray]]  # kind -> head_stats statistic -> (L, H)
    log_probability: float  # log p(decoder input then [EOS] | sentence), nats
    notes: tuple[str, ...] = ()
    alignment: RecordedAlignment | None = None  # the alignment head its card records, if any


def epoch_view(
    checkpoint: RunCheckpoint,
    sentence: str,
    reference: str | None = None,
    decoder_ids: tuple[int, ...] | None = None,
    heads: int | None = None,
) -> EpochView:
    """Load one checkpoint, translate the sentence and feed the decoder the reference, or decoder_ids, or (with
    neither) the checkpoint's own translation. Raises CheckpointError / ValueError with a readable message."""
    bundle = load_checkpoint(checkpoint.path, heads=heads)
    own = translate(bundle, sentence, max_len=translation_cap(bundle, sentence))
    if reference:
        decoder_ids = tuple(translate(bundle, sentence, reference=reference).target_ids[1:])
    elif decoder_ids is not None and max(decoder_ids, default=0) >= bundle.config.tgt_vocab_size:
        raise ValueError(
            f"{checkpoint.path.name} has a smaller Italian vocabulary than the run's last checkpoint: "
            "are these checkpoints of one run?"
        )
    elif decoder_ids is None:
        decoder_ids = tuple(own.target_ids[1:])  # what it fed itself after [SOS]
    attention = feed_decoder(bundle, own.source_ids, decoder_ids)
    return EpochView(
        checkpoint=checkpoint,
        translation=own.translation,
        decoder_ids=decoder_ids,
        attention=attention,
        statistics={kind: head_statistics(attention, kind) for kind in KINDS},
        log_probability=log_probability(bundle, own.source_ids, decoder_ids),
        notes=bundle.notes,
        alignment=recorded_alignment(bundle),
    )


@dataclass(frozen=True)
class Timeline:
    sentence: str
    reference: str | None
    epochs: tuple[EpochView, ...]  # training order

    @property
    def decoder_input(self) -> str:
        """What every checkpoint's decoder was fed for the maps."""
        return (
            "the reference"
            if self.reference
            else f"the translation of the last checkpoint ({self.epochs[-1].checkpoint.label})"
        )


def follow_sentence(
    run: Run,
    sentence: str,
    reference: str | None = None,
    heads: int | None = None,
    view: Callable[..., EpochView] = epoch_view,
    on_epoch: Callable[[int, int, EpochView], None] | None = None,
) -> Timeline:
    """One sentence through every checkpoint of a run, one model in memory at a time.

    Without a reference, every checkpoint is fed the last checkpoint's translation (computed first), so all
    epochs' maps have the same rows and can be compared. `view` computes one epoch (the app passes a cached
    epoch_view); on_epoch(done, total, view) reports progress after each."""
    last, *earlier = run.checkpoints[::-1]
    total = len(run.checkpoints)
    final = view(last, sentence, reference or None, None, heads)
    if on_epoch:
        on_epoch(1, total, final)
    views = []
    for done, checkpoint in enumerate(earlier[::-1], 2):
        views.append(view(checkpoint, sentence, reference or None, final.decoder_ids, heads))
        if on_epoch:
            on_epoch(done, total, views[-1])
    shape = (final.attention.n_layers, final.attention.n_heads)
    for other in views:
        if (other.attention.n_layers, other.attention.n_heads) != shape:
            raise ValueError(
                f"{other.checkpoint.path.name} has {other.attention.n_layers} layers x {other.attention.n_heads} "
                f"heads and the run's last checkpoint {shape[0]} x {shape[1]}: are these checkpoints of one run?"
            )
    return Timeline(sentence, reference or None, (*views, final))


def statistic_series(timeline: Timeline, kind: str, layer: int, head: int | None) -> list[dict]:
    """Rows (position, checkpoint, statistic, value) of one head (1-based; None: the mean over the layer's
    heads) across the run, for the statistics TIMELINE_STATISTICS charts, plus the decoder input's log-probability."""
    rows = []
    for position, epoch in enumerate(timeline.epochs):
        for name in TIMELINE_STATISTICS[kind]:
            grid = epoch.statistics[kind][name][layer - 1]  # (H,)
            value = float(grid.mean() if head is None else grid[head - 1])
            rows.append({"position": position, "checkpoint": epoch.checkpoint.label, "statistic": name, "value": value})
        rows.append(
            {
                "position": position,
                "checkpoint": epoch.checkpoint.label,
                "statistic": "log_probability",
                "value": epoch.log_probability,
            }
        )
    return rows
