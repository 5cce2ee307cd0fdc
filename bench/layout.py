"""Does every page fit real screens and sentences? Screenshots plus a check of element boxes.

    python bench/layout.py [--out /tmp/layout] [--port 8622] [--sizes 1024x768,1280x800,1920x1080]
                           [--words 5,20,60] [--kinds cross,decoder] [--checkpoint-dir DIR]

Runs `streamlit run app.py` headless (the shipped model unless --checkpoint-dir), opens every page but Heads
(Translate, Decoding step by step, Compare, Training timeline, Models) in Debian's chromium at each window
size, for sentences of each length (the Models page once per size), grows the window to the page's height,
saves a screenshot (OUT/<page>_<width>x<height>_<words>w[_<kind>].png; the Translate page once per attention
kind given) and asserts from the elements' bounding boxes that no chart overlaps another chart, a heading, a
caption, a table or a widget, none leaves the window horizontally, and no widget label is cut off
(bench/browser.py: layout_problems). Prints one line per case and exits 1 if any fails.
"""

from __future__ import annotations

import argparse
import sys
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from browser import chromium, full_height, layout_problems, open_page, settle, streamlit_server  # noqa: E402

WORDS = (
    "my sister and her old friend walked slowly along the quiet river on a cold morning and talked about the "
    "books they had read during the long summer holidays while the children played with a small brown dog near "
    "the water and their father cooked fish for everyone in the little house behind the green trees at the end "
    "of the road"
).split()


# Each page checked and its path ({query}: the sentence; {kind}: the Translate page's attention kind, shown with
# its all-layers grid open so that every chart is checked). Not the Heads page: it analyses for minutes first.
PAGES = {
    "translate": "/?{query}&kind={kind}&grid=1",
    "steps": "/steps?{query}",
    "compare": "/compare?{query}",
    "timeline": "/timeline?{query}",
    "models": "/models",
}


def sentence(words: int) -> str:
    return " ".join(WORDS[i % len(WORDS)] for i in range(words)) + "."


def page_url(base: str, page: str, words: int, kind: str) -> str:
    query = urllib.parse.urlencode({"sentence": sentence(words)})
    return base + PAGES[page].format(query=query, kind=kind)


def check(browser, base: str, page: str, size: tuple[int, int], words: int, kind: str, out: Path | None) -> list[str]:
    """The layout problems of one page at one window size and sentence length (and its screenshot in out)."""
    tab = open_page(browser, page_url(base, page, words, kind), *size)
    try:
        settle(tab)
        full_height(tab)  # every chart on screen at once: also checks the ones below the fold
        problems = layout_problems(tab)
        if tab.get_by_test_id("stException").count():
            problems.append("the page shows an exception")
        if out is not None:
            suffix = f"_{kind}" if page == "translate" else ""
            tab.screenshot(path=str(out / f"{page}_{size[0]}x{size[1]}_{words}w{suffix}.png"))
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
    parser.add_argument("--checkpoint-dir", type=Path, default=None)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    lengths = [int(w) for w in args.words.split(",")]
    failed = 0
    with streamlit_server(ROOT, args.port, args.checkpoint_dir, log=args.out / "streamlit.log") as url, chromium() as b:
        for page in PAGES:
            for size in sizes:
                for words in lengths if page != "models" else lengths[:1]:
                    for kind in args.kinds.split(",") if page == "translate" else ["-"]:
                        problems = check(b, url, page, size, words, kind, args.out)
                        failed += bool(problems)
                        label = (
                            f"{page:<9} {kind:<8} {size[0]}x{size[1]:<5} {words if page != 'models' else '-':>3} words"
                        )
                        print(f"{label}: {'ok' if not problems else 'FAIL: ' + '; '.join(problems)}", flush=True)
    print(f"{failed} failing case(s); screenshots in {args.out}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
