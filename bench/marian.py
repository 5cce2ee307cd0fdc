"""A Marian model of opus-mt-en-it's size through our seam, against transformers' own generate on the same weights.

    python bench/marian.py [--repeats 5] [--steps 20] [--threads 1] [--folder DIR]

The model: random weights from a MarianConfig shaped like opus-mt-en-it (6 encoder and 6 decoder layers, 8 heads,
d_model 512, feed-forward 2048, a shared vocabulary of 80,000 entries, 512 positions, post-norm, swish), written
with save_pretrained into a temporary folder (or --folder) with a small SentencePiece tokenizer
(tests/marian_fixtures.py; the vocabulary is padded to 80,000 with pieces the tokenizer never writes, so the
embeddings and the output projection have the real size). The end-of-sentence logit is pushed down, so both ways
decode exactly --steps tokens of a 20-token sentence, on one CPU thread by default:

- ours: `core.translate(bundle, sentence, max_len=steps + 1)` on the folder loaded with `core.load_checkpoint`,
  what the app runs: tokenize, encode once, one token per step over a key/value cache with every attention map
  (need_weights), plus one more step for the last token's own attention row, the top-5 probabilities of every
  row, the maps stacked and labelled;
- generate: the same tokenizer call, then transformers' `model.generate(..., num_beams=1, do_sample=False,
  max_new_tokens=steps, output_attentions=True, output_scores=True, return_dict_in_generate=True,
  forced_eos_token_id=None)` on the same folder loaded with `MarianMTModel.from_pretrained(attn_implementation=
  "eager")` (eager: the attention weights are returned; the pad token is banned by the generation config, as
  ours bans it).

The two take turns within each repeat (both see the same moments of a loaded machine). Prints the median CPU
milliseconds (time.process_time: the machine is shared, and CPU time is what a run costs whatever else runs)
and wall milliseconds of each, whether the generated ids agree, and `speedup: <generate / ours>x` of the CPU
medians. Then the memory of loading the folder with our loader (`core.load_checkpoint`) and with transformers'
`from_pretrained` alone, each in a fresh Python process: the RSS high-water mark (VmHWM) over what the imports
left, after every weight has been read once, split into pages mapped from files (safetensors weights stay mapped
from the file) and memory allocated, beside the size of the weight file: a rise near the file's size means the
weights are held once, near twice its size that they were copied.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # run as a script from anywhere; the fixture builds the model

from marian_fixtures import ENGLISH, make_marian  # noqa: E402

from core import load_checkpoint, translate  # noqa: E402

SIZE = {"layers": 6, "heads": 8, "d_model": 512, "ffn": 2048, "vocab_size": 80_000, "positions": 512}
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def build(folder: Path) -> Path:
    """The opus-mt-en-it-sized random model, written once into folder (reused when it is already there)."""
    if not (folder / "config.json").is_file():
        make_marian(folder, never_ends=True, **SIZE)
    return folder


def sentence_of(bundle, tokens: int) -> str:
    """A sentence of the fixture's English words that the source tokenizer splits into exactly `tokens` pieces."""
    words = " ".join(ENGLISH).split()
    for n in range(1, len(words) + 1):
        text = " ".join(words[:n])
        count = len(bundle.src_tokenizer.encode(text).ids)
        if count == tokens:
            return text
        if count > tokens:
            break
    raise ValueError(f"no prefix of the fixture's words has exactly {tokens} tokens")


def ours(bundle, sentence: str, steps: int) -> list[int]:
    return list(translate(bundle, sentence, max_len=steps + 1).output_ids)


def generate(model, tokenizer, sentence: str, steps: int) -> list[int]:
    with torch.inference_mode():
        ids = tokenizer(sentence, return_tensors="pt").input_ids
        out = model.generate(
            ids,
            num_beams=1,
            do_sample=False,
            max_new_tokens=steps,
            output_attentions=True,
            output_scores=True,
            return_dict_in_generate=True,
            forced_eos_token_id=None,
        )
    return out.sequences[0, 1:].tolist()  # the first is the decoder's start token


def interleaved(ways: dict, repeats: int) -> tuple[dict, dict, dict]:
    """Median CPU ms, median wall ms and the last result of each way; each repeat runs every way once, in turn."""
    results = {name: fn() for name, fn in ways.items()}  # warm-up
    cpu, wall = {name: [] for name in ways}, {name: [] for name in ways}
    for _ in range(repeats):
        for name, fn in ways.items():
            c, w = time.process_time(), time.perf_counter()
            results[name] = fn()
            cpu[name].append((time.process_time() - c) * 1000)
            wall[name].append((time.perf_counter() - w) * 1000)
    median = lambda d: {n: statistics.median(t) for n, t in d.items()}  # noqa: E731
    return median(cpu), median(wall), results


