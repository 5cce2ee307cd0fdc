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
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from core import CheckpointError, ModelBundle, Translation, charts, load_checkpoint, translate
from core.runs import EpochView, Run, RunCheckpoint, discover_runs, epoch_view
from core.training import checkpoint_progress

REPO = Path(__file__).resolve().parent
PAGES = REPO / "pages"  # absolute: route_through_app may run app.main() from a page file
SENTENCE_CHARS = 2000  # the sentence and reference boxes: longer text is refused with a message, never cut
LIST_SHOWN = 20  # items of a long caption list shown before "... and N more"
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
    head_check: object = None  # core.analysis.head_count.HeadCountCheck of a tutorial upload


_router = threading.local()  # .running: True while app.py's router runs a page in this thread (one script run)
FULL_RUN = "_full_run"  # (page url_path, count of full runs of this session); fragment reruns leave it as it is


@contextmanager
def router_running(page: str) -> Iterator[None]:
    """Wrap app.py's st.navigation(...).run(): pages run inside it know they came through the router, and
    bound() knows which page this full run draws and how many full runs the session has had."""
    st.session_state[FULL_RUN] = (page, st.session_state.get(FULL_RUN, ("", 0))[1] + 1)
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
    """Checkpoint files in the checkpoints folder: default.pt, other names, then numbered ones newest first (a
    tutorial folder has no default.pt: its last epoch is the model that opens)."""
    folder = checkpoint_dir()
    if not folder.is_dir():
        return []
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in CHECKPOINT_SUFFIXES)

    def order(path: Path) -> tuple:
        progress = checkpoint_progress(path)
        return (path.name != "default.pt", progress is not None, tuple(-n for n in progress or ()))

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


def session_upload() -> ActiveModel | None:
    """This session's uploaded model, or None when it has none or the store has dropped it."""
    upload = st.session_state.get("upload")
    bundle = upload_store(upload_budget_mb()).get(upload["key"]) if upload else None
    return (
        None if bundle is None else ActiveModel(upload["key"], upload["name"], "uploaded (this session only)", bundle)
    )


def resolve_model() -> tuple[ActiveModel | None, str | None]:
    """(model, error): this session's upload if chosen, else the chosen (or first) file in the checkpoints folder."""
    state = st.session_state
    upload, evicted = state.get("upload"), None
    if state.get("model_choice") == "upload" and upload:
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
        st.warning(f"Cannot translate: {md_text(exc)}")
        return None


@st.cache_data(max_entries=32, show_spinner=False)
def cached_search(
    model_key: str, _bundle: ModelBundle, sentence: str, beam_size: int, length_penalty: float, prefix: tuple[int, ...]
) -> Translation:
    """translate() with a beam (all beam_size hypotheses kept) and/or a forced prefix, once per model and input."""
    return translate(
        _bundle,
        sentence,
        beam_size=beam_size,
        nbest=beam_size,
        length_penalty=length_penalty,
        prefix=list(prefix) if prefix else None,
    )


def run_search(
    model: ActiveModel, sentence: str, beam_size: int, length_penalty: float = 0.0, prefix: tuple[int, ...] = ()
) -> Translation | None:
    """The (cached) beam search or forced decoding, or None after showing why it cannot run."""
    try:
        return cached_search(model.key, model.bundle, sentence, beam_size, length_penalty, prefix)
    except ValueError as exc:
        st.warning(f"Cannot translate: {exc}")
        return None


_MARKDOWN_SPECIALS = re.compile(r"([\\`*_\[\]<>#|~$:])")  # inline Markdown, HTML, LaTeX ($), directives (:)
_LIST_START = re.compile(r"^(\s*)([-+=]|\d+(?=[.)]))", re.MULTILINE)  # a list item or a heading underline


def md_text(text: object) -> str:
    """User (or file) text for st.markdown/caption/warning: every Markdown, HTML, LaTeX ($) and directive (:)
    sign backslash-escaped, so it shows as typed; newlines kept as line breaks."""
    escaped = _MARKDOWN_SPECIALS.sub(r"\\\1", str(text))
    escaped = _LIST_START.sub(lambda m: m[1] + (m[2] + "\\" if m[2][0].isdigit() else "\\" + m[2]), escaped)
    return escaped.replace("\n", "  \n")


def md_code(text: object) -> str:
    """Text as an inline code span, whatever backticks it holds (a fence longer than any run inside)."""
    text = str(text).replace("\n", " ")
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def cut_list(items: list[str], shown: int = LIST_SHOWN, sep: str = ", ") -> str:
    """items joined by sep, the first `shown` of them and then how many more there are."""
    rest = len(items) - shown
    return sep.join(items[:shown]) + (f"{sep}… and {rest} more" if rest > 0 else "")


def too_long(text: str, what: str) -> bool:
    """True (after saying so) when text is over the box limit: a message instead of a silent cut."""
    if len(text) <= SENTENCE_CHARS:
        return False
    st.warning(
        f"The {what} is {len(text):,} characters long; the box takes at most {SENTENCE_CHARS:,}. "
        "Nothing was translated: shorten it (the model reads one sentence at a time)."
    )
    return True


