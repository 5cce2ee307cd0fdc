"""The README's tour: one screenshot per page of the app as a new user first sees it, made again by one command.

    python bench/screenshots.py [--out docs/images] [--width 1280 --height 800] [--max-height 1400]

Starts `streamlit run app.py` headless with no settings (the shipped checkpoints folder), opens each page in
Debian's chromium at 1280x800 with the sentence the README talks about, waits until the page is idle and its
charts have stopped changing, grows the window to the page's height (at most --max-height px) and saves
OUT/<page>.png. The Heads page is shot once its grid is drawn (from the shipped results file when the shipped
model is active). Fails (exit 1) when a page shows an exception or breaks the layout (bench/browser.py:
layout_problems), so a broken page never reaches the README.
"""

from __future__ import annotations

import argparse
import sys
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from browser import chromium, free_port, layout_problems, open_page, settle, streamlit_server  # noqa: E402

SENTENCE = "The cat is sleeping on the chair."
PAGES = {  # page -> path and query: what each screenshot shows
    "translate": "/?" + urllib.parse.urlencode({"sentence": SENTENCE}),
    "steps": "/steps?" + urllib.parse.urlencode({"sentence": SENTENCE, "step": 3}),
    "timeline": "/timeline?" + urllib.parse.urlencode({"sentence": SENTENCE}),
    "compare": "/compare?" + urllib.parse.urlencode({"sentence": SENTENCE}),
    "heads": "/heads",
    "models": "/models",
}


def shoot(browser, url: str, name: str, out: Path, size: tuple[int, int], max_height: int) -> list[str]:
    """Save one page's screenshot; return what is wrong with it (empty: nothing)."""
    page = open_page(browser, url + PAGES[name], *size)
    try:
        settle(page, 800)
        height = page.evaluate("() => document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
        page.set_viewport_size({"width": size[0], "height": max(size[1], min(int(height) + 40, max_height))})
        settle(page, 800)
        problems = layout_problems(page)
        if page.get_by_test_id("stException").count():
            problems.append("an exception is shown")
        page.screenshot(path=str(out / f"{name}.png"))
        return problems
    finally:
        page.context.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "images"))
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=800)
    parser.add_argument("--max-height", type=int, default=1400)
    parser.add_argument("--pages", default=",".join(PAGES))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    failed = False
    with streamlit_server(ROOT, free_port(range(8700, 8760)), checkpoint_dir=None) as url, chromium() as browser:
        for name in args.pages.split(","):
            problems = shoot(browser, url, name, out, (args.width, args.height), args.max_height)
            print(f"{name:<10} {out / (name + '.png')}  " + ("ok" if not problems else "; ".join(problems)))
            failed |= bool(problems)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
