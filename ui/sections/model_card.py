"""A model's card on the Models page: its sizes, notes, the head count of a tutorial file and what the checkpoint
records (data, metrics, examples, command...), each entry drawn by its shape."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from ui import models
from ui.sections.alignment import show_card_alignment
from ui.sections.upload import HEADS_HELP
from ui.text import md_text


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
    scores = ", ".join(f"{h} heads: {p:.2f}" for h, p in sorted(check.fit.items()))
    if check.doubtful:
        st.warning(
            f"**{heads} heads looks wrong.** Read with {check.best} heads the model finds good translations of "
            f"everyday sentences clearly more likely (mean log-probability per token; {scores}). With a wrong "
            f"count the maps are not the model's real heads: upload again with {check.best} heads."
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