def show_chart(spec: dict, **kwargs):
    """A chart of core.charts in a box as wide as it would like (charts.natural_width), or its column if that
    is narrower: the chart fits the box (never wider than its column, never under its neighbour)."""
    with st.container(width=charts.natural_width(spec)):
        # without the width it would like, which the box already has: a spec that differs only there is the
        # same view with new data, redrawn in place (core.charts puts nothing else in usermeta)
        return st.vega_lite_chart({k: v for k, v in spec.items() if k != "usermeta"}, width="stretch", **kwargs)


def set_link(params: dict) -> None:
    """Make the page's link (its query string) hold exactly params, written only when it differs: each write
    is a new entry in the browser's history (its Back button), so a page writes its link once per run."""
    wanted = {key: str(value) for key, value in params.items()}
    if st.query_params.to_dict() != wanted:
        st.query_params.from_dict(wanted)


def restore_once(page: str) -> bool:
    """True on this session's first run of `page`: the moment to take the view from the link."""
    flag = f"_url_restored_{page}"
    if st.session_state.get(flag):
        return False
    st.session_state[flag] = True
    return True


def view_state() -> dict:
    """This session's choices (sentence, kind, layer, ...): a plain dict, which survives page switches,
    unlike a widget's own state, which Streamlit drops on a page that does not show the widget."""
    return st.session_state.setdefault("view", {})


def _store(name: str) -> None:
    view_state()[name] = st.session_state[name]


def bound(name: str, default) -> dict:
    """Widget kwargs binding widget key `name` to view_state()[name]: the widget starts from the stored value
    and every change is stored back.

    The stored value is written into the widget only when the widget needs it: it is new on this page (first
    run, another page drew it last, or the last run did not draw it), or the view changed under it (an
    example picked, a link opened). Writing it on every run would send it to the browser each time and put
    it over what the user is typing in the box while an earlier run finishes."""
    view = view_state()
    view.setdefault(name, default)
    page, count = run = st.session_state.get(FULL_RUN, ("", 0))
    drawn = st.session_state.setdefault("_bound_drawn", {})
    alive = drawn.get(name) in ((page, count), (page, count - 1))  # this run (a fragment's rerun) or the last
    if not alive or name not in st.session_state or st.session_state[name] != view[name]:
        st.session_state[name] = view[name]
    drawn[name] = run
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
        st.markdown(f"**{md_text(model.label)}**  \n{model.origin}, {model.bundle.kind} format")
        st.markdown("\n".join(f"- {k}: **{v}**" for k, v in model_facts(model.bundle).items()))


# ---------------------------------------------------------------- runs, Timeline and Compare


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
    stamp = _stamp(path)
    return ActiveModel(f"file:{path}:{stamp}", path.name, "checkpoints folder", load_file(str(path), stamp))


@st.cache_data(max_entries=200, show_spinner=False)  # about 0.3 MB each at full size: one sentence at one epoch
def cached_epoch_view(
    path: str, stamp: str, epoch: int, step: int | None, sentence: str, reference, decoder_ids, heads
) -> EpochView:
    """epoch_view of one checkpoint file version; the model is loaded, used and dropped (never cached)."""
    return epoch_view(RunCheckpoint(Path(path), epoch, step), sentence, reference, decoder_ids, heads)


def cached_view(checkpoint: RunCheckpoint, sentence: str, reference, decoder_ids, heads) -> EpochView:
    """follow_sentence's per-epoch step, through the cache (keyed by the file's stamp)."""
    return cached_epoch_view(
        str(checkpoint.path),
        checkpoint.stamp,
        checkpoint.epoch,
        checkpoint.step,
        sentence,
        reference,
        decoder_ids,
        heads,
    )


def head_links(sentence: str, reference: str, kind: str, layer: int, head: int) -> None:
    """Links that open this sentence's head (kind, layer, head) on the Compare and Timeline pages."""
    shared = {"sentence": sentence, "kind": kind, "layer": layer, "head": head} | (
        {"reference": reference} if reference else {}
    )
    files = find_checkpoints()
    chosen = st.session_state.get("model_choice") or (str(files[0]) if files else None)  # as resolve_model picks
    options = {str(p): name for name, p in model_options().items()}
    compare = shared | ({"a": options[chosen]} if chosen in options else {})
    runs = find_runs()
    active_run = next((r for r in runs if any(str(c.path) == chosen for c in r.checkpoints)), runs[0] if runs else None)
    timeline = shared | ({"run": run_id(active_run)} if active_run else {})
    row = st.container(horizontal=True)  # one block, not a row of two columns: fewer deltas per rerun
    row.page_link(
        PAGES / "compare.py",
        label="Open in Compare",
        icon=":material/compare:",
        query_params=compare,
        help="This head of the active model against another model's, on the same sentence",
    )
    row.page_link(
        PAGES / "timeline.py",
        label="Open in Timeline",
        icon=":material/timeline:",
        query_params=timeline,
        help="This head at every checkpoint of a training run, on the same sentence",
    )
