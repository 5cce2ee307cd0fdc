"""The pieces every page is built from: the sentence and reference boxes, the head picker, the one function that
draws a chart, a head's heatmap, and what a click on a chart picked."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import streamlit as st

from core import charts
from core.attention import KIND, KIND_LABELS, Attention
from ui.state import bound, view_state
from ui.text import too_long

EXAMPLES = [
    "I love you.",
    "The cat is sleeping on the chair.",
    "Where is the train station?",
    "We will go to the sea tomorrow if the weather is good.",
    "She opened the door and looked at the garden.",
]


# ---------------------------------------------------------------- text in


def sentence_box(label: str = "Sentence (English)", default: str = EXAMPLES[1]) -> str:
    """The sentence box (bound to the session's view, shared by every page); returns the sentence, stripped."""
    st.text_input(label, **bound("sentence", default))
    return view_state()["sentence"].strip()


def reference_box(label: str, title: str = "Reference translation") -> str:
    """An expander with the reference box, open (and titled so) while it holds a reference; returns it, stripped.
    One label and key whatever it holds: a changed label would make a new, closed expander right after Enter."""
    reference = view_state().get("reference", "").strip()
    with st.expander(title, expanded=bool(reference), key="ref_box"):
        st.text_input(label, **bound("reference", ""))
    return view_state()["reference"].strip()


def refused(sentence: str, reference: str = "") -> bool:
    """True (after saying why) when the sentence or the reference is over the boxes' limit."""
    return too_long(sentence, "sentence") or too_long(reference, "reference")


# ---------------------------------------------------------------- which head


@dataclass(frozen=True)
class HeadRef:
    """One head of one kind of attention, 1-based as the app shows it; head None is the mean of the layer's heads."""

    kind: str
    layer: int
    head: int | None

    @property
    def title(self) -> str:
        which = "mean of heads" if self.head is None else f"head {self.head}"
        return f"{KIND[self.kind].label} · layer {self.layer} · {which}"


def index_slider(label: str, count: int, key: str, **kwargs) -> int:
    """A 1-based slider over count items, bound to the view's `key` (a caption when there is only one)."""
    view = view_state()
    view[key] = min(max(int(view.get(key, 1)), 1), count)  # a smaller model may have been picked since
    if count <= 1:
        st.caption(f"{label}: 1 (the only one)")
        return 1
    return st.slider(label, 1, count, **bound(key, 1), **kwargs)


def kind_picker(key: str = "kind", horizontal: bool = True) -> str:
    return st.radio(
        "Attention", list(KIND_LABELS), format_func=KIND_LABELS.get, horizontal=horizontal, **bound(key, "cross")
    )


def head_picker(n_layers: int, n_heads: int, prefix: str = "", average: bool = False, heads: bool = True) -> HeadRef:
    """Kind, layer and (with heads) head, bound to the view's `{prefix}kind`, `{prefix}layer`, `{prefix}head`;
    with average, an "Average over heads" toggle (`avg`) that shows the mean of the layer's heads."""
    kind = kind_picker(f"{prefix}kind")
    if not heads:
        return HeadRef(kind, index_slider("Layer", n_layers, f"{prefix}layer"), None)
    columns = st.columns([2, 2, 1.8] if average else [1, 1])  # the toggle keeps its whole label at 1024 px
    with columns[0]:
        layer = index_slider("Layer", n_layers, f"{prefix}layer")
    mean = average and columns[2].toggle("Average over heads", **bound("avg", False))
    with columns[1]:
        head = index_slider("Head", n_heads, f"{prefix}head", disabled=mean)
    return HeadRef(kind, layer, None if mean else head)


def opening_picker(n_layers: int, n_heads: int, opening, hint: str, average: bool = False) -> HeadRef:
    """head_picker that opens on `opening` (core.analysis.alignment.OpeningHead, a cross-attention head) on a
    first visit whose link names no head nor another kind, with `hint` under it while that head is shown."""
    view = view_state()
    if "head" not in view and view.get("kind", "cross") == "cross":
        view.update(kind="cross", layer=opening.layer, head=opening.head)
    ref = head_picker(n_layers, n_heads, average=average)
    if (ref.kind, ref.layer, ref.head) == ("cross", opening.layer, opening.head):
        st.caption(hint)
    return ref


# ---------------------------------------------------------------- charts out


def draw(chart, key: str | None = None, on_select=None, selection_mode: str | None = None, stretch: bool = False):
    """Every chart of the app is drawn here. A chart of core.charts that says how wide it would like to be
    (charts.natural_width: a Vega-Lite dict, or an Altair chart with that usermeta) goes in a box that wide, or
    its column if that is narrower, and fits the box, axes and legend included (charts.FIT_X); another Altair
    chart keeps its own width, or with stretch fits its column's."""
    options = {"key": key, "on_select": on_select, "selection_mode": selection_mode}
    options = {name: value for name, value in options.items() if value is not None}
    if isinstance(chart, dict):
        with st.container(width=charts.natural_width(chart)):
            # without the width it would like, which the box already has: a spec that differs only there is the
            # same view with new data, redrawn in place (core.charts puts nothing else in usermeta)
            spec = {k: v for k, v in chart.items() if k != "usermeta"}
            return st.vega_lite_chart(spec, width="stretch", **options)
    natural = chart.usermeta.get("natural_width") if isinstance(chart.usermeta, dict) else None
    if natural is None and not stretch:
        return st.altair_chart(chart, width="content", **options)
    # fitted: with the plot alone as wide as the box, the axes and legend would run out of it
    with st.container(width=natural or "stretch"):
        return st.altair_chart(chart.properties(autosize=charts.FIT_X), width="stretch", **options)


def weights_map(matrix, queries: list[str], keys: list[str], title: str = "", **options) -> tuple[pd.DataFrame, dict]:
    """(the cells as a frame, the chart) of a (queries, keys) matrix of weights: a heatmap with a tooltip per cell,
    or past charts.BIG_MAP_CELLS cells (a long sentence) one image with a tooltip per row."""
    frame = charts.attention_frame(matrix, queries, keys)
    if len(queries) * len(keys) > charts.BIG_MAP_CELLS:
        options = {k: v for k, v in options.items() if k in ("plot_width", "next_tokens", "causal")}
        return frame, charts.image_heatmap(matrix, queries, keys, title, **options)
    return frame, charts.heatmap(frame, queries, keys, title, **options)


def head_heatmap(att: Attention, ref: HeadRef, title: str | None = None, **options) -> tuple[pd.DataFrame, dict]:
    """weights_map of one head, or of the mean of its layer's heads."""
    matrix = charts.head_matrix(att, ref.kind, ref.layer, ref.head)
    label = ref.title if title is None else title
    return weights_map(
        matrix, att.queries(ref.kind), att.keys(ref.kind), label, causal=KIND[ref.kind].causal, **options
    )


def picked(chart_key: str, selection: str = "pick") -> dict | None:
    """The point a click selected in the chart drawn with key chart_key (its selection param), or None."""
    points = st.session_state[chart_key].selection.get(selection) or []
    return points[0] if points else None


def focus_picked_head(chart_key: str, **also) -> None:
    """on_select of a grid of heads: the clicked (layer, head) becomes the view's, with `also` set too."""
    point = picked(chart_key)
    if point and {"layer", "head"} <= set(point):
        view_state().update(layer=int(point["layer"]), head=int(point["head"]), **also)
