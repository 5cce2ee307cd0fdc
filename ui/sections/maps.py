"""The Translate page's views of one translation: the translation and the tokens read, the focused head with its
role and downloads, the layer's heads and every layer x head as tiles (a click focuses a head), and the links that open
the head on the Compare and Timeline pages."""

from __future__ import annotations

import streamlit as st

from core import charts
from core.attention import KIND
from ui import state, widgets
from ui.models import ActiveModel
from ui.sections.head_report import role_line
from ui.text import cut_list, md_code, md_text


def result_header(result, reference: str) -> None:
    """The translation, the tokens the model read, unknown and copied words: all user text escaped."""
    st.markdown(f"**{'Reference (teacher-forced)' if reference else 'Translation'}:** {md_text(result.translation)}")
    st.caption(
        "Source tokens: "
        + cut_list([md_code(t) for t in charts.labels(result.source_tokens)], 60, " ")
        + "  \nDecoder input tokens: "
        + cut_list([md_code(t) for t in charts.labels(result.target_tokens)], 60, " ")
    )
    if result.unknown_words:
        st.warning("Unknown to the model (read as [UNK]): " + cut_list([md_code(w) for w in result.unknown_words]))
    if result.copied:
        st.caption(
            "Words outside the model's Italian vocabulary are copied from the source: "
            + cut_list(
                [
                    f"the `[UNK]` predicted at row {md_code(f'{row}·{result.target_tokens[row]}')} is shown as "
                    f"**{md_text(word)}**, the source word at {md_code(f'{col}·{result.source_tokens[col]}')} "
                    "on which that row's cross-attention (mean of all layers and heads) peaks"
                    for row, col, word in result.copied
                ],
                sep="; ",
            )
        )


def open_in(context: tuple[str, str], where: dict, targets: tuple) -> None:
    """Links that open this sentence's head on the Compare and Timeline pages (targets: link_targets())."""
    sentence, reference = context
    shared = {"sentence": sentence} | ({"reference": reference} if reference else {}) | where
    compare_a, run = targets
    row = st.container(horizontal=True)  # one block, not a row of two columns: fewer deltas per rerun
    row.page_link(
        state.PAGES / "compare.py",
        label="Open in Compare",
        icon=":material/compare:",
        query_params=shared | ({"a": compare_a} if compare_a else {}),
        help="This head of the active model against another model's, on the same sentence",
    )
    row.page_link(
        state.PAGES / "timeline.py",
        label="Open in Timeline",
        icon=":material/timeline:",
        query_params=shared | ({"run": run} if run else {}),
        help="This head at every checkpoint of a training run, on the same sentence",
    )


def predicted_tokens(result, bundle) -> list[str]:
    """The token each decoder row predicts (its most likely next token): row i reads token i, writes i + 1."""
    return [bundle.tgt_tokenizer.id_to_token(int(i)) for i in result.top_ids[:, 0]]


def focused_view(model: ActiveModel, result, ref: widgets.HeadRef, context: tuple[str, str]) -> None:
    """The chosen head (or the mean of heads) with exact per-cell tooltips, its role (when the Heads page has named
    it), and its downloads."""
    kind = KIND[ref.kind]
    role_line(model, ref)
    next_tokens = None if kind.rows == "source" else predicted_tokens(result, model.bundle)
    frame, heat = widgets.head_heatmap(result.attention, ref, next_tokens=next_tokens, help_text=kind.reading)
    widgets.draw(heat, key="focus")
    st.caption(kind.reading + " White: weight 0; the colour scale is finer near 0.")
    sentence, reference = context
    shown = {"sentence": sentence, "reference": reference or None, "kind": ref.kind, "layer": ref.layer}
    download_buttons(frame, heat, shown | {"head": "mean" if ref.head is None else ref.head})


def layer_heads(att, ref: widgets.HeadRef, columns: int) -> None:
    """Every head of the focused layer as tiles; a click focuses that head."""
    st.markdown(f"**All heads of layer {ref.layer}**")
    st.caption("Click a head to focus it. Same colours as the focused head.")
    chart = charts.heads_grid(
        att.weights(ref.kind)[ref.layer - 1],
        att.queries(ref.kind),
        att.keys(ref.kind),
        columns=columns,
        layer=ref.layer,
        causal=KIND[ref.kind].causal,
        selectable=True,
    )
    pick = lambda: widgets.focus_picked_head("heads", avg=False)
    widgets.draw(chart, key="heads", on_select=pick, selection_mode="pick")


def all_layers_grid(att, kind: str) -> None:
    """Every layer x head at once, built only while its expander is open (kept in the view and the link): a
    closed one sends and draws nothing, so a Translate click draws the focused head sooner."""
    grid = st.expander("All layers × heads", **state.bound("grid", False))
    if not grid.open:
        return
    with grid:
        st.caption("Rows are layers, columns heads. Click a cell to focus that head above; hover it for its name.")
        chart = charts.layers_grid(att.weights(kind), att.queries(kind), att.keys(kind), causal=KIND[kind].causal)
        pick = lambda: widgets.focus_picked_head("grid_chart", avg=False)
        widgets.draw(chart, key="grid_chart", on_select=pick, selection_mode="pick")


def download_buttons(df, chart, context: dict) -> None:
    """Download the shown head as CSV / JSON, and the chart as PNG / SVG: each made only when clicked."""
    stem = f"attention_{context['kind']}_L{context['layer']}_H{context['head']}"
    row = st.container(horizontal=True, gap="small")  # one block, not a row of four columns: fewer deltas per rerun
    files = (
        ("CSV", lambda: charts.attention_csv(df), "csv", "text/csv"),
        ("JSON", lambda: charts.attention_json(df, **context), "json", "application/json"),
        ("PNG", lambda: charts.chart_image(chart, "png"), "png", "image/png"),
        ("SVG", lambda: charts.chart_image(chart, "svg"), "svg", "image/svg+xml"),
    )
    for label, make, suffix, mime in files:
        row.download_button(label, make, f"{stem}.{suffix}", mime, on_click="ignore", key=f"dl_{suffix}")
