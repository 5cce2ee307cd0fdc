"""Timeline: one sentence through every checkpoint of a training run (translation, a head's map, statistics)."""

import pandas as pd
import streamlit as st

from core import CheckpointError, charts
from core.analysis.alignment import opening_head_of
from core.attention import KIND
from core.runs import follow_sentence, statistic_series
from ui import results, state, widgets
from ui.models import checkpoint_dir, find_runs, run_id
from ui.text import md_code, md_text

STATISTIC_TITLES = {
    "entropy": "Entropy (nats, mean over rows)",
    "confidence": "Confidence (largest weight)",
    "diagonality": "Alignment diagonality",
    "log_probability": "log p(decoder input | sentence)",
}
LINK = state.LINK_VIEW | {"run": ("timeline_run", state.text), "epoch": ("timeline_epoch", state.count)}
NO_RUN_HELP = """
**No training run in `{folder}`.** A run is a folder with two or more checkpoints of one training run:
`tmodel_00.pt`, `tmodel_01.pt`, ... (written by `python -m core train`, or by the tutorial with
`tokenizer_en.json` / `tokenizer_it.json` beside them or one folder up). Put run folders in the checkpoints
folder, or open your own folder directly:

```bash
ATTN_CHECKPOINT_DIR=~/opus_books_weights streamlit run app.py
```
"""


def page() -> None:
    st.title("Training timeline")
    runs = {run_id(r): r for r in find_runs()}
    if not runs:
        st.info(NO_RUN_HELP.format(folder=checkpoint_dir()))
        return
    state.restore_view("timeline", LINK)
    view = state.view_state()
    if view.get("timeline_run") not in runs:
        view["timeline_run"] = next(iter(runs))
    st.selectbox(
        "Run",
        list(runs),
        format_func=lambda rid: f"{rid} ({len(runs[rid].checkpoints)} checkpoints)",
        **state.bound("timeline_run", view["timeline_run"]),
    )
    run = runs[view["timeline_run"]]
    sentence = widgets.sentence_box()
    reference = widgets.reference_box(
        "Reference (Italian): every checkpoint's decoder is fed it, and its log-probability is charted"
    )
    linked = {"run": run_id(run), "sentence": sentence} | ({"reference": reference} if reference else {})
    if not sentence:
        st.info("Type an English sentence.")
        return
    if widgets.refused(sentence, reference):
        return
    progress = st.empty()

    def show_progress(done: int, total: int, epoch) -> None:
        progress.progress(done / total, text=f"Checkpoint {done} of {total}: {epoch.checkpoint.label}")

    try:
        timeline = follow_sentence(run, sentence, reference or None, view=results.cached_view, on_epoch=show_progress)
    except (CheckpointError, OSError, ValueError) as exc:
        progress.empty()
        st.warning(f"Cannot follow this sentence through the run: {md_text(exc)}")
        return
    progress.empty()
    show(timeline, linked)


def show(timeline, linked: dict) -> None:
    for note in dict.fromkeys(n for e in timeline.epochs for n in e.notes):
        st.caption(f"Note: {md_text(note)}")
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
        + " ".join(md_code(t) for t in charts.labels(att.target_tokens))
    )
    telling = opening_head_of(timeline.epochs[-1].alignment, att)  # the run's model is not held: its card is
    hint = f"{telling.hint} Move the checkpoint slider to watch it form."  # where training visibly changed
    ref = widgets.opening_picker(att.n_layers, att.n_heads, telling, hint)
    position = widgets.index_slider("Checkpoint", len(labels), "timeline_epoch") - 1
    state.set_link("timeline", linked | {"kind": ref.kind, "layer": ref.layer, "head": ref.head, "epoch": position + 1})
    shown = timeline.epochs[position]
    left, right = st.columns([3, 2])  # the map needs the room: at 1024 px half the page thinned its labels
    with left:
        title = f"Layer {ref.layer} · head {ref.head} · {labels[position]}"
        widgets.draw(widgets.head_heatmap(shown.attention, ref, title, plot_width=420)[1], key="timeline_focus")
    left.text(f"{labels[position]}: {shown.translation}")
    with right:
        st.markdown("**Statistics of this head at each checkpoint** (red: the checkpoint shown)")
        frame = pd.DataFrame(statistic_series(timeline, ref.kind, ref.layer, ref.head))
        for name in [*KIND[ref.kind].timeline, "log_probability"]:  # one a row: a half page of 1024 px is narrow
            chart = charts.series_chart(frame[frame["statistic"] == name], labels, STATISTIC_TITLES[name], position)
            widgets.draw(chart, stretch=True)
    st.subheader("This head at every checkpoint")
    queries, keys = shown.attention.queries(ref.kind), shown.attention.keys(ref.kind)
    matrices = [charts.head_matrix(e.attention, ref.kind, ref.layer, ref.head) for e in timeline.epochs]
    widgets.draw(charts.epochs_grid(charts.epochs_frame(matrices), labels, queries, keys))


state.route_through_app()
page()
