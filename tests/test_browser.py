"""Real-browser test: `streamlit run app.py` headless on a free port, driven by Playwright with Debian's chromium.

Skipped when the playwright package or a chromium binary is missing (Playwright never downloads a browser
here: `.ci/run` installs chromium with apt-get), except under CI (CI=true): there they fail instead, so CI cannot
pass with the browser tests skipped.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest

sys.path[:0] = [
    str(Path(__file__).resolve().parent),
    str(Path(__file__).resolve().parents[1]),
    str(Path(__file__).resolve().parents[1] / "bench"),
]
from app_fixtures import EN, write_tiny_checkpoint  # noqa: E402
from browser import CHROMIUM, CHROMIUM_ARGS, RUN_MS, act, new_page, streamlit_server, wait_idle  # noqa: E402  (bench/browser.py)

IN_CI = os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")
NO_CHROMIUM = "no chromium binary (apt-get install chromium)"
if IN_CI:
    import playwright.sync_api as sync_api  # noqa: E402  (CI runs these tests: no Playwright is an error)
else:
    sync_api = pytest.importorskip("playwright.sync_api")
ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(CHROMIUM is None and not IN_CI, reason=NO_CHROMIUM)  # test_browser_heads.py too


def require_chromium() -> None:
    """Under CI, no browser fails the test that needs one (elsewhere pytestmark has skipped it already)."""
    if CHROMIUM is None:
        pytest.fail(f"CI=true and {NO_CHROMIUM}: the browser tests cannot run", pytrace=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    require_chromium()
    folder = tmp_path_factory.mktemp("browser_checkpoints")
    write_tiny_checkpoint(folder / "tiny.pt")
    for epoch in range(3):  # a training run in a subfolder, for the Timeline page
        write_tiny_checkpoint(folder / "run" / f"tmodel_{epoch:02d}.pt", seed=epoch, card=False)
    # The app as `streamlit run` serves it, on the tiny models (bench/browser.py's server, shared)
    with streamlit_server(ROOT, free_port(), checkpoint_dir=folder, log=folder / "streamlit.log") as url:
        yield url


@pytest.fixture(scope="module")
def chromium_browser():
    require_chromium()
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


def open_app(browser, url: str):
    """A new browser context (a separate Streamlit session) showing the app."""
    page = new_page(browser, {"width": 1400, "height": 1100})
    page.goto(url)
    wait_idle(page)
    return page


def type_sentence(page, sentence: str) -> None:
    box = page.get_by_role("textbox", name="Sentence (English)")
    box.fill(sentence)
    act(page, lambda: box.press("Enter"))


def focused_chart(page):
    return page.get_by_test_id("stVegaLiteChart").first


def slider(page, label: str):
    return page.get_by_role("group", name=label, exact=True).get_by_role("slider")


def assert_no_errors(page) -> None:
    assert page.get_by_test_id("stException").count() == 0


def test_deep_link_to_a_page_on_a_fresh_server_runs_the_router(server, chromium_browser):
    """Kept first: the first session of a fresh server used to skip app.py for /steps (legacy pages/ mode)."""
    page = open_app(chromium_browser, f"{server}/steps")
    sync_api.expect(page.get_by_text("Active model")).to_be_visible()
    sync_api.expect(page.get_by_role("heading", name="Decoding step by step")).to_be_visible()
    sync_api.expect(page.get_by_test_id("stSidebarNav").get_by_role("link", name="Models")).to_be_visible()
    assert_no_errors(page)
    page.context.close()


def test_translate_move_head_and_see_tokens(server, chromium_browser, tmp_path):
    page = open_app(chromium_browser, server)
    entries = page.evaluate("() => history.length")
    type_sentence(page, "the cat sat on the mat")
    act(page, lambda: page.get_by_role("button", name="Translate", exact=True).click())
    sync_api.expect(page.get_by_text("Translation:")).to_be_visible()
    assert page.evaluate("() => history.length") == entries + 1  # one link written per run: one Back step
    chart = focused_chart(page)
    for label in ("2·cat", "5·the", "1·the"):  # key axis: every source token with its position
        sync_api.expect(chart.locator("svg text", has_text=label)).to_have_count(1)
    head = slider(page, "Head")
    opened = int(head.get_attribute("aria-valuetext"))  # the page opens on its most telling head
    sync_api.expect(chart.get_by_text(f"head {opened}", exact=False)).to_have_count(1)
    head.focus()
    moved = opened + 1 if opened < int(head.get_attribute("max")) else opened - 1
    act(page, lambda: head.press("ArrowRight" if moved > opened else "ArrowLeft"))
    sync_api.expect(focused_chart(page).get_by_text(f"head {moved}", exact=False)).to_have_count(1)
    assert f"head={moved}" in page.url  # the view is in the link
    assert page.evaluate("() => history.length") == entries + 2
    assert_no_errors(page)
    page.screenshot(path=str(tmp_path / "translate.png"))
    assert (tmp_path / "translate.png").stat().st_size > 10_000
    page.context.close()


def test_hovering_a_cell_of_the_focused_head_shows_its_tokens_and_weight(server, chromium_browser, tmp_path):
    """The tooltip of every cell hovered names that cell's row and column and shows the weight the model
    gives it (core.translate on a copy of the server's checkpoint), to the 3 decimals it prints."""
    import re

    from core import load_checkpoint, translate

    sentence = "the cat sat"
    expected = translate(load_checkpoint(write_tiny_checkpoint(tmp_path / "same.pt")), sentence)
    page = open_app(chromium_browser, f"{server}/?sentence=the+cat+sat&kind=cross&layer=1&head=2")
    cells = focused_chart(page).locator("svg.marks g.mark-rect.role-mark path")
    n_keys, n_queries = len(expected.source_tokens), len(expected.target_tokens)
    sync_api.expect(cells).to_have_count(n_keys * n_queries)
    tip = page.locator("#vg-tooltip-element.visible")
    for k in (0, n_keys + 1, n_keys * n_queries - 1):  # cells on different rows and columns
        cells.nth(k).scroll_into_view_if_needed()
        box = cells.nth(k).bounding_box()
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.mouse.move(x, y)
        page.mouse.move(x + 1, y + 1)  # Vega shows a tooltip on a move inside a mark
        sync_api.expect(tip).to_be_visible()
        text = " ".join(tip.inner_text().split())
        row, col = (int(m) for m in re.search(r"row \(query\) (\d+)·.*column \(key\) (\d+)·", text).groups())
        assert f"{row}·{expected.target_tokens[row]}" in text and f"{col}·{expected.source_tokens[col]}" in text
        weight = float(expected.attention.cross[0, 1, row, col])
        assert re.search(r"weight (\d\.\d{3})", text).group(1) == f"{weight:.3f}", text
        page.mouse.move(0, 0)
    assert_no_errors(page)
    page.context.close()


def test_the_csv_and_json_downloads_hold_the_focused_head(server, chromium_browser, tmp_path):
    """The files are made when the button is clicked (not on every rerun): they hold the focused head's
    weights, as core.translate gives them, under the shown head's name."""
    import json

    import numpy as np

    from core import charts, load_checkpoint, translate

    expected = translate(load_checkpoint(write_tiny_checkpoint(tmp_path / "same.pt")), "the cat sat")
    want = charts.attention_frame(
        expected.attention.cross[0, 1], expected.attention.queries("cross"), expected.attention.keys("cross")
    )
    page = open_app(chromium_browser, f"{server}/?sentence=the+cat+sat&kind=cross&layer=1&head=2")
    with page.expect_download() as csv_file:
        page.locator(".st-key-dl_csv button").click()
    assert csv_file.value.suggested_filename == "attention_cross_L1_H2.csv"
    assert Path(csv_file.value.path()).read_bytes() == charts.attention_csv(want)
    with page.expect_download() as json_file:
        page.locator(".st-key-dl_json button").click()
    data = json.loads(Path(json_file.value.path()).read_text())
    assert (data["kind"], data["layer"], data["head"]) == ("cross", 1, 2)
    assert data["queries"] == expected.target_tokens and data["keys"] == expected.source_tokens
    np.testing.assert_allclose(data["weights"], expected.attention.cross[0, 1].numpy(), atol=1e-6)
    assert_no_errors(page)
    page.context.close()


def test_steps_replay_fragment_moves_alone_and_a_forced_token_redecodes(server, chromium_browser):
    """The replay is an st.fragment: Next reruns it alone; forcing a candidate must rerun the whole page (a new
    decoding), which AppTest cannot show, since it always reruns the whole script."""
    page = open_app(chromium_browser, f"{server}/steps?sentence=the+cat+sat+on+the+mat")
    act(page, lambda: page.get_by_role("button", name="Next ▶").click())
    sync_api.expect(slider(page, "Step")).to_have_attribute("aria-valuetext", "2")
    assert "step=2" in page.url
    act(page, lambda: page.locator("button").filter(has_text="2. ").first.click())
    sync_api.expect(page.get_by_text("What if:", exact=False)).to_have_count(1)
    act(page, lambda: page.get_by_role("button", name="↩ Model's own").click())
    sync_api.expect(page.get_by_text("What if:", exact=False)).to_have_count(0)
    assert_no_errors(page)
    page.context.close()


def test_click_in_all_heads_grid_focuses_that_head(server, chromium_browser):
    page = open_app(chromium_browser, f"{server}/?sentence=the+cat+sat&kind=cross&layer=1&head=1")
    sync_api.expect(page.get_by_test_id("stVegaLiteChart")).to_have_count(2)  # the grid's expander is closed
    act(page, lambda: page.get_by_text("All layers × heads").click())  # opening it builds the grid
    grid = page.get_by_test_id("stVegaLiteChart").nth(2)
    grid.scroll_into_view_if_needed()
    cells = grid.locator("svg.marks g.mark-rect.role-mark path")
    sync_api.expect(cells.last).to_be_visible()
    box = cells.last.bounding_box()  # the last panel: layer 2, head 2
    act(page, lambda: page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2))
    sync_api.expect(slider(page, "Head")).to_have_attribute("aria-valuetext", "2")
    sync_api.expect(slider(page, "Layer")).to_have_attribute("aria-valuetext", "2")
    assert_no_errors(page)
    page.context.close()


