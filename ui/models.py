"""Which model a browser session uses: the files in the checkpoints folder, an upload kept for that session, or a
Hugging Face model (hub id or folder); the loaders behind them, and the sidebar that names the active one.

Models are cached process-wide (st.cache_resource: read-only, eval mode; nothing per user is ever stored on them).
Which model a session uses lives in st.session_state, so an upload changes only that session; uploads live in
one process-wide UploadStore with a memory budget ($ATTN_UPLOAD_BUDGET_MB, default 1024 MB), so many sessions
uploading cannot grow the server without bound.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from core import CheckpointError, ModelBundle, load_checkpoint
from core.families.pretrained import is_pretrained
from core.runs import Run, discover_runs
from core.training import checkpoint_progress
from ui.state import REPO
from ui.text import md_text

CHECKPOINT_SUFFIXES = (".pt", ".pth")
DEFAULT_UPLOAD_BUDGET_MB = 1024  # about three full-size models in float32 (300 MB each), or many small ones
UPLOAD, PRETRAINED = "upload", "pretrained"  # model_choice values besides a file's path
NO_MODEL_HELP = """
**No model yet.** The folder `{folder}` holds no checkpoint (`*.pt`).

- **Train one** (docs/training.md), then copy a small weights-only file here and reload this page:

  ```bash
  python -m core train --data pairs.tsv --model-folder runs/small
  python -m core export --checkpoint runs/small/tmodel_05.pt --out checkpoints/default.pt
  ```
- or **upload one** on the **Models** page: a checkpoint of this project, or a tutorial `tmodel_XX.pt`
  together with its `tokenizer_en.json` and `tokenizer_it.json`; or open a Hugging Face model there.
"""


@dataclass(frozen=True)
class ActiveModel:
    key: str  # identifies the weights: caches of translations are keyed by it
    label: str
    origin: str  # "checkpoints folder" or "uploaded (this session only)"
    bundle: ModelBundle
    head_check: object = None  # core.analysis.head_count.HeadCountCheck of a tutorial upload
    file: str | None = None  # the checkpoint file it was read from (a model of the checkpoints folder)


def checkpoint_dir() -> Path:
    """$ATTN_CHECKPOINT_DIR, or checkpoints/ beside app.py."""
    return Path(os.environ.get("ATTN_CHECKPOINT_DIR") or REPO / "checkpoints")


def find_checkpoints() -> list[Path]:
    """Models in the checkpoints folder: default.pt, other files, numbered files newest first (a tutorial folder has
    no default.pt: its last epoch is the model that opens), then Hugging Face model folders."""
    folder = checkpoint_dir()
    if not folder.is_dir():
        return []
    files = sorted(p for p in folder.iterdir() if (p.is_file() and p.suffix in CHECKPOINT_SUFFIXES) or is_pretrained(p))

    def order(path: Path) -> tuple:
        progress = checkpoint_progress(path)
        return (path.name != "default.pt", path.is_dir(), progress is not None, tuple(-n for n in progress or ()))

    return sorted(files, key=order)


def upload_limit_mb() -> int:
    """The server's upload limit (server.maxUploadSize in .streamlit/config.toml), checked again in Python."""
    return int(st.get_option("server.maxUploadSize"))


@st.cache_resource(max_entries=4, show_spinner="Loading model…")
def load_file(path: str, stamp: str) -> ModelBundle:
    """One model per file version (stamp = mtime and size) per process."""
    return load_checkpoint(path)


def upload_budget_mb() -> float:
    """Megabytes of uploaded weights this server process keeps ($ATTN_UPLOAD_BUDGET_MB, default 1024)."""
    return float(os.environ.get("ATTN_UPLOAD_BUDGET_MB") or DEFAULT_UPLOAD_BUDGET_MB)


def model_bytes(bundle: ModelBundle) -> int:
    """Memory held by a loaded model's weights and buffers (a tensor shared by two modules counted once)."""
    tensors = {t.data_ptr(): t for t in [*bundle.model.parameters(), *bundle.model.buffers()]}
    return sum(t.numel() * t.element_size() for t in tensors.values())


