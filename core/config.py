"""Model configuration: one frozen, validated dataclass, stored inside every checkpoint."""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field, fields


def positive_int(text: str) -> int:
    """argparse type for counts such as --threads: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def _check_integers(config: object, names: tuple[str, ...], minimum: int) -> None:
    """Raise ValueError unless each named field is an int (not a bool) of at least `minimum`."""
    for name in names:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            kind = "a positive" if minimum > 0 else "a non-negative"
            raise ValueError(f"{name} must be {kind} integer, got {value!r}")


def _reject_unknown_keys(cls: type, data: dict, what: str) -> None:
    unknown = sorted(set(data) - {f.name for f in fields(cls)})
    if unknown:
        raise ValueError(f"unknown {what} keys: {', '.join(unknown)}")


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of the encoder-decoder Transformer; defaults are the tutorial's."""

    src_vocab_size: int
    tgt_vocab_size: int
    d_model: int = 512
    n_layers: int = 6
    n_heads: int = 8
    d_ff: int = 2048
    dropout: float = 0.1
    seq_len: int = 350
    attention_bias: bool = False  # True only for tutorial checkpoints from before 2023-08-18

    def __post_init__(self) -> None:
        _check_integers(
            self, ("src_vocab_size", "tgt_vocab_size", "d_model", "n_layers", "n_heads", "d_ff", "seq_len"), minimum=1
        )
        if self.src_vocab_size < 4 or self.tgt_vocab_size < 4:
            raise ValueError("vocabularies must hold at least the 4 special tokens")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        if self.d_model % 2:
            raise ValueError(f"d_model must be even for the sinusoidal positions, got {self.d_model}")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.seq_len < 3:
            raise ValueError(f"seq_len must be at least 3 ([SOS], one token, [EOS]), got {self.seq_len}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        """Build from a dict; unknown keys are an error, not silently dropped."""
        _reject_unknown_keys(cls, data, "model config")
        return cls(**data)


def _flag(default, help_text: str):
    """A TrainConfig field with its command-line help."""
    return field(default=default, metadata={"help": help_text})


@dataclass(frozen=True)
class TrainConfig:
    """A training run; defaults are the tutorial's. Every field is a command-line flag and a config-file key."""

    data: tuple[str, ...] = _flag((), "TSV file of en<TAB>it pairs; repeatable; FILE*N repeats it N times in training")
    datasource: str = _flag("Helsinki-NLP/opus_books", "Hugging Face dataset used when no --data is given")
    lang_src: str = _flag("en", "source language code (dataset columns, tokenizer file names)")
    lang_tgt: str = _flag("it", "target language code")
    batch_size: int = _flag(8, "sentence pairs per batch (unless --max-tokens is set)")
    max_tokens: int = _flag(0, "if > 0: batches hold up to this many padded source+target tokens instead")
    epochs: int = _flag(20, "total epochs, as in the tutorial")
    lr: float = _flag(1e-4, "learning rate (the peak, with --warmup-steps)")
    warmup_steps: int = _flag(0, "if > 0: linear warm-up to --lr, then inverse square root decay (the paper's shape)")
    label_smoothing: float = _flag(0.1, "label smoothing of the cross-entropy loss")
    grad_clip: float = _flag(1.0, "clip the gradient norm to this (0: no clipping)")
    seq_len: int = _flag(350, "most tokens per sentence, [SOS] and [EOS] included; longer pairs are dropped")
    d_model: int = _flag(512, "model width")
    layers: int = _flag(6, "encoder layers, and as many decoder layers")
    heads: int = _flag(8, "attention heads (must divide --d-model)")
    d_ff: int = _flag(2048, "feed-forward width")
    dropout: float = _flag(0.1, "dropout probability")
    lowercase: bool = _flag(False, "lowercase both languages in the tokenizers' normalizer")
    subword: bool = _flag(False, "subword (BPE) tokenizers instead of word-level ones: fewer [UNK]")
    min_frequency: int = _flag(2, "words seen fewer times than this in training become [UNK] (subword: pieces)")
    src_vocab_size: int = _flag(0, "cap on the source vocabulary (0: no cap; subword: 8000 pieces)")
    tgt_vocab_size: int = _flag(0, "cap on the target vocabulary (0: no cap; subword: 8000 pieces)")
    val_fraction: float = _flag(0.1, "share of the pairs held out for validation")
    test_fraction: float = _flag(0.0, "if > 0: also hold out a test split, written to the run folder as test.tsv")
    seed: int = _flag(0, "seed of the split, the initial weights and the batch order")
    model_folder: str = _flag("weights", "folder for this run's checkpoints and tokenizers")
    model_basename: str = _flag("tmodel_", "checkpoint file name prefix")
    tokenizer_file: str = _flag("tokenizer_{0}.json", "tokenizer file name inside --model-folder ({0}: language)")
    experiment_name: str = _flag("runs/tmodel", "TensorBoard log folder")
    preload: str = _flag("latest", "resume from: latest, an epoch number, or none")
    init_from: str = _flag("", "start a new run from this checkpoint's weights and tokenizers (fine-tuning)")
    save_every: int = _flag(0, "also checkpoint every N optimizer steps (0: only at epoch ends)")
    keep_last: int = _flag(5, "how many of the newest checkpoints to keep")
    val_examples: int = _flag(2, "validation sentences printed at each epoch end")
    val_sentences: int = _flag(200, "validation sentences scored with BLEU, chrF, CER, WER")
    device: str = _flag("auto", "auto, cpu, cuda or cuda:N")
    threads: int = _flag(0, "torch CPU threads (0: torch's default)")
    amp: bool = _flag(False, "bfloat16 autocast (CUDA only)")
    compile: bool = _flag(False, "torch.compile (CUDA only)")
    save_half: bool = _flag(False, "store weights in 16 bits (smaller files; resume state stays float32)")
    max_steps: int = _flag(0, "stop after this many optimizer steps (0: run all epochs)")
    alignments: str = _flag(
        "",
        "guided alignment (Garg et al. 2019): a file of Pharaoh word links (i-j, 0-based indexes of the words "
        "that single spaces separate), one line per pair of the --data files in their order (each file once); "
        "pulls one cross-attention head towards them (python -m core align-corpus makes such a file)",
    )
    alignment_layer: int = _flag(0, "decoder layer (1-based) of the head --alignments guides (0: the penultimate)")
    alignment_head: int = _flag(1, "head (1-based) of that layer that --alignments guides")
    alignment_weight: float = _flag(
        0.05, "weight of the guided alignment loss beside the translation loss (Garg et al.: 0.05)"
    )

    def __post_init__(self) -> None:
        for f in fields(self):  # config files can hold any JSON/TOML type: check before comparing values
            value, default = getattr(self, f.name), f.default
            if f.name == "data":
                ok = isinstance(value, tuple) and all(isinstance(v, str) for v in value)
            elif isinstance(default, bool):
                ok = isinstance(value, bool)
            elif isinstance(default, float):
                ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            else:
                ok = isinstance(value, type(default)) and not (
                    isinstance(value, bool) and not isinstance(default, bool)
                )
            if not ok:
                expected = "a list of file names" if f.name == "data" else type(default).__name__
                raise ValueError(f"{f.name} must be {expected}, got {value!r}")
        _check_integers(
            self,
            ("batch_size", "epochs", "seq_len", "d_model", "layers", "heads", "d_ff", "keep_last", "min_frequency"),
            minimum=1,
        )
        _check_integers(
            self,
            (
                "max_tokens",
                "warmup_steps",
                "src_vocab_size",
                "tgt_vocab_size",
                "save_every",
                "val_examples",
                "val_sentences",
                "threads",
                "max_steps",
                "alignment_layer",
            ),
            minimum=0,
        )
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if not 0 <= self.label_smoothing < 1 or not 0 <= self.dropout < 1:
            raise ValueError("label_smoothing and dropout must be in [0, 1)")
        if self.grad_clip < 0:
            raise ValueError(f"grad_clip must be >= 0, got {self.grad_clip}")
        if (
            not 0 < self.val_fraction < 1
            or not 0 <= self.test_fraction < 1
            or self.val_fraction + self.test_fraction >= 1
        ):
            raise ValueError("val_fraction must be in (0, 1), test_fraction in [0, 1), and their sum below 1")
        if self.d_model % self.heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by heads ({self.heads})")
        if self.preload not in ("latest", "none") and not self.preload.isdigit():
            raise ValueError(f"preload must be 'latest', 'none' or an epoch number, got {self.preload!r}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"device must be auto, cpu or cuda[:N], got {self.device!r}")
        if self.alignment_layer > self.layers or not 1 <= self.alignment_head <= self.heads:
            raise ValueError(
                f"alignment_layer must be 0..{self.layers} and alignment_head 1..{self.heads} "
                f"(the model's layers and heads), got {self.alignment_layer} and {self.alignment_head}"
            )
        if self.alignment_weight < 0:
            raise ValueError(f"alignment_weight must be >= 0, got {self.alignment_weight}")
        if "{0}" not in self.tokenizer_file:
            raise ValueError("tokenizer_file must contain {0} (the language code)")

    @property
    def guided_head(self) -> tuple[int, int]:
        """(layer, head), 0-based, of the cross-attention head --alignments guides."""
        layer = self.alignment_layer or max(1, self.layers - 1)
        return layer - 1, self.alignment_head - 1

    def to_dict(self) -> dict:
        data = asdict(self)
        data["data"] = list(self.data)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        """Build from a dict (a config file's content); unknown keys are an error."""
        _reject_unknown_keys(cls, data, "training config")
        data = dict(data)
        if "data" in data:
            data["data"] = tuple([data["data"]] if isinstance(data["data"], str) else data["data"])
        if "preload" in data and data["preload"] is not None:
            data["preload"] = str(data["preload"])
        elif "preload" in data:
            data["preload"] = "none"
        return cls(**data)
