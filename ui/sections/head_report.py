"""The Heads page's report: the analysis of every head over a set of sentence pairs (core/analysis/
head_report.py), computed once per model and data set with a progress bar, and the sentence pairs it reads."""

from __future__ import annotations

import hashlib
from urllib.parse import urlencode

import streamlit as st

from core.analysis.head_report import HeadReport, head_report
from core.data import DataError, parse_tsv, read_tsv
from core.heads_off import HeadsOff
from ui.models import ActiveModel
from ui.state import REPO

MAX_UPLOAD_PAIRS = 500

SAMPLE = REPO / "checkpoints" / "heads_sample.en-it.tsv"
SAMPLE_NOTE = (
    "200 held-out Tatoeba pairs (https://tatoeba.org, CC BY 2.0 FR; compiled in the Tatoeba Translation Challenge "
    "test set v2021-08-07, J. Tiedemann 2020, CC BY-NC-SA 4.0): see checkpoints/heads_sample.md"
)
PRUNING_STEP = 16  # heads switched off per point of the app's pruning curve (each point re-translates the set)


def data_key(pairs: list[tuple[str, str]]) -> str:
    digest = hashlib.sha256()
    for en, it in pairs:
        digest.update(f"{en}\t{it}\n".encode())
    return digest.hexdigest()


@st.cache_data(max_entries=8, show_spinner=False)
def cached_report(model_key: str, pairs_key: str, _bundle, _pairs) -> HeadReport:
    """head_report once per model and data set (pairs_key: the sha256 of the pairs), with a progress bar.

    The bar is made inside the function: Streamlit replays a cached function's elements on a cache hit,
    and that works only for elements the function itself created (the replay ends with the bar emptied)."""
    bar = st.progress(0.0, text="Analysing heads…")
    stages = ("statistics", "ablation", "gradient", "pruning (all)")

    def progress(stage: str, done: int, total: int) -> None:
        index = stages.index(stage) if stage in stages else len(stages) - 1
        fraction = min(1.0, (index + done / max(total, 1)) / len(stages))
        bar.progress(fraction, text=f"Analysing heads: {stage} {done}/{total}")

    try:
        return head_report(_bundle, _pairs, pruning_step=PRUNING_STEP, progress=progress)
    finally:
        bar.empty()


def run_report(model: ActiveModel, pairs: list[tuple[str, str]]) -> HeadReport | None:
    """The (cached) report, or None after saying why not."""
    try:
        return cached_report(model.key, data_key(pairs), model.bundle, pairs)
    except ValueError as exc:
        st.warning(f"Cannot analyse these pairs: {exc}")
        return None


def head_link(sentence: str, kind: str, layer: int, head: int, heads_off: HeadsOff | None = None) -> str:
    """The Translate page's URL showing one head (and switched-off heads, if any)."""
    params = {"sentence": sentence, "kind": kind, "layer": layer, "head": head}
    if heads_off:
        params["off"] = heads_off.to_param()
    return "/?" + urlencode(params)


def load_pairs() -> list[tuple[str, str]] | None:
    """The sample shipped with the app, or the user's TSV upload (None after a message)."""
    source = st.radio(
        "Sentence pairs",
        ["sample", "upload"],
        horizontal=True,
        key="heads_source",
        format_func={"sample": "Sample (200 Tatoeba pairs)", "upload": "Upload a TSV"}.get,
    )
    if source == "sample":
        st.caption(SAMPLE_NOTE)
        return read_tsv(SAMPLE)
    upload = st.file_uploader("english<TAB>italian, one pair per line (UTF-8)", type=["tsv", "txt"], key="heads_upload")
    if upload is None:
        st.info("Upload a file of sentence pairs, or use the sample.")
        return None
    try:
        pairs = parse_tsv(upload.getvalue().decode("utf-8").splitlines(), upload.name)
    except UnicodeDecodeError:
        st.warning(f"{upload.name} is not UTF-8 text.")
        return None
    except DataError as exc:
        st.warning(str(exc))
        return None
    if len(pairs) > MAX_UPLOAD_PAIRS:
        st.caption(f"Using the first {MAX_UPLOAD_PAIRS} of {len(pairs)} pairs.")
    return pairs[:MAX_UPLOAD_PAIRS]