class UploadStore:
    """Uploaded models of every session of this server process, keyed by the sha256 of their files (upload_key):
    two sessions uploading the same file share one model. Once the weights held pass budget_bytes, the least
    recently used are dropped (the newest is always kept); a session whose model was dropped is told to upload
    it again (resolve_model). Thread-safe: each browser session runs its script in its own thread."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self._models: OrderedDict[str, tuple[ModelBundle, int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> ModelBundle | None:
        with self._lock:
            if key not in self._models:
                return None
            self._models.move_to_end(key)
            return self._models[key][0]

    def put(self, key: str, bundle: ModelBundle) -> None:
        with self._lock:
            self._models[key] = (bundle, model_bytes(bundle))
            self._models.move_to_end(key)
            while len(self._models) > 1 and self.total_bytes() > self.budget_bytes:
                self._models.popitem(last=False)

    def total_bytes(self) -> int:
        return sum(size for _, size in self._models.values())

    def __len__(self) -> int:
        return len(self._models)


@st.cache_resource
def upload_store(budget_mb: float) -> UploadStore:
    """The process-wide store (one per budget, so a test can set its own)."""
    return UploadStore(int(budget_mb * 2**20))


def load_upload(key: str, data: bytes, src: bytes | None, tgt: bytes | None, heads: int | None) -> ModelBundle:
    """The uploaded model for key: from the store, or loaded (CheckpointError if it cannot be) and stored."""
    store = upload_store(upload_budget_mb())
    bundle = store.get(key)
    if bundle is None:
        with st.spinner("Loading uploaded model…"):
            bundle = load_checkpoint(data, src, tgt, heads=heads)
        store.put(key, bundle)
    return bundle


def upload_key(data: bytes, src: bytes | None, tgt: bytes | None, heads: int | None) -> str:
    digest = hashlib.sha256(data)
    for part in (src or b"", tgt or b"", str(heads).encode()):
        digest.update(hashlib.sha256(part).digest())
    return "upload:" + digest.hexdigest()


def file_stamp(path: Path) -> str:
    """A file's version (modification time and size); a model folder's, of its config and weights."""
    files = (
        [f for f in (path / "config.json", *path.glob("*.safetensors"), *path.glob("*.bin"))]
        if path.is_dir()
        else [path]
    )
    return ";".join(f"{f.stat().st_mtime_ns}:{f.stat().st_size}" for f in files if f.is_file())


def session_upload() -> ActiveModel | None:
    """This session's uploaded model, or None when it has none or the store has dropped it."""
    upload = st.session_state.get("upload")
    bundle = upload_store(upload_budget_mb()).get(upload["key"]) if upload else None
    if bundle is None:
        return None
    origin = "uploaded (this session only)"
    return ActiveModel(upload["key"], upload["name"], origin, bundle, head_check=upload.get("head_check"))


@st.cache_resource(max_entries=2, show_spinner="Loading the Hugging Face model…")
def load_pretrained(source: str) -> ModelBundle:
    """A Hugging Face model (hf:ORG/NAME, or a folder), once per process: two at most (a few hundred MB each)."""
    return load_checkpoint(source)


def session_pretrained() -> ActiveModel | None:
    """The Hugging Face model this session opened on the Models page (loaded again if the cache dropped it)."""
    source = st.session_state.get(PRETRAINED)
    if not source:
        return None
    try:
        bundle = load_pretrained(source)
    except CheckpointError:
        return None
    return ActiveModel(f"pretrained:{source}", source, "Hugging Face model (this session)", bundle)


def resolve_model() -> tuple[ActiveModel | None, str | None]:
    """(model, error): this session's upload or Hugging Face model if chosen, else the chosen (or first) model in
    the checkpoints folder."""
    state = st.session_state
    upload, evicted = state.get("upload"), None
    if state.get("model_choice") == PRETRAINED and (opened := session_pretrained()) is not None:
        return opened, None
    if state.get("model_choice") == UPLOAD and upload:
        uploaded = session_upload()
        if uploaded is not None:
            return uploaded, None
        del state["upload"]  # dropped from the process-wide budget: say so once, then use the folder's model
        state["model_choice"] = None
        evicted = (
            f"Your uploaded model `{upload['name']}` was unloaded to make room: the server keeps at most "
            f"{upload_budget_mb():,g} MB of uploaded models for all users together. Upload it again on the "
            "**Models** page."
        )
    files = find_checkpoints()
    chosen = [p for p in files if str(p) == state.get("model_choice")] or files
    if not chosen:
        return None, evicted
    path = chosen[0]
    try:
        stamp = file_stamp(path)
        bundle = load_file(str(path), stamp)
    except (CheckpointError, OSError) as exc:
        return None, f"Cannot load `{md_text(path.name)}`: {md_text(exc)}"
    return folder_model(path, stamp, bundle), evicted


