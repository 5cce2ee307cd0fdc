"""Fuzz the checkpoint loader: every mutated checkpoint either loads (and translates) or raises CheckpointError.

    python bench/fuzz_checkpoint.py --count 2000 [--seed 0] [--checkpoint checkpoints/default.pt]

Without --checkpoint it fuzzes a small seeded model made here (fast: thousands of cases in minutes); with it,
that file (and a tutorial-format copy of its weights). Each case is one mutation of our format or of the
tutorial's (`tmodel_XX.pt`: a dict with `model_state_dict`, tokenizers given separately):

- on the file's bytes: truncation, flipped bytes, appended junk, a zeroed range, a zip entry dropped, a zip
  entry's declared size made huge;
- on its content, saved again with torch.save: a weight of the wrong dtype or shape, NaN or infinite
  weights, huge sizes in the config, a missing or an unknown key, entries of the wrong type.

Prints the tally (mutation x outcome) and every case that raised anything but CheckpointError; exit status
1 if there was one. tests/test_fuzz_checkpoint.py runs the same cases at a modest count in the suite.
"""

from __future__ import annotations

import argparse
import io
import random
import struct
import sys
import tempfile
import time
import zipfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core import CheckpointError, ModelConfig, Transformer, load_checkpoint, translate  # noqa: E402
from core.checkpoint import POSITION_KEYS, read_checkpoint, save_checkpoint  # noqa: E402
from core.tokenizer import build_tokenizer  # noqa: E402

SENTENCE = "the cat sleeps on the mat ."
EN = ["the cat sleeps on the mat .", "a dog runs in the park .", "where is the station ?"]
IT = ["il gatto dorme sul tappeto .", "un cane corre nel parco .", "dov' è la stazione ?"]


# ---- the two formats -----------------------------------------------------------------------------------------


def small_native(seed: int = 0) -> bytes:
    """Our format, for a small seeded model (2 layers, d_model 16): the default subject, quick to load."""
    src, tgt = build_tokenizer(EN, min_frequency=1), build_tokenizer(IT, min_frequency=1)
    config = ModelConfig(
        src.get_vocab_size(), tgt.get_vocab_size(), d_model=16, n_layers=2, n_heads=2, d_ff=32, seq_len=16
    )
    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "small.pt"
        save_checkpoint(path, Transformer(config), src, tgt, metadata={"epoch": 1})
        return path.read_bytes()


def tutorial_copy(native: bytes) -> tuple[bytes, str, str]:
    """The same weights as the tutorial saves them (positions included, optimizer state beside them), with the
    tokenizer JSON texts its loader is given separately."""
    payload = read_checkpoint(native)
    bundle = load_checkpoint(native)
    state = bundle.model.state_dict()
    buffer = io.BytesIO()
    torch.save(
        {"epoch": 3, "global_step": 99, "model_state_dict": state, "optimizer_state_dict": {"state": {}}}, buffer
    )
    return buffer.getvalue(), payload["src_tokenizer"], payload["tgt_tokenizer"]


# ---- mutations of the bytes -----------------------------------------------------------------------------------


def truncate(data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randrange(len(data))]


def flip_bytes(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.choice((1, 2, 8, 64))):
        out[rng.randrange(len(out))] ^= rng.randrange(1, 256)
    return bytes(out)


def append_junk(data: bytes, rng: random.Random) -> bytes:
    return data + rng.randbytes(rng.choice((1, 16, 4096)))


def zero_range(data: bytes, rng: random.Random) -> bytes:
    start = rng.randrange(len(data))
    end = min(len(data), start + rng.choice((4, 64, 1024, 65536)))
    return data[:start] + bytes(end - start) + data[end:]


