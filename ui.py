"""Shared Streamlit pieces: where checkpoints live, the cached loaders, the active model, the sidebar.

Models are cached process-wide with st.cache_resource (read-only, eval mode; nothing per user is ever
stored on them). Which model a browser session uses lives in st.session_state, so an upload changes
only that session. Translations are cached per (model key, sentence, reference, max_len): moving a
slider reruns the page but never the model.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from core import CheckpointError, ModelBundle, Translation, charts, load_checkpoint, translate

REPO = Path(__file__).resolve().parent
SENTENCE_CHARS = 2000  # the sentence and reference boxes: longer text is refused with a message, never cut
LIST_SHOWN = 20  # items of a long caption list shown before "... and N more"
CHECKPOINT_SUFFIXES = (".pt", ".pth")
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


def route_through_app() -> None:
    """Call first in every page. With a pages/ folder, Streamlit runs a fresh server's first request in its
    legacy mode: a deep link such as /steps then runs the page file alone, skipping app.py (no sidebar, no
    layout). Turn that mode off and rerun; app.py's st.navigation then opens the same URL. (Streamlit 1.67
    internals; any later session already runs app.py.)"""
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


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


@st.cache_resource(max_entries=2, show_spinner="Loading uploaded model…")
def load_upload(key: str, _data: bytes, _src: bytes | None, _tgt: bytes | None, heads: int | None) -> ModelBundle:
    """An uploaded model, cached by the sha256 of its files (key); the bytes themselves are not hashed again."""
    return load_checkpoint(_data, _src, _tgt, heads=heads)


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
    upload = state.get("upload")
    if state.get("model_choice") == "upload" and upload:
        origin = "uploaded (this session only)"
        return ActiveModel(upload["key"], upload["name"], origin, upload["bundle"], upload.get("head_check")), None
    files = find_checkpoints()
    chosen = [p for p in files if str(p) == state.get("model_choice")] or files
    if not chosen:
        return None, None
    path = chosen[0]
    try:
        stamp = _stamp(path)
        bundle = load_file(str(path), stamp)
    except (CheckpointError, OSError) as exc:
        return None, f"Cannot load `{path.name}`: {exc}"
    return ActiveModel(f"file:{path}:{stamp}", path.name, "checkpoints folder", bundle), None


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
        return st.vega_lite_chart(spec, width="stretch", **kwargs)


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
        st.markdown(f"**{md_text(model.label)}**  \n{model.origin}, {model.bundle.kind} format")
        st.markdown("\n".join(f"- {k}: **{v}**" for k, v in model_facts(model.bundle).items()))
