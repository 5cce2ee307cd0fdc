"""Translate a sentence and explore every attention head: one head, one layer's heads, all layers x heads."""

import streamlit as st

import ui
import ui_alignment
import ui_heads
from core import charts
from core.attention import KIND_LABELS

SIDE_BY_SIDE_TOKENS = 12  # up to this many tokens a side, the focused head and the layer's heads share a row
LINK_FLAGS = ("avg", "grid")  # view switches kept in the link as key=1: the head average, the all-layers grid open


def restore_from_url(n_layers: int, n_heads: int) -> None:
    """On a session's first visit, take sentence, reference, kind, layer and head from the link."""
    view, params = ui.view_state(), st.query_params
    if not ui.restore_once("translate"):
        return
    for key in ("sentence", "reference"):
        if params.get(key):
            view[key] = params[key]  # over-long text is kept and refused with a message, never cut
    if params.get("kind") in KIND_LABELS:
        view["kind"] = params["kind"]
    for key in LINK_FLAGS:
        if params.get(key) == "1":
            view[key] = True
    for key, count in (("layer", n_layers), ("head", n_heads)):
        if str(params.get(key, "")).isdigit() and 1 <= int(params[key]) <= count:
            view[key] = int(params[key])


def pick_from(chart_key: str) -> None:
    """A click on a tile (all-layers grid or the layer's heads) focuses that layer and head."""
    picked = st.session_state[chart_key].selection.get("pick") or []
    if picked and {"layer", "head"} <= set(picked[0]):
        ui.view_state().update(layer=int(picked[0]["layer"]), head=int(picked[0]["head"]), avg=False)


def use_example() -> None:
    """A picked example is a new sentence: a reference typed for the previous one no longer applies."""
    if st.session_state.get("example"):
        ui.view_state().update(sentence=st.session_state["example"], reference="")


def clear_reference() -> None:
    ui.view_state()["reference"] = ""


def input_section() -> tuple[str, str]:
    """Sentence box, examples, the reference box and Translate; returns (sentence, reference), stripped."""
    view = ui.view_state()
    left, right = st.columns([3, 2])
    left.text_input("Sentence (English)", **ui.bound("sentence", ui.EXAMPLES[1]))
    right.selectbox(
        "Examples",
        ui.EXAMPLES,
        index=None,
        key="example",
        on_change=use_example,
        placeholder="Pick an example sentence",
    )
    # One label and key whatever the reference holds: a changed label would make a new, closed expander
    # right after the user pressed Enter in it. It opens by itself when the view (or link) has a reference.
    with st.expander("Compare with a reference translation", expanded=bool(view.get("reference")), key="ref_box"):
        st.text_input(
            "Reference translation (Italian): the decoder is fed it instead of its own output",
            **ui.bound("reference", ""),
        )
    st.button("Translate", key="go", type="primary")
    return view["sentence"].strip(), view["reference"].strip()


def reference_note() -> None:
    """While a reference is in use (accepted or not), say so, with the button that clears it."""
    note, clear = st.columns([5, 1], vertical_alignment="center")
    note.info(
        "The decoder is fed your reference translation, not its own output: the maps show the "
        "attention the model puts on that text."
    )
    clear.button("Clear reference", key="clear_reference", on_click=clear_reference)


def result_header(result, reference: str) -> None:
    """The translation, the tokens the model read, unknown and copied words: all user text escaped."""
    st.markdown(f"**{'Reference (teacher-forced)' if reference else 'Translation'}:** {ui.md_text(result.translation)}")
    st.caption(
        "Source tokens: "
        + ui.cut_list([ui.md_code(t) for t in charts.labels(result.source_tokens)], 60, " ")
        + "  \nDecoder input tokens: "
        + ui.cut_list([ui.md_code(t) for t in charts.labels(result.target_tokens)], 60, " ")
    )
    if result.unknown_words:
        st.warning(
            "Unknown to the model (read as [UNK]): " + ui.cut_list([ui.md_code(w) for w in result.unknown_words])
        )
    if result.copied:
        st.caption(
            "Words outside the model's Italian vocabulary are copied from the source: "
            + ui.cut_list(
                [
                    f"the `[UNK]` predicted at row {ui.md_code(f'{row}·{result.target_tokens[row]}')} is shown as "
                    f"**{ui.md_text(word)}**, the source word at {ui.md_code(f'{col}·{result.source_tokens[col]}')} "
                    "on which that row's cross-attention (mean of all layers and heads) peaks"
                    for row, col, word in result.copied
                ],
                sep="; ",
            )
        )


def view_controls(cfg) -> tuple[str, int, int, bool]:
    """Kind, layer, head and the head average (all kept in the session's view)."""
    view = ui.view_state()
    kind = st.radio(
        "Attention", list(KIND_LABELS), format_func=KIND_LABELS.get, horizontal=True, **ui.bound("kind", "cross")
    )
    c1, c2, c3 = st.columns([2, 2, 1.8])  # the toggle keeps its whole label at 1024 px
    with c1:
        layer = ui.index_slider("Layer", cfg.n_layers, "layer")
    with c2:
        head = ui.index_slider("Head", cfg.n_heads, "head", disabled=view.get("avg", False))
    avg = c3.toggle("Average over heads", **ui.bound("avg", False))
    return kind, layer, head, avg


def predicted_tokens(result, bundle) -> list[str]:
    """The token each decoder row predicts (its most likely next token): row i reads token i, writes i + 1."""
    return [bundle.tgt_tokenizer.id_to_token(int(i)) for i in result.top_ids[:, 0]]