def status_kib(field: str) -> int:
    """A memory figure of this process from /proc/self/status, in KiB: VmHWM (the RSS high-water mark), VmRSS,
    RssAnon, RssFile. Not getrusage's ru_maxrss: Linux carries that over from the parent across exec, so a child
    of this bench (which holds two models) would read the parent's peak; VmHWM belongs to the child's own map."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def load_once(folder: str, loader: str) -> None:
    """In a fresh process: import everything a load needs, load the folder, read every weight once (a tensor
    mapped from the file is resident only once read), then print the memory figures as JSON."""
    from transformers import MarianMTModel, MarianTokenizer  # noqa: F401 - imported before the baseline is read

    import core.families.marian  # noqa: F401

    torch.set_num_threads(1)
    before = {field: status_kib(field) for field in ("VmHWM", "RssAnon", "RssFile")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if loader == "ours":
            model = load_checkpoint(folder).model
        else:
            model = MarianMTModel.from_pretrained(folder, attn_implementation="eager")
    tensors = {t.data_ptr(): t for t in [*model.parameters(), *model.buffers()]}.values()  # tied weights once
    with torch.no_grad():
        for tensor in tensors:
            tensor.sum()
    after = {field: status_kib(field) for field in ("VmHWM", "RssAnon", "RssFile")}
    print(json.dumps({"before": before, "after": after, "tensors": sum(t.numel() * t.element_size() for t in tensors)}))


def memory(folder: Path) -> None:
    weights = next(folder / f for f in WEIGHT_FILES if (folder / f).is_file())
    size = weights.stat().st_size / 2**20
    print(f"memory of a load, each in a fresh process, every weight read once ({weights.name}: {size:.0f} MiB):")
    for loader in ("ours", "transformers"):
        run = subprocess.run(
            [sys.executable, __file__, "--load-only", str(folder), "--loader", loader],
            capture_output=True,
            text=True,
            check=True,
        )
        m = json.loads(run.stdout.strip().splitlines()[-1])
        rise = {k: (m["after"][k] - m["before"][k]) / 1024 for k in m["before"]}
        label = "ours (core.load_checkpoint)" if loader == "ours" else "transformers' from_pretrained alone"
        print(
            f"  {label:<37} peak {rise['VmHWM']:4.0f} MiB over the {m['before']['VmHWM'] / 1024:.0f} MiB after "
            f"imports ({rise['VmHWM'] / size:.2f}x the file): {rise['RssFile']:4.0f} MiB mapped from files, "
            f"{rise['RssAnon']:4.0f} MiB allocated; weights {m['tensors'] / 2**20:.0f} MiB"
        )


def timings(folder: Path, args) -> float:
    """Print the two ways' medians and whether their ids agree; returns generate's CPU median over ours'."""
    from transformers import MarianMTModel, MarianTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # generate's note that max_new_tokens overrides the config's max_length
    bundle = load_checkpoint(folder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hf = MarianMTModel.from_pretrained(folder, attn_implementation="eager").eval()
        tokenizer = MarianTokenizer.from_pretrained(folder)
    sentence = sentence_of(bundle, 20)
    c = bundle.config
    print(
        f"torch {torch.__version__}, {args.threads} thread(s), {args.steps} steps, median of {args.repeats}; "
        f"random Marian: {c.n_layers}+{c.n_layers} layers, {c.n_heads} heads, d_model {c.d_model}, "
        f"ffn {c.d_ff}, vocab {c.tgt_vocab_size:,}"
    )
    print(f"sentence ({len(bundle.src_tokenizer.encode(sentence).ids)} tokens + </s>): {sentence}")
    cpu, wall, ids = interleaved(
        {
            "ours": lambda: ours(bundle, sentence, args.steps),
            "generate": lambda: generate(hf, tokenizer, sentence, args.steps),
        },
        args.repeats,
    )
    print(f"  ours (translate, every map):        {cpu['ours']:7.1f} ms CPU  {wall['ours']:7.1f} ms wall")
    print(f"  transformers generate (attentions): {cpu['generate']:7.1f} ms CPU  {wall['generate']:7.1f} ms wall")
    same = ids["ours"] == ids["generate"]
    print(f"  same ids: {same} ({len(ids['ours'])} and {len(ids['generate'])} tokens)")
    print(
        f"  per decoder step (ours runs {args.steps + 1}: the last token once more, for its attention row and top-5; "
        f"generate {args.steps}): ours {cpu['ours'] / (args.steps + 1):.1f} ms, "
        f"generate {cpu['generate'] / args.steps:.1f} ms CPU"
    )
    return cpu["generate"] / cpu["ours"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each way (interleaved), after a warm-up")
    parser.add_argument("--steps", type=int, default=20, help="tokens generated per run")
    parser.add_argument("--folder", type=Path, help="where to write the model, or reuse one written there before")
    parser.add_argument("--load-only", help=argparse.SUPPRESS)
    parser.add_argument("--loader", choices=["ours", "transformers"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load_only:
        load_once(args.load_only, args.loader)
        return
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        folder = build(args.folder or Path(tmp) / "opus-mt-en-it")
        ratio = timings(folder, args)
        memory(folder)
    print(f"speedup: {ratio:.2f}x")


if __name__ == "__main__":
    main()
