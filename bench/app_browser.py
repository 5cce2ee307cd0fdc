"""What a user waits for in the browser: Translate click to focused heatmap drawn, and a slider change.

    python bench/app_browser.py [--repeats 5] [--baseline-rev c9d4e62] [--width 1280 --height 800]

Two headless Streamlit servers run the shipped model (checkpoints/default.pt): this working tree, and the
baseline commit (exported with `git archive` to a temporary folder). Debian's chromium (Playwright) opens
both; each repeat types a new sentence (so no cached translation) into both, in turn, so both see the same
moments of a noisy machine. A MutationObserver in the page stamps the last change inside the focused chart
(the first chart on the page: its own elements, or the chart put in; not an ancestor's attribute such as the
app's running flag, which until Dec 2026 this script counted, so that "focused heatmap drawn" read "script
finished") and the last change anywhere; the figure is that stamp minus the click, once the page has been
quiet for 0.6 s. Medians of the repeats; the last line is the geometric mean of the three
speedups (10 words, 60 words, slider).
"""

from __future__ import annotations

import argparse
import math
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from browser import act, chromium, open_page, streamlit_server  # noqa: E402

PORTS = (8620, 8621, 8622)
# The least a page could do: the same cached translation and the same focused heatmap (core.charts through
# ui.show_chart), under a sentence box, a Translate button and a Head slider, nothing else. Its figures are
# what Streamlit, Vega and the model cost on this machine; the page's own extra is the difference.
FLOOR_APP = """
import sys
sys.path.insert(0, {root!r})
import streamlit as st
import ui
from core import charts

model = ui.require_model()
sentence = st.text_input("Sentence (English)", "I love you.")
st.button("Translate", type="primary")
result = ui.cached_translate(model.key, model.bundle, sentence, None)
head = st.slider("Head", 1, model.bundle.config.n_heads, 1)
att = result.attention
queries, keys = att.queries("cross"), att.keys("cross")
frame = charts.attention_frame(charts.head_matrix(att, "cross", 1, head), queries, keys)
ui.show_chart(charts.heatmap(frame, queries, keys, f"Cross-attention · layer 1 · head {{head}}"), key="focus")
"""
BASELINE_REV = "c9d4e62"  # the commit issue 10 started from
WORDS = (
    "the old man saw a small dog near the river and the young woman gave him some bread while her brother "
    "was reading a book about the sea in the quiet house of their mother who lived in a big city far from "
    "the mountains where we went every summer with our friends to walk in the green woods and drink cold "
    "water from the lake under the blue sky of the early morning before the train left the station"
).split()

START_JS = """() => {
  const t = {click: performance.now(), focus: 0, any: 0};
  window.__timing = t;
  const first = () => document.querySelector('[data-testid="stVegaLiteChart"]');
  if (window.__timingObs) window.__timingObs.disconnect();
  window.__timingObs = new MutationObserver((records) => {
    const now = performance.now();
    t.any = now;
    const chart = first();
    // The chart's own subtree changed, or the chart element was put in: not an ancestor's attribute (the
    // app's script-state flag on stApp, a sibling added to the same block), which the chart does not show.
    if (chart && records.some((r) => chart.contains(r.target) || [...r.addedNodes].some((n) => n.contains(chart)))) {
      t.focus = now;
    }
  });
  window.__timingObs.observe(document.body, {subtree: true, childList: true, attributes: true, characterData: true});
}"""
QUIET_JS = """() => new Promise((done) => {
  const tick = () => performance.now() - window.__timing.any > 600 ? done() : setTimeout(tick, 50);
  tick();
})"""


def sentence(words: int, repeat: int, which: int) -> str:
    """A new sentence per repeat and server (never a cached translation), words long."""
    start = (repeat * 7 + which * 3) % len(WORDS)
    return " ".join(WORDS[(start + i) % len(WORDS)] for i in range(words)) + "."


def measured(page, action) -> tuple[float, float]:
    """(ms to the last change of the focused chart, ms to the last change anywhere) after action()."""
    page.evaluate(START_JS)
    act(page, action)
    page.evaluate(QUIET_JS)
    t = page.evaluate("() => window.__timing")
    return t["focus"] - t["click"], t["any"] - t["click"]


def translate_click(page, text: str) -> tuple[float, float]:
    page.get_by_role("textbox", name="Sentence (English)").fill(text)  # typed, not yet sent: the click sends it
    return measured(page, lambda: page.get_by_role("button", name="Translate", exact=True).click())


def slider_change(page) -> tuple[float, float]:
    head = page.get_by_role("group", name="Head", exact=True).get_by_role("slider")
    head.focus()
    key = "ArrowLeft" if head.get_attribute("aria-valuetext") == head.get_attribute("aria-valuemax") else "ArrowRight"
    return measured(page, lambda: head.press(key))


def export_baseline(rev: str, folder: Path) -> Path:
    folder.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--baseline-rev", default=BASELINE_REV)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=800)
    args = parser.parse_args()
    cases = ("10 words", "60 words", "slider")
    figures = {name: {case: [] for case in cases} for name in ("baseline", "new", "floor")}
    with tempfile.TemporaryDirectory() as tmp, chromium() as browser:
        base_dir = export_baseline(args.baseline_rev, Path(tmp) / "baseline")
        floor_dir = Path(tmp) / "floor"
        floor_dir.mkdir()
        (floor_dir / "app.py").write_text(FLOOR_APP.format(root=str(ROOT)))
        with (
            streamlit_server(base_dir, PORTS[0], log=Path(tmp) / "base.log") as base_url,
            streamlit_server(ROOT, PORTS[1], log=Path(tmp) / "new.log") as new_url,
            streamlit_server(floor_dir, PORTS[2], log=Path(tmp) / "floor.log") as floor_url,
        ):
            pages = {
                name: open_page(browser, url, args.width, args.height)
                for name, url in (("baseline", base_url), ("new", new_url), ("floor", floor_url))
            }
            for page in pages.values():  # warm-up: imports, model load, first charts
                translate_click(page, sentence(12, 99, 0))
            for repeat in range(args.repeats):
                for which, (name, page) in enumerate(pages.items()):
                    for case, words in (("10 words", 10), ("60 words", 60)):
                        figures[name][case].append(translate_click(page, sentence(words, repeat, which)))
                    figures[name]["slider"].append(slider_change(page))
                print(f"repeat {repeat + 1}/{args.repeats} done", file=sys.stderr)
    print(
        f"viewport {args.width}x{args.height}, shipped model, medians of {args.repeats} "
        f"(ms to the focused heatmap drawn / to the whole page settled)"
    )
    header = f"{'case':<10} {'baseline ' + args.baseline_rev:>24} {'this tree':>20} {'heatmap alone':>20} {'target':>8}"
    print(header)
    targets = {"10 words": 500, "60 words": 1500, "slider": 300}
    ratios = []
    for case in cases:
        base, new, floor = (
            [statistics.median(x) for x in zip(*figures[n][case])] for n in ("baseline", "new", "floor")
        )
        ratios.append(base[0] / new[0])
        print(
            f"{case:<10} {base[0]:>12.0f} / {base[1]:>7.0f} {new[0]:>10.0f} / {new[1]:>7.0f} "
            f"{floor[0]:>10.0f} / {floor[1]:>7.0f} {targets[case]:>8}"
        )
    print("heatmap alone: the same translation and focused heatmap on a page with nothing else (FLOOR_APP)")
    print(f"speedup: {math.prod(ratios) ** (1 / len(ratios)):.2f}x (geometric mean of the three, focused heatmap)")


if __name__ == "__main__":
    main()