def test_click_on_a_head_of_the_layer_panel_focuses_it(server, chromium_browser):
    page = open_app(chromium_browser, f"{server}/?sentence=the+cat+sat&kind=cross&layer=1&head=1")
    heads = page.get_by_test_id("stVegaLiteChart").nth(1)
    heads.scroll_into_view_if_needed()
    tiles = heads.locator("svg.marks g.mark-rect.role-mark path")
    sync_api.expect(tiles).to_have_count(2)  # the tiny model's 2 heads, one clickable tile each
    box = tiles.last.bounding_box()
    act(page, lambda: page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2))
    sync_api.expect(slider(page, "Head")).to_have_attribute("aria-valuetext", "2")
    sync_api.expect(focused_chart(page).get_by_text("head 2", exact=False)).to_have_count(1)
    assert_no_errors(page)
    page.context.close()


def test_two_sessions_at_the_same_time_see_their_own_attention(server, chromium_browser):
    pages = [open_app(chromium_browser, server) for _ in range(2)]
    sentences = ["the dog runs in the park", "i like green tea"]
    before = [p.evaluate("() => window.__wsIn") for p in pages]
    for page, sentence in zip(pages, sentences):  # both reruns are sent before either is awaited
        box = page.get_by_role("textbox", name="Sentence (English)")
        box.fill(sentence)
        box.press("Enter")
    for page, n in zip(pages, before):
        page.wait_for_function(f"() => window.__wsIn > {n}", timeout=RUN_MS)
        wait_idle(page)
    own, other = ["3·runs", "2·like"], ["2·like", "3·runs"]
    for page, mine, theirs in zip(pages, own, other):
        chart = focused_chart(page)
        sync_api.expect(chart.locator("svg text", has_text=mine)).to_have_count(1)
        sync_api.expect(chart.locator("svg text", has_text=theirs)).to_have_count(0)
        assert_no_errors(page)
        page.context.close()


