"""Translate a sentence and explore every attention head: one head, one layer's heads, all layers x heads."""

import streamlit as st

import heads_ui
import ui
import ui_alignment
from core import charts
from core.attention import KIND_LABELS


def restore_from_url(n_layers: int, n_heads: int) -> None:
    """On a session's first visit, take sentence, reference, kind, layer and head from the link."""
    view, params = ui.view_state(), st.query_params
    if st.session_state.get("_url_restored"):
        return
    st.session_state["_url_restored"] = True
    for key in ("sentence", "reference"):
        if params.get(key):
            view[key] = params[key][:2000]
    if params.get("kind") in KIND_LABELS:
        view["kind"] = params["kind"]
    if params.get("avg") == "1":
        view["avg"] = True
    for key, count in (("layer", n_layers), ("head", n_heads)):
        if str(params.get(key, "")).isdigit() and 1 <= int(params[key]) <= count:
            view[key] = int(params[key])


def pick_from_grid() -> None:
    """A click in the all-layers grid focuses that layer and head."""
    picked = st.session_state["grid"].selection.get("pick") or []
    if picked and {"layer", "head"} <= set(picked[0]):
        ui.view_state().update(layer=int(picked[0]["layer"]), head=int(picked[0]["head"]), avg=False)


def use_example() -> None:
    """A picked example is a new sentence: a reference typed for the previous one no longer applies."""
    if st.session_state.get("example"):
        ui.view_state().update(sentence=st.session_state["example"], reference="")


def clear_reference() -> None:
    ui.view_state()["reference"] = ""


def page() -> None:
    st.title("Translate & attention")
    model = ui.require_model()
    if model is None:
        return
    cfg = model.bundle.config
    restore_from_url(cfg.n_layers, cfg.n_heads)
    heads_ui.restore_heads_off(cfg.n_layers, cfg.n_heads)
    view = ui.view_state()
    left, right = st.columns([3, 2])
    left.text_input("Sentence (English)", max_chars=2000, **ui.bound("sentence", ui.EXAMPLES[1]))
    right.selectbox(
        "Examples",
        ui.EXAMPLES,
        index=None,
        key="example",
        on_change=use_example,
        placeholder="Pick an example sentence",
    )
    in_use = " (in use)" if view.get("reference", "").strip() else ""
    with st.expander("Compare with a reference translation" + in_use):
        st.text_input(
            "Reference translation (Italian): the decoder is fed it instead of its own output",
            max_chars=2000,
            **ui.bound("reference", ""),
        )
    st.button("Translate", key="go", type="primary")
    sentence, reference = view["sentence"].strip(), view["reference"].strip()
    if not sentence:
        st.query_params.clear()  # a copied link must not bring back an earlier sentence
        st.info("Type an English sentence, or pick an example.")
        return
    linked = {"sentence": sentence} | ({"reference": reference} if reference else {})
    st.query_params.from_dict(linked)  # refined below once the view is known
    result = ui.run_translation(model, sentence, reference or None)
    if result is None:
        return
    st.markdown(f"**{'Reference (teacher-forced)' if reference else 'Translation'}:** {result.translation}")
    if reference:
        note, clear = st.columns([5, 1], vertical_alignment="center")
        note.info(
            "The decoder is fed your reference translation, not its own output: the maps show the "
            "attention the model puts on that text."
        )
        clear.button("Clear reference", key="clear_reference", on_click=clear_reference)
    st.caption(
        "Source tokens: "
        + " ".join(f"`{t}`" for t in charts.labels(result.source_tokens))
        + "  \nDecoder input tokens: "
        + " ".join(f"`{t}`" for t in charts.labels(result.target_tokens))
    )
    if result.unknown_words:
        st.warning("Unknown to the model (read as [UNK]): " + ", ".join(result.unknown_words))
    if result.copied:
        st.caption(
            "Words outside the model's Italian vocabulary are copied from the source: "
            + "; ".join(
                f"the `[UNK]` predicted at row `{row}·{result.target_tokens[row]}` is shown as **{word}**, the source "
                f"word at `{col}·{result.source_tokens[col]}` on which that row's cross-attention (mean of all layers "
                "and heads) peaks"
                for row, col, word in result.copied
            )
        )

    kind = st.radio(
        "Attention", list(KIND_LABELS), format_func=KIND_LABELS.get, horizontal=True, **ui.bound("kind", "cross")
    )
    c1, c2, c3 = st.columns([2, 2, 1])
    with c1:
        layer = ui.index_slider("Layer", cfg.n_layers, "layer")
    with c2:
        head = ui.index_slider("Head", cfg.n_heads, "head", disabled=view.get("avg", False))
    avg = c3.toggle("Average over heads", **ui.bound("avg", False))
    st.query_params.from_dict(linked | {"kind": kind, "layer": layer, "head": head} | ({"avg": 1} if avg else {}))
    ui.head_links(sentence, reference, kind, layer, head)

    att = result.attention
    queries, keys = att.queries(kind), att.keys(kind)
    focus = charts.attention_frame(charts.head_matrix(att, kind, layer, None if avg else head), queries, keys)
    title = f"{KIND_LABELS[kind]} · layer {layer} · {'mean of heads' if avg else f'head {head}'}"
    heat = charts.heatmap(focus, queries, keys, title)
    layer_df = charts.grid_frame(att.weights(kind)[layer - 1], queries, keys, first_layer=layer)
    a, b = st.columns([5, 4])
    a.altair_chart(heat, key="focus", width="content")
    b.altair_chart(
        charts.heads_grid(layer_df, queries, keys, columns=min(4, cfg.n_heads), title=f"All heads of layer {layer}")
    )
    with a:
        download_buttons(
            focus,
            heat,
            {
                "sentence": sentence,
                "reference": reference or None,
                "kind": kind,
                "layer": layer,
                "head": "mean" if avg else head,
            },
        )

    ui_alignment.alignment_view(model.bundle, result, sentence, reference)

    st.subheader("All layers × heads")
    st.caption("Rows are layers, columns heads. Click a cell to focus that head above.")
    grid = charts.grid_frame(att.weights(kind), queries, keys)
    st.altair_chart(
        charts.layers_grid(grid, queries, keys), key="grid", on_select=pick_from_grid, selection_mode="pick"
    )
    heads_ui.translate_extras(model, result, sentence, reference, (kind, layer, None if avg else head))


def download_buttons(df, chart, context: dict) -> None:
    """Download the shown head as CSV / JSON, and the chart as PNG / SVG (rendered only when clicked)."""
    stem = f"attention_{context['kind']}_L{context['layer']}_H{context['head']}"
    cols = st.columns(4, gap="small", width=360)
    cols[0].download_button("CSV", charts.attention_csv(df), f"{stem}.csv", "text/csv", on_click="ignore", key="dl_csv")
    cols[1].download_button(
        "JSON",
        charts.attention_json(df, **context),
        f"{stem}.json",
        "application/json",
        on_click="ignore",
        key="dl_json",
    )
    cols[2].download_button(
        "PNG", lambda: charts.chart_image(chart, "png"), f"{stem}.png", "image/png", on_click="ignore", key="dl_png"
    )
    cols[3].download_button(
        "SVG", lambda: charts.chart_image(chart, "svg"), f"{stem}.svg", "image/svg+xml", on_click="ignore", key="dl_svg"
    )


ui.route_through_app()
page()
