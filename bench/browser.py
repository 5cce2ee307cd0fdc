"""Streamlit-in-a-real-browser helpers shared by bench/app_browser.py, bench/layout.py and tests/test_browser.py.

A headless `streamlit run app.py` on a given port, Debian's chromium driven by Playwright (never a downloaded
browser), waiting on the app's own script-state attribute instead of sleeping, and the layout check: the
bounding boxes of every chart, none overlapping another, none leaving the viewport horizontally.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

RUN_MS = 60_000
CHROMIUM = next(
    (p for p in (os.environ.get("CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser")) if p), None
)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]

# 45 different sentences, none the Translate page opens on (ui.EXAMPLES[1]), so that a new one always shows:
# bench/load.py gives each user its own, bench/fade.py one per click.
SENTENCES = [
    "I love you.",
    "The old man is sitting on the bench.",
    "Where is the train station?",
    "We will go to the sea tomorrow.",
    "She opened the door and looked at the garden.",
    "My brother works in a big hospital.",
    "The children are playing in the park.",
    "I don't understand what you are saying.",
    "This book is very interesting.",
    "Can you help me, please?",
    "The weather is cold today.",
    "He drinks coffee every morning.",
    "They bought a new house last year.",
    "I have never seen this film.",
    "The shop closes at eight.",
    "Tom is waiting for his friends.",
    "Please speak more slowly.",
    "We had dinner at a small restaurant.",
    "The dog is barking at the postman.",
    "I forgot my keys at home.",
    "Her mother is a teacher.",
    "The river flows through the city.",
    "I would like a glass of water.",
    "Do you know where he lives?",
    "The train was late again.",
    "My sister plays the piano very well.",
    "It is raining in Rome.",
    "I am reading a letter from my father.",
    "The museum is open on Sunday.",
    "He lost his wallet on the bus.",
    "We must finish this work tonight.",
    "The flowers in the garden are red.",
    "Why are you so sad?",
    "I bought some bread and cheese.",
    "The teacher explained the lesson again.",
    "They are talking about the election.",
    "The car is parked near the bank.",
    "She sings in a choir.",
    "I need a new pair of shoes.",
    "The moon is bright tonight.",
    "Our neighbours have three cats.",
    "I will call you after the meeting.",
    "The soup is too hot.",
    "He writes a long email to his boss.",
    "The students are tired after the exam.",
]

# Installed before the page loads (context.add_init_script): counts the messages the server sends. act()
# waits for one after its action: a fast run's "running" and "notRunning" may reach the page in one batch, so
# that the app's script-state attribute never visibly changes and WATCH_JS counts no run.
WS_JS = """(() => {
  window.__wsIn = 0; window.__wsLast = 0;
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener('message', () => { window.__wsIn++; window.__wsLast = performance.now(); });
    }
  };
})();"""

# Counts finished script runs, so that after an action we wait for the *next* one (right after a click the
# state still reads notRunning).
WATCH_JS = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app || app.__watched) return;
  app.__watched = true; window.__runs = window.__runs || 0;
  let last = app.getAttribute('data-test-script-state');
  new MutationObserver(() => {
    const s = app.getAttribute('data-test-script-state');
    if (s !== last) { if (s === 'notRunning') window.__runs++; last = s; }
  }).observe(app, {attributes: true, attributeFilter: ['data-test-script-state']});
}"""

