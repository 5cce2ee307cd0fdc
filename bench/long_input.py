"""Long inputs in the browser: a 200-token sentence on the Translate page, click to focused map drawn.

    python bench/long_input.py [--repeats 3] [--baseline-rev a0b1cd3] [--tokens 200] [--rows 100]

A small random Marian model (tests/marian_fixtures.py, 600 positions: Marian models read up to 512 tokens,
ours 128) is written to a temporary checkpoints folder; two headless Streamlit servers open it: this working
tree, and the baseline commit (before maps past 10,000 cells became one image), exported with `git archive`.
Each repeat types a new English sentence of about --tokens source pieces with a reference of --rows Italian pieces
(the decoder is fed it: a random model would stop at the page's row cap instead), in both apps in turn, and
times the Translate click to the focused map drawn (bench/app_browser.py's clock: from the input event in the
page to the last change of the first chart, and to the last change anywhere). Prints medians and ends with
`speedup: <ratio>x` (baseline / ours, focused map).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "bench"), str(ROOT / "tests"), str(ROOT)]

from app_browser import WORDS, measured  # noqa: E402
from browser import act, chromium, export_rev, free_port, open_page, streamlit_server  # noqa: E402

BASELINE_REV = "a0b1cd3"  # the commit before long inputs got the image view and the row cap
ITALIAN = "il gatto dorme sulla sedia e il cane è grande . "
REFERENCE_BOX = "Reference translation (Italian): the decoder is fed it instead of its own output"


def texts(bundle, tokens: int, rows: int, repeat: int) -> tuple[str, str]:
    """An English sentence of at most `tokens` source pieces and a reference of at most `rows`: each repeat's a
    little shorter, so that its map differs from the last even where a random model's weights look alike."""
    words, tokens = (WORDS * 8)[repeat * 7 :], tokens - 3 * repeat
    sentence = ""
    for n in range(1, len(words)):
        candidate = " ".join(words[:n]) + "."
        if len(bundle.src_tokenizer.encode(candidate).ids) > tokens:
            break
        sentence = candidate
    reference = " ".join((ITALIAN * 40).split()[:rows])
    while len(bundle.tgt_tokenizer.encode(reference).ids) > rows:
        reference = reference.rsplit(" ", 1)[0]
    return sentence, reference


def translate(page, sentence: str, reference: str) -> tuple[float, float]:
    """The reference first (leaving its box sends it: a run before the clock starts), then the sentence, sent by
    the click like a user's."""
    box = page.get_by_role("textbox", name=REFERENCE_BOX)
    if box.input_value() != reference:
        act(page, lambda: (box.fill(reference), box.press("Enter")))
    page.get_by_role("textbox", name="Sentence (English)").fill(sentence)
    return measured(page, lambda: page.get_by_role("button", name="Translate", exact=True).click())


def main() -> None:
    from marian_fixtures import make_marian

    from core import load_checkpoint

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline-rev", default=BASELINE_REV)
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--rows", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, chromium() as browser:
        folder = Path(tmp) / "checkpoints"
        make_marian(folder / "opus-mt-en-it", positions=600)
        bundle = load_checkpoint(folder / "opus-mt-en-it")
        baseline = export_rev(args.baseline_rev, Path(tmp) / "baseline")
        trees = {"baseline": baseline, "ours": ROOT}
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in trees}
        with (
            streamlit_server(baseline, free_port(range(8660, 8680)), checkpoint_dir=folder) as url_base,
            streamlit_server(ROOT, free_port(range(8680, 8700)), checkpoint_dir=folder) as url_ours,
        ):
            pages = {
                name: open_page(browser, url, 1280, 800) for name, url in (("baseline", url_base), ("ours", url_ours))
            }
            for page in pages.values():
                page.get_by_text("Compare with a reference translation").click()
            for repeat in range(args.repeats):
                sentence, reference = texts(bundle, args.tokens, args.rows, repeat)
                for name, page in pages.items():
                    times[name].append(translate(page, sentence, reference))
                    print(
                        f"{name:>8} repeat {repeat + 1}: focused map {times[name][-1][0]:7.0f} ms, "
                        f"page settled {times[name][-1][1]:7.0f} ms",
                        flush=True,
                    )
        pieces = len(bundle.src_tokenizer.encode(sentence).ids), len(bundle.tgt_tokenizer.encode(reference).ids)
    print(f"\n{pieces[0]} source pieces x {pieces[1]} reference pieces (target: focused map within 2000 ms)")
    medians = {name: [statistics.median(t[i] for t in found) for i in (0, 1)] for name, found in times.items()}
    for name, (focus, settled) in medians.items():
        print(f"{name:>8}: focused map {focus:7.0f} ms   page settled {settled:7.0f} ms   (medians)")
    print(f"speedup: {medians['baseline'][0] / medians['ours'][0]:.2f}x")


if __name__ == "__main__":
    main()
