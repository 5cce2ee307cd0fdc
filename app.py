"""Streamlit entry point: `streamlit run app.py`. A thin router; the pages live in pages/."""

import streamlit as st
import torch

import ui

torch.set_num_threads(1)  # faster on a small CPU and immune to contention with the server's own threads


def main() -> None:
    st.set_page_config(page_title="Transformer attention", page_icon="🔤", layout="wide")
    model, error = ui.resolve_model()
    ui.sidebar(model, error)
    st.navigation(
        [
            st.Page("pages/translate.py", title="Translate & attention", icon=":material/translate:", default=True),
            st.Page("pages/steps.py", title="Decoding step by step", icon=":material/steppers:", url_path="steps"),
            st.Page("pages/timeline.py", title="Training timeline", icon=":material/timeline:", url_path="timeline"),
            st.Page("pages/compare.py", title="Compare", icon=":material/compare:", url_path="compare"),
            st.Page("pages/heads.py", title="Heads", icon=":material/grid_view:", url_path="heads"),
            st.Page("pages/models.py", title="Models", icon=":material/model_training:", url_path="models"),
        ]
    ).run()


main()
