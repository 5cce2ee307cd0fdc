"""Self-describing checkpoints, and the one loader that serves the CLI, training and the app.

Our format is a `torch.save` of plain data only (tensors, strings, numbers, lists, dicts), read back
with `weights_only=True`, so loading a file never runs code:

    format            FORMAT
    model_config      ModelConfig as a dict
    model_state_dict  the weights (float32, or float16 when saved with half=True), positions omitted
    src_tokenizer     tokenizer JSON text (source language)
    tgt_tokenizer     tokenizer JSON text (target language)
    metadata          JSON-like dict: model card, training config, metrics (optional)
    training_state    TrainingState as a dict: optimizer, scheduler, epoch, step, RNG state (optional;
                      only for resuming, through read_resume_point)

The loader also takes a checkpoint written by the tutorial (`tmodel_XX.pt`: a dict with
`model_state_dict`, or a bare state dict from its oldest revisions) plus its two tokenizer files,
and infers the model size from the tensor shapes.
"""

from __future__ import annotations

import io
import os
import re
import tempfile
import warnings
from dataclasses import dataclass, fields
from pathlib import Path
from typing import BinaryIO

import torch
from tokenizers import Tokenizer

from core.bundle import ModelBundle
from core.config import ModelConfig
from core.model import PositionalEncoding, Transformer
from core.seam import CheckpointError
from core.tokenizer import JsonTokenizer, load_tokenizer, raw_tokenizer

FORMAT = "transformer-attention-checkpoint/1"
DEFAULT_TUTORIAL_HEADS = 8
POSITION_KEYS = ("src_pos.pe", "tgt_pos.pe")
ZIP_MAGIC = b"PK\x03\x04"
MAX_SEQ_LEN = 1 << 16  # positions a checkpoint may declare: the table is seq_len x d_model per stack, never stored


@dataclass(frozen=True)
class TrainingState:
    """Everything besides the weights that continuing a run bit-for-bit needs: where it stands, the optimizer and
    schedule, and the random generators. Saved as a checkpoint's `training_state`."""

    epoch: int  # the epoch in progress (epochs finished so far)
    batch_in_epoch: int  # batches of that epoch already trained on: resuming skips them
    global_step: int  # optimizer steps since the run began
    optimizer: dict  # optimizer.state_dict()
    scheduler: dict  # scheduler.state_dict()
    torch_rng: torch.Tensor  # torch.get_rng_state()
    python_rng: tuple  # random.getstate()
    cuda_rng: torch.Tensor | None = None  # torch.cuda.get_rng_state(device) when training on a GPU

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: object) -> TrainingState:
        """From a checkpoint's training_state; CheckpointError if entries are missing or of the wrong kind."""
        if not isinstance(data, dict):
            raise CheckpointError("its training state is not a dict")
        missing = [f.name for f in fields(cls) if f.name not in data and f.name != "cuda_rng"]
        if missing:
            raise CheckpointError(f"its training state lacks {', '.join(missing)}")
        try:
            version, internal, gauss = data["python_rng"]  # a saved tuple comes back from torch.load as a list
            state = cls(**{**data, "python_rng": (version, tuple(internal), gauss)})
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"its training state is damaged: {exc}") from None
        counters = (state.epoch, state.batch_in_epoch, state.global_step)
        if not all(isinstance(n, int) and n >= 0 for n in counters) or not isinstance(state.torch_rng, torch.Tensor):
            raise CheckpointError("its training state is damaged: bad counters or random state")
        return state


@dataclass(frozen=True)
class ResumePoint:
    """What a run continues from: the checkpoint's model config, its weights (positions omitted) and state."""

    path: Path
    config: ModelConfig
    weights: dict[str, torch.Tensor]
    state: TrainingState


