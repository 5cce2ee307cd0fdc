"""Streamlit entry point: `streamlit run app.py`. A thin router; the pages live in pages/."""

import streamlit as st
import torch

import ui

torch.set_num_threads(1)  # faster on a small CPU and immune to contention with the server's own threads


def main() -> None:
    st.set_page_config(page_title="Transformer attention", page_icon="🔤", layout="wide")
    model, error = ui.resolve_model()
    ui.sidebar(model, error)
    page = st.navigation(
        [
            st.Page(
                ui.PAGES / "translate.py", title="Translate & attention", icon=":material/translate:", default=True
            ),
            st.Page(ui.PAGES / "steps.py", title="Decoding step by step", icon=":material/steppers:", url_path="steps"),
            st.Page(
                ui.PAGES / "timeline.py", title="Training timeline", icon=":material/timeline:", url_path="timeline"
            ),
            st.Page(ui.PAGES / "compare.py", title="Compare", icon=":material/compare:", url_path="compare"),
            st.Page(ui.PAGES / "heads.py", title="Heads", icon=":material/grid_view:", url_path="heads"),
            st.Page(ui.PAGES / "models.py", title="Models", icon=":material/model_training:", url_path="models"),
        ]
    )
    with ui.router_running(page.url_path):
        page.run()


if __name__ == "__main__":  # Streamlit runs the entry point as __main__; ui.route_through_app imports it
    main()
