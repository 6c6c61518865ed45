"""The app in a real browser: draw digits on the canvas with the mouse and read every model's answer; what only a
browser shows (strokes begun at the canvas's top edge, a drawing kept through width changes and page switches,
caption contrast, how charts lay out) and the address the server listens on.

The app runs as a real ``streamlit run`` subprocess and Debian's Chromium is driven by Playwright (never a
downloaded browser). The canvas (ui/canvas.py) is a components-v2 element in an open shadow root, which
Playwright's CSS selectors pierce. Skipped when Chromium or Playwright is missing.
"""

from __future__ import annotations

import itertools
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser_fixtures import expect, needs_chromium, serve

from vision_core import get_spec, list_models

Locator = Page = object  # Playwright's types, for the annotations (it may be absent: the tests then skip)
EMPTY_HINT = "Draw a digit on the black canvas"
# Every shipped digit model must load and answer; a missing checkpoint is a failure here, not a skip.
MODELS = list_models(task="digits")
CANVAS = "canvas.digit-canvas"
CANVAS_PX = 280
# White pixels of the canvas's backing store (at the screen's pixel ratio), read in the page.
INK = """c => { const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    let n = 0; for (let i = 0; i < d.length; i += 4) n += d[i] > 127; return n; }"""

pytestmark = needs_chromium


@pytest.fixture(scope="module")
def app_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from serve("app.py", tmp_path_factory.mktemp("streamlit") / "streamlit.log")


@pytest.fixture(scope="module")
def gallery_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from serve("tests/ui_gallery.py", tmp_path_factory.mktemp("gallery") / "streamlit.log")


def _draw(page: Page, stroke: list[tuple[float, float]]) -> None:
    """Draw one stroke through ``stroke`` (points in the unit square, y down) on the canvas, then release."""
    canvas = page.locator(CANVAS)
    expect(canvas).to_have_count(1)
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    assert box is not None and round(box["width"]) == round(box["height"]) == CANVAS_PX, box
    points = [(box["x"] + x * box["width"], box["y"] + y * box["height"]) for x, y in stroke]
    page.mouse.move(*points[0], steps=5)  # arrive as a hand does: hovering first (the old toolbar woke on hover)
    page.mouse.down()
    for point in points[1:]:
        page.mouse.move(*point, steps=25)  # many small moves, as a hand makes
    page.mouse.up()


def _clear(page: Page) -> None:
    page.get_by_role("button", name="Clear").click()
    expect(page.get_by_text(EMPTY_HINT)).to_be_visible()
    _wait_until_idle(page)
    assert page.locator(CANVAS).evaluate(INK) == 0


def _answer(page: Page, model: str) -> Locator:
    return page.get_by_test_id("stMetric").filter(has_text=get_spec(model).title).get_by_test_id("stMetricValue")


def _expect_all_say(page: Page, digit: int) -> None:
    """Wait until every model shows ``digit`` and the page says they agree."""
    for model in MODELS:
        expect(_answer(page, model), f"{model} should say {digit}").to_have_text(str(digit))
    success = page.get_by_test_id("stAlertContentSuccess")
    expect(success).to_contain_text(f"All {len(MODELS)} models say {digit}.")
    expect(success.locator("strong")).to_have_text(str(digit))


def _wait_until_idle(page: Page) -> None:
    """The script run is over and no element is left over from an earlier run (Streamlit marks those stale)."""
    expect(page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]')).to_have_count(1)
    expect(page.locator('[data-stale="true"]')).to_have_count(0)


def _box(locator: Locator) -> dict[str, float]:
    box = locator.bounding_box()
    assert box is not None, f"{locator} is not rendered"
    return box


def _open_draw_page(page: Page, app_url: str) -> None:
    page.goto(f"{app_url}/draw")
    expect(page.get_by_text(EMPTY_HINT)).to_be_visible()
    expect(page.get_by_test_id("stAlertContentError"), "every digit model should load").to_have_count(0)
    _wait_until_idle(page)


def test_draw_page_link_routes_through_app(page: Page, app_url: str) -> None:
    """A bookmarked /draw runs app.py's navigation (titles, wide layout), not the pages/ folder as a v1 app."""
    page.goto(f"{app_url}/draw")
    expect(page.get_by_text(EMPTY_HINT)).to_be_visible()
    # Streamlit runs a deep link as a v1 multipage app ("app", "draw", "home" in the sidebar, no wide layout)
    # when app.py sits next to a folder named pages/, so the pages must live in a folder with another name.
    nav = page.get_by_test_id("stSidebarNav")
    for title in ("Home", "Draw a digit"):
        expect(nav, "the sidebar should list app.py's st.Page titles").to_contain_text(title)


