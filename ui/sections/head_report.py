"""The Heads page's report: the analysis of every head over a set of sentence pairs (core/analysis/
head_report.py), computed once per model and data set with a progress bar, and the sentence pairs it reads; the
roles it names, for the Translate page (which never waits for the analysis: it shows a role once the Heads
page has computed the report). The shipped model's report of the shipped sample ships too
(checkpoints/heads_report.json, core/analysis/report_file.py): with that model file and sample nothing runs, and
the Translate page has its roles at once."""

from __future__ import annotations

import functools
import hashlib
import logging
import threading
from collections import OrderedDict
from pathlib import Path
from urllib.parse import urlencode

import streamlit as st

from core import charts
from core.analysis.head_report import HeadReport, head_report
from core.analysis.head_roles import RoleGrid, describe_counts, most_important, roles_switched_off
from core.analysis.report_file import PAGE_PRUNING_STEP, OtherFiles, ReportFileError, load_report, sha256_file
from core.attention import KIND
from core.data import DataError, parse_tsv, read_tsv
from core.heads_off import HeadsOff
from ui import state, widgets
from ui.models import ActiveModel, file_stamp
from ui.state import REPO

MAX_UPLOAD_PAIRS = 500

SAMPLE = REPO / "checkpoints" / "heads_sample.en-it.tsv"
SAMPLE_NOTE = (
    "200 held-out Tatoeba pairs (https://tatoeba.org, CC BY 2.0 FR; compiled in the Tatoeba Translation Challenge "
    "test set v2021-08-07, J. Tiedemann 2020, CC BY-NC-SA 4.0): see checkpoints/heads_sample.md"
)
REPORT_FILE = REPO / "checkpoints" / "heads_report.json"  # the shipped model's report of SAMPLE
PRUNING_STEP = PAGE_PRUNING_STEP  # heads switched off per point of the app's pruning curve
TOP_ROLES = 10  # the Heads page's summary counts the roles of this many most important heads of a kind
KNOWN_ROLES_KEPT = 32  # (model, data set) pairs whose roles the Translate page can show


class KnownRoles:
    """The roles of every report computed in this process, by (model key, data key): what the Translate page shows
    without running the analysis. Process-wide like the report's cache; a few KB per model."""

    def __init__(self, size: int = KNOWN_ROLES_KEPT) -> None:
        self.size = size
        self.roles: OrderedDict[tuple[str, str], dict[str, RoleGrid]] = OrderedDict()
        self.lock = threading.Lock()

    def put(self, key: tuple[str, str], roles: dict[str, RoleGrid]) -> None:
        with self.lock:
            self.roles[key] = roles
            self.roles.move_to_end(key)
            while len(self.roles) > self.size:
                self.roles.popitem(last=False)

    def get(self, key: tuple[str, str]) -> dict[str, RoleGrid] | None:
        with self.lock:
            return self.roles.get(key)


KNOWN_ROLES = KnownRoles()
log = logging.getLogger(__name__)


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
    """The shipped report when it is this model's of these pairs, else the (cached) computed one, or None after
    saying why not."""
    key = data_key(pairs)
    report = shipped_report(model, key)
    if report is not None:
        st.caption(f"Analysed ahead of time for this model and sample (`checkpoints/{REPORT_FILE.name}`).")
    else:
        try:
            report = cached_report(model.key, key, model.bundle, pairs)
        except ValueError as exc:
            st.warning(f"Cannot analyse these pairs: {exc}")
            return None
    if key == sample_key():  # the Translate page's role line reads the sample's roles only
        KNOWN_ROLES.put((model.key, key), report.roles)
    return report


@functools.lru_cache(maxsize=16)
def file_sha256(path: str, version: str) -> str:
    """The SHA-256 of one version of a file (version: ui.models.file_stamp), once per process (a model file takes ~0.1 s)."""
    return sha256_file(path)


def shipped_report(model: ActiveModel, pairs_key: str | None) -> HeadReport | None:
    """REPORT_FILE's report when the model's file and the pairs are those it was computed from, else None."""
    if model.file is None or pairs_key is None or pairs_key != sample_key():
        return None
    try:
        stamps = (
            file_stamp(Path(model.file)),
            file_stamp(SAMPLE),
            file_stamp(REPORT_FILE),
        )  # "" for a file that is not there
        if not all(stamps):
            return None
        model_sha, data_sha = file_sha256(model.file, stamps[0]), file_sha256(str(SAMPLE), stamps[1])
    except OSError:
        return None
    cfg = model.bundle.config
    return saved_report(str(REPORT_FILE), stamps[2], model_sha, data_sha, cfg.n_layers, cfg.n_heads)


@st.cache_data(max_entries=8, show_spinner=False)
def saved_report(
    path: str, stamp: str, model_sha: str, data_sha: str, n_layers: int, n_heads: int
) -> HeadReport | None:
    """The report file read and checked once per file version, model and sample (stamp: ui.models.file_stamp); None when it
    is another model's or sample's, or unusable (then the server log says why, once)."""
    try:
        return load_report(path, model_sha, data_sha, n_layers, n_heads)
    except OtherFiles:
        return None
    except ReportFileError as exc:
        log.warning("not using %s, the Heads page computes the report instead: %s", path, exc)
        return None


@functools.cache
def sample_key() -> str | None:
    """data_key of the shipped sample (None if it cannot be read)."""
    try:
        return data_key(read_tsv(SAMPLE))
    except (DataError, OSError, UnicodeDecodeError):
        return None


def role_line(model: ActiveModel, ref: widgets.HeadRef) -> None:
    """The Translate page's line above the focused head's map: its role over the shipped sample with the evidence,
    from the shipped report (the shipped model) or once the Heads page has analysed the sample for this model;
    until then a link to that page."""
    if ref.head is None:
        return
    known = (model.key, sample_key())
    roles = KNOWN_ROLES.get(known)
    if roles is None and (shipped := shipped_report(model, known[1])) is not None:
        roles = shipped.roles
        KNOWN_ROLES.put(known, roles)  # later reruns (every slider move) skip the report file's checks
    if roles is None:
        st.page_link(
            state.PAGES / "heads.py",
            label="What does this head do? (the Heads page names each head's role)",
            icon=":material/psychology:",
        )
        return
    role = roles[ref.kind][ref.layer - 1][ref.head - 1]
    st.caption(f"Role over the shipped sample: **{role.role}** — {role.evidence}")


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


def role_summary(report: HeadReport, kind: str) -> None:
    """One line: the roles of the kind's most important heads (by ablation)."""
    top = most_important(report.roles[kind], -report.measures[kind]["ablation_delta_logprob"], TOP_ROLES)
    st.markdown(
        f"**The {len(top)} most important {KIND[kind].label.lower()} heads** (by ablation): {describe_counts(top)}."
    )


def pruning_view(report: HeadReport) -> None:
    """The pruning curve, each point's tooltip naming the roles that step switched off."""
    curve = report.pruning_curve
    steps = roles_switched_off(report.order, report.roles, [point["heads_off"] for point in curve])
    st.subheader("Pruning curve")
    first = f" The first {curve[1]['heads_off']} to go: {steps[1]}." if len(curve) > 1 else ""
    st.caption(
        f"Heads of all kinds switched off {PRUNING_STEP} at a time, least important (ablation) first; "
        f"chrF of greedy re-translation of the same pairs; a point's tooltip names the roles it switched off.{first} "
        "`python -m core heads` prints finer curves."
    )
    points = [point | {"roles_off": step} for point, step in zip(curve, steps)]
    widgets.draw(charts.pruning_chart(points), key="pruning")
