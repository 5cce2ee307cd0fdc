"""Speed of what the app does, on the tutorial's full-size model (6 layers x 8 heads, d_model 512).

    python bench/app.py [--repeats 15]

The weights are random (speed does not depend on them) and the vocabularies are tutorial-sized. An
untrained model rarely stops by itself, so decoding is capped at 22 decoder tokens: a 20-token
source sentence gives a 20-token translation plus [SOS]/[EOS], as the issue asks. The last line is
the speedup of a slider change (the cached translation, as the app uses it) over running the model again.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import streamlit.logger  # noqa: E402

from core import ModelBundle, ModelConfig, Transformer, charts, translate  # noqa: E402
from core.tokenizer import build_tokenizer  # noqa: E402

SRC_VOCAB, TGT_VOCAB = 15_700, 22_400  # about the tutorial's opus_books en-it vocabularies


def timed(fn, repeats: int) -> tuple[float, object]:
    """Median wall time in ms over repeats (after one warm-up call), and the last result."""
    result = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), result


def full_size_bundle() -> ModelBundle:
    torch.manual_seed(0)
    src = build_tokenizer([" ".join(f"w{i}" for i in range(SRC_VOCAB - 4))], min_frequency=1)
    tgt = build_tokenizer([" ".join(f"p{i}" for i in range(TGT_VOCAB - 4))], min_frequency=1)
    config = ModelConfig(src_vocab_size=src.get_vocab_size(), tgt_vocab_size=tgt.get_vocab_size())
    model = Transformer(config).eval()
    return ModelBundle(model, src, tgt, config, "random full-size", "native")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(1)
    streamlit.logger.set_log_level("error")  # st.cache_data outside `streamlit run` warns that no runtime exists
    bundle = full_size_bundle()
    cfg = bundle.config
    sentence = " ".join(f"w{i * 7}" for i in range(20))
    print(
        f"model: {cfg.n_layers} layers x {cfg.n_heads} heads, d_model {cfg.d_model}, "
        f"{bundle.num_parameters / 1e6:.1f} M parameters; torch threads: {torch.get_num_threads()}"
    )

    t_translate, result = timed(lambda: translate(bundle, sentence, max_len=22), args.repeats)
    print(
        f"translate (greedy, KV cache) + all attention maps, {len(result.source_tokens) - 2} source tokens -> "
        f"{len(result.target_tokens)} decoder tokens: {t_translate:.1f} ms (target < 300 ms)"
    )

    att = result.attention
    queries, keys = att.queries("cross"), att.keys("cross")

    def focused() -> str:
        df = charts.attention_frame(charts.head_matrix(att, "cross", 3, 5), queries, keys)
        return json.dumps(charts.inline_spec(charts.heatmap(df, queries, keys, "cross · layer 3 · head 5")))

    t_focus, spec = timed(focused, args.repeats)
    print(f"focused-head chart built + serialized: {t_focus:.1f} ms, {len(spec) / 1024:.1f} KB (target < 50 ms)")

    def layer_heads() -> str:
        return json.dumps(charts.inline_spec(charts.heads_grid(att.cross[2], queries, keys, layer=3)))

    t_layer, spec = timed(layer_heads, args.repeats)
    print(f"heads of one layer (8 tiles in one image) built + serialized: {t_layer:.1f} ms, {len(spec) / 1024:.1f} KB")

    t_grid_build, grid = timed(lambda: charts.layers_grid(att.cross, queries, keys), args.repeats)
    t_grid_json, size = timed(lambda: charts.spec_size(grid), max(3, args.repeats // 3))
    print(
        f"all layers x heads: {att.cross.numel():,} cells as one image under {len(grid['datasets']['panels'])} "
        f"clickable panels; built in {t_grid_build:.1f} ms; inline Vega-Lite JSON {size / 1e6:.3f} MB "
        f"in {t_grid_json:.0f} ms (target < 2 MB)"
    )
    t_png, png = timed(lambda: charts.chart_image(grid, "png", scale=1.0), 2)
    print(f"all layers x heads as PNG (vl-convert, optional export): {t_png:.0f} ms, {len(png) / 1024:.0f} KB")

    import ui  # the app's cache: st.cache_data works in bare mode too

    ui.cached_translate("bench", bundle, sentence, None, 22)  # fill the cache
    t_cached, _ = timed(lambda: ui.cached_translate("bench", bundle, sentence, None, 22), args.repeats)
    print(
        f"slider change: cached translation fetched in {t_cached:.2f} ms instead of re-running the model "
        f"({t_translate:.1f} ms)"
    )
    print(f"speedup: {t_translate / t_cached:.0f}x (cached translation on a slider change vs running translate again)")


if __name__ == "__main__":
    main()
