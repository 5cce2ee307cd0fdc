"""Switch heads off (Translate page): which heads, kept in the link (`off=e1.3,c2.5`), and the translation and
the head on view with them off beside the original."""

from __future__ import annotations

import streamlit as st

from core import Translation, translate
from core.attention import KINDS
from core.heads_off import HeadsOff, label
from ui.results import row_cap
from ui.state import bound, view_state
from ui.widgets import HeadRef, draw, head_heatmap


def all_head_labels(n_layers: int, n_heads: int) -> list[str]:
    return [
        label(kind, layer, head) for kind in KINDS for layer in range(1, n_layers + 1) for head in range(1, n_heads + 1)
    ]


def describe(head_label: str) -> str:
    """'c2.5' -> 'cross L2 H5'."""
    (kind, layer, head), *_ = HeadsOff.from_param(head_label).heads
    return f"{kind} L{layer} H{head}"


def restore_heads_off(n_layers: int, n_heads: int) -> None:
    """On a session's first visit, take the switched-off heads from the link's `off` parameter."""
    if st.session_state.get("_heads_off_restored"):
        return
    st.session_state["_heads_off_restored"] = True
    try:
        off = HeadsOff.from_param(str(st.query_params.get("off", ""))[:2000])
        off.check(n_layers, n_heads)
    except ValueError:
        return  # a broken link shows every head, as if it had no `off`
    view_state()["heads_off"] = [label(*h) for h in off.sorted()]


def switched_off(n_layers: int, n_heads: int) -> str:
    """The switched-off heads as the link's `off` value ("" for none), from the session's view; heads this
    model does not have (another model's choice) are dropped from the view."""
    state, labels = view_state(), all_head_labels(n_layers, n_heads)
    state["heads_off"] = [h for h in state.get("heads_off", []) if h in labels]
    return HeadsOff.from_param(",".join(state["heads_off"])).to_param()


@st.cache_data(max_entries=64, show_spinner=False)
def cached_masked(model_key: str, _bundle, sentence: str, reference: str | None, off_param: str) -> Translation:
    """translate() with heads off, at most as many rows as the page's own translation (row_cap)."""
    cap = None if reference else row_cap(_bundle, sentence)
    return translate(_bundle, sentence, max_len=cap, reference=reference, head_mask=HeadsOff.from_param(off_param))


def heads_off_section(model, result: Translation, context: tuple[str, str], ref: HeadRef, off_param: str) -> None:
    """The expander: pick heads to silence (bound to the view and so to the link) and see what changes.
    context is (sentence, reference)."""
    cfg = model.bundle.config
    chosen = view_state()["heads_off"]  # what the box below shows: its changes are stored before the run
    with st.expander("Switch heads off" + (f" ({len(chosen)} off)" if chosen else ""), expanded=bool(chosen)):
        st.multiselect(
            "Heads to switch off (e = encoder self, d = decoder self, c = cross; layer.head)",
            all_head_labels(cfg.n_layers, cfg.n_heads),
            format_func=describe,
            **bound("heads_off", []),
        )
        if not off_param:
            st.caption(
                "Pick heads to silence: their output is zeroed before the output projection (Michel et al. 2019)."
            )
            return
        sentence, reference = context
        masked = cached_masked(model.key, model.bundle, sentence, reference or None, off_param)
        show_comparison(result, masked, HeadsOff.from_param(off_param), ref)


def show_comparison(original: Translation, masked: Translation, off: HeadsOff, ref: HeadRef) -> None:
    if masked.translation == original.translation:
        st.caption("Same text; the probabilities and maps still change.")
    # side by side where both fit at their own width, else one under the other (two columns squeezed the maps)
    sides = st.container(horizontal=True, gap="medium")
    headings = ("**All heads on**", f"**{len(off)} head{'s' * (len(off) != 1)} off**")
    for result, name, heading in ((original, "original", headings[0]), (masked, "masked", headings[1])):
        with sides, st.container(width="content"):
            st.markdown(heading)
            st.text(result.translation)
            draw(head_heatmap(result.attention, ref, plot_width=260)[1], key=f"off_{name}")
