"""Choosing the session's model on the Models page: a file of the checkpoints folder, an upload (our checkpoint,
or a tutorial tmodel_XX.pt with its tokenizers and head count), or a Hugging Face model (hub id or folder). Any
problem is one line, and the previous model stays active."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from core import CheckpointError
from core.analysis.head_count import check_head_count
from core.families.pretrained import HUB_ID, HUB_PREFIX
from ui import models
from ui.text import md_code, md_text

NATIVE, TUTORIAL = "This project's checkpoint (one file)", "Tutorial tmodel_XX.pt + two tokenizer files"
HEADS_HELP = (
    "A tutorial checkpoint holds only the weights, and their shapes are the same for any head count: the file "
    "cannot tell how many heads the model was trained with. Enter the notebook's value (`h` / `num_heads` in "
    "its config; the tutorial uses 8). A wrong count still loads and still draws attention maps, but they are "
    "not the model's heads; after loading, the app checks the count against its neighbours."
)


def choose() -> None:
    st.session_state["model_choice"] = st.session_state["model_radio"]


def load_uploaded() -> None:
    """Validate and load the uploaded files; on any problem show it and keep the previous model."""
    session, limit = st.session_state, models.upload_limit_mb()
    ckpt = session.get("up_ckpt")
    tutorial = session.get("up_kind") == TUTORIAL
    files = [("checkpoint", ckpt)] + (
        [("source tokenizer", session.get("up_src")), ("target tokenizer", session.get("up_tgt"))] if tutorial else []
    )
    if ckpt is None:
        session["upload_error"] = "Choose a checkpoint file first."
        return
    for what, f in files:
        if f is not None and f.size > limit * 1024 * 1024:
            session["upload_error"] = (
                f"The {what} {md_code(f.name)} is {f.size / 2**20:,.1f} MB, over the upload limit of "
                f"{limit} MB (server.maxUploadSize in .streamlit/config.toml). Training checkpoints "
                "carry optimizer state: `python -m core export --checkpoint FILE --out "
                "small.pt` keeps only the weights, in 16 bits."
            )
            return
    data = ckpt.getvalue()
    src = session["up_src"].getvalue() if tutorial and session.get("up_src") else None
    tgt = session["up_tgt"].getvalue() if tutorial and session.get("up_tgt") else None
    heads = int(session.get("up_heads", 8)) if tutorial else None
    key = models.upload_key(data, src, tgt, heads)
    try:
        bundle = models.load_upload(key, data, src, tgt, heads)
    except CheckpointError as exc:
        session["upload_error"] = (
            f"{md_code(ckpt.name)} was not loaded: {md_text(exc)}. The previous model stays active."
        )
        return
    head_check = None
    if tutorial:
        with st.spinner("Checking the head count (a few translations scored with each plausible count)…"):
            head_check = check_head_count(bundle)
    # the model itself is in ui's process-wide store; the session keeps its key
    session["upload"] = {"key": key, "name": ckpt.name, "head_check": head_check}
    session["model_choice"] = "upload"
    session["upload_error"] = None
    session["upload_ok"] = f"Loaded {md_code(ckpt.name)}: it is now the active model for this browser session only."


def open_pretrained() -> None:
    """Open the Hugging Face model typed in the field (a hub id or a save_pretrained folder) for this session; on
    any problem say it in one line and keep the previous model."""
    session = st.session_state
    source = str(session.get("hf_source") or "").strip()
    if HUB_ID.fullmatch(source) and not Path(source).exists():
        source = HUB_PREFIX + source  # Helsinki-NLP/opus-mt-en-it: a hub id written without its prefix
    if not source:
        session["upload_error"] = "Type a Hugging Face model id (Helsinki-NLP/opus-mt-en-it) or a model folder."
        return
    try:
        models.load_pretrained(source)
    except CheckpointError as exc:
        session["upload_error"] = f"{md_code(source)} was not opened: {md_text(exc)}. The previous model stays active."
        return
    session[models.PRETRAINED] = source
    session["model_choice"] = models.PRETRAINED
    session["upload_ok"] = f"Opened {md_code(source)}: it is now the active model for this browser session only."


def pretrained_section() -> None:
    st.subheader("Hugging Face model")
    st.caption(
        "A Marian translation model (opus-mt-*, e.g. Helsinki-NLP/opus-mt-en-it) from the Hugging Face hub, downloaded "
        "once into the Hugging Face cache (needs internet), or a folder written by save_pretrained. Weights only: "
        "no code from the model is ever run. Used by this browser session only."
    )
    field, button = st.columns([4, 1], vertical_alignment="bottom")
    field.text_input("Hugging Face model (id or folder)", key="hf_source", placeholder="Helsinki-NLP/opus-mt-en-it")
    button.button("Open", key="hf_go", on_click=open_pretrained)
