"""Timeline and Compare at the tutorial's full size: 20 checkpoints of d_model 512, 6 layers, 8 heads.

    python bench/timeline.py [--checkpoints 20] [--no-optimizer] [--folder DIR] [--keep]

Writes a run in the tutorial's layout into a temporary folder (tmodel_NN.pt with random weights and, like the
tutorial's files, Adam's optimizer state, about 900 MB each; tokenizer_en.json / tokenizer_it.json of
15.7k / 22.4k tokens beside them), in a child process so its memory does not count. It needs about 18 GB of
free disk; with less it writes weights only (about 300 MB each) and says so. Then, in this process:
- first timeline: one sentence through every checkpoint as the Timeline page runs it (core.runs.follow_sentence
  through ui.cached_view: one model in memory at a time), with its peak resident memory;
- once computed: the same view again from the cache, with the page's charts built and converted as
  st.altair_chart converts them (what a slider move costs);
- the faithful baseline for a later view: recomputing it, which is the first pass again (no cache);
- compare: two full-size checkpoints on one sentence (core.comparison.compare_models, models loaded), at the
  cap of 54 decoder rows (a random model never stops) and at 22 rows (a 20-token translation);
- in a child process, the other way to bound nothing: load every checkpoint at once, then compute (peak memory).
An untrained model never writes [EOS], so every checkpoint decodes the timeline's cap (2 x source tokens + 10)
and the time is a worst case. Wall and CPU seconds are printed (on a shared machine the wall time also counts
other work). Ends with `speedup: <ratio>x` of the cached view over recomputing it (wall time).
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import pandas as pd  # noqa: E402
import streamlit.logger  # noqa: E402
from streamlit.elements.vega_charts import _convert_altair_to_vega_lite_spec as to_vega_lite  # noqa: E402

SRC_VOCAB, TGT_VOCAB = 15_700, 22_400  # about the tutorial's opus_books en-it vocabularies
SENTENCE = " ".join(f"w{i * 7}" for i in range(20))  # 20 source words
GB = 1024**3


def peak_rss_gb(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss * 1024 / GB  # ru_maxrss is in KiB on Linux


def write_run(folder: Path, count: int, optimizer: bool) -> None:
    """The tutorial's layout: folder/tmodel_NN.pt (weights, optimizer state, epoch, step) and the tokenizers."""
    from core import ModelConfig, Transformer
    from core.tokenizer import build_tokenizer

    torch.set_num_threads(1)
    src = build_tokenizer([" ".join(f"w{i}" for i in range(SRC_VOCAB - 4))], min_frequency=1)
    tgt = build_tokenizer([" ".join(f"p{i}" for i in range(TGT_VOCAB - 4))], min_frequency=1)
    src.save(str(folder / "tokenizer_en.json"))
    tgt.save(str(folder / "tokenizer_it.json"))
    config = ModelConfig(src_vocab_size=src.get_vocab_size(), tgt_vocab_size=tgt.get_vocab_size())
    moments = None
    for epoch in range(count):
        torch.manual_seed(epoch)
        model = Transformer(config)
        payload = {"epoch": epoch, "model_state_dict": model.state_dict(), "global_step": 1000 * (epoch + 1)}
        if optimizer:
            if moments is None:  # Adam's two moments per weight, as the tutorial saves them; the values do not matter
                params = list(model.parameters())
                moments = {
                    "state": {
                        i: {
                            "step": torch.tensor(1000.0),
                            "exp_avg": torch.randn_like(p),
                            "exp_avg_sq": torch.rand_like(p),
                        }
                        for i, p in enumerate(params)
                    },
                    "param_groups": [{"lr": 1e-4, "eps": 1e-9, "params": list(range(len(params)))}],
                }
            payload["optimizer_state_dict"] = moments
        torch.save(payload, folder / f"tmodel_{epoch:02d}.pt")
        print(f"  wrote tmodel_{epoch:02d}.pt", flush=True)


