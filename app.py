"""Streamlit entry point: `streamlit run app.py`. A thin router: every page is registered here; their shared
pieces are in ui/ (docs/contributing.md says how to add a page)."""

import streamlit as st
import torch

from ui.models import resolve_model, sidebar
from ui.state import PAGES, router_running

torch.set_num_threads(1)  # faster on a small CPU and immune to contention with the server's own threads

# CSS transitions take no time; their delays stay. While a run is slower than 0.5 s, Streamlit fades every
# element it has not redrawn yet over 1 s, and a browser without GPU compositing (a VM, an old laptop, a class's
# browsers on the server's machine) repaints them all at each frame of that fade: they dim after 0.5 s at once.
# 0 s, not the 0.01 ms some reduced-motion rules use: those short transitions cost as much again (bench/fade.py).
NO_FADE_CSS = "<style>*, *::before, *::after { transition-duration: 0s !important; }</style>"


def main() -> None:
    st.set_page_config(page_title="Transformer attention", page_icon="🔤", layout="wide")
    st.html(NO_FADE_CSS)  # only a style: Streamlit puts it in the event container, where it takes no space
    model, error = resolve_model()
    sidebar(model, error)
    page = st.navigation(
        [
            st.Page(PAGES / "translate.py", title="Translate & attention", icon=":material/translate:", default=True),
            st.Page(PAGES / "steps.py", title="Decoding step by step", icon=":material/steppers:", url_path="steps"),
            st.Page(PAGES / "timeline.py", title="Training timeline", icon=":material/timeline:", url_path="timeline"),
            st.Page(PAGES / "compare.py", title="Compare", icon=":material/compare:", url_path="compare"),
            st.Page(PAGES / "heads.py", title="Heads", icon=":material/grid_view:", url_path="heads"),
            st.Page(PAGES / "models.py", title="Models", icon=":material/model_training:", url_path="models"),
        ]
    )
    with router_running(page.url_path):
        page.run()


if __name__ == "__main__":  # Streamlit runs the entry point as __main__; so does ui.state.route_through_app
    main()
