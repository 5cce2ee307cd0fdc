"""What a slow run costs the browser: the fade of the elements a run has not redrawn yet.

    python bench/fade.py [--clicks 5] [--delay 1.5] [--baseline-rev b15deec]

While a run is slower than 0.5 s, Streamlit fades every element it has not redrawn yet (opacity over 1 s);
app.py makes CSS transitions take no time, so they dim at once instead. Two headless servers of the shipped
model: the baseline commit (exported with `git archive`, before that change) and this working tree. Each runs
through a wrapper script that starts every full run --delay seconds late (a sleep before app.main(): the whole
page is outdated meanwhile, as on a busy server). Each tree gets its own chromium (Debian's, Playwright, no
GPU), and they take turns: type a new sentence, click Translate, wait until the run is over and the page has
been quiet for a second. The figure is the CPU seconds that chromium's processes used from the click to then
(/proc, Linux), once with the delay and once without (a run as fast as usual). Nothing else should run.
Medians; the last line is the baseline's CPU per slow run over this tree's.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from browser import CHROMIUM, CHROMIUM_ARGS, SENTENCES, export_rev, free_port, streamlit_server  # noqa: E402

BASELINE_REV = "b15deec"  # the last commit before app.py's NO_FADE_CSS
# The app, every full run starting late. Written beside no pages/ folder, so Streamlit's legacy pages mode
# never applies; app.py's own folder is importable (streamlit_server puts it on PYTHONPATH).
SLOW_APP = """import os, time
import app
time.sleep(float(os.environ["BENCH_RUN_DELAY_S"]))
app.main()
"""
# Installed before a click: window.__runDone resolves once a run has started and ended and the page has then
# been quiet (no DOM change) for a second, and fails after 120 s. A timer checks ten times a second; nothing
# polls from outside.
ARM_JS = """() => { window.__runDone = new Promise((resolve, reject) => {
  setTimeout(() => reject(new Error('no run ended within 120 s')), 120000);
  const app = document.querySelector('[data-testid="stApp"]');
  let ran = false, last = performance.now();
  const watch = new MutationObserver(() => {
    last = performance.now();
    if (app.getAttribute('data-test-script-state') === 'running') ran = true;
  });
  watch.observe(document.documentElement, {subtree: true, childList: true, attributes: true, characterData: true});
  const tick = () => ran && app.getAttribute('data-test-script-state') === 'notRunning'
    && performance.now() - last > 1000 ? (watch.disconnect(), resolve(true)) : setTimeout(tick, 100);
  tick();
}); }"""
TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def chromium_cpu(marker: str) -> Counter:
    """CPU seconds so far of the chromium whose browser process has `marker` on its command line, and of all its
    descendants (renderers, GPU process, utilities), by process type."""
    parent, kinds, cpu = {}, {}, {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").split()
            stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        pid = int(proc.name)
        parent[pid] = int(stat[1])
        cpu[pid] = (int(stat[11]) + int(stat[12])) / TICK
        kinds[pid] = marker if marker in argv else next((a[7:] for a in argv if a.startswith("--type=")), "other")
    totals = Counter()
    for pid in cpu:
        ancestor, kind = pid, kinds[pid]
        while ancestor in parent and kinds.get(ancestor) != marker:
            ancestor = parent[ancestor]
        if kinds.get(ancestor) == marker:
            totals["browser" if pid == ancestor else kind] += cpu[pid]
    return totals


class Tree:
    """One server and its own chromium, with the Translate page open."""

    def __init__(self, name: str, playwright, url: str) -> None:
        self.name, self.marker = name, f"--bench-fade-tree={name.replace(' ', '_')}"
        self.browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=[*CHROMIUM_ARGS, self.marker]
        )
        self.page = self.browser.new_page(viewport={"width": 1400, "height": 1100})
        self.page.goto(url)
        self.page.get_by_test_id("stVegaLiteChart").first.wait_for(timeout=120_000)
        self.runs: list[Counter] = []

    def translate(self, sentence: str) -> None:
        self.page.get_by_role("textbox", name="Sentence (English)").fill(sentence)
        self.page.wait_for_timeout(300)
        self.page.evaluate(ARM_JS)
        before = chromium_cpu(self.marker)
        self.page.get_by_role("button", name="Translate", exact=True).click()
        self.page.evaluate("() => window.__runDone")
        after = chromium_cpu(self.marker)
        self.runs.append(Counter({kind: after[kind] - before[kind] for kind in after}))


def measure(trees: dict[str, Path], delay: float, clicks: int, log_dir: Path) -> dict[str, list[Counter]]:
    from playwright.sync_api import sync_playwright

    wrapper = log_dir / "slow_app.py"
    wrapper.write_text(SLOW_APP)
    sentences = iter(SENTENCES)
    with sync_playwright() as p, contextlib.ExitStack() as stack:
        opened = []
        for offset, (name, folder) in enumerate(trees.items()):
            url = stack.enter_context(
                streamlit_server(
                    folder,
                    free_port(range(8660 + 10 * offset, 8670 + 10 * offset)),
                    log=log_dir / f"{name.replace(' ', '_')}_{delay}.log",
                    script=wrapper,
                    env={"BENCH_RUN_DELAY_S": str(delay), "OMP_NUM_THREADS": "1"},
                )
            )
            opened.append(Tree(name, p, url))
        for tree in opened:  # one untimed run each: the first click of a page does one-off work
            tree.translate(next(sentences))
        for _ in range(clicks):
            sentence = next(sentences)
            for tree in opened:  # the same sentence on both, in turn: both see the same moments of the machine
                tree.translate(sentence)
        for tree in opened:
            tree.browser.close()
        return {tree.name: tree.runs for tree in opened}


def median_cpu(runs: list[Counter]) -> tuple[float, dict[str, float]]:
    kinds = sorted({kind for run in runs for kind in run})
    parts = {kind: statistics.median(run[kind] for run in runs) for kind in kinds}
    return statistics.median(sum(run.values()) for run in runs), parts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clicks", type=int, default=5, help="timed Translate clicks per tree and delay")
    parser.add_argument("--delay", type=float, default=1.5, help="seconds each slow run starts late")
    parser.add_argument("--baseline-rev", default=BASELINE_REV)
    args = parser.parse_args(argv)
    if args.clicks + 1 > len(SENTENCES):  # one untimed click, then the timed ones, each a new sentence
        raise SystemExit(f"at most {len(SENTENCES) - 1} clicks")
    if CHROMIUM is None or not Path("/proc/self/stat").exists():
        raise SystemExit("needs Debian's chromium (apt-get install chromium) and Linux's /proc")
    log_dir = Path(tempfile.mkdtemp(prefix="bench_fade_"))
    trees = {f"baseline {args.baseline_rev}": export_rev(args.baseline_rev, log_dir / "baseline"), "this tree": ROOT}
    slow = {}
    for delay in (args.delay, 0.0):
        runs = measure(trees, delay, args.clicks, log_dir)
        print(f"\nruns starting {delay:.1f} s late: chromium CPU seconds per Translate click (median of {args.clicks})")
        for name, tree_runs in runs.items():
            total, parts = median_cpu(tree_runs)
            shown = ", ".join(f"{kind} {seconds:.3f}" for kind, seconds in parts.items() if seconds >= 0.005)
            print(f"  {name:<18} {total:.3f} s  ({shown})")
            if delay:
                slow[name] = total
    base, new = slow.values()
    print(f"\nspeedup: {base / new:.2f}x (chromium CPU per run that starts {args.delay:.1f} s late)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
