"""User text shown safely and briefly: Markdown escaping, code spans, long lists cut, over-long input refused."""

from __future__ import annotations

import re

import streamlit as st

SENTENCE_CHARS = 2000  # the sentence and reference boxes: longer text is refused with a message, never cut
LIST_SHOWN = 20  # items of a long caption list shown before "... and N more"

_MARKDOWN_SPECIALS = re.compile(r"([\\`*_\[\]<>#|~$:])")  # inline Markdown, HTML, LaTeX ($), directives (:)
_LIST_START = re.compile(r"^(\s*)([-+=]|\d+(?=[.)]))", re.MULTILINE)  # a list item or a heading underline


def md_text(text: object) -> str:
    """User (or file) text for st.markdown/caption/warning and widget labels: every Markdown, HTML, LaTeX ($) and
    directive (:) sign backslash-escaped, so it shows as typed; newlines kept as line breaks."""
    escaped = _MARKDOWN_SPECIALS.sub(r"\\\1", str(text))
    escaped = _LIST_START.sub(lambda m: m[1] + (m[2] + "\\" if m[2][0].isdigit() else "\\" + m[2]), escaped)
    return escaped.replace("\n", "  \n")


def md_code(text: object) -> str:
    """Text as an inline code span, whatever backticks it holds (a fence longer than any run inside)."""
    text = str(text).replace("\n", " ")
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def cut_list(items: list[str], shown: int = LIST_SHOWN, sep: str = ", ") -> str:
    """items joined by sep, the first `shown` of them and then how many more there are."""
    rest = len(items) - shown
    return sep.join(items[:shown]) + (f"{sep}… and {rest} more" if rest > 0 else "")


def too_long(text: str, what: str) -> bool:
    """True (after saying so) when text is over the box limit: a message instead of a silent cut."""
    if len(text) <= SENTENCE_CHARS:
        return False
    st.warning(
        f"The {what} is {len(text):,} characters long; the box takes at most {SENTENCE_CHARS:,}. "
        "Nothing was translated: shorten it (the model reads one sentence at a time)."
    )
    return True
