"""Does every page fit real screens and sentences? Screenshots plus a check of element boxes.

    python bench/layout.py [--out /tmp/layout] [--port 8622] [--sizes 1024x768,1280x800,1920x1080]
                           [--words 5,20,60] [--kinds cross,decoder] [--pages translate,...] [--checkpoint-dir DIR]

Runs `streamlit run app.py` headless (the shipped model unless --checkpoint-dir), opens every page (Translate,
Decoding step by step, Compare, Training timeline, Heads, Models) in Debian's chromium at each window size, for
sentences of each length (the Heads and Models pages, which take no sentence, once per size), grows the window to the page's height,
saves a screenshot (OUT/<page>_<width>x<height>[_<words>w][_<kind>].png; the Translate page once per attention
kind given) and asserts from the elements' bounding boxes that no chart overlaps another chart, a heading, a
caption, a table or a widget, none leaves the window horizontally, and no widget label is cut off
(bench/browser.py: layout_problems). Prints one line per case and exits 1 if any fails.
"""

from __future__ import annotations

import argparse
import re
import sys
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WAIT_MS = 300_000  # integrated gradients over a 60-word sentence, on a loaded CPU
sys.path.insert(0, str(ROOT / "bench"))

from browser import (  # noqa: E402
    act,
    chromium,
    full_height,
    layout_problems,
    open_page,
    settle,
    streamlit_server,
    wait_idle,
)

WORDS = (
    "my sister and her old friend walked slowly along the quiet river on a cold morning and talked about the "
    "books they had read during the long summer holidays while the children played with a small brown dog near "
    "the water and their father cooked fish for everyone in the little house behind the green trees at the end "
    "of the road"
).split()
WORDS_IT = (  # a reference for the views that take one (not a translation of WORDS: only its length matters)
    "mia sorella e la sua vecchia amica camminavano piano lungo il fiume tranquillo in una mattina fredda e "
    "parlavano dei libri che avevano letto durante le lunghe vacanze estive mentre i bambini giocavano con un "
    "piccolo cane marrone vicino all'acqua e il loro padre cucinava il pesce per tutti nella casetta dietro gli "
    "alberi verdi in fondo alla strada"
).split()


def click(tab, locator, shows: str) -> None:
    """Click something that reruns the page, and wait until the text `shows` is on it (a run that computes for
    long, under a spinner, sends nothing for a while: waiting for a quiet server alone may stop too early)."""
    from playwright.sync_api import expect

    act(tab, locator.click)
    expect(tab.get_by_text(shows).first).to_be_visible(timeout=WAIT_MS)
    wait_idle(tab)
    settle(tab)


def open_everything(tab) -> None:
    """The Translate page's views that start closed, all open: word alignment, and where each word came from."""
    click(tab, tab.get_by_text("Word alignment: links read from the cross-attention"), "Model links")
    tab.get_by_text("Where did each word come from?").click()  # an expander opens in the browser, no rerun
    click(tab, tab.get_by_text("Show where each output word came from"), "Rows: the output token each decoder")


def beam_search(tab) -> None:
    click(tab, tab.get_by_text("Beam search", exact=True), "Beam search tree")


def force_and_ask_why_not(tab) -> None:
    """Force the second candidate at the step the link opens on, then ask why not the first enabled one there."""
    click(tab, tab.get_by_role("button", name=re.compile(r"^2\. ")), "Model's own vs. forced")
    click(tab, tab.get_by_role("button", name="why not?").and_(tab.locator(":enabled")).first, "log p(")


# Each page checked: its path ({query}: the sentence; {kind}: the Translate page's attention kind, shown with
# its all-layers grid open so that every chart is checked; {reference}: an Italian reference as long) and what
# is done on it before the check. Heads opens at once on the shipped model (its report ships as
# checkpoints/heads_report.json); on another --checkpoint-dir it analyses for minutes first.
PAGES = {
    "translate": ("/?{query}&kind={kind}&grid=1", None),
    # every expander and toggle open, two heads switched off (their expander opens with them)
    "translate-open": ("/?{query}&grid=1&off=c3.1,e1.2", open_everything),
    "translate-reference": ("/?{query}&{reference}", open_everything),
    "steps": ("/steps?{query}", None),
    "steps-beam": ("/steps?{query}", beam_search),
    "steps-forced": ("/steps?{query}&step=3", force_and_ask_why_not),
    "compare": ("/compare?{query}", None),
    "timeline": ("/timeline?{query}", None),
    "heads": ("/heads", None),
    "models": ("/models", None),
}
NO_SENTENCE = ("heads", "models")  # pages that show no sentence: one case per size


def sentence(words: int, vocabulary: list[str] = WORDS) -> str:
    return " ".join(vocabulary[i % len(vocabulary)] for i in range(words)) + "."


def page_url(base: str, page: str, words: int, kind: str) -> str:
    query = urllib.parse.urlencode({"sentence": sentence(words)})
    reference = urllib.parse.urlencode({"reference": sentence(words, WORDS_IT)})
    return base + PAGES[page][0].format(query=query, kind=kind, reference=reference)


def check(browser, base: str, page: str, size: tuple[int, int], words: int, kind: str, out: Path | None) -> list[str]:
    """The layout problems of one page at one window size and sentence length (and its screenshot in out)."""
    tab = open_page(browser, page_url(base, page, words, kind), *size)
    try:
        settle(tab)
        if PAGES[page][1] is not None:
            PAGES[page][1](tab)
        full_height(tab)  # every chart on screen at once: also checks the ones below the fold
        problems = layout_problems(tab)
        if tab.get_by_test_id("stException").count():
            problems.append("the page shows an exception")
        if out is not None:
            suffix = ("" if page in NO_SENTENCE else f"_{words}w") + (f"_{kind}" if page == "translate" else "")
            tab.screenshot(path=str(out / f"{page}_{size[0]}x{size[1]}{suffix}.png"))
        return problems
    finally:
        tab.context.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/layout"))
    parser.add_argument("--port", type=int, default=8622)
    parser.add_argument("--sizes", default="1024x768,1280x800,1920x1080")
    parser.add_argument("--words", default="5,20,60")
    parser.add_argument("--kinds", default="cross,decoder", help="attention kinds shown on the Translate page")
    parser.add_argument("--pages", default=",".join(PAGES), help="which pages, comma-separated")
    parser.add_argument("--checkpoint-dir", type=Path, default=None)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    lengths = [int(w) for w in args.words.split(",")]
    failed = 0
    with streamlit_server(ROOT, args.port, args.checkpoint_dir, log=args.out / "streamlit.log") as url, chromium() as b:
        for page in args.pages.split(","):
            for size in sizes:
                for words in lengths if page not in NO_SENTENCE else lengths[:1]:
                    for kind in args.kinds.split(",") if page == "translate" else ["-"]:
                        problems = check(b, url, page, size, words, kind, args.out)
                        failed += bool(problems)
                        label = f"{page:<19} {kind:<8} {size[0]}x{size[1]:<5} {words if page not in NO_SENTENCE else '-':>3} words"
                        print(f"{label}: {'ok' if not problems else 'FAIL: ' + '; '.join(problems)}", flush=True)
    print(f"{failed} failing case(s); screenshots in {args.out}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
