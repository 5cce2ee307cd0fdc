"""Timeline: one sentence through every checkpoint of a training run (translation, a head's map, statistics)."""

import pandas as pd
import streamlit as st

import ui
from core import CheckpointError, charts
from core.attention import KIND_LABELS
from core.runs import TIMELINE_STATISTICS, follow_sentence, statistic_series

STATISTIC_TITLES = {
    "entropy": "Entropy (nats, mean over rows)",
    "confidence": "Confidence (largest weight)",
    "diagonality": "Alignment diagonality",
    "log_probability": "log p(decoder input | sentence)",
}
NO_RUN_HELP = """
**No training run in `{folder}`.** A run is a folder with two or more checkpoints of one training run:
`tmodel_00.pt`, `tmodel_01.pt`, ... (written by `python -m core train`, or by the tutorial with
`tokenizer_en.json` / `tokenizer_it.json` beside them or one folder up). Put run folders in the checkpoints
folder, or open your own folder directly:

```bash
ATTN_CHECKPOINT_DIR=~/opus_books_weights streamlit run app.py
```
"""


def restore_from_url(run_ids: list[str]) -> None:
    """Take run, sentence, reference, kind, layer, head and checkpoint from a link that differs from the last
    one this page wrote (so a link from the Translate page always applies)."""
    params = st.query_params.to_dict()
    if params == st.session_state.get("_timeline_url"):
        return
    st.session_state["_timeline_url"] = params
    view = ui.view_state()
    if params.get("run") in run_ids:
        view["timeline_run"] = params["run"]
    for key in ("sentence", "reference"):
        if key in params:
            view[key] = params[key][:2000]
    if params.get("kind") in KIND_LABELS:
        view["kind"] = params["kind"]
    for key, name in (("layer", "layer"), ("head", "head"), ("epoch", "timeline_epoch")):
        if str(params.get(key, "")).isdigit() and int(params[key]) >= 1:
            view[name] = int(params[key])  # clamped to the model by the sliders


def page() -> None:
    st.title("Training timeline")
    runs = ui.find_runs()
    if not runs:
        st.info(NO_RUN_HELP.format(folder=ui.checkpoint_dir()))
        return
    by_id = {ui.run_id(r): r for r in runs}
    restore_from_url(list(by_id))
    view = ui.view_state()
    if view.get("timeline_run") not in by_id:
        view["timeline_run"] = next(iter(by_id))
    st.selectbox(
        "Run",
        list(by_id),
        format_func=lambda rid: f"{rid} ({len(by_id[rid].checkpoints)} checkpoints)",
        **ui.bound("timeline_run", view["timeline_run"]),
    )
    run = by_id[view["timeline_run"]]
    st.text_input("Sentence (English)", max_chars=2000, **ui.bound("sentence", ui.EXAMPLES[1]))
    with st.expander("Reference translation" + (" (in use)" if view.get("reference", "").strip() else "")):
        st.text_input(
            "Reference (Italian): every checkpoint's decoder is fed it, and its log-probability is charted",
            max_chars=2000,
            **ui.bound("reference", ""),
        )
    sentence, reference = view["sentence"].strip(), view.get("reference", "").strip()
    linked = {"run": ui.run_id(run), "sentence": sentence} | ({"reference": reference} if reference else {})
    if not sentence:
        st.info("Type an English sentence.")
        return

    progress = st.empty()

    def show_progress(done: int, total: int, epoch) -> None:
        progress.progress(done / total, text=f"Checkpoint {done} of {total}: {epoch.checkpoint.label}")

    try:
        timeline = follow_sentence(run, sentence, reference or None, view=ui.cached_view, on_epoch=show_progress)
    except (CheckpointError, OSError, ValueError) as exc:
        progress.empty()
        st.warning(f"Cannot follow this sentence through the run: {exc}")
        return
    progress.empty()
    for note in dict.fromkeys(n for e in timeline.epochs for n in e.notes):
        st.caption(f"Note: {note}")
    labels = [e.checkpoint.label for e in timeline.epochs]

    st.subheader("Translation at each checkpoint")
    st.dataframe(
        pd.DataFrame(
            {
                "checkpoint": labels,
                "translation": [e.translation for e in timeline.epochs],
                "log p(decoder input)": [round(e.log_probability, 3) for e in timeline.epochs],
            }
        ),
        hide_index=True,
    )
    att = timeline.epochs[-1].attention
    st.caption(
        f"The maps below: every checkpoint's decoder is fed {timeline.decoder_input}, so they share their rows: "
        + " ".join(f"`{t}`" for t in charts.labels(att.target_tokens))
    )

    kind = st.radio(
        "Attention", list(KIND_LABELS), format_func=KIND_LABELS.get, horizontal=True, **ui.bound("kind", "cross")
    )
    c1, c2, c3 = st.columns(3)
    with c1:
        layer = ui.index_slider("Layer", att.n_layers, "layer")
    with c2:
        head = ui.index_slider("Head", att.n_heads, "head")
    with c3:
        position = ui.index_slider("Checkpoint", len(labels), "timeline_epoch") - 1
    ui.set_link(linked | {"kind": kind, "layer": layer, "head": head, "epoch": position + 1})
    st.session_state["_timeline_url"] = st.query_params.to_dict()

    shown = timeline.epochs[position]
    queries, keys = shown.attention.queries(kind), shown.attention.keys(kind)
    matrices = [charts.head_matrix(e.attention, kind, layer, head) for e in timeline.epochs]
    left, right = st.columns([1, 1])
    with left:
        ui.show_chart(
            charts.heatmap(
                charts.attention_frame(matrices[position], queries, keys),
                queries,
                keys,
                f"Layer {layer} · head {head} · {labels[position]}",
                plot_width=420,
                causal=kind == "decoder",
            ),
            key="timeline_focus",
        )
    left.text(f"{labels[position]}: {shown.translation}")
    with right:
        st.markdown("**Statistics of this head at each checkpoint** (red: the checkpoint shown)")
        frame = pd.DataFrame(statistic_series(timeline, kind, layer, head))
        names = [*TIMELINE_STATISTICS[kind], "log_probability"]
        for name in names:  # one a row: two side by side would not fit the half page of a 1024 px window
            st.altair_chart(
                charts.series_chart(frame[frame["statistic"] == name], labels, STATISTIC_TITLES[name], position),
                width="stretch",
            )
    st.subheader("This head at every checkpoint")
    st.altair_chart(charts.epochs_grid(charts.epochs_frame(matrices), labels, queries, keys), width="content")


ui.route_through_app()
page()