def drop_zip_entry(data: bytes, rng: random.Random) -> bytes:
    """The archive rewritten without one of its entries (data.pkl, a tensor's storage, version, ...)."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        entries = archive.infolist()
        dropped = rng.choice(entries).filename
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as rewritten:
            for info in entries:
                if info.filename != dropped:
                    rewritten.writestr(info, archive.read(info.filename))
    return out.getvalue()


def huge_declared_size(data: bytes, rng: random.Random) -> bytes:
    """One central-directory record claims a compressed and uncompressed size of up to 4 GB."""
    out = bytearray(data)
    records = [i for i in range(len(out) - 4) if out[i : i + 4] == b"PK\x01\x02"]
    at = rng.choice(records)
    size = rng.choice((0xFFFFFFFF, 0x7FFFFFFF, 1 << 30))
    out[at + 20 : at + 28] = struct.pack("<II", size, size)
    return bytes(out)


BYTE_MUTATIONS: dict[str, Callable[[bytes, random.Random], bytes]] = {
    "truncate": truncate,
    "flip bytes": flip_bytes,
    "append junk": append_junk,
    "zero range": zero_range,
    "drop zip entry": drop_zip_entry,
    "huge declared size": huge_declared_size,
}


# ---- mutations of the content (saved again) --------------------------------------------------------------------


def _state(payload: dict) -> dict:
    return payload["model_state_dict"]


def _some_key(payload: dict, rng: random.Random) -> str:
    return rng.choice(sorted(k for k in _state(payload) if k not in POSITION_KEYS))


def wrong_dtype(payload: dict, rng: random.Random) -> None:
    key = _some_key(payload, rng)
    dtype = rng.choice((torch.int64, torch.int8, torch.bool, torch.complex64, torch.float64, torch.bfloat16))
    _state(payload)[key] = _state(payload)[key].to(dtype)


def wrong_shape(payload: dict, rng: random.Random) -> None:
    key = _some_key(payload, rng)
    tensor = _state(payload)[key]
    _state(payload)[key] = rng.choice(
        (tensor.reshape(-1), tensor[..., :-1], torch.cat([tensor, tensor]), tensor.unsqueeze(0), torch.tensor(1.0))
    )


def non_finite(payload: dict, rng: random.Random) -> None:
    tensor = _state(payload)[_some_key(payload, rng)]
    tensor.view(-1)[rng.randrange(tensor.numel())] = rng.choice((float("nan"), float("inf"), float("-inf")))


def huge_config(payload: dict, rng: random.Random) -> None:
    """Sizes that would allocate terabytes if the loader built the model before checking the weights."""
    name = rng.choice(("d_model", "d_ff", "n_layers", "seq_len", "n_heads", "src_vocab_size"))
    value = rng.choice((10**6, 10**9, 2**40, -1, 0))
    if "model_config" in payload:
        payload["model_config"][name] = value
    else:  # the tutorial infers sizes from the shapes: declare a huge tensor instead (a stride-0 view, no memory)
        key = _some_key(payload, rng)
        _state(payload)[key] = torch.zeros(1).expand(10**6, 10**6)


def missing_or_unknown_key(payload: dict, rng: random.Random) -> None:
    state = _state(payload)
    if rng.random() < 0.5:
        del state[_some_key(payload, rng)]
    else:
        state[rng.choice(("decoder.layers.9.extra.weight", "unexpected", "encoder.layers.0.w.bias"))] = torch.ones(3)


def wrong_types(payload: dict, rng: random.Random) -> None:
    """An entry replaced by a value of another type (a list, a string, a number, None, a tensor)."""
    key = rng.choice(sorted(payload))
    payload[key] = rng.choice(([1, 2], "text", 3, None, torch.ones(2), {"a": torch.ones(1)}, {1: torch.ones(1)}))


CONTENT_MUTATIONS: dict[str, Callable[[dict, random.Random], None]] = {
    "wrong dtype": wrong_dtype,
    "wrong shape": wrong_shape,
    "NaN/inf weight": non_finite,
    "huge config": huge_config,
    "missing/unknown key": missing_or_unknown_key,
    "wrong entry type": wrong_types,
}
MUTATIONS = [*BYTE_MUTATIONS, *CONTENT_MUTATIONS]


def mutate(data: bytes, name: str, rng: random.Random) -> bytes:
    if name in BYTE_MUTATIONS:
        return BYTE_MUTATIONS[name](data, rng)
    payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    CONTENT_MUTATIONS[name](payload, rng)
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


# ---- one case, many cases --------------------------------------------------------------------------------------


def outcome(data: bytes, tokenizers: tuple[str, str] | None) -> str:
    """ "loaded" (and translated), "refused" (CheckpointError), or "OTHER <type>: <message>"."""
    try:
        bundle = load_checkpoint(data, *(tokenizers or (None, None)))
    except CheckpointError:
        return "refused"
    except Exception as exc:  # what the fuzzer hunts: anything else is a bug in the loader
        return f"OTHER {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
    try:
        translate(bundle, SENTENCE, max_len=8)
    except Exception as exc:
        return f"OTHER at translate, {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
    return "loaded"


def fuzz(native: bytes, count: int, seed: int, progress: bool = False) -> tuple[Counter, list[str]]:
    """count cases, half on our format, half on the tutorial's: (tally of (format, mutation, outcome), failures)."""
    tutorial, src_json, tgt_json = tutorial_copy(native)
    subjects = {"ours": (native, None), "tutorial": (tutorial, (src_json, tgt_json))}
    rng = random.Random(seed)
    tally: Counter = Counter()
    failures = []
    for case in range(count):
        fmt = ("ours", "tutorial")[case % 2]
        name = MUTATIONS[(case // 2) % len(MUTATIONS)]
        data, tokenizers = subjects[fmt]
        result = outcome(mutate(data, name, rng), tokenizers)
        tally[fmt, name, result if not result.startswith("OTHER") else "OTHER"] += 1
        if result.startswith("OTHER"):
            failures.append(f"case {case} ({fmt}, {name}): {result}")
        if progress and (case + 1) % 100 == 0:
            print(f"  {case + 1}/{count} cases, {len(failures)} failures", file=sys.stderr, flush=True)
    return tally, failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000, help="cases to run (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the mutations (default 0)")
    parser.add_argument("--checkpoint", help="fuzz this checkpoint of ours (default: a small model made here)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    native = Path(args.checkpoint).read_bytes() if args.checkpoint else small_native()
    subject = args.checkpoint or "a small model (2 layers, d_model 16)"
    start = time.perf_counter()
    tally, failures = fuzz(native, args.count, args.seed, progress=True)
    seconds = time.perf_counter() - start
    print(f"{args.count} cases on {subject}, seed {args.seed}, {seconds:.0f} s")
    print(f"{'format':<9} {'mutation':<20} {'loaded':>7} {'refused':>8} {'OTHER':>6}")
    for fmt in ("ours", "tutorial"):
        for name in MUTATIONS:
            row = [tally[fmt, name, r] for r in ("loaded", "refused", "OTHER")]
            print(f"{fmt:<9} {name:<20} {row[0]:>7} {row[1]:>8} {row[2]:>6}")
    totals = [sum(n for (_, _, r), n in tally.items() if r == want) for want in ("loaded", "refused", "OTHER")]
    print(f"total: {totals[0]} loaded and translated, {totals[1]} refused with CheckpointError, {totals[2]} other")
    for failure in failures:
        print(failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