# Every element a chart or a widget occupies, as page boxes. Charts are Streamlit's chart elements; the
# other boxes are the things a chart must not run under (headings, captions, tables, widgets).
BOXES_JS = """() => {
  const box = (el) => { const r = el.getBoundingClientRect(); return {x: r.left, y: r.top, w: r.width, h: r.height}; };
  const charts = [...document.querySelectorAll('[data-testid="stVegaLiteChart"]')].map((el, i) => {
    // The drawn surface: Vega's svg/canvas may be wider than the element that holds it (then it is clipped).
    const surface = el.querySelector('svg.marks, canvas');
    // A chart may scroll inside its own box: some element between the chart element and the surface
    // with overflow-x auto/scroll that is narrower than what it holds.
    let scroller = null;
    for (let node = surface && surface.parentElement; node && el.contains(node); node = node.parentElement) {
      const o = getComputedStyle(node).overflowX;
      if ((o === 'auto' || o === 'scroll') && node.scrollWidth > node.clientWidth + 1) { scroller = node; break; }
    }
    // Each axis: how many labels it has and how many Vega hid so that they would not overlap (opacity 0).
    const axes = [...el.querySelectorAll('svg.marks g.role-axis')].map((axis) => {
      const labels = [...axis.querySelectorAll('g.role-axis-label text')];
      const hidden = labels.filter((t) => t.getAttribute('opacity') === '0' || getComputedStyle(t).opacity === '0');
      // only token (discrete) axes: a numeric axis thinning its tick labels still reads
      const aria = axis.getAttribute('aria-label') || '';
      return {title: aria.split(' for ')[0], labels: labels.length, hidden: hidden.length,
              discrete: aria.includes('discrete')};
    }).filter((axis) => axis.labels && axis.discrete);
    return {name: 'chart ' + i, el: box(el), surface: surface ? box(surface) : box(el),
            scroll: scroller !== null, clip: box(scroller || el), axes};
  });
  const others = [...document.querySelectorAll(
      '[data-testid="stMain"] [data-testid="stHeading"], [data-testid="stMain"] [data-testid="stCaptionContainer"],'
    + '[data-testid="stMain"] [data-testid="stMarkdownContainer"], [data-testid="stMain"] [data-testid="stDataFrame"],'
    + '[data-testid="stMain"] [data-testid="stSlider"], [data-testid="stMain"] [data-testid="stButton"]')]
    .filter((el) => !el.closest('[data-testid="stVegaLiteChart"]') && el.getBoundingClientRect().width > 0)
    .map((el) => ({name: el.getAttribute('data-testid') + ': ' + (el.innerText || '').slice(0, 40), el: box(el)}));
  // A widget label cut off: some element of it is narrower than its own text.
  const narrow = (e) => e.clientWidth > 0 && e.scrollWidth > e.clientWidth + 1;
  const cut = [...document.querySelectorAll('[data-testid="stMain"] [data-testid="stWidgetLabel"]')]
    .filter((el) => [el, ...el.querySelectorAll('*')].some(narrow))
    .map((el) => el.innerText);
  // Any other text that ends in an ellipsis because its box is too narrow (a button, a page link, a caption):
  // what Streamlit cuts with text-overflow: ellipsis. Charts draw their own text and are left to the boxes.
  const ellipsis = [...document.querySelectorAll('[data-testid="stMain"] *')]
    .filter((e) => !e.closest('[data-testid="stWidgetLabel"], [data-testid="stVegaLiteChart"]'))
    .filter((e) => narrow(e) && getComputedStyle(e).textOverflow === 'ellipsis')
    .map((e) => (e.innerText || '').trim())
    .filter((text) => text);
  // The main column's content box (inside its padding): what a chart must stay in.
  const main = document.querySelector('[data-testid="stMainBlockContainer"]');
  let column = null;
  if (main) {
    const r = main.getBoundingClientRect(), s = getComputedStyle(main);
    const left = r.left + parseFloat(s.paddingLeft), right = r.right - parseFloat(s.paddingRight);
    column = {x: left, w: right - left};
  }
  return {charts, others, cut, ellipsis, column, viewport: {w: window.innerWidth, h: window.innerHeight}};
}"""


def export_rev(rev: str, folder: Path) -> Path:
    """This repository's tree at commit rev, exported (git archive) into the new folder: a baseline to run."""
    folder.mkdir()
    root = Path(__file__).resolve().parents[1]
    archive = subprocess.run(["git", "-C", str(root), "archive", rev], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def free_port(candidates: range) -> int:
    """The first port of candidates nothing listens on."""
    import socket

    for port in candidates:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) != 0:
                return port
    raise RuntimeError(f"no free port in {candidates.start}-{candidates.stop - 1}")


@contextlib.contextmanager
def streamlit_server(
    app_dir: Path,
    port: int,
    checkpoint_dir: Path | None = None,
    log: Path | None = None,
    script: Path | None = None,
    env: dict | None = None,
):
    """`streamlit run app.py` (or `script`, with app_dir importable) headless on 127.0.0.1:port, with env added
    to the environment; yields the URL; stops the process it started."""
    env = {**os.environ, "PYTHONPATH": str(app_dir), **(env or {})}
    if checkpoint_dir is not None:
        env["ATTN_CHECKPOINT_DIR"] = str(checkpoint_dir)
    else:
        env.pop("ATTN_CHECKPOINT_DIR", None)
    flags = ["--server.headless", "true", "--server.port", str(port), "--server.address", "127.0.0.1"]
    flags += ["--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
    out = (log or Path(os.devnull)).open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(script or app_dir / "app.py"), *flags],
        cwd=app_dir,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError):
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"streamlit did not start on port {port}" + (f" (log: {log})" if log else ""))
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        out.close()


