"""Models: pick a checkpoint from checkpoints/, upload one or open a Hugging Face model for this session, read its
model card."""

import streamlit as st

from ui import models, state
from ui.sections.model_card import model_card
from ui.sections.upload import HEADS_HELP, NATIVE, TUTORIAL, choose, load_uploaded, pretrained_section


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
