"""Attention tensors -> tidy DataFrames -> Altair charts, plus exports. Pure functions; no Streamlit here.

Every frame is long format, one row per cell: `qi, ki` (positions), `query, key` (tokens), `weight`,
plus `layer, head` (1-based, as the app shows them) for multi-head frames. Charts encode positions
(ordinal) and print "position·token" labels through `labelExpr`, so a repeated token keeps its own
row/column. Chart data holds only numbers; tooltips look the tokens up in the same label arrays,
which keeps the 6 x 8 x 20 x 20 view small.
"""

from __future__ import annotations

import io
import json

import altair as alt
import numpy as np
import pandas as pd
from torch import Tensor

from core.attention import Attention

SCHEME = "blues"
PAD = alt.AutoSizeParams(
    type="pad"
)  # width/height size the plot; axes and legend come on top (Streamlit fits otherwise)


def _numpy(weights: Tensor | np.ndarray) -> np.ndarray:
    if isinstance(weights, Tensor):
        weights = weights.detach().float().cpu().numpy()
    return np.asarray(weights, dtype=np.float32)


def labels(tokens: list[str]) -> list[str]:
    """Axis labels that keep repeated tokens apart: '3·gatto'."""
    return [f"{i}·{t}" for i, t in enumerate(tokens)]


def head_average(weights: Tensor | np.ndarray) -> np.ndarray:
    """(..., H, Tq, Tk) -> (..., Tq, Tk): the mean over heads (rows still sum to 1)."""
    return _numpy(weights).mean(axis=-3)


def head_matrix(attention: Attention, kind: str, layer: int, head: int | None) -> np.ndarray:
    """(Tq, Tk) weights of one kind, 1-based layer and head; head None means the average over heads."""
    layer_maps = _numpy(attention.weights(kind)[layer - 1])
    return head_average(layer_maps) if head is None else layer_maps[head - 1]


def attention_frame(weights: Tensor | np.ndarray, queries: list[str], keys: list[str]) -> pd.DataFrame:
    """(Tq, Tk) weights -> rows qi, ki, query, key, weight."""
    w = _numpy(weights)
    if w.shape != (len(queries), len(keys)):
        raise ValueError(f"weights {w.shape} do not match {len(queries)} query and {len(keys)} key tokens")
    qi, ki = np.indices(w.shape).reshape(2, -1)
    return pd.DataFrame(
        {
            "qi": qi,
            "ki": ki,
            "query": np.asarray(queries, dtype=object)[qi],
            "key": np.asarray(keys, dtype=object)[ki],
            "weight": w.reshape(-1),
        }
    )


def grid_frame(weights: Tensor | np.ndarray, queries: list[str], keys: list[str], first_layer: int = 1) -> pd.DataFrame:
    """(L, H, Tq, Tk) or (H, Tq, Tk) weights -> rows layer, head, qi, ki, query, key, weight (1-based layer/head)."""
    w = _numpy(weights)
    if w.ndim == 3:
        w = w[None]
    if w.shape[2:] != (len(queries), len(keys)):
        raise ValueError(f"weights {w.shape} do not match {len(queries)} query and {len(keys)} key tokens")
    layer, head, qi, ki = np.indices(w.shape).reshape(4, -1)
    return pd.DataFrame(
        {
            "layer": (layer + first_layer).astype(np.int16),
            "head": (head + 1).astype(np.int16),
            "qi": qi.astype(np.int16),
            "ki": ki.astype(np.int16),
            "query": np.asarray(queries, dtype=object)[qi],
            "key": np.asarray(keys, dtype=object)[ki],
            "weight": w.reshape(-1),
        }
    )


def _axis(field: str, title: str, tokens: list[str], show_labels: bool, angle: int = 0) -> dict:
    axis = (
        alt.Axis(
            labelExpr=f"{json.dumps(labels(tokens))}[datum.value]", labelAngle=angle, labelLimit=120, labelOverlap=False
        )
        if show_labels
        else alt.Axis(labels=False, ticks=False, title=None)
    )
    return {"field": field, "type": "ordinal", "title": title if show_labels else None, "axis": axis}


