"""Shared Streamlit pieces: where checkpoints live, the cached loaders, the active model, the sidebar.

Models are cached process-wide with st.cache_resource (read-only, eval mode; nothing per user is ever
stored on them). Which model a browser session uses lives in st.session_state, so an upload changes
only that session; the uploaded models themselves live in one process-wide UploadStore with a memory
budget ($ATTN_UPLOAD_BUDGET_MB, default 1024 MB), so many sessions uploading cannot grow the server
without bound. Translations are cached per (model key, sentence, reference, max_len): moving a
slider reruns the page but never the model.

A page is a file in pages/ that defines page() and ends with `ui.route_through_app()` then `page()`, and
is listed in app.py's st.navigation (README, "Adding a page").
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from core import CheckpointError, ModelBundle, Translation, load_checkpoint, translate

REPO = Path(__file__).resolve().parent
CHECKPOINT_SUFFIXES = (".pt", ".pth")
DEFAULT_UPLOAD_BUDGET_MB = 1024  # about three full-size models in float32 (300 MB each), or many small ones
EXAMPLES = [
    "I love you.",
    "The cat is sleeping on the chair.",
    "Where is the train station?",
    "We will go to the sea tomorrow if the weather is good.",
    "She opened the door and looked at the garden.",
]
NO_MODEL_HELP = """
**No model yet.** The folder `{folder}` holds no checkpoint (`*.pt`).

- **Train one** (README, section *Training*), then copy a small weights-only file here and reload this page:

  ```bash
  python -m core train --data pairs.tsv --model-folder runs/small
  python -m core export --checkpoint runs/small/tmodel_05.pt --out checkpoints/default.pt
  ```
- or **upload one** on the **Models** page: a checkpoint of this project, or a tutorial `tmodel_XX.pt`
  together with its `tokenizer_en.json` and `tokenizer_it.json`.
"""


@dataclass(frozen=True)
class ActiveModel:
    key: str  # identifies the weights: caches of translations are keyed by it
    label: str
    origin: str  # "checkpoints folder" or "uploaded (this session only)"
    bundle: ModelBundle


_router = threading.local()  # .running: True while app.py's router runs a page in this thread (one script run)


@contextmanager
def router_running() -> Iterator[None]:
    """Wrap app.py's st.navigation(...).run(): pages run inside it know they came through the router."""
    _router.running = True
    try:
        yield
    finally:
        _router.running = False


def route_through_app() -> None:
    """Call first in every page file (see "Adding a page" in README.md).

    With a pages/ folder beside app.py, Streamlit opens a fresh server's first session in its legacy pages/
    mode until some session calls st.navigation: a deep link such as /steps then runs pages/steps.py alone,
    without app.py (no sidebar, no wide layout, no shared model). Here the page notices it was not started by
    app.py's router and runs app.py's main() instead, which renders the same URL through st.navigation, then
    stops this run. Only public Streamlit API is used: st.navigation (documented: once any session calls it,
    the pages/ folder is ignored for all sessions) and st.stop. On a Streamlit without the legacy mode the
    check simply never fires."""
    if getattr(_router, "running", False):
        return
    import app  # app.py imports this module; importing it here, at call time, is not circular

    app.main()
    st.stop()


def checkpoint_dir() -> Path:
    """$ATTN_CHECKPOINT_DIR, or checkpoints/ beside app.py."""
    return Path(os.environ.get("ATTN_CHECKPOINT_DIR") or REPO / "checkpoints")


def find_checkpoints() -> list[Path]:
    """Checkpoint files in the checkpoints folder, default.pt first."""
    folder = checkpoint_dir()
    if not folder.is_dir():
        return []
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in CHECKPOINT_SUFFIXES)
    return sorted(files, key=lambda p: p.name != "default.pt")


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
    """Memory held by a loaded model's weights and buffers."""
    return sum(t.numel() * t.element_size() for t in bundle.model.state_dict().values())


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


def _stamp(path: Path) -> str:
    stat = path.stat()
    return f"{stat.st_mtime_ns}:{stat.st_size}"


def resolve_model() -> tuple[ActiveModel | None, str | None]:
    """(model, error): this session's upload if chosen, else the chosen (or first) file in the checkpoints folder."""
    state = st.session_state
    upload, evicted = state.get("upload"), None
    if state.get("model_choice") == "upload" and upload:
        bundle = upload_store(upload_budget_mb()).get(upload["key"])
        if bundle is not None:
            return ActiveModel(upload["key"], upload["name"], "uploaded (this session only)", bundle), None
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
        stamp = _stamp(path)
        bundle = load_file(str(path), stamp)
    except (CheckpointError, OSError) as exc:
        return None, f"Cannot load `{path.name}`: {exc}"
    return ActiveModel(f"file:{path}:{stamp}", path.name, "checkpoints folder", bundle), evicted


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


@st.cache_data(max_entries=64, show_spinner=False)  # about 0.6 MB each at full size
def cached_translate(
    model_key: str, _bundle: ModelBundle, sentence: str, reference: str | None, max_len: int | None = None
) -> Translation:
    """translate(), computed once per model and input; later calls return a copy from the cache."""
    return translate(_bundle, sentence, max_len=max_len, reference=reference)


def run_translation(model: ActiveModel, sentence: str, reference: str | None = None) -> Translation | None:
    """The (cached) translation, or None after showing why the input cannot be translated."""
    try:
        return cached_translate(model.key, model.bundle, sentence, reference or None)
    except ValueError as exc:
        st.warning(f"Cannot translate: {exc}")
        return None


def view_state() -> dict:
    """This session's choices (sentence, kind, layer, ...): a plain dict, which survives page switches,
    unlike a widget's own state, which Streamlit drops on a page that does not show the widget."""
    return st.session_state.setdefault("view", {})


def _store(name: str) -> None:
    view_state()[name] = st.session_state[name]


def bound(name: str, default) -> dict:
    """Widget kwargs binding widget key `name` to view_state()[name]: the widget starts from the stored value
    and every change is stored back."""
    view = view_state()
    view.setdefault(name, default)
    st.session_state[name] = view[name]
    return {"key": name, "on_change": _store, "args": (name,)}


def index_slider(label: str, count: int, key: str, **kwargs) -> int:
    """A 1-based slider over count items, bound to view_state()[key] (a caption when there is only one)."""
    view = view_state()
    view[key] = min(max(int(view.get(key, 1)), 1), count)  # a smaller model may have been picked since
    if count <= 1:
        st.caption(f"{label}: 1 (the only one)")
        return 1
    return st.slider(label, 1, count, **bound(key, 1), **kwargs)


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
        st.markdown(f"**{model.label}**  \n{model.origin}, {model.bundle.kind} format")
        st.markdown("\n".join(f"- {k}: **{v}**" for k, v in model_facts(model.bundle).items()))