def atomic_torch_save(payload: dict, path: str | Path) -> None:
    """torch.save to a temporary file in the same folder, then rename: a kill never leaves a broken file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o644)  # mkstemp makes the file private; a checkpoint is as readable as any other file
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(
    path: str | Path,
    model: Transformer,
    src_tokenizer: Tokenizer | JsonTokenizer,
    tgt_tokenizer: Tokenizer | JsonTokenizer,
    *,
    metadata: dict | None = None,
    training_state: TrainingState | None = None,
    half: bool = False,
    bits: int = 32,
) -> None:
    """Write one self-describing checkpoint file atomically; with a training_state, a run can resume from it.

    half (or bits=16) stores the weights in 16 bits; bits=8 stores every weight matrix as 8-bit integers with one
    16-bit scale per row (quantize), the rest in 16 bits: a quarter of the float32 size. The loader turns them
    back into float32."""
    weights = {k: v.detach().cpu() for k, v in model.state_dict().items() if k not in POSITION_KEYS}
    scales = {}
    if bits == 8:
        weights, scales = quantize(weights)
    elif half or bits == 16:  # 16-bit storage halves the file
        weights = {k: v.half() if v.is_floating_point() else v for k, v in weights.items()}
    payload = {
        "format": FORMAT,
        "model_config": model.config.to_dict(),
        "model_state_dict": weights,
        "src_tokenizer": raw_tokenizer(src_tokenizer).to_str(),
        "tgt_tokenizer": raw_tokenizer(tgt_tokenizer).to_str(),
        "metadata": metadata or {},
    }
    if scales:
        payload["int8_scales"] = scales
    if training_state is not None:
        payload["training_state"] = training_state.to_dict()
    atomic_torch_save(payload, path)


def quantize(weights: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Weight matrices -> int8 with a float16 scale per row (symmetric: row / (max |row| / 127), rounded); other
    tensors -> float16. Returns (stored tensors, scales by key)."""
    stored, scales = {}, {}
    for key, tensor in weights.items():
        if tensor.is_floating_point() and tensor.dim() == 2:
            scale = (tensor.abs().amax(dim=1, keepdim=True) / 127).clamp_min(1e-12)
            stored[key] = torch.round(tensor / scale).clamp(-127, 127).to(torch.int8)
            scales[key] = scale[:, 0].half()
        else:
            stored[key] = tensor.half() if tensor.is_floating_point() else tensor
    return stored, scales


def dequantize(state: dict, scales: object) -> dict:
    """quantize()'s stored tensors back to float32; CheckpointError for scales that do not fit their weights."""
    if not isinstance(scales, dict):
        raise CheckpointError("damaged checkpoint: int8_scales is not a dict")
    out = dict(state)
    for key, scale in scales.items():
        tensor = state.get(key)
        valid = isinstance(scale, torch.Tensor) and isinstance(tensor, torch.Tensor) and tensor.dtype == torch.int8
        if not valid or tensor.dim() != 2 or scale.shape != (tensor.size(0),):
            raise CheckpointError(f"damaged checkpoint: the 8-bit weights of {key} do not match their scales")
        out[key] = tensor.float() * scale.float()[:, None]
    return out


def read_checkpoint(source: str | Path | bytes | BinaryIO, mmap: bool = False) -> object:
    """Read a checkpoint file's content safely (no code runs); raise CheckpointError naming the problem.

    With mmap, a file on disk in torch's zip format is memory-mapped: only the tensors used are read, so a
    training checkpoint's optimizer state (two thirds of a tutorial file) is never read for inference. The
    tensors are then backed by the file: copy what you keep (load_checkpoint does)."""
    mapped = None
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.is_dir():
            inside = sorted(p.name for p in path.glob("*.pt*"))[:5]
            raise CheckpointError(
                f"{path} is a folder, not a checkpoint file, and not a Hugging Face model folder (no config.json)"
                + (f"; it holds {', '.join(inside)}" if inside else "")
            )
        if not path.is_file():
            raise CheckpointError(f"checkpoint not found: {path}")
        with path.open("rb") as f:
            head = f.read(len(ZIP_MAGIC))
        mapped = path if mmap and head == ZIP_MAGIC and path.stat().st_size > len(ZIP_MAGIC) else None
        data = head if mapped else path.read_bytes()
    elif isinstance(source, bytes):
        data = source
    else:
        data = source.read()
    if not data:
        raise CheckpointError("empty file: not a checkpoint")
    if not (data.startswith(ZIP_MAGIC) or data[:1] == b"\x80"):
        raise CheckpointError("not a checkpoint: expected a PyTorch .pt file")
    try:
        with warnings.catch_warnings():  # a file torch would warn about gets our one line below, not also torch's
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            if mapped:
                return torch.load(mapped, map_location="cpu", weights_only=True, mmap=True)
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for bad files: turn each into one clear line
        message = str(exc)
        if "Weights only load failed" in message or "Unsupported global" in message:
            found = re.findall(r"GLOBAL ([\w.]+)", message)
            if found:
                raise CheckpointError(
                    f"refused: the file holds Python objects ({', '.join(sorted(set(found)))}) "
                    "that would run code when loaded; only plain tensors and values are "
                    "accepted"
                ) from None
            # No named global (e.g. a pickle protocol or random bytes the safe unpickler cannot parse):
            # say what stopped it rather than claim the file holds code.
            reason = re.search(r"WeightsUnpickler error:\s*(.+)", message)
            raise CheckpointError(
                "refused: the safe loader cannot read this file"
                f"{f' ({reason.group(1).strip()})' if reason else ''}; only plain tensors "
                "and values saved with torch.save are accepted"
            ) from None
        if data.startswith(ZIP_MAGIC) or isinstance(exc, (EOFError, ValueError)):
            raise CheckpointError(
                f"truncated or corrupted checkpoint ({mapped.stat().st_size if mapped else len(data):,} bytes): "
                f"{message.splitlines()[0].split('. ')[0] if message else type(exc).__name__}"
            ) from None
        raise CheckpointError(f"not a checkpoint: {type(exc).__name__}: {message.splitlines()[0]}") from None