def focused_view(result, bundle, kind: str, layer: int, head: int, avg: bool, context: dict) -> None:
    """The chosen head (or the mean of heads) with exact per-cell tooltips, and its downloads."""
    att = result.attention
    queries, keys = att.queries(kind), att.keys(kind)
    focus = charts.attention_frame(charts.head_matrix(att, kind, layer, None if avg else head), queries, keys)
    title = f"{KIND_LABELS[kind]} · layer {layer} · {'mean of heads' if avg else f'head {head}'}"
    heat = charts.heatmap(
        focus,
        queries,
        keys,
        title,
        causal=kind == "decoder",
        next_tokens=None if kind == "encoder" else predicted_tokens(result, bundle),
        help_text=charts.READING_HELP[kind],
    )
    ui.show_chart(heat, key="focus")
    st.caption(charts.READING_HELP[kind] + " White: weight 0; the colour scale is finer near 0.")
    download_buttons(focus, heat, context)


def layer_heads(att, kind: str, layer: int, columns: int) -> None:
    """Every head of the focused layer as tiles; a click focuses that head."""
    st.markdown(f"**All heads of layer {layer}**")
    st.caption("Click a head to focus it. Same colours as the focused head.")
    chart = charts.heads_grid(
        att.weights(kind)[layer - 1],
        att.queries(kind),
        att.keys(kind),
        columns=columns,
        layer=layer,
        causal=kind == "decoder",
        selectable=True,
    )
    ui.show_chart(chart, key="heads", on_select=lambda: pick_from("heads"), selection_mode="pick")


def all_layers_grid(att, kind: str) -> None:
    """Every layer x head at once, built only while its expander is open (kept in the view and the link): a
    closed one sends and draws nothing, so a Translate click draws the focused head sooner
    (bench/app_browser.py)."""
    grid = st.expander("All layers × heads", **ui.bound("grid", False))
    if not grid.open:
        return
    with grid:
        st.caption("Rows are layers, columns heads. Click a cell to focus that head above; hover it for its name.")
        chart = charts.layers_grid(att.weights(kind), att.queries(kind), att.keys(kind), causal=kind == "decoder")
        ui.show_chart(chart, key="grid_chart", on_select=lambda: pick_from("grid_chart"), selection_mode="pick")


def page() -> None:
    st.title("Translate & attention")
    model = ui.require_model()
    if model is None:
        return
    cfg = model.bundle.config
    restore_from_url(cfg.n_layers, cfg.n_heads)
    ui_heads.restore_heads_off(cfg.n_layers, cfg.n_heads)
    sentence, reference = input_section()
    if not sentence:
        ui.set_link({})  # a copied link must not bring back an earlier sentence
        st.info("Type an English sentence, or pick an example.")
        return
    linked = {"sentence": sentence} | ({"reference": reference} if reference else {})
    if reference:
        reference_note()
    too_long = ui.too_long(sentence, "sentence") or ui.too_long(reference, "reference")
    result = None if too_long else ui.run_translation(model, sentence, reference or None)
    if result is None:
        ui.set_link(linked)  # with maps, explore() writes the link, with the view in it
        return
    result_header(result, reference)
    explore(model, result, sentence, reference, linked)


@st.fragment
def explore(model: ui.ActiveModel, result, sentence: str, reference: str, linked: dict) -> None:
    """Everything below the translation. A fragment: moving a slider or clicking a tile reruns and redraws
    only this part; the inputs and the translation above stay as they are (bench/app_browser.py times it)."""
    cfg = model.bundle.config
    kind, layer, head, avg = view_controls(cfg)
    flags = {key: 1 for key in LINK_FLAGS if ui.view_state().get(key)}
    off = ui_heads.switched_off(cfg.n_layers, cfg.n_heads)
    ui.set_link(linked | {"kind": kind, "layer": layer, "head": head} | flags | ({"off": off} if off else {}))
    ui.head_links(sentence, reference, kind, layer, head)
    att = result.attention
    context = {"sentence": sentence, "reference": reference or None, "kind": kind, "layer": layer}
    context["head"] = "mean" if avg else head
    short = max(len(att.queries(kind)), len(att.keys(kind))) <= SIDE_BY_SIDE_TOKENS
    if short:
        a, b = st.columns([5, 4])
        with a:
            focused_view(result, model.bundle, kind, layer, head, avg, context)
        with b:
            layer_heads(att, kind, layer, columns=min(4, cfg.n_heads))
    else:  # long axes: each chart gets the page's width
        focused_view(result, model.bundle, kind, layer, head, avg, context)
        layer_heads(att, kind, layer, columns=min(8, cfg.n_heads))
    ui_alignment.alignment_view(model.bundle, result, sentence, reference)
    all_layers_grid(att, kind)
    ui_heads.translate_extras(model, result, sentence, reference, (kind, layer, None if avg else head), off)


def download_buttons(df, chart, context: dict) -> None:
    """Download the shown head as CSV / JSON, and the chart as PNG / SVG: each made only when clicked (at 60
    words the CSV and JSON took 20 ms of every rerun)."""
    stem = f"attention_{context['kind']}_L{context['layer']}_H{context['head']}"
    row = st.container(horizontal=True, gap="small")  # one block, not a row of four columns: fewer deltas per rerun
    row.download_button(
        "CSV", lambda: charts.attention_csv(df), f"{stem}.csv", "text/csv", on_click="ignore", key="dl_csv"
    )
    row.download_button(
        "JSON",
        lambda: charts.attention_json(df, **context),
        f"{stem}.json",
        "application/json",
        on_click="ignore",
        key="dl_json",
    )
    row.download_button(
        "PNG", lambda: charts.chart_image(chart, "png"), f"{stem}.png", "image/png", on_click="ignore", key="dl_png"
    )
    row.download_button(
        "SVG", lambda: charts.chart_image(chart, "svg"), f"{stem}.svg", "image/svg+xml", on_click="ignore", key="dl_svg"
    )


ui.route_through_app()
page()