def test_timeline_slider_moves_through_the_checkpoints(server, chromium_browser):
    page = open_app(chromium_browser, f"{server}/timeline?sentence=the+cat+sat&kind=cross&layer=1&head=1")
    sync_api.expect(page.get_by_role("heading", name="Training timeline")).to_be_visible()
    sync_api.expect(focused_chart(page).get_by_text("epoch 00", exact=False)).to_have_count(1)
    checkpoint = slider(page, "Checkpoint")
    checkpoint.focus()
    act(page, lambda: checkpoint.press("ArrowRight"))
    sync_api.expect(focused_chart(page).get_by_text("epoch 01", exact=False)).to_have_count(1)
    act(page, lambda: checkpoint.press("End"))
    sync_api.expect(focused_chart(page).get_by_text("epoch 02", exact=False)).to_have_count(1)
    assert "epoch=3" in page.url and "run=run" in page.url  # the view is in the link


@pytest.mark.parametrize("path", ["/", "/steps"])
def test_pages_fit_a_1024_px_window_with_a_long_sentence(server, chromium_browser, path, tmp_path):
    """One case of bench/layout.py (which runs every page at 3 window sizes x 3 sentence lengths): 20 words,
    near the tiny model's 24-token limit, at 1024x768. No chart overlaps another chart or a heading, caption,
    table or widget, and none leaves the window horizontally (checked from the elements' boxes)."""
    from urllib.parse import quote

    from browser import full_height, layout_problems, settle

    words = " ".join(" ".join(EN).split()[:20])
    page = new_page(chromium_browser, {"width": 1024, "height": 768})
    page.goto(f"{server}{path}?sentence={quote(words)}" + ("&grid=1" if path == "/" else ""))  # every chart open
    wait_idle(page)
    settle(page)
    full_height(page)
    assert page.get_by_test_id("stVegaLiteChart").count() >= 3
    assert layout_problems(page) == []
    assert_no_errors(page)
    page.context.close()