def test_draw_one_clear_then_draw_seven(page: Page, app_url: str, tmp_path: Path) -> None:
    _open_draw_page(page, app_url)

    # A "1": one vertical stroke.
    _draw(page, [(0.5, 0.15), (0.5, 0.85)])
    _expect_all_say(page, 1)
    expect(page.get_by_text(EMPTY_HINT)).to_have_count(0)
    _wait_until_idle(page)

    # What the model sees: the 28 x 28 input enlarged, then four square stage thumbnails in one row.
    expect(page.locator(".vx-input figcaption")).to_have_text("What every model sees: 28 × 28 pixels")
    images = page.locator(".vx-figure img")
    expect(images).to_have_count(5)
    for image in images.all():  # loaded, not broken
        expect(image).to_have_js_property("complete", True)
        expect(image).not_to_have_js_property("naturalWidth", 0)
    thumbnails = [_box(image) for image in images.all()[1:]]
    for box in thumbnails:  # the crop of a "1" is thin: unpadded, it is stretched into a tall strip
        assert abs(box["width"] - box["height"]) <= 1, f"stage thumbnails should be square: {thumbnails}"
        assert abs(box["width"] - thumbnails[0]["width"]) <= 1, f"stage thumbnails should share one size: {thumbnails}"
        assert abs(box["y"] - thumbnails[0]["y"]) <= 1, f"stage thumbnails should sit in one row: {thumbnails}"

    # One column of bars per model, side by side in one row, the bars starting at one height.
    bars = [_box(bars) for bars in page.locator(".vx-bars").all()]
    assert len(bars) == len(MODELS)
    assert all(abs(bar["y"] - bars[0]["y"]) < 2 for bar in bars), bars
    assert all(left["x"] + left["width"] <= right["x"] for left, right in itertools.pairwise(bars)), bars
    page.screenshot(path=tmp_path / "draw-1.png")

    _clear(page)
    expect(page.get_by_test_id("stMetric")).to_have_count(0)
    expect(page.locator(".vx-figure")).to_have_count(0)

    # A "7" in two strokes, released in between: the page answers each stroke, the stem alone first.
    _draw(page, [(0.78, 0.18), (0.42, 0.86)])
    _expect_all_say(page, 1)  # a slanted stem on its own is a 1
    _wait_until_idle(page)
    stem_only = page.locator(".vx-input img").get_attribute("src")
    _draw(page, [(0.22, 0.18), (0.78, 0.18)])
    expect(page.locator(".vx-input img")).not_to_have_attribute("src", stem_only or "")
    _wait_until_idle(page)
    _expect_all_say(page, 7)
    page.screenshot(path=tmp_path / "draw-7.png")
    expect(page.get_by_test_id("stException")).to_have_count(0)


# Strokes that begin in the top 30 px of the 280 px canvas (y < 0.107), where streamlit-drawable-canvas's invisible
# toolbar took the mouse-down: nothing was drawn.
TOP_STROKES = {
    "a 7 whose bar is at the very top": (7, [[(0.18, 0.03), (0.84, 0.03), (0.45, 0.95)]]),
    "a 0 begun at the top": (0, [[(0.5, 0.04), (0.27, 0.17), (0.2, 0.5), (0.28, 0.83), (0.5, 0.94), (0.72, 0.83),
                                  (0.8, 0.5), (0.73, 0.17), (0.52, 0.04)]]),
    "a 1 begun in the top right corner": (1, [[(0.82, 0.02), (0.8, 0.9)]]),
}  # fmt: skip


@pytest.mark.parametrize("name", TOP_STROKES)
def test_strokes_begun_at_the_top_edge_are_drawn(page: Page, app_url: str, name: str) -> None:
    digit, strokes = TOP_STROKES[name]
    _open_draw_page(page, app_url)
    for stroke in strokes:
        _draw(page, stroke)
    _expect_all_say(page, digit)
    assert page.locator(CANVAS).evaluate(INK) > 0


def test_stroke_width_changes_keep_the_drawing_and_apply_to_new_strokes(page: Page, app_url: str) -> None:
    """Quick changes of the width slider wiped streamlit-drawable-canvas while the old answer stayed."""
    _open_draw_page(page, app_url)
    _draw(page, [(0.5, 0.15), (0.5, 0.85)])
    _expect_all_say(page, 1)
    _wait_until_idle(page)
    ink = page.locator(CANVAS).evaluate(INK)
    slider = page.get_by_role("slider", name="Stroke width")
    slider.focus()
    for key in ["ArrowRight"] * 4 + ["ArrowLeft"] * 2 + ["End"]:  # quick, several reruns in flight
        page.keyboard.press(key)
    expect(slider).to_have_value("40")
    _wait_until_idle(page)
    assert page.locator(CANVAS).evaluate(INK) == ink, "the drawing must survive width changes"
    _expect_all_say(page, 1)

    # A horizontal stroke now is 40 px thick: count its white pixels down a column away from the "1". (The canvas
    # takes the new width when its script has run again after the rerun, a moment after the page is idle.)
    expect(page.locator(CANVAS)).to_have_attribute("data-stroke-width", "40")
    _draw(page, [(0.1, 0.5), (0.3, 0.5)])
    _wait_until_idle(page)
    thickness = page.locator(CANVAS).evaluate(
        """c => { const r = c.width / c.getBoundingClientRect().width, x = Math.round(0.2 * c.width);
            const d = c.getContext("2d").getImageData(x, 0, 1, c.height).data;
            let n = 0; for (let i = 0; i < d.length; i += 4) n += d[i] > 127; return n / r; }"""
    )
    assert abs(thickness - 40) <= 2, thickness


