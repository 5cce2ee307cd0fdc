"""Which heads matter and what each one does: one measure over layers x heads, a sortable table, pruning."""

from __future__ import annotations

import pandas as pd
import streamlit as st

import ui
import ui_heads
from core import charts
from core.analysis.head_report import MEASURE_LABELS
from core.attention import KIND_LABELS
from core.data import DataError, parse_tsv, read_tsv

MAX_UPLOAD_PAIRS = 500


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
        st.caption(ui_heads.SAMPLE_NOTE)
        return read_tsv(ui_heads.SAMPLE)
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


def pick_head() -> None:
    """A click on a grid cell: remember it; the page body opens it on the Translate page."""
    picked = st.session_state["heads_grid"].selection.get("pick") or []
    if picked and {"layer", "head"} <= set(picked[0]):
        st.session_state["_open_head"] = (int(picked[0]["layer"]), int(picked[0]["head"]))


def page() -> None:
    st.title("Heads: which ones matter, what each does")
    model = ui.require_model()
    if model is None:
        return
    pairs = load_pairs()
    if not pairs:
        return
    report = ui_heads.run_report(model, pairs)
    if report is None:
        return
    view = ui.view_state()
    c1, c2, c3 = st.columns([2, 3, 3])
    kind = c1.radio("Attention", list(KIND_LABELS), format_func=KIND_LABELS.get, **ui.bound("heads_kind", "cross"))
    measures = list(report.measures[kind])
    if view.get("heads_measure") not in measures:
        view["heads_measure"] = "ablation_delta_logprob"
    measure = c2.selectbox(
        "Measure", measures, format_func=MEASURE_LABELS.get, **ui.bound("heads_measure", measures[0])
    )
    sentences = sorted({en for en, _ in pairs[:100]}, key=lambda s: (len(s), s))
    sentence = c3.selectbox("Open heads on this sentence", sentences, key="heads_sentence")

    opened = st.session_state.pop("_open_head", None)
    if opened is not None:
        view.update(sentence=sentence, reference="", kind=kind, layer=opened[0], head=opened[1], avg=False)
        st.switch_page(ui.PAGES / "translate.py")

    values = report.measures[kind][measure]
    st.caption(
        f"{report.sentences} sentence pairs, {report.tokens} reference tokens; mean log-prob with all heads "
        f"{report.base_logprob:.3f}. Spearman(ablation drop, gradient score): {report.spearman[kind]:.2f} for "
        f"this kind, {report.spearman['all']:.2f} over all heads. Click a cell to open that head on the Translate page."
    )
    frame = charts.head_values_frame(values)
    grid = charts.head_values_grid(frame, MEASURE_LABELS[measure], diverging=measure == "ablation_delta_logprob")
    st.altair_chart(grid, key="heads_grid", on_select=pick_head, selection_mode="pick", width="content")

    table = pd.DataFrame({"layer": frame["layer"], "head": frame["head"]})
    for name, measure_values in report.measures[kind].items():
        table[name] = measure_values.reshape(-1)
    table["open"] = [ui_heads.head_link(sentence, kind, int(r.layer), int(r.head)) for r in table.itertuples()]
    st.dataframe(
        table.sort_values("ablation_delta_logprob"),
        hide_index=True,
        key="heads_table",
        column_config={"open": st.column_config.LinkColumn("open", display_text="Translate page")}
        | {name: st.column_config.NumberColumn(MEASURE_LABELS[name], format="%.4f") for name in report.measures[kind]},
    )
    if report.pruning_curve:
        st.subheader("Pruning curve")
        st.caption(
            f"Heads of all kinds switched off {ui_heads.PRUNING_STEP} at a time, least important (ablation) first; "
            "chrF of greedy re-translation of the same pairs. `python -m core heads` prints finer curves."
        )
        st.altair_chart(charts.pruning_chart(report.pruning_curve), key="pruning", width="content")


ui.route_through_app()
page()