def _cells(
    df: pd.DataFrame, queries: list[str], keys: list[str], show_labels: bool, extra_tooltip: tuple[str, ...] = ()
) -> alt.Chart:
    """Heatmap cells on numeric-only data; token tooltips are computed in Vega from the label arrays."""
    numeric = df.drop(columns=[c for c in ("query", "key") if c in df.columns])
    tooltip = [alt.Tooltip(f"{c}:O") for c in extra_tooltip] + [
        alt.Tooltip("query_token:N", title="query"),
        alt.Tooltip("key_token:N", title="key"),
        alt.Tooltip("weight:Q", format=".3f"),
    ]
    return (
        alt.Chart(numeric)
        .mark_rect()
        .transform_calculate(
            query_token=f"{json.dumps(labels(queries))}[datum.qi]", key_token=f"{json.dumps(labels(keys))}[datum.ki]"
        )
        .encode(
            x=alt.X(**_axis("ki", "key", keys, show_labels, -45)),
            y=alt.Y(**_axis("qi", "query", queries, show_labels)),
            color=alt.Color("weight:Q", title="weight", scale=alt.Scale(scheme=SCHEME, domain=[0, 1])),
            tooltip=tooltip,
        )
    )


def heatmap(
    df: pd.DataFrame,
    queries: list[str],
    keys: list[str],
    title: str = "",
    cell: int | None = None,
    plot_width: int = 360,
) -> alt.Chart:
    """One head (or the head average): query tokens down, key tokens across, a weight legend.

    Cells are square, sized so the plot fits plot_width (12 to 26 px) unless cell is given."""
    cell = cell or max(12, min(26, plot_width // max(len(keys), 1)))
    size = {"width": max(160, cell * len(keys)), "height": max(120, cell * len(queries))}
    return _cells(df, queries, keys, True).properties(title=title, autosize=PAD, **size)


def heads_grid(
    df: pd.DataFrame, queries: list[str], keys: list[str], columns: int = 4, cell: int = 85, title: str = ""
) -> alt.Chart:
    """Small multiples: every head of one layer (frame from grid_frame for that layer)."""
    chart = _cells(df, queries, keys, False, ("head",)).properties(width=cell, height=cell)
    return chart.facet(facet=alt.Facet("head:O", title="head"), columns=columns, title=title).configure_legend(
        orient="bottom"
    )


def layers_grid(
    df: pd.DataFrame, queries: list[str], keys: list[str], cell: int = 80, selectable: bool = True
) -> alt.Chart:
    """All layers (rows) by all heads (columns); a click selects a (layer, head) cell when selectable."""
    chart = _cells(df, queries, keys, False, ("layer", "head")).properties(width=cell, height=cell)
    if selectable:
        chart = chart.add_params(alt.selection_point(name="pick", fields=["layer", "head"], on="click"))
    return chart.facet(row=alt.Row("layer:O", title="layer"), column=alt.Column("head:O", title="head"), spacing=4)


def step_rows(weights: np.ndarray, tokens: list[str]) -> pd.DataFrame:
    """(H, Tk) per-head weights of one query row -> rows head, ki, key, weight."""
    w = _numpy(weights)
    head, ki = np.indices(w.shape).reshape(2, -1)
    return pd.DataFrame(
        {"head": head + 1, "ki": ki, "key": np.asarray(tokens, dtype=object)[ki], "weight": w.reshape(-1)}
    )


def step_frames(att: Attention, layer: int, row: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Decoder row `row` (0-based) of 1-based `layer`: (cross attention over the source, self attention over
    the decoder inputs up to and including this row), each as rows head, ki, key, weight."""
    src, tgt = att.source_tokens, att.target_tokens
    cross = step_rows(_numpy(att.cross[layer - 1, :, row]), src)  # (H, S)
    self_ = step_rows(_numpy(att.decoder[layer - 1, :, row, : row + 1]), tgt[: row + 1])  # (H, row + 1)
    return cross, self_


def row_heatmap(df: pd.DataFrame, keys: list[str], cell: int = 26) -> alt.Chart:
    """Heads down, key tokens across: one query row of every head of a layer (untitled: a short sentence
    makes the chart narrower than a title, so the page writes it above)."""
    numeric = df.drop(columns=["key"])
    return (
        alt.Chart(numeric)
        .mark_rect()
        .transform_calculate(key_token=f"{json.dumps(labels(keys))}[datum.ki]")
        .encode(
            x=alt.X(**_axis("ki", "key", keys, True, -45)),
            y=alt.Y("head:O", title="head"),
            color=alt.Color("weight:Q", scale=alt.Scale(scheme=SCHEME, domain=[0, 1])),
            tooltip=[
                alt.Tooltip("head:O"),
                alt.Tooltip("key_token:N", title="key"),
                alt.Tooltip("weight:Q", format=".3f"),
            ],
        )
        .properties(width=max(160, cell * len(keys)), height=max(40, 24 * df["head"].nunique()), autosize=PAD)
    )


def candidates_frame(top_ids, top_probs, row: int, id_to_token) -> pd.DataFrame:
    """The five most likely next tokens of one decoder row: rank, token, probability."""
    probs, ids = _numpy(top_probs[row]), [int(i) for i in top_ids[row]]
    return pd.DataFrame(
        {"rank": range(1, len(ids) + 1), "token": [id_to_token(i) for i in ids], "probability": probs.astype(float)}
    )


def candidates_chart(df: pd.DataFrame) -> alt.Chart:
    """Horizontal bars of the top candidates, most likely first."""
    return (
        alt.Chart(df)
        .mark_bar()
        .encode(
            x=alt.X("probability:Q", scale=alt.Scale(domain=[0, 1])),
            y=alt.Y(
                "rank:O",
                axis=alt.Axis(labelExpr=f"{json.dumps(list(df['token']))}[datum.value - 1]", labelOverlap=False),
                title="candidate",
            ),
            tooltip=["token:N", alt.Tooltip("probability:Q", format=".3f")],
        )
        .properties(width=240, height=30 * len(df), autosize=PAD)
    )


def attention_csv(df: pd.DataFrame) -> bytes:
    """The shown attention as CSV (UTF-8), one row per cell."""
    return df.to_csv(index=False).encode("utf-8")


def attention_json(df: pd.DataFrame, **context) -> bytes:
    """The shown attention as JSON: context (sentence, kind, layer, head...), tokens and the weight matrix."""
    queries = df.drop_duplicates("qi").sort_values("qi")["query"].tolist()
    keys = df.drop_duplicates("ki").sort_values("ki")["key"].tolist()
    matrix = np.zeros((len(queries), len(keys)), dtype=float)
    matrix[df["qi"].to_numpy(), df["ki"].to_numpy()] = df["weight"].to_numpy()
    payload = {**context, "queries": queries, "keys": keys, "weights": np.round(matrix, 6).tolist()}
    return json.dumps(payload, ensure_ascii=False, indent=1).encode("utf-8")


def chart_image(chart: alt.Chart, fmt: str = "png", scale: float = 2.0) -> bytes:
    """Render a chart to PNG or SVG with vl-convert (no browser needed)."""
    import vl_convert as vlc

    with alt.data_transformers.disable_max_rows():
        spec = chart.to_dict()
    if fmt == "svg":
        return vlc.vegalite_to_svg(spec).encode("utf-8")
    if fmt == "png":
        return vlc.vegalite_to_png(spec, scale=scale)
    raise ValueError(f"unknown image format {fmt!r}: use png or svg")


def spec_size(chart: alt.Chart) -> int:
    """Bytes of the chart's compact Vega-Lite JSON with its data inlined (what a plain HTML embed would carry)."""
    with alt.data_transformers.disable_max_rows():
        return len(chart.to_json(indent=None).encode("utf-8"))


def arrow_size(df: pd.DataFrame) -> int:
    """Bytes of the frame as an Arrow IPC stream (what Streamlit sends to the browser)."""
    import pyarrow as pa

    sink = io.BytesIO()
    table = pa.Table.from_pandas(df, preserve_index=False)
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.tell()


def alignment_frames(matrix: np.ndarray, model_links, gold_links=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(target words, source words) shares and links {(source word, target word)} -> (cells: ti, si, weight;
    links: ti, si, by) where `by` is "model" or "gold"."""
    w = _numpy(matrix)
    ti, si = np.indices(w.shape).reshape(2, -1)
    cells = pd.DataFrame({"ti": ti, "si": si, "weight": w.reshape(-1)})
    rows = [(j, i, "model") for i, j in sorted(model_links)] + [(j, i, "gold") for i, j in sorted(gold_links or ())]
    return cells, pd.DataFrame(rows, columns=["ti", "si", "by"]).astype({"ti": "int64", "si": "int64"})


def alignment_chart(
    cells: pd.DataFrame,
    links: pd.DataFrame,
    source_words: list[str],
    target_words: list[str],
    title: str = "",
    cell: int = 30,
) -> alt.Chart:
    """Word-level cross-attention (target words down, source words across) with the links drawn on it as marks:
    the model's as small circles, gold ones as larger squares, so a gold link the model found shows both."""
    x = alt.X(**_axis("si", "English word", source_words, True, -45))
    y = alt.Y(**_axis("ti", "Italian word", target_words, True))
    words = {
        "source_word": f"{json.dumps(labels(source_words))}[datum.si]",
        "target_word": f"{json.dumps(labels(target_words))}[datum.ti]",
    }
    word_tips = [alt.Tooltip("target_word:N", title="Italian"), alt.Tooltip("source_word:N", title="English")]
    heat = (
        alt.Chart(cells)
        .mark_rect()
        .transform_calculate(**words)
        .encode(
            x=x,
            y=y,
            color=alt.Color("weight:Q", title="share", scale=alt.Scale(scheme=SCHEME, domain=[0, 1])),
            tooltip=[*word_tips, alt.Tooltip("weight:Q", format=".3f", title="share")],
        )
    )
    marks = (
        alt.Chart(links)
        .mark_point(filled=False, strokeWidth=2.5, opacity=1)
        .transform_calculate(**words)
        .encode(
            x=x,
            y=y,
            shape=alt.Shape(
                "by:N", title="link", scale=alt.Scale(domain=["model", "gold"], range=["circle", "square"])
            ),
            color=alt.Color(
                "by:N", title="link", scale=alt.Scale(domain=["model", "gold"], range=["#e45756", "#f2a900"])
            ),
            size=alt.Size("by:N", legend=None, scale=alt.Scale(domain=["model", "gold"], range=[60, 330])),
            tooltip=[alt.Tooltip("by:N", title="link"), *word_tips],
        )
    )
    size = {"width": max(160, cell * len(source_words)), "height": max(120, cell * len(target_words))}
    return (
        alt.layer(heat, marks)
        .resolve_scale(color="independent", shape="independent")
        .properties(title=alt.TitleParams(title, anchor="start", limit=800), autosize=PAD, **size)
    )


# ---- Beam search tree and what-if decoding ------------------------------------------------------------------

STATUS_COLORS = {"kept": "#4c78a8", "finished": "#2ca02c", "pruned": "#b9b9b9"}
CHOSEN_COLOR = "#f58518"


def tree_path(tree, node: int) -> list[int]:
    """Indices of the tree nodes from the root to `node` (tree: BeamNode sequence, parents first)."""
    path = []
    while node >= 0:
        path.append(node)
        node = tree[node].parent
    return path[::-1]


def beam_tree_frame(tree, id_to_token, chosen: int, hypothesis_ends: list[int]) -> pd.DataFrame:
    """One row per tree node: node, parent, step, rank (its place among its step's nodes, most likely path
    first), token, log_prob (of the path), prob (of its own token after its parent), status, chosen (on the
    path to node `chosen`), hypothesis (1-based rank of the hypothesis that ends there, 0 for none), and
    parent_step / parent_rank for the edge from its parent."""
    rank = {}
    for step in sorted({n.step for n in tree}):
        nodes = sorted((i for i, n in enumerate(tree) if n.step == step), key=lambda i: -tree[i].log_prob)
        rank.update({i: r for r, i in enumerate(nodes)})
    on_path = set(tree_path(tree, chosen)) if chosen >= 0 else set()
    ends = {end: r + 1 for r, end in enumerate(hypothesis_ends)}
    rows = []
    for i, n in enumerate(tree):
        parent = tree[n.parent] if n.parent >= 0 else None
        rows.append(
            {
                "node": i,
                "parent": n.parent,
                "step": n.step,
                "rank": rank[i],
                "token": id_to_token(n.token_id),
                "log_prob": n.log_prob,
                "prob": float(np.exp(n.log_prob - parent.log_prob)) if parent else 1.0,
                "status": n.status,
                "forced": n.forced,
                "chosen": i in on_path,
                "hypothesis": ends.get(i, 0),
                "parent_step": parent.step if parent else n.step,
                "parent_rank": rank[n.parent] if parent else rank[i],
            }
        )
    return pd.DataFrame(rows)


def beam_tree_chart(df: pd.DataFrame, plot_width: int = 620, row_height: int = 34) -> alt.Chart:
    """The beam search tree, top to bottom: one row per step, a step's nodes ranked left to right by path
    log-probability (best first), an edge to each node's parent. Kept nodes blue, finished hypotheses green
    squares (numbered by rank), pruned candidates grey with dashed edges, the chosen hypothesis's path orange.
    Hover a node for its token, probability and path log-probability; a click selects it (param "node").
    Columns share plot_width (44 to 110 px each); long tokens are cut with an ellipsis (hover shows them)."""
    steps, columns = int(df["step"].max()) + 1, int(df["rank"].max()) + 1
    column = max(44, min(110, plot_width // columns))
    x = alt.X("rank:Q", title=None, axis=None, scale=alt.Scale(domain=[-0.3, columns - 0.3]))
    y = alt.Y(
        "step:Q",
        title="step",
        scale=alt.Scale(reverse=True, domain=[-0.5, steps - 0.5], nice=False),
        axis=alt.Axis(tickMinStep=1, format="d", grid=False),
    )
    chosen = alt.datum.chosen
    edges = (
        alt.Chart(df)
        .transform_filter(alt.datum.parent >= 0)
        .mark_rule()
        .encode(
            x=x,
            y=y,
            x2="parent_rank:Q",
            y2="parent_step:Q",
            color=alt.condition(chosen, alt.value(CHOSEN_COLOR), alt.value("#c8c8c8")),
            strokeWidth=alt.condition(chosen, alt.value(3), alt.value(1)),
            strokeDash=alt.condition(alt.datum.status == "pruned", alt.value([3, 3]), alt.value([1, 0])),
        )
    )
    pick = alt.selection_point(name="node", fields=["node"], on="click")
    tooltip = [
        alt.Tooltip("token:N"),
        alt.Tooltip("step:Q"),
        alt.Tooltip("prob:Q", title="p(token)", format=".3f"),
        alt.Tooltip("log_prob:Q", title="path log-prob", format=".3f"),
        alt.Tooltip("status:N"),
        alt.Tooltip("hypothesis:Q", title="hypothesis (0: none)"),
    ]
    points = (
        alt.Chart(df)
        .mark_point(filled=True, size=90, opacity=1)
        .encode(
            x=x,
            y=y,
            color=alt.Color(
                "status:N",
                scale=alt.Scale(domain=list(STATUS_COLORS), range=list(STATUS_COLORS.values())),
                legend=alt.Legend(orient="top", title=None),
            ),
            shape=alt.condition(alt.datum.status == "finished", alt.value("square"), alt.value("circle")),
            stroke=alt.condition(chosen, alt.value(CHOSEN_COLOR), alt.value(None)),
            strokeWidth=alt.condition(chosen, alt.value(3), alt.value(0)),
            tooltip=tooltip,
        )
        .add_params(pick)
    )
    labels = [
        alt.Chart(df)
        .transform_filter(chosen if on_path else ~chosen)
        .mark_text(
            align="left",
            dx=7,
            dy=-8,
            fontSize=11,
            limit=column - 8,
            fontWeight="bold" if on_path else "normal",
            color=color,
        )
        .encode(x=x, y=y, text="token:N", tooltip=tooltip)
        for on_path, color in ((False, "#333333"), (True, CHOSEN_COLOR))
    ]
    numbers = (
        alt.Chart(df)
        .transform_filter(alt.datum.hypothesis > 0)
        .transform_calculate(label="'#' + datum.hypothesis")
        .mark_text(align="left", dx=7, dy=7, fontSize=10, fontWeight="bold", color=STATUS_COLORS["finished"])
        .encode(x=x, y=y, text="label:N")
    )
    return alt.layer(edges, points, *labels, numbers).properties(
        width=column * columns, height=max(120, row_height * steps), autosize=PAD
    )


def written_frame(tokens: list[str], probs: list[float], forced: int) -> pd.DataFrame:
    """Each written token's probability: position (1-based), token, probability, source ("forced" for the
    first `forced` ones, else "model")."""
    return pd.DataFrame(
        {
            "position": range(1, len(tokens) + 1),
            "token": tokens,
            "probability": np.asarray(probs, dtype=float),
            "source": ["forced" if i < forced else "model" for i in range(len(tokens))],
        }
    )


def written_chart(df: pd.DataFrame, width: int = 320) -> alt.Chart:
    """Bars of the probability the model gave each written token, forced ones in orange."""
    return (
        alt.Chart(df)
        .mark_bar()
        .encode(
            x=alt.X(
                "position:O",
                title=None,
                axis=alt.Axis(labelExpr=f"{json.dumps(list(df['token']))}[datum.value - 1]", labelAngle=-45),
            ),
            y=alt.Y("probability:Q", scale=alt.Scale(domain=[0, 1])),
            color=alt.Color(
                "source:N",
                scale=alt.Scale(domain=["model", "forced"], range=[STATUS_COLORS["kept"], CHOSEN_COLOR]),
                legend=alt.Legend(orient="top", title=None),
            ),
            tooltip=["position:O", "token:N", alt.Tooltip("probability:Q", format=".3f"), "source:N"],
        )
        .properties(width=max(160, min(width, 24 * len(df))), height=140, autosize=PAD)
    )


def head_values_frame(values: np.ndarray) -> pd.DataFrame:
    """(L, H) one number per head -> rows layer, head (1-based), value."""
    v = _numpy(values)
    layer, head = np.indices(v.shape).reshape(2, -1)
    return pd.DataFrame({"layer": layer + 1, "head": head + 1, "value": v.reshape(-1).astype(float)})


def head_values_grid(df: pd.DataFrame, title: str, cell: int = 44, diverging: bool = False) -> alt.Chart:
    """Layers down, heads across, each cell coloured by its value (in the tooltip); a click picks a head.

    diverging centres the colours on 0 (for changes such as the ablation's log-probability delta)."""
    scale = alt.Scale(scheme="redblue", domainMid=0) if diverging else alt.Scale(scheme=SCHEME)
    n_layers, n_heads = int(df["layer"].max()), int(df["head"].max())
    return (
        alt.Chart(df)
        .mark_rect(stroke="white")
        .encode(
            x=alt.X("head:O", title="head"),
            y=alt.Y("layer:O", title="layer"),
            color=alt.Color("value:Q", title="value", scale=scale),
            tooltip=[alt.Tooltip("layer:O"), alt.Tooltip("head:O"), alt.Tooltip("value:Q", title=title, format=".4f")],
        )
        .add_params(alt.selection_point(name="pick", fields=["layer", "head"], on="click"))
        .properties(title=title, width=cell * n_heads, height=cell * n_layers, autosize=PAD)
    )


def pruning_chart(curve: list[dict], title: str = "") -> alt.Chart:
    """chrF against the number of heads switched off (least important first)."""
    df = pd.DataFrame(curve)
    return (
        alt.Chart(df)
        .mark_line(point=True)
        .encode(
            x=alt.X("heads_off:Q", title="heads switched off (least important first)"),
            y=alt.Y("chrf:Q", title="chrF", scale=alt.Scale(domain=[0, 100])),
            tooltip=[alt.Tooltip("heads_off:Q", title="heads off"), alt.Tooltip("chrf:Q", format=".2f")],
        )
        .properties(title=title, width=420, height=220, autosize=PAD)
    )
