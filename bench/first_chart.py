"""The first five minutes: seconds from opening each page on a fresh server to its first chart, before and after.

    python bench/first_chart.py [--baseline-rev dadf544] [--pages translate,steps,heads,compare,timeline,models]
                                [--width 1280 --height 800] [--timeout 300]

For each page and each tree (the baseline commit, exported with `git archive`, and this working tree), a fresh
`streamlit run app.py` with no settings (the tree's own checkpoints folder: what a new user gets after the
README's first command) is started; once it answers its health check, Debian's chromium opens the page at
1280x800 and the clock runs from the navigation to the first chart drawn (a Vega-Lite chart's svg or canvas in
the main area; on the Models page, which draws no chart, its model card's first heading). A page that shows no
chart within --timeout seconds, or only a message (the baseline's Timeline with no training run), is reported
as such. The server's start-up (Python, Streamlit) is not counted; importing torch and loading the model in the
first run are, as a user waits for them. Each page gets its own fresh server, so each pays the first run's
cost. Prints one line per page and tree, and ends with `speedup: <ratio>x`: the geometric mean, over the pages
that draw a chart in both trees, of baseline seconds over ours.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from browser import chromium, export_rev, free_port, new_page, streamlit_server  # noqa: E402

BASELINE_REV = "dadf544"  # the commit this round started from
PATHS = {
    "translate": "/",
    "steps": "/steps",
    "heads": "/heads",
    "compare": "/compare",
    "timeline": "/timeline",
    "models": "/models",
}
CHART = '[data-testid="stMain"] [data-testid="stVegaLiteChart"] :is(svg.marks, canvas)'
CARD = '[data-testid="stMain"] [data-testid="stHeading"] h2, [data-testid="stMain"] [data-testid="stHeading"] h3'
MESSAGE = '[data-testid="stMain"] [data-testid="stAlert"]'


def first_chart(browser, url: str, page_name: str, timeout: float, size: tuple[int, int]) -> tuple[float, str]:
    """(seconds from navigation to the first chart, what was seen: 'chart', 'message: ...', 'timeout')."""
    page = new_page(browser, {"width": size[0], "height": size[1]})
    target = CARD if page_name == "models" else CHART
    start = time.perf_counter()
    page.goto(url + PATHS[page_name])
    deadline = start + timeout
    try:
        while time.perf_counter() < deadline:
            if page.locator(target).count():
                return time.perf_counter() - start, "chart"
            idle = page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').count()
            if idle and page.locator(MESSAGE).count() and time.perf_counter() - start > 5:
                text = page.locator(MESSAGE).first.inner_text()[:60].replace("\n", " ")
                if page.locator(target).count() == 0:
                    return time.perf_counter() - start, f"message: {text}"
            page.wait_for_timeout(50)
        return timeout, "timeout"
    finally:
        page.context.close()


def measure(tree: Path, pages: list[str], args, browser) -> dict[str, tuple[float, str]]:
    found = {}
    for name in pages:
        port = free_port(range(8640, 8700))
        with streamlit_server(tree, port, checkpoint_dir=None) as url:
            found[name] = first_chart(browser, url, name, args.timeout, (args.width, args.height))
        seconds, seen = found[name]
        print(f"{tree.name:>10} {name:<10} {seconds:7.2f} s  {seen}", flush=True)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline-rev", default=BASELINE_REV)
    parser.add_argument("--pages", default=",".join(PATHS))
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=800)
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()
    pages = [p for p in args.pages.split(",") if p]
    with tempfile.TemporaryDirectory() as tmp, chromium() as browser:
        baseline = export_rev(args.baseline_rev, Path(tmp) / "baseline")
        before = measure(baseline, pages, args, browser)
        after = measure(ROOT, pages, args, browser)
    print(f"\n{'page':<10} {'before (s)':>12} {'after (s)':>12}")
    ratios = []
    for name in pages:
        (b, seen_b), (a, seen_a) = before[name], after[name]
        print(
            f"{name:<10} {b:>10.2f}{'' if seen_b == 'chart' else '*':1} {a:>10.2f}{'' if seen_a == 'chart' else '*':1}"
        )
        if seen_b == seen_a == "chart":
            ratios.append(b / a)
    print("* no chart: a message, or nothing before the timeout (see the lines above)")
    print(f"slowest page after: {max(after.values())[0]:.2f} s (target: every page under 3 s)")
    print(f"speedup: {math.exp(sum(map(math.log, ratios)) / len(ratios)):.2f}x" if ratios else "speedup: n/a")


if __name__ == "__main__":
    main()