def read_resume_point(path: str | Path) -> ResumePoint:
    """The config, weights and training state of one of our checkpoints; CheckpointError if it cannot resume a run."""
    payload = read_checkpoint(path)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError("it is not a checkpoint written by our training")
    if "training_state" not in payload:
        raise CheckpointError("it holds no training state to resume from")
    try:
        config = ModelConfig.from_dict(payload["model_config"])
        weights = dict(payload["model_state_dict"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"damaged checkpoint: bad or missing entry {exc}") from None
    return ResumePoint(Path(path), config, weights, TrainingState.from_dict(payload["training_state"]))


def _looks_like_state_dict(obj: object) -> bool:
    return (
        isinstance(obj, dict)
        and bool(obj)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def _tutorial_state_dict(state: dict) -> dict:
    """Bring older tutorial layouts to the current one (renamed cross-attention, scalar norms)."""
    embedding = state["src_embed.embedding.weight"]
    if embedding.dim() != 2:
        raise CheckpointError(f"damaged checkpoint: src_embed.embedding.weight has shape {tuple(embedding.shape)}")
    d_model = embedding.shape[1]
    fixed = {}
    for key, tensor in state.items():
        key = key.replace(".source_attention_block.", ".cross_attention_block.")
        if re.search(r"norm\.(alpha|bias)$", key) and tensor.shape == (1,):
            tensor = tensor.expand(d_model).clone()  # one scalar gain/bias per norm: the same function
        fixed[key] = tensor
    return fixed


def _infer_tutorial_config(state: dict, heads: int) -> ModelConfig:
    required = [
        "src_embed.embedding.weight",
        "tgt_embed.embedding.weight",
        "src_pos.pe",
        "encoder.layers.0.feed_forward_block.linear_1.weight",
        "projection_layer.proj.weight",
    ]
    missing = [k for k in required if k not in state]
    if missing:
        raise CheckpointError(f"not a Transformer checkpoint: missing {', '.join(missing)}")
    flat = [k for k in required if state[k].dim() < 2]
    if flat:
        raise CheckpointError(f"damaged checkpoint: {', '.join(flat)} should be a matrix")
    layers = {int(m.group(1)) for k in state if (m := re.match(r"encoder\.layers\.(\d+)\.", k))}
    try:
        return ModelConfig(
            src_vocab_size=state["src_embed.embedding.weight"].shape[0],
            tgt_vocab_size=state["tgt_embed.embedding.weight"].shape[0],
            d_model=state["src_embed.embedding.weight"].shape[1],
            n_layers=max(layers) + 1,
            n_heads=heads,
            d_ff=state["encoder.layers.0.feed_forward_block.linear_1.weight"].shape[0],
            seq_len=state["src_pos.pe"].shape[1],
            attention_bias="encoder.layers.0.self_attention_block.w_q.bias" in state,
        )
    except ValueError as exc:
        raise CheckpointError(f"cannot build a model for this checkpoint: {exc}") from None


def _find_tutorial_tokenizer(source: object, lang: str) -> Path:
    name = f"tokenizer_{lang}.json"
    if isinstance(source, (str, Path)):
        folder = Path(source).resolve().parent
        for candidate in (folder / name, folder.parent / name):
            if candidate.is_file():
                return candidate
    raise CheckpointError(
        f"missing tokenizer: a tutorial checkpoint needs {name} "
        "(pass it with --src-tokenizer/--tgt-tokenizer or upload it)"
    )


def _tokenizer(source: object, what: str) -> Tokenizer:
    try:
        return load_tokenizer(source)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"bad {what} tokenizer: {exc}") from None


def _check_weights(config: ModelConfig, state: dict, computed: tuple[str, ...] = ()) -> None:
    """Check the file's tensors against the model `config` describes, before any memory is allocated for it
    (the model is built on the meta device): keys, shapes, dtypes and finite values, failing with one line that
    names the key at fault. `computed` keys (the positions of our format) are not stored in the file."""
    if not _looks_like_state_dict(state):
        raise CheckpointError("damaged checkpoint: the weights are not a dict of named tensors")
    if config.seq_len > MAX_SEQ_LEN:
        raise CheckpointError(f"seq_len {config.seq_len:,} is over this loader's limit of {MAX_SEQ_LEN:,} positions")
    layers = {m.group(1) for k in state if (m := re.match(r"(?:en|de)coder\.layers\.(\d+)\.", k))}
    if len(layers) != config.n_layers:  # checked before building even a meta model: n_layers may be huge
        raise CheckpointError(f"the config says {config.n_layers:,} layers; the weights hold {len(layers)}")
    try:
        with torch.device("meta"):
            expected = {k: v for k, v in Transformer(config).state_dict().items() if k not in computed}
    except (RuntimeError, ValueError, OverflowError) as exc:  # sizes whose product overflows torch's int64
        raise CheckpointError(f"cannot build a model of this config: {str(exc).splitlines()[0]}") from None
    unknown = sorted(set(state) - set(expected))
    missing = sorted(set(expected) - set(state))
    if unknown:
        raise CheckpointError(
            f"unknown keys in checkpoint: {', '.join(unknown[:5])}"
            + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        )
    if missing:
        raise CheckpointError(
            f"missing keys in checkpoint: {', '.join(missing[:5])}"
            + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        )
    for key, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise CheckpointError(
                f"shape mismatch for {key}: checkpoint has {tuple(tensor.shape)}, "
                f"the model needs {tuple(expected[key].shape)}"
            )
        if tensor.layout != torch.strided or not tensor.is_floating_point():
            raise CheckpointError(f"corrupted checkpoint: {key} is {tensor.dtype}, not a dense floating-point tensor")
        # isfinite on 16-bit floats is several times slower on CPU than converting and checking in 32 bits
        wide = tensor if tensor.dtype in (torch.float32, torch.float64) else tensor.float()
        if not torch.isfinite(wide).all():
            raise CheckpointError(f"corrupted checkpoint: {key} holds NaN or infinite values")


def _check_vocab(config: ModelConfig, src: Tokenizer, tgt: Tokenizer) -> None:
    for side, size, tok in (("source", config.src_vocab_size, src), ("target", config.tgt_vocab_size, tgt)):
        if tok.get_vocab_size() != size:
            raise CheckpointError(
                f"vocabulary size mismatch: the model's {side} embedding has {size} rows but "
                f"the {side} tokenizer has {tok.get_vocab_size()} tokens"
            )


def load_checkpoint(
    source: str | Path | bytes | BinaryIO,
    src_tokenizer: object = None,
    tgt_tokenizer: object = None,
    heads: int | None = None,
    device: str | torch.device = "cpu",
) -> ModelBundle:
    """Load our checkpoint or a tutorial one (with its tokenizers) into a ModelBundle in eval mode.

    Tokenizers may be paths, JSON text/bytes or Tokenizer objects; for a tutorial checkpoint given
    as a path they default to tokenizer_en.json / tokenizer_it.json beside it or one folder up.
    `heads` is needed only for tutorial checkpoints (shapes do not record it; default 8).
    A Hugging Face model (a save_pretrained folder, or a hub id written hf:ORG/NAME) goes to
    core.families.pretrained.
    """
    from core.families.pretrained import is_pretrained, load_pretrained  # transformers loads only for such models

    if is_pretrained(source):
        if src_tokenizer is not None or tgt_tokenizer is not None or heads is not None:
            raise CheckpointError(
                "a Hugging Face model brings its own tokenizers and head count: pass the folder alone"
            )
        return load_pretrained(source, device)
    payload = read_checkpoint(source, mmap=True)  # the weights are copied into the model below
    name = str(source) if isinstance(source, (str, Path)) else getattr(source, "name", "uploaded file")
    notes: list[str] = []
    if isinstance(payload, dict) and payload.get("format") == FORMAT:
        kind = "native"
        try:
            metadata = dict(payload.get("metadata") or {})
            config = ModelConfig.from_dict(payload["model_config"])
            state = dict(payload["model_state_dict"])
            src = _tokenizer(src_tokenizer if src_tokenizer is not None else payload["src_tokenizer"], "source")
            tgt = _tokenizer(tgt_tokenizer if tgt_tokenizer is not None else payload["tgt_tokenizer"], "target")
            if "int8_scales" in payload:
                state = dequantize(state, payload["int8_scales"])
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, CheckpointError):
                raise
            raise CheckpointError(f"damaged checkpoint: bad or missing entry {exc}") from None
        if heads is not None and heads != config.n_heads:
            raise CheckpointError(f"this checkpoint records {config.n_heads} heads; --heads {heads} does not match")
    elif isinstance(payload, dict) and ("model_state_dict" in payload or _looks_like_state_dict(payload)):
        kind = "tutorial"
        state = payload["model_state_dict"] if "model_state_dict" in payload else payload
        if not _looks_like_state_dict(state):
            raise CheckpointError("not a checkpoint: model_state_dict does not hold tensors")
        state = _tutorial_state_dict(state) if "src_embed.embedding.weight" in state else state
        config = _infer_tutorial_config(state, heads or DEFAULT_TUTORIAL_HEADS)
        if heads is None:
            notes.append(f"tutorial checkpoints do not record the head count; assumed {DEFAULT_TUTORIAL_HEADS}")
        src = _tokenizer(
            src_tokenizer if src_tokenizer is not None else _find_tutorial_tokenizer(source, "en"), "source"
        )
        tgt = _tokenizer(
            tgt_tokenizer if tgt_tokenizer is not None else _find_tutorial_tokenizer(source, "it"), "target"
        )
        metadata = {k: payload[k] for k in ("epoch", "global_step") if k in payload and "model_state_dict" in payload}
    else:
        what = (
            f"a dict with keys {sorted(map(str, payload))[:6]}" if isinstance(payload, dict) else type(payload).__name__
        )
        raise CheckpointError(f"not a checkpoint: the file holds {what}")

    _check_vocab(config, src, tgt)
    _check_weights(config, state, POSITION_KEYS if kind == "native" else ())
    with torch.device("meta"):  # shapes only: no random initialisation, every tensor comes from the file
        model = Transformer(config)
    if kind == "native":
        positions = PositionalEncoding(config.d_model, config.seq_len, 0.0).pe  # recomputed, never stored
        state.update({k: positions for k in POSITION_KEYS})
    # Copies (float32): the model must not share memory with a memory-mapped file or the caller's tensors.
    model.load_state_dict({k: v.to(torch.float32, copy=True) for k, v in state.items()}, strict=True, assign=True)
    model.to(device).eval()
    return ModelBundle(model, JsonTokenizer(src), JsonTokenizer(tgt), config, name, kind, metadata, tuple(notes))


