"""Which heads matter and what each one does: one measure or each head's role over layers x heads, the roles of
the most important heads in one line, a sortable table, pruning."""

from __future__ import annotations

import streamlit as st

from core import charts
from core.analysis.head_report import MEASURE_LABELS
from core.analysis.head_roles import role_names
from ui import state, widgets
from ui.models import require_model
from ui.sections.head_report import head_link, load_pairs, pruning_view, role_summary, run_report

ROLE = "role"  # the measure box's choice that colours the grid by role


def pick_head() -> None:
    """A click on a grid cell: remember it; the page body opens it on the Translate page."""
    point = widgets.picked("heads_grid")
    if point and {"layer", "head"} <= set(point):
        st.session_state["_open_head"] = (int(point["layer"]), int(point["head"]))


def page() -> None:
    st.title("Heads: which ones matter, what each does")
    model = require_model()
    if model is None:
        return
    pairs = load_pairs()
    if not pairs:
        return
    report = run_report(model, pairs)
    if report is None:
        return
    view = state.view_state()
    c1, c2, c3 = st.columns([2, 3, 3])
    with c1:
        kind = widgets.kind_picker("heads_kind", horizontal=False)
    measures = [*report.measures[kind], ROLE]
    if view.get("heads_measure") not in measures:
        view["heads_measure"] = "ablation_delta_logprob"
    labels = MEASURE_LABELS | {ROLE: "Role: what each head does"}
    measure = c2.selectbox("Measure", measures, format_func=labels.get, **state.bound("heads_measure", measures[0]))
    sentences = sorted({en for en, _ in pairs[:100]}, key=lambda s: (len(s), s))
    sentence = c3.selectbox("Open heads on this sentence", sentences, key="heads_sentence")

    opened = st.session_state.pop("_open_head", None)
    if opened is not None:
        view.update(sentence=sentence, reference="", kind=kind, layer=opened[0], head=opened[1], avg=False)
        st.switch_page(state.PAGES / "translate.py")

    ablation, roles = report.measures[kind]["ablation_delta_logprob"], report.roles[kind]
    role_summary(report, kind)
    st.caption(
        f"{report.sentences} sentence pairs, {report.tokens} reference tokens; mean log-prob with all heads "
        f"{report.base_logprob:.3f}. Spearman(ablation drop, gradient score): {report.spearman[kind]:.2f} for "
        f"this kind, {report.spearman['all']:.2f} over all heads. Click a cell to open that head on the Translate page."
    )
    frame = charts.head_values_frame(ablation if measure == ROLE else report.measures[kind][measure])
    frame["role"] = role_names(roles).reshape(-1)
    frame["evidence"] = [r.evidence for row in roles for r in row]
    if measure == ROLE:
        grid = charts.head_roles_grid(frame, f"Role of each head over these {report.sentences} pairs")
    else:
        grid = charts.head_values_grid(frame, MEASURE_LABELS[measure], diverging=measure == "ablation_delta_logprob")
    widgets.draw(grid, key="heads_grid", on_select=pick_head, selection_mode="pick")

    table = frame[["layer", "head", "role", "evidence"]].copy()
    for name, measure_values in report.measures[kind].items():
        table[name] = measure_values.reshape(-1)
    table["open"] = [head_link(sentence, kind, int(r.layer), int(r.head)) for r in table.itertuples()]
    st.dataframe(
        table.sort_values("ablation_delta_logprob"),
        hide_index=True,
        key="heads_table",
        column_config={
            "open": st.column_config.LinkColumn("open", display_text="Translate page"),
            "evidence": st.column_config.TextColumn("evidence", width="large"),
        }
        | {name: st.column_config.NumberColumn(MEASURE_LABELS[name], format="%.4f") for name in report.measures[kind]},
    )
    if report.pruning_curve:
        pruning_view(report)


state.route_through_app()
page()
