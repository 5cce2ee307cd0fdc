"""Hugging Face translation models as bundles: `load_pretrained("hf:Helsinki-NLP/opus-mt-en-it")` or a folder
written by `save_pretrained`. `core.load_checkpoint` sends such sources here.

What is read, and how: config.json as JSON; the weights by transformers itself (model.safetensors, or
pytorch_model.bin with torch's weights-only loader); the tokenizer files (source.spm, target.spm, vocab.json)
by its tokenizer. Nothing from the folder ever runs: trust_remote_code is never set, so a model class must be
one transformers ships. A hub id is downloaded once into the usual Hugging Face cache (needs internet).
transformers is imported only here, when such a model is opened: the app starts without it.

Families: Marian (opus-mt-*, the families/marian.py view). MBart, M2M100/NLLB, T5, Pegasus and the others use
other layouts (pre-norm blocks, layer norms on the embeddings, relative positions) and are refused with
"not supported: FAMILY".
"""

from __future__ import annotations

import json
import re
import threading
import warnings
from pathlib import Path

from core.bundle import ModelBundle
from core.seam import CheckpointError

HUB_PREFIX = "hf:"
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
TOKENIZER_FILES = ("source.spm", "target.spm", "vocab.json")
HUB_FILES = ["config.json", "generation_config.json", "*.json", "*.spm", "model.safetensors", "pytorch_model.bin"]
FAMILIES = {"marian": "Marian (opus-mt)"}


def is_pretrained(source: object) -> bool:
    """A hub id written hf:ORG/NAME, or a folder holding a config.json."""
    if isinstance(source, str) and source.startswith(HUB_PREFIX):
        return True
    return isinstance(source, (str, Path)) and Path(source).is_dir() and (Path(source) / "config.json").is_file()


def hub_folder(repo_id: str) -> Path:
    """The hub model's files in the Hugging Face cache, downloaded the first time; CheckpointError without internet."""
    if not HUB_ID.fullmatch(repo_id):
        raise CheckpointError(f"{repo_id!r} is not a Hugging Face model id: write hf:ORGANISATION/NAME")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, allow_patterns=HUB_FILES))
    except Exception as exc:  # offline, unknown repository, gated model...: one line, never a traceback
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"cannot download {repo_id} from the Hugging Face hub ({type(exc).__name__}: {first[:160]}); "
            "check the id and the internet connection, or pass a folder written by save_pretrained"
        ) from None


def read_config(folder: Path) -> dict:
    """config.json as a dict; CheckpointError for a missing or unreadable one."""
    path = folder / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{folder} holds no config.json: not a Hugging Face model folder")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} is not a readable JSON config ({exc})") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{path} does not hold a config (a JSON object)")
    return config


def load_pretrained(source: str | Path, device: str = "cpu") -> ModelBundle:
    """A Hugging Face model (hub id hf:ORG/NAME or save_pretrained folder) as a ModelBundle in eval mode."""
    name = str(source)
    folder = hub_folder(name[len(HUB_PREFIX) :]) if name.startswith(HUB_PREFIX) else Path(source)
    config = read_config(folder)
    family = config.get("model_type")
    if family not in FAMILIES:
        raise CheckpointError(
            f"not supported: {family or 'a model without model_type'} (this app opens "
            f"{', '.join(FAMILIES.values())} models; other families use other layouts)"
        )
    if not any((folder / f).is_file() for f in WEIGHT_FILES):
        raise CheckpointError(f"{folder} holds no weights ({' or '.join(WEIGHT_FILES)})")
    missing = [f for f in TOKENIZER_FILES if not (folder / f).is_file()]
    if missing:
        raise CheckpointError(f"{folder} lacks the tokenizer files {', '.join(missing)}")
    return _marian_bundle(folder, name, config, device)


def banned_ids(hf_model) -> tuple[int, ...]:
    """The single tokens the model's generation config bans (bad_words_ids: opus-mt bans its pad token)."""
    words = getattr(getattr(hf_model, "generation_config", None), "bad_words_ids", None) or []
    return tuple(int(w[0]) for w in words if isinstance(w, (list, tuple)) and len(w) == 1)


def languages(name: str, tokenizer) -> tuple[str, str]:
    """(source, target) language codes: the tokenizer's, else those in an opus-mt-SRC-TGT name, else '?'."""
    found = re.search(r"opus-mt-([a-z]{2,3})-([a-z]{2,3})\b", name)
    source = getattr(tokenizer, "source_lang", None) or (found.group(1) if found else "?")
    target = getattr(tokenizer, "target_lang", None) or (found.group(2) if found else "?")
    return source, target


def _marian_bundle(folder: Path, name: str, config: dict, device: str) -> ModelBundle:
    from core.families.marian import MarianError, MarianSeq2Seq, MarianSide

    try:
        with warnings.catch_warnings():  # "pip install sacremoses" and the like: advice, not problems
            warnings.simplefilter("ignore")
            from transformers import MarianMTModel, MarianTokenizer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # a per-tensor "Loading weights" bar for a load of a second or two

            tokenizer = MarianTokenizer.from_pretrained(folder, local_files_only=True)
            hf_model = MarianMTModel.from_pretrained(
                folder, attn_implementation="eager", local_files_only=True, weights_only=True, trust_remote_code=False
            )
        model = MarianSeq2Seq(hf_model, tokenizer.unk_token_id, banned_ids(hf_model)).to(device).eval()
    except MarianError as exc:
        raise CheckpointError(str(exc)) from None
    except Exception as exc:  # transformers raises many types for broken folders: one line each
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"cannot load the Marian model in {folder}: {type(exc).__name__}: {first[:200]}"
        ) from None
    lock = threading.Lock()
    source, target = MarianSide(tokenizer, False, lock), MarianSide(tokenizer, True, lock)
    for side, size, tok in (
        ("source", model.config.src_vocab_size, source),
        ("target", model.config.tgt_vocab_size, target),
    ):
        if tok.get_vocab_size() > size:
            raise CheckpointError(f"the {side} vocabulary has {tok.get_vocab_size():,} tokens; the model {size:,}")
    card = {
        "description": f"A Hugging Face {FAMILIES['marian']} model, read with transformers (weights only).",
        "family": "marian",
        "languages": " → ".join(languages(name, tokenizer)),
        "config": {k: config.get(k) for k in ("d_model", "encoder_layers", "encoder_attention_heads", "vocab_size")},
    }
    return ModelBundle(model, source, target, model.config, name, "marian", {"model_card": card})