def load_all_then_compute(folder: Path) -> None:
    """The unbounded way: every checkpoint loaded and kept, then the sentence run through each."""
    from core import load_checkpoint, translate
    from core.runs import runs_in_folder

    torch.set_num_threads(1)
    (run,) = runs_in_folder(folder)
    start, cpu = time.perf_counter(), time.process_time()
    bundles = [load_checkpoint(c.path) for c in run.checkpoints]
    for bundle in bundles:
        translate(bundle, SENTENCE, max_len=2 * 22 + 10)
    print(f"{time.perf_counter() - start:.1f} {time.process_time() - cpu:.1f} {peak_rss_gb():.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", type=int, default=20)
    parser.add_argument("--no-optimizer", action="store_true", help="weights only (about 300 MB per file)")
    parser.add_argument("--folder", help="where to write the run (default: a new temporary folder, removed after)")
    parser.add_argument("--keep", action="store_true", help="keep the run's files")
    parser.add_argument("--skip-all-at-once", action="store_true", help="skip the load-everything child")
    parser.add_argument("--child", choices=["write", "all-at-once"], help=argparse.SUPPRESS)
    parser.add_argument("--optimizer", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "write":
        write_run(Path(args.folder), args.checkpoints, bool(args.optimizer))
        return
    if args.child == "all-at-once":
        load_all_then_compute(Path(args.folder))
        return

    torch.set_num_threads(1)
    streamlit.logger.set_log_level("error")  # st.cache_data outside `streamlit run` warns that no runtime exists
    folder = Path(args.folder) if args.folder else Path(tempfile.mkdtemp(prefix="bench_timeline_", dir="/tmp"))
    folder.mkdir(parents=True, exist_ok=True)
    optimizer = not args.no_optimizer
    free = shutil.disk_usage(folder).free / GB
    if optimizer and free < args.checkpoints * 0.9 + 4:
        print(f"only {free:.0f} GB free in {folder}: writing weights only (about 300 MB per file)")
        optimizer = False
    try:
        if not list(folder.glob("tmodel_*.pt")):
            print(f"writing {args.checkpoints} full-size checkpoints into {folder} ...", flush=True)
            me = [sys.executable, __file__, "--folder", str(folder), "--checkpoints", str(args.checkpoints)]
            subprocess.run([*me, "--child", "write", "--optimizer", str(int(optimizer))], check=True)
        run_benchmarks(folder, args.skip_all_at_once)
    finally:
        if not args.keep and not args.folder:
            shutil.rmtree(folder, ignore_errors=True)


def run_benchmarks(folder: Path, skip_all_at_once: bool) -> None:
    import ui
    from core import charts, load_checkpoint
    from core.comparison import compare_models
    from core.runs import follow_sentence, runs_in_folder, statistic_series

    (run,) = runs_in_folder(folder)
    sizes = [c.path.stat().st_size / 2**20 for c in run.checkpoints]
    print(
        f"run: {len(sizes)} checkpoints of {min(sizes):.0f}-{max(sizes):.0f} MB in {folder}; "
        f"torch threads: {torch.get_num_threads()}; peak RSS before: {peak_rss_gb():.2f} GB"
    )

    def progress(done: int, total: int, view) -> None:
        print(f"\r  checkpoint {done}/{total}", end="", flush=True)

    start, cpu = time.perf_counter(), time.process_time()
    timeline = follow_sentence(run, SENTENCE, view=ui.cached_view, on_epoch=progress)
    first, first_cpu = time.perf_counter() - start, time.process_time() - cpu
    rows = len(timeline.epochs[-1].attention.target_tokens)
    print(
        f"\rfirst timeline ({len(timeline.epochs)} checkpoints, one model at a time, {rows} decoder rows each): "
        f"{first:.1f} s wall, {first_cpu:.1f} s CPU (target < 60 s); peak RSS {peak_rss_gb():.2f} GB"
    )

    def view_page(view) -> None:
        """What a rerun of the Timeline page computes: the timeline (cached or not) and every chart it shows."""
        shown = follow_sentence(run, SENTENCE, view=view)
        att = shown.epochs[-1].attention
        queries, keys = att.queries("cross"), att.keys("cross")
        matrices = [charts.head_matrix(e.attention, "cross", 3, 5) for e in shown.epochs]
        labels = [e.checkpoint.label for e in shown.epochs]
        frame = charts.attention_frame(matrices[-1], queries, keys)
        built = [
            charts.heatmap(frame, queries, keys),
            charts.epochs_grid(charts.epochs_frame(matrices), labels, queries, keys),
        ]
        series = pd.DataFrame(statistic_series(shown, "cross", 3, 5))
        built += [
            charts.series_chart(series[series["statistic"] == n], labels, n, 3) for n in series["statistic"].unique()
        ]
        for chart in built:
            to_vega_lite(chart)  # what st.altair_chart does with it: the spec, with the rows as Arrow

    cached, cached_cpu = [], []
    for _ in range(5):
        start, cpu = time.perf_counter(), time.process_time()
        view_page(ui.cached_view)
        cached.append(time.perf_counter() - start)
        cached_cpu.append(time.process_time() - cpu)
    cached_s = sorted(cached)[2]
    print(
        f"once computed: the page's view from the cache, charts built: {cached_s * 1000:.0f} ms wall, "
        f"{sorted(cached_cpu)[2] * 1000:.0f} ms CPU (median of 5; target < 1 s)"
    )
    print(
        "baseline: without the cache every view recomputes the first pass (every checkpoint loaded and run "
        f"again): {first:.1f} s wall, {first_cpu:.1f} s CPU"
    )

    a = load_checkpoint(run.checkpoints[-1].path)
    b = load_checkpoint(run.checkpoints[-2].path)
    compare_models(a, b, SENTENCE)  # warm-up
    for max_len, what in ((None, "the cap, never stopping"), (22, "a 20-token translation, as bench/app.py")):
        times, cpus = [], []
        for _ in range(3):
            start, cpu = time.perf_counter(), time.process_time()
            result = compare_models(a, b, SENTENCE, max_len=max_len)
            times.append(time.perf_counter() - start)
            cpus.append(time.process_time() - cpu)
        print(
            f"compare two full-size models on one sentence ({len(result.attention_a.target_tokens)} decoder rows: "
            f"{what}; two translations, two forced passes, 3 x 48 heads): {sorted(times)[1]:.2f} s wall, "
            f"{sorted(cpus)[1]:.2f} s CPU (median of 3; target < 2 s)"
        )
    del a, b
    print(f"peak RSS of this process (the timeline, then two models for compare): {peak_rss_gb():.2f} GB")

    if not skip_all_at_once:
        child = subprocess.run(
            [sys.executable, __file__, "--folder", str(folder), "--child", "all-at-once"],
            capture_output=True,
            text=True,
            check=True,
        )
        seconds, cpu_seconds, rss = child.stdout.split()[-3:]
        print(
            f"unbounded way (every checkpoint loaded at once, then translated): {seconds} s wall, {cpu_seconds} s CPU, "
            f"peak RSS {rss} GB"
        )
    print(f"speedup: {first / cached_s:.0f}x")


if __name__ == "__main__":
    main()