def average(bundles: list[ModelBundle]) -> None:
    """Replace the first bundle's weights with the mean of all bundles' weights (same config and vocabularies)."""
    first = bundles[0]
    for other in bundles[1:]:
        if (
            other.config != first.config
            or other.tgt_tokenizer.get_vocab() != first.tgt_tokenizer.get_vocab()
            or other.src_tokenizer.get_vocab() != first.src_tokenizer.get_vocab()
        ):
            raise CheckpointError(f"cannot average {other.source} with {first.source}: different model or vocabulary")
    states = [b.model.state_dict() for b in bundles]
    with torch.no_grad():
        for key, tensor in first.model.state_dict().items():
            tensor.copy_(torch.stack([state[key].float() for state in states]).mean(0))


def export_checkpoint(
    checkpoints: list[str | Path], out: str | Path, card: dict | None = None, half: bool = True, bits: int = 16
) -> Path:
    """Write `out` with the (averaged) weights, tokenizers, config and metadata of the checkpoints, plus the card:
    a weights-only file to ship or share (16-bit storage unless half=False; bits=8: 8-bit weight matrices)."""
    bundles = [load_checkpoint(path) for path in checkpoints]
    if len(bundles) > 1:
        average(bundles)
    first = bundles[0]
    metadata = dict(first.metadata)
    if len(bundles) > 1:
        metadata["averaged_from"] = [Path(b.source).name for b in bundles]
    if card:
        metadata["model_card"] = card
    bits = bits if half else 32
    save_checkpoint(out, first.model, first.src_tokenizer, first.tgt_tokenizer, metadata=metadata, bits=bits)
    return Path(out)