def test_compare_page_fits_a_1024_px_window_with_the_shipped_model(chromium_browser, tmp_path):
    """The shipped model's 8 heads make each divergence grid and each of the A, B and A - B maps wider than a
    third of the page at 1024 px: the page puts them side by side only where they fit, wrapping the rest to
    the next row (side-by-side columns drew one grid over the next and the last off the window)."""
    from urllib.parse import quote

    from browser import full_height, layout_problems, settle

    sentence = quote(" ".join(" ".join(EN).split()[:20]))
    log = tmp_path / "streamlit.log"
    with streamlit_server(ROOT, free_port(), checkpoint_dir=ROOT / "checkpoints", log=log) as url:
        page = new_page(chromium_browser, {"width": 1024, "height": 768})
        page.goto(f"{url}/compare?sentence={sentence}")
        wait_idle(page)
        settle(page)
        full_height(page)
        assert page.get_by_test_id("stVegaLiteChart").count() == 6  # three grids, then A, B and A - B
        assert layout_problems(page) == []
        assert_no_errors(page)
        page.context.close()


def test_a_slow_run_dims_the_page_at_once_without_animating_a_fade(chromium_browser, tmp_path):
    """app.py's NO_FADE_CSS: while a run is slower than 0.5 s the elements not yet redrawn still dim, but at once,
    with no CSS transition running (Streamlit's own fade animates them over a second, which a browser without
    GPU compositing repaints at every frame). Every full run here starts 1.5 s late (bench/fade.py's wrapper)."""
    from fade import SLOW_APP

    folder = tmp_path / "checkpoints"
    write_tiny_checkpoint(folder / "tiny.pt")
    wrapper = tmp_path / "slow_app.py"
    wrapper.write_text(SLOW_APP)
    env = {"BENCH_RUN_DELAY_S": "1.5"}
    dimmed = """(below) => Array.from(document.querySelectorAll('[data-testid="stElementContainer"]'))
                  .filter(e => parseFloat(getComputedStyle(e).opacity) < below).length"""  # elements under that opacity
    log = tmp_path / "streamlit.log"
    with streamlit_server(ROOT, free_port(), checkpoint_dir=folder, log=log, script=wrapper, env=env) as url:
        page = open_app(chromium_browser, url)
        timed = page.evaluate(
            """() => Array.from(document.querySelectorAll('*')).filter(e => getComputedStyle(e)
                 .transitionDuration.split(',').some(d => parseFloat(d) > 0)).map(e => e.tagName + '.' + e.className)"""
        )
        assert timed == []  # Streamlit gives buttons, inputs, expanders and the fade transitions that take time
        page.get_by_role("textbox", name="Sentence (English)").fill(EN[1])
        page.get_by_role("button", name="Translate", exact=True).click()
        during = page.evaluate(
            f"""() => new Promise(done => setTimeout(() => done({{
                 dimmed: ({dimmed})(0.5),
                 fading: document.getAnimations().filter(a => a.effect.getTiming().duration > 0).length,
               }}), 1100))"""
        )
        assert during["dimmed"] > 0 and during["fading"] == 0  # 1.1 s into a 1.5 s wait: dimmed, not fading
        wait_idle(page)
        dimmed_after = page.evaluate(dimmed, 1)
        assert dimmed_after == 0
        assert_no_errors(page)
        page.context.close()


