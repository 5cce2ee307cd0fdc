"""A browser session's view: the choices it keeps across pages (sentence, kind, layer, head...), the widgets bound to
them, and the page's link (its query string), read once when it changes and written once per run.

Everything here is per session (st.session_state); nothing per user is ever stored on a shared object.
"""

from __future__ import annotations

import runpy
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import streamlit as st

from core.attention import KIND

REPO = Path(__file__).resolve().parents[1]
PAGES = REPO / "pages"  # absolute: a page file may run alone before the router has (route_through_app)
FULL_RUN = "_full_run"  # (page url_path, count of full runs of this session); fragment reruns leave it as it is
_router = threading.local()  # .running: True while app.py's router runs a page in this thread (one script run)


def view_state() -> dict:
    """This session's choices (sentence, kind, layer, ...): a plain dict, which survives page switches,
    unlike a widget's own state, which Streamlit drops on a page that does not show the widget."""
    return st.session_state.setdefault("view", {})


def _store(name: str) -> None:
    view_state()[name] = st.session_state[name]


def bound(name: str, default) -> dict:
    """Widget kwargs binding widget key `name` to view_state()[name]: the widget starts from the stored value
    and every change is stored back.

    The stored value is written into the widget only when the widget needs it: it is new on this page (first
    run, another page drew it last, or the last run did not draw it), or the view changed under it (an
    example picked, a link opened). Writing it on every run would send it to the browser each time and put
    it over what the user is typing in the box while an earlier run finishes."""
    view = view_state()
    view.setdefault(name, default)
    page, count = run = st.session_state.get(FULL_RUN, ("", 0))
    drawn = st.session_state.setdefault("_bound_drawn", {})
    alive = drawn.get(name) in ((page, count), (page, count - 1))  # this run (a fragment's rerun) or the last
    if not alive or name not in st.session_state or st.session_state[name] != view[name]:
        st.session_state[name] = view[name]
    drawn[name] = run
    return {"key": name, "on_change": _store, "args": (name,)}


# ---------------------------------------------------------------- links


def text(value: str | None) -> str | None:
    """A text parameter as it is (an over-long one is kept, and refused with a message where it is used)."""
    return value or None


def kind(value: str | None) -> str | None:
    return value if value in KIND else None


def count(value: str | None) -> int | None:
    """A 1-based index (layer, head, step): checked against the model where it is used."""
    return int(value) if value and value.isdigit() and int(value) >= 1 else None


def flag(value: str | None) -> bool | None:
    return True if value == "1" else None


LINK_VIEW = {  # the parameters every page's link may hold -> (view key, parser)
    "sentence": ("sentence", text),
    "reference": ("reference", text),
    "kind": ("kind", kind),
    "layer": ("layer", count),
    "head": ("head", count),
}


def restore_view(page: str, fields: Mapping[str, tuple[str, Callable]] = LINK_VIEW) -> None:
    """Take the view from the page's link when the link differs from the last one this page read or wrote: a
    session's first visit, or a link from another page (Open in Compare, a Heads table row). fields maps a
    parameter to (view key, parser); a parser's None leaves the view as it was."""
    params = st.query_params.to_dict()
    seen = f"_link_{page}"
    if params == st.session_state.get(seen):
        return
    st.session_state[seen] = params
    view = view_state()
    for param, (name, parse) in fields.items():
        value = parse(params.get(param))
        if value is not None:
            view[name] = value


def set_link(page: str, params: dict) -> None:
    """Make the page's link (its query string) hold exactly params, written only when it differs: each write
    is a new entry in the browser's history (its Back button), so a page writes its link once per run."""
    wanted = {key: str(value) for key, value in params.items()}
    if st.query_params.to_dict() != wanted:
        st.query_params.from_dict(wanted)
    st.session_state[f"_link_{page}"] = wanted


# ---------------------------------------------------------------- the router


@contextmanager
def router_running(page: str) -> Iterator[None]:
    """Wrap app.py's st.navigation(...).run(): pages run inside it know they came through the router, and
    bound() knows which page this full run draws and how many full runs the session has had."""
    st.session_state[FULL_RUN] = (page, st.session_state.get(FULL_RUN, ("", 0))[1] + 1)
    _router.running = True
    try:
        yield
    finally:
        _router.running = False


def route_through_app() -> None:
    """Call first in every page file (docs/contributing.md, "Adding a page").

    With a pages/ folder beside app.py, Streamlit opens a fresh server's first session in its legacy pages/
    mode until some session calls st.navigation: a deep link such as /steps then runs pages/steps.py alone,
    without app.py (no sidebar, no wide layout, no shared model). Here the page notices it was not started by
    app.py's router and runs app.py as Streamlit runs it (as __main__), which renders the same URL through
    st.navigation (documented: once any session calls it, the pages/ folder is ignored for all sessions), then
    stops this run. Running the script, not importing it, keeps app.py the only module that imports the pages'
    shared pieces; on a Streamlit without the legacy mode the check simply never fires."""
    if getattr(_router, "running", False):
        return
    runpy.run_path(str(REPO / "app.py"), run_name="__main__")
    st.stop()