def test_the_drawing_and_settings_come_back_after_another_page(page: Page, app_url: str) -> None:
    _open_draw_page(page, app_url)
    slider = page.get_by_role("slider", name="Stroke width")
    slider.focus()
    page.keyboard.press("Home")  # 6 px
    expect(slider).to_have_value("6")
    _wait_until_idle(page)
    _draw(page, [(0.22, 0.18), (0.78, 0.18), (0.42, 0.86)])
    _expect_all_say(page, 7)
    _wait_until_idle(page)
    ink = page.locator(CANVAS).evaluate(INK)
    page.get_by_test_id("stSidebarNav").get_by_role("link", name="Home").click()
    expect(page.get_by_text("Models run on")).to_be_visible()
    page.get_by_test_id("stSidebarNav").get_by_role("link", name="Draw a digit").click()
    _expect_all_say(page, 7)
    expect(page.get_by_role("slider", name="Stroke width")).to_have_value("6")
    deadline = time.monotonic() + 10
    while page.locator(CANVAS).evaluate(INK) == 0 and time.monotonic() < deadline:
        page.wait_for_timeout(50)  # the kept drawing is painted once its image has loaded
    # Painted back from the 140 x 140 image the canvas sent: the same strokes, their edges a little softer.
    assert abs(page.locator(CANVAS).evaluate(INK) - ink) <= 0.15 * ink


def _contrast(page: Page, locator: Locator) -> float:
    """WCAG contrast ratio of ``locator``'s text colour (with its alpha) over the page's background."""
    return locator.evaluate(
        r"""e => {
            const rgba = s => s.match(/[\d.]+/g).map(Number);
            let [r, g, b, a = 1] = rgba(getComputedStyle(e).color);
            let node = e, background = null;
            while (node && !background) {
                const c = rgba(getComputedStyle(node).backgroundColor);
                if ((c[3] ?? 1) > 0) background = c; else node = node.parentElement;
            }
            background = background || [255, 255, 255];
            [r, g, b] = [r, g, b].map((v, i) => a * v + (1 - a) * background[i]);
            const lum = ([r, g, b]) => [r, g, b].map(v => v / 255).map(v => v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4)
                .reduce((sum, v, i) => sum + v * [0.2126, 0.7152, 0.0722][i], 0);
            const [light, dark] = [lum([r, g, b]), lum(background)].sort((x, y) => y - x);
            return (light + 0.05) / (dark + 0.05);
        }"""
    )


def test_captions_are_readable_on_a_projector(page: Page, app_url: str) -> None:
    """st.caption is the text colour at 60%: with Streamlit's default grey it was 3.7:1 on white."""
    _open_draw_page(page, app_url)
    caption = page.get_by_test_id("stCaptionContainer").first
    expect(caption).to_contain_text("Draw a digit with the mouse")
    assert _contrast(page, caption) >= 4.5  # WCAG AA for body text


def test_the_server_answers_this_machine_only(app_url: str) -> None:
    """`make run` listened on every interface, without a login, while the README said localhost."""
    port = int(app_url.rsplit(":", 1)[1])
    try:  # the address this machine would send from: a UDP "connection" only picks a route, it sends nothing
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("10.255.255.255", 1))
            outside = probe.getsockname()[0]
    except OSError:
        outside = "127.0.0.1"
    if outside.startswith("127."):
        pytest.skip("this machine has no address but loopback")
    with pytest.raises(OSError), socket.create_connection((outside, port), timeout=2):
        pass
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        pass


def _axis_labels(chart: Locator) -> dict[str, list[str]]:
    """{"X": labels, "Y": labels} of a vega chart (its axis groups carry an aria-label "X-axis titled ...")."""
    return chart.evaluate(
        """e => Object.fromEntries([...e.querySelectorAll("g.role-axis[aria-label]")].map(axis => [
            axis.getAttribute("aria-label")[0],
            [...axis.querySelectorAll("g.role-axis-label text")].map(t => t.textContent)]))"""
    )


def test_charts_in_the_browser(page: Page, gallery_url: str) -> None:
    """tests/ui_gallery.py: the training-curve overlay with 8 runs (Compare), and one-epoch and three-step
    runs (Fine-tune), as Chromium lays them out."""
    page.goto(gallery_url)
    charts = page.get_by_test_id("stVegaLiteChart")
    expect(charts).to_have_count(4)
    expect(charts.first.locator("g.role-legend-label text")).to_have_count(8)  # every run named, none cut off
    plot = charts.first.locator("path.background").first
    assert _box(plot)["height"] >= 290, "the plot keeps its 300 px whatever the legend's length"
    assert len(_axis_labels(charts.first)["Y"]) >= 3, "the y axis shows values"
    for chart in charts.all()[1:]:  # a count axis shows whole numbers; no axis shows "90.000000%"
        axes = _axis_labels(chart)
        assert axes["X"] and all(label.isdigit() for label in axes["X"]), axes
        assert axes["Y"] and not any(re.search(r"\.\d{4,}", label) for label in axes["Y"]), axes