FIRST_CHART = '[data-testid="stMain"] [data-testid="stVegaLiteChart"] :is(svg.marks, canvas)'


@pytest.fixture(scope="module")
def shipped_server(tmp_path_factory):
    """The app as the README's first command starts it: no settings, the shipped checkpoints folder."""
    log = tmp_path_factory.mktemp("shipped") / "streamlit.log"
    with streamlit_server(ROOT, free_port(), checkpoint_dir=None, log=log) as url:
        yield url


@pytest.mark.parametrize("path", ["/", "/steps", "/heads", "/compare", "/timeline", "/models"])
def test_a_fresh_server_shows_something_worth_seeing_on_every_page(shipped_server, chromium_browser, path):
    """Each page, opened with no link, settings or choices at 1280x800, draws its first chart (the Models page:
    its model card) with no exception: Heads its grid from the shipped results (no minutes of analysis), the
    Timeline the shipped run of at least five checkpoints, Compare two different models with a divergence."""
    import re

    page = new_page(chromium_browser, {"width": 1280, "height": 800})
    page.goto(shipped_server + path)
    wait_idle(page)
    if path == "/models":
        sync_api.expect(page.get_by_text("Layers × heads").first).to_be_visible()
    else:
        sync_api.expect(page.locator(FIRST_CHART).first).to_be_visible(timeout=RUN_MS)
    text = page.get_by_test_id("stMain").inner_text()
    if path == "/timeline":  # the run picker names the run and its checkpoints
        shown = re.search(r"\((\d+) checkpoints\)", page.get_by_role("combobox", name="Run").input_value())
        assert shown and int(shown.group(1)) >= 5
    if path == "/compare":
        divergence = re.search(r"divergence (\d+\.\d+) bits", text)
        assert divergence and float(divergence.group(1)) > 0 and "same model" not in text
    if path == "/heads":
        assert "Analysing" not in text  # from the shipped results, not computed
    assert_no_errors(page)
    page.context.close()
