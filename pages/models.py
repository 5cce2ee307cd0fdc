"""Models: pick a checkpoint from checkpoints/, upload one for this session, read its model card."""

import streamlit as st

import ui
import ui_alignment
from core import CheckpointError

NATIVE, TUTORIAL = "This project's checkpoint (one file)", "Tutorial tmodel_XX.pt + two tokenizer files"


def choose() -> None:
    st.session_state["model_choice"] = st.session_state["model_radio"]


def load_uploaded() -> None:
    """Validate and load the uploaded files; on any problem show it and keep the previous model."""
    state, limit = st.session_state, ui.upload_limit_mb()
    ckpt = state.get("up_ckpt")
    tutorial = state.get("up_kind") == TUTORIAL
    files = [("checkpoint", ckpt)] + (
        [("source tokenizer", state.get("up_src")), ("target tokenizer", state.get("up_tgt"))] if tutorial else []
    )
    if ckpt is None:
        state["upload_error"] = "Choose a checkpoint file first."
        return
    for what, f in files:
        if f is not None and f.size > limit * 1024 * 1024:
            state["upload_error"] = (
                f"The {what} `{f.name}` is {f.size / 2**20:,.1f} MB, over the upload limit of "
                f"{limit} MB (server.maxUploadSize in .streamlit/config.toml). Training checkpoints "
                "carry optimizer state: `python -m core export --checkpoint FILE --out "
                "small.pt` keeps only the weights, in 16 bits."
            )
            return
    data = ckpt.getvalue()
    src = state["up_src"].getvalue() if tutorial and state.get("up_src") else None
    tgt = state["up_tgt"].getvalue() if tutorial and state.get("up_tgt") else None
    heads = int(state.get("up_heads", 8)) if tutorial else None
    key = ui.upload_key(data, src, tgt, heads)
    try:
        ui.load_upload(key, data, src, tgt, heads)
    except CheckpointError as exc:
        state["upload_error"] = f"`{ckpt.name}` was not loaded: {exc}. The previous model stays active."
        return
    state["upload"] = {"key": key, "name": ckpt.name}  # the model itself is in ui's process-wide store
    state["model_choice"] = "upload"
    state["upload_error"] = None
    state["upload_ok"] = f"Loaded `{ckpt.name}`: it is now the active model for this browser session only."


def show_card_entry(name: str, value) -> None:
    """Render one model-card entry by its shape: text, a command, a table of scalars or rows, else JSON."""
    st.markdown(f"**{name.replace('_', ' ').capitalize()}**")
    scalar = (str, int, float, bool, type(None))
    if isinstance(value, str) and "command" in name:
        st.code(value, language="bash")
    elif isinstance(value, int) and not isinstance(value, bool):
        st.markdown(f"{value:,}")
    elif isinstance(value, scalar):
        st.markdown(str(value))
    elif isinstance(value, dict) and all(isinstance(v, scalar) for v in value.values()):
        st.dataframe([{"name": k, "value": str(v)} for k, v in value.items()], hide_index=True)
    elif (
        isinstance(value, dict)
        and value
        and all(isinstance(v, dict) and all(isinstance(x, scalar) for x in v.values()) for v in value.values())
    ):
        st.dataframe([{"": k, **v} for k, v in value.items()], hide_index=True)  # e.g. metrics per test set
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        st.dataframe(value, hide_index=True)
    else:
        st.json(value, expanded=2)


def model_card(model: ui.ActiveModel) -> None:
    bundle = model.bundle
    st.subheader(f"Model card: {model.label}")
    facts = ui.model_facts(bundle)
    for col, (name, value) in zip(st.columns(len(facts)), facts.items()):
        col.markdown(f"{name}  \n**{value}**")  # plain text: st.metric's large digits get cut off here
    st.caption(f"Source: {model.origin} · format: {bundle.kind} · {bundle.num_parameters:,} parameters")
    for note in bundle.notes:
        st.info(note)
    card = dict(bundle.metadata.get("model_card") or {})
    shown_above = {"parameters": bundle.num_parameters, "config": bundle.config.to_dict()}
    for name, value in card.items():
        if name == "alignment" and ui_alignment.show_card_alignment(bundle):
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
    state = st.session_state
    files = ui.find_checkpoints()
    options = [str(p) for p in files] + (["upload"] if state.get("upload") else [])
    names = {str(p): f"{p.name} (checkpoints folder)" for p in files}
    if state.get("upload"):
        names["upload"] = f"{state['upload']['name']} (uploaded, this session only)"
    if options:
        current = state.get("model_choice") if state.get("model_choice") in options else options[0]
        st.radio(
            "Active model",
            options,
            index=options.index(current),
            format_func=names.get,
            key="model_radio",
            on_change=choose,
        )
    else:
        ui.show_no_model_help()
    readme = ui.checkpoint_dir() / "README.md"
    if readme.is_file():
        with st.expander("About the shipped checkpoints (checkpoints/README.md)"):
            st.markdown(readme.read_text(encoding="utf-8", errors="replace"))

    st.subheader("Upload a checkpoint")
    st.caption(
        f"Used by this browser session only; other users keep their model. Limit: {ui.upload_limit_mb()} MB "
        "per file. Files are read as data only: a checkpoint that would run code is refused."
    )
    kind = st.radio("Kind", [NATIVE, TUTORIAL], key="up_kind", horizontal=True)
    st.file_uploader("Checkpoint (.pt)", type=["pt", "pth"], key="up_ckpt")
    if kind == TUTORIAL:
        a, b, c = st.columns([2, 2, 1])
        a.file_uploader("Source tokenizer (tokenizer_en.json)", type=["json"], key="up_src")
        b.file_uploader("Target tokenizer (tokenizer_it.json)", type=["json"], key="up_tgt")
        c.number_input(
            "Heads",
            min_value=1,
            max_value=64,
            value=8,
            key="up_heads",
            help="Tutorial checkpoints do not record the head count (the tutorial uses 8).",
        )
    st.button("Load uploaded model", key="up_go", type="primary", on_click=load_uploaded)
    if error := state.pop("upload_error", None):
        st.error(error)
    if ok := state.pop("upload_ok", None):
        st.success(ok)

    model, _ = ui.resolve_model()
    if model is not None:
        model_card(model)


ui.route_through_app()
page()