def active_model() -> ActiveModel | None:
    return resolve_model()[0]


def require_model() -> ActiveModel | None:
    """The active model, or None after telling the user how to train or upload one."""
    model = active_model()
    if model is None:
        show_no_model_help()
    return model


def show_no_model_help() -> None:
    st.info(NO_MODEL_HELP.format(folder=checkpoint_dir()))


def model_facts(bundle: ModelBundle) -> dict[str, str]:
    cfg = bundle.config
    return {
        "Layers × heads": f"{cfg.n_layers} × {cfg.n_heads}",
        "d_model / d_ff": f"{cfg.d_model} / {cfg.d_ff}",
        "Parameters": f"{bundle.num_parameters / 1e6:.2f} M"
        if bundle.num_parameters >= 1e5
        else f"{bundle.num_parameters:,}",
        "Vocabulary (en / it)": f"{cfg.src_vocab_size:,} / {cfg.tgt_vocab_size:,}",
        "Max tokens": str(cfg.seq_len),
    }


def sidebar(model: ActiveModel | None, error: str | None = None) -> None:
    with st.sidebar:
        st.subheader("Active model")
        if error:
            st.error(error)
        if model is None:
            st.info("No model loaded. Train one or upload one on the **Models** page.")
            return
        st.markdown(f"**{md_text(model.label)}**  \n{model.origin}, {model.bundle.kind} format")
        st.markdown("\n".join(f"- {k}: **{v}**" for k, v in model_facts(model.bundle).items()))


def find_runs() -> list[Run]:
    """Training runs (two or more tmodel_NN.pt of one stem) in the checkpoints folder and its subfolders."""
    return discover_runs(checkpoint_dir())


def run_id(run: Run) -> str:
    """A run as written in a link: its folder relative to the checkpoints folder, and its stem."""
    folder = run.folder.relative_to(checkpoint_dir()).as_posix() if run.folder != checkpoint_dir() else "."
    return f"{folder}/{run.stem}"


def model_options() -> dict[str, Path]:
    """Every checkpoint the Compare page can pick, by its path relative to the checkpoints folder: the files in
    the folder, then each run's checkpoints."""
    root = checkpoint_dir()
    paths = find_checkpoints() + [c.path for run in find_runs() for c in run.checkpoints]
    return {p.relative_to(root).as_posix(): p for p in dict.fromkeys(paths)}


def load_option(path: Path) -> ActiveModel:
    """One checkpoint file as a model (cached like the active model); raises CheckpointError or OSError."""
    stamp = file_stamp(path)
    return folder_model(path, stamp, load_file(str(path), stamp))


def folder_model(path: Path, stamp: str, bundle: ModelBundle) -> ActiveModel:
    """A model of the checkpoints folder (a file, or a Hugging Face model folder)."""
    file = str(path) if path.is_file() else None
    return ActiveModel(f"file:{path}:{stamp}", path.name, "checkpoints folder", bundle, file=file)


def link_targets() -> tuple[str | None, str | None]:
    """(the active model as Compare names it, the id of its training run, else of the first run): where the
    Translate page's Open in Compare and Open in Timeline point. Scans the folder: once per full run, never on a
    slider move."""
    files = find_checkpoints()
    chosen = st.session_state.get("model_choice") or (str(files[0]) if files else None)  # as resolve_model picks
    names = {str(path): name for name, path in model_options().items()}
    runs = find_runs()
    active_run = next((r for r in runs if any(str(c.path) == chosen for c in r.checkpoints)), runs[0] if runs else None)
    return names.get(chosen), run_id(active_run) if active_run else None
