"""Exports: the shown attention as CSV or JSON, a chart as PNG or SVG (vl-convert, no browser needed)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd


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


def inline_spec(spec: dict) -> dict:
    """The spec with its datasets as JSON records (what a plain Vega-Lite renderer reads)."""
    datasets = {name: json.loads(frame.to_json(orient="records")) for name, frame in spec.get("datasets", {}).items()}
    return {**spec, "datasets": datasets} if datasets else dict(spec)


def chart_image(spec: dict, fmt: str = "png", scale: float = 2.0) -> bytes:
    """Render a chart to PNG or SVG with vl-convert (no browser needed)."""
    import vl_convert as vlc

    if fmt not in ("png", "svg"):
        raise ValueError(f"unknown image format {fmt!r}: use png or svg")
    inline = inline_spec(spec)
    if fmt == "svg":
        return vlc.vegalite_to_svg(inline).encode("utf-8")
    return vlc.vegalite_to_png(inline, scale=scale)


def spec_size(spec: dict) -> int:
    """Bytes of the chart's compact Vega-Lite JSON with its data inlined (what a plain HTML embed would carry)."""
    return len(json.dumps(inline_spec(spec), separators=(",", ":")).encode("utf-8"))
