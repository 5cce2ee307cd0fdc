"""Models: pick a checkpoint from checkpoints/, upload one or open a Hugging Face model for this session, read its
model card."""

from pathlib import Path

import pandas as pd
import streamlit as st

from core import CheckpointError
from core.analysis.head_count import check_head_count
from core.families.pretrained import HUB_ID, HUB_PREFIX
from ui import models, state, widgets
from ui.sections.alignment import show_card_alignment
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
        with st.spinner("Checking the head count (a few translations with each plausible count)…"):
            head_check = check_head_count(bundle, widgets.EXAMPLES[:3])
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


def show_card_entry(name: str, value) -> None:
    """Render one model-card entry by its shape: text, a command, a table of scalars or rows, else JSON."""
    st.markdown(f"**{md_text(name.replace('_', ' ').capitalize())}**")
    scalar = (str, int, float, bool, type(None))
    if isinstance(value, str) and "command" in name:
        st.code(value, language="bash")
    elif isinstance(value, int) and not isinstance(value, bool):
        st.markdown(f"{value:,}")
    elif isinstance(value, scalar):
        st.markdown(md_text(value))
    elif isinstance(value, dict) and all(isinstance(v, scalar) for v in value.values()):
        # st.table wraps long text; st.dataframe cuts it off at the column width
        st.table(pd.DataFrame([{"name": str(k), "value": str(v)} for k, v in value.items()]).set_index("name"))
    elif (
        isinstance(value, dict)
        and value
        and all(isinstance(v, dict) and all(isinstance(x, scalar) for x in v.values()) for v in value.values())
    ):
        st.table(pd.DataFrame([{"": k, **v} for k, v in value.items()]).set_index(""))  # e.g. metrics per test set
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        st.table(pd.DataFrame(value).astype(str))
    else:
        st.json(value, expanded=2)


def head_count_note(bundle, check) -> None:
    """Which head count was assumed for a tutorial file, and what the check says of it."""
    heads = bundle.config.n_heads
    st.info(
        f"**Head count: {heads}, assumed.** A tutorial checkpoint does not record it; {heads} is the value "
        "given at upload. " + HEADS_HELP.split(": the file cannot tell")[0].replace("A tutorial", "The file") + "."
    )
    if check is None:
        return
    scores = ", ".join(f"{h} heads: {p:.2f}" for h, p in sorted(check.confidence.items()))
    if check.doubtful:
        st.warning(
            f"**{heads} heads looks wrong.** Read with {check.best} heads the model is clearly surer of its own "
            f"translations (mean probability of each chosen token; {scores}). With a wrong count the maps are "
            f"not the model's real heads: upload again with {check.best} heads."
        )
    else:
        st.caption(f"Head-count check: {heads} heads is the most consistent of those tried ({scores}).")


def model_card(model: models.ActiveModel) -> None:
    bundle = model.bundle
    st.subheader(f"Model card: {model.label}")
    facts = models.model_facts(bundle)
    for col, (name, value) in zip(st.columns(len(facts)), facts.items()):
        col.markdown(f"{name}  \n**{value}**")  # plain text: st.metric's large digits get cut off here
    st.caption(f"Source: {model.origin} · format: {bundle.kind} · {bundle.num_parameters:,} parameters")
    for note in bundle.notes:
        st.info(md_text(note))
    if bundle.kind == "tutorial":
        head_count_note(bundle, model.head_check)
    card = dict(bundle.metadata.get("model_card") or {})
    shown_above = {"parameters": bundle.num_parameters, "config": bundle.config.to_dict()}
    for name, value in card.items():
        if name == "alignment" and show_card_alignment(bundle):
            continue  # shown in words, not as a table
        if shown_above.get(name) != value:  # a card that agrees with the file is not repeated
            show_card_entry(str(name), value)
    rest = {k: v for k, v in bundle.metadata.items() if k != "model_card"}
    if rest:
        with st.expander("Other metadata"):
            st.json(rest, expanded=1)
    with st.expander("Configuration"):
        st.json(bundle.config.to_dict())


def page() -> None:
    st.title("Models")
    session = st.session_state
    files = models.find_checkpoints()
    options = [str(p) for p in files] + (["upload"] if session.get("upload") else [])
    names = {str(p): f"{p.name} (checkpoints folder)" for p in files}
    if session.get("upload"):  # a loaded upload stays listed after a page switch (an uploader forgets its file)
        names["upload"] = f"{session['upload']['name']} (uploaded, this session only)"
    if session.get(models.PRETRAINED):
        options.append(models.PRETRAINED)
        names[models.PRETRAINED] = f"{session[models.PRETRAINED]} (Hugging Face, this session only)"
    if options:
        current = session.get("model_choice") if session.get("model_choice") in options else options[0]
        st.radio(
            "Active model",
            options,
            index=options.index(current),
            format_func=names.get,
            key="model_radio",
            on_change=choose,
        )
    else:
        models.show_no_model_help()
    readme = models.checkpoint_dir() / "README.md"
    if readme.is_file():
        with st.expander("About the shipped checkpoints (checkpoints/README.md)"):
            st.markdown(readme.read_text(encoding="utf-8", errors="replace"))

    st.subheader("Upload a checkpoint")
    st.caption(
        f"Used by this browser session only; other users keep their model. Limit: {models.upload_limit_mb()} MB "
        "per file. Files are read as data only: a checkpoint that would run code is refused."
    )
    kind = st.radio("Kind", [NATIVE, TUTORIAL], horizontal=True, **state.bound("up_kind", NATIVE))
    if kind == TUTORIAL:
        a, b = st.columns([3, 1])
        a.file_uploader("Checkpoint (tmodel_XX.pt)", type=["pt", "pth"], key="up_ckpt")
        b.number_input(
            "Heads (not in the file)", min_value=1, max_value=64, help=HEADS_HELP, **state.bound("up_heads", 8)
        )
        b.caption("The file cannot tell the head count: enter the notebook's (tutorial: 8).")
        a, b = st.columns(2)
        a.file_uploader("Source tokenizer (tokenizer_en.json)", type=["json"], key="up_src")
        b.file_uploader("Target tokenizer (tokenizer_it.json)", type=["json"], key="up_tgt")
    else:
        st.file_uploader("Checkpoint (.pt)", type=["pt", "pth"], key="up_ckpt")
    st.button("Load uploaded model", key="up_go", type="primary", on_click=load_uploaded)
    pretrained_section()
    if error := session.pop("upload_error", None):
        st.error(error)
    if ok := session.pop("upload_ok", None):
        st.success(ok)

    model, _ = models.resolve_model()
    if model is not None:
        model_card(model)


state.route_through_app()
page()
