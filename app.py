"""Streamlit entry point: `streamlit run app.py`. A thin router; the pages live in pages/."""

import streamlit as st
import torch

import ui

torch.set_num_threads(1)  # faster on a small CPU and immune to contention with the server's own threads

# CSS transitions take no time; their delays stay. While a run is slower than 0.5 s, Streamlit fades every
# element it has not redrawn yet over 1 s, and a browser without GPU compositing (a VM, an old laptop, a class's
# browsers on the server's machine) repaints them all at each frame of that fade. Now they dim after 0.5 s at
# once: bench/fade.py measures the browser's CPU per slow run. 0 s, not the 0.01 ms some reduced-motion rules
# use to keep transitionend events: those short transitions cost as much again (bench/fade.py), and what
# Streamlit waits on (react-aria) waits only for transitions that started.
NO_FADE_CSS = "<style>*, *::before, *::after { transition-duration: 0s !important; }</style>"


def main() -> None:
    st.set_page_config(page_title="Transformer attention", page_icon="🔤", layout="wide")
    st.html(NO_FADE_CSS)  # only a style: Streamlit puts it in the event container, where it takes no space
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