@contextlib.contextmanager
def chromium() -> Iterator:
    from playwright.sync_api import sync_playwright

    if CHROMIUM is None:
        raise RuntimeError("no chromium binary (apt-get install chromium)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def wait_idle(page) -> None:
    from playwright.sync_api import expect

    app = page.locator("[data-testid='stApp']")
    expect(app).to_have_attribute("data-test-connection-state", "CONNECTED", timeout=RUN_MS)
    expect(app).to_have_attribute("data-test-script-state", "notRunning", timeout=RUN_MS)
    expect(page.get_by_test_id("stSkeleton")).to_have_count(0, timeout=RUN_MS)
    page.evaluate(WATCH_JS)


def new_page(browser, viewport: dict):
    """A page in a new browser context (a separate Streamlit session) that counts the server's messages."""
    context = browser.new_context(viewport=viewport)
    context.add_init_script(WS_JS)
    return context.new_page()


def act(page, action) -> None:
    """Do something that triggers a rerun and wait for that rerun to finish: a message from the server after
    the action (pages opened with WS_JS), else one more finished run seen by WATCH_JS, then the app idle and
    the server quiet for 150 ms."""
    page.evaluate(WATCH_JS)
    before = page.evaluate("() => [window.__wsIn ?? -1, window.__runs || 0]")
    action()
    page.wait_for_function(
        "([ws, runs]) => ws >= 0 ? window.__wsIn > ws : (window.__runs || 0) > runs", arg=before, timeout=RUN_MS
    )
    wait_idle(page)
    page.wait_for_function("() => performance.now() - (window.__wsLast || 0) > 150", timeout=RUN_MS)


def open_page(browser, url: str, width: int, height: int):
    page = new_page(browser, {"width": width, "height": height})
    page.goto(url)
    wait_idle(page)
    return page


def settle(page, quiet_ms: int = 400) -> None:
    """Wait until the main area has not changed for quiet_ms (charts embed after the run has finished)."""
    page.evaluate(
        """(quiet) => new Promise((done) => {
          let last = performance.now();
          const obs = new MutationObserver(() => { last = performance.now(); });
          obs.observe(document.body, {subtree: true, childList: true, attributes: true});
          const tick = () => performance.now() - last > quiet ? (obs.disconnect(), done()) : setTimeout(tick, 50);
          tick();
        })""",
        quiet_ms,
    )


def full_height(page) -> None:
    """Grow the viewport to the main area's scroll height, keeping its width (stMain is the scroller)."""
    height = page.evaluate("() => document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
    page.set_viewport_size({"width": page.viewport_size["width"], "height": min(int(height) + 40, 12_000)})
    settle(page)


FEW_LABELS = 12  # an axis with this many labels or fewer shows them all (a long sentence's may be thinned)


def _overlap(a: dict, b: dict, tolerance: float = 1.0) -> bool:
    return (
        min(a["x"] + a["w"], b["x"] + b["w"]) - max(a["x"], b["x"]) > tolerance
        and min(a["y"] + a["h"], b["y"] + b["h"]) - max(a["y"], b["y"]) > tolerance
    )


def layout_problems(page) -> list[str]:
    """What breaks the layout on the current page: a chart's element or drawn surface overlapping another
    chart or a heading/caption/widget, leaving the viewport horizontally or running out of the page's column
    into its margin, an axis of a few labels (FEW_LABELS) hiding some of them, a widget label cut off, and any
    text cut off with an ellipsis (a button, a page link). A surface wider than its element is allowed only
    where the element scrolls it inside its own box; a long sentence's token axis may thin its labels (every
    cell keeps its tooltip)."""
    found = page.evaluate(BOXES_JS)
    width = found["viewport"]["w"]
    problems = [f"widget label cut off: {label!r}" for label in found["cut"]]
    problems += [f"text cut off with an ellipsis: {text[:60]!r}" for text in dict.fromkeys(found["ellipsis"])]
    column = found["column"] or {"x": 0, "w": width}
    charts = found["charts"]
    for chart in charts:
        visible = chart["clip"] if chart["scroll"] else chart["surface"]
        for name, box in (("element", chart["el"]), ("drawn chart", visible)):
            if box["x"] < -1 or box["x"] + box["w"] > width + 1:
                problems.append(
                    f"{chart['name']} {name} leaves the viewport: x {box['x']:.0f}..{box['x'] + box['w']:.0f}"
                )
            elif box["x"] < column["x"] - 2 or box["x"] + box["w"] > column["x"] + column["w"] + 2:
                problems.append(
                    f"{chart['name']} {name} runs out of the page's column: x {box['x']:.0f}..{box['x'] + box['w']:.0f}"
                    f" in {column['x']:.0f}..{column['x'] + column['w']:.0f}"
                )
        if not chart["scroll"] and chart["surface"]["w"] > chart["el"]["w"] + 2:
            problems.append(
                f"{chart['name']} is drawn {chart['surface']['w']:.0f} px wide in a {chart['el']['w']:.0f} px box"
            )
        for axis in chart["axes"]:
            if axis["hidden"] and axis["labels"] <= FEW_LABELS:
                problems.append(
                    f"{chart['name']} hides {axis['hidden']} of the {axis['labels']} labels of its {axis['title']}"
                )
    for i, a in enumerate(charts):
        for b in charts[i + 1 :]:
            if _overlap(a["el"], b["el"]) or _overlap(a["surface"], b["surface"]):
                problems.append(f"{a['name']} overlaps {b['name']}")
        for other in found["others"]:
            if _overlap(a["surface"] if not a["scroll"] else a["clip"], other["el"]):
                problems.append(f"{a['name']} overlaps {other['name']!r}")
    return problems
