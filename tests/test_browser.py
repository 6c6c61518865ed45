"""The Draw page in a real browser: draw digits on the canvas with the mouse and read every model's answer.

The app runs as a real ``streamlit run`` subprocess and Debian's Chromium is driven by Playwright (never a
downloaded browser). streamlit-drawable-canvas 0.13 is a components-v2 element: its fabric.js canvases live in
an open shadow root, which Playwright's CSS selectors pierce. Skipped when Chromium or Playwright is missing.
"""

from __future__ import annotations

import itertools
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from vision_core import get_spec, list_models

sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")
Browser, Locator, Page, sync_playwright = sync_api.Browser, sync_api.Locator, sync_api.Page, sync_api.sync_playwright

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = next(
    (path for path in ("/usr/bin/chromium", shutil.which("chromium")) if path and Path(path).exists()), None
)
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # The network is closed: background services would only flood the log with refused connections.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Bounds, not waits: on a quiet 2-core machine the module takes about 30 s, but a training job or a parallel test
# run can starve the app and the browser for a while (the first page load also reads every model's weights).
STARTUP_SECONDS = 90
TIMEOUT_MS = 60_000
expect = sync_api.Expect()  # this module's own expect(), so its timeout does not change anyone else's
expect.set_options(timeout=TIMEOUT_MS)
EMPTY_HINT = "Draw a digit on the black canvas"
# Every shipped digit model must load and answer; a missing checkpoint is a failure here, not a skip.
MODEL_TITLES = [get_spec(name).title for name in list_models(task="digits")]

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium at /usr/bin/chromium or on PATH (apt install chromium)"
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"streamlit exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.read().decode().strip() == "ok":
                    return
        except OSError:
            pass  # not listening yet
        time.sleep(0.25)
    pytest.fail(f"streamlit did not answer {url}/_stcore/health within {STARTUP_SECONDS} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def app_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh ``streamlit run app.py`` on a free port, stopped at the end whatever happens."""
    port = _free_port()
    log = tmp_path_factory.mktemp("streamlit") / "streamlit.log"
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true"]
    command += ["--server.port", str(port), "--browser.gatherUsageStats", "false"]
    with log.open("w") as log_file:
        process = subprocess.Popen(command, cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(url, process, log)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    # Wide and tall enough to show the canvas, the three charts side by side and the results in one screenshot:
    # Streamlit scrolls inside its own container, so a full-page screenshot would show no more than the viewport.
    page = browser.new_page(viewport={"width": 1400, "height": 1600})
    page.set_default_timeout(TIMEOUT_MS)
    try:
        yield page
    finally:
        page.close()


def _draw(page: Page, stroke: list[tuple[float, float]]) -> None:
    """Draw one stroke through ``stroke`` (points in the unit square, y down) on the canvas, then release."""
    canvas = page.locator("canvas.upper-canvas")  # fabric's event layer, inside the component's shadow root
    expect(canvas).to_have_count(1)
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    assert box is not None and round(box["width"]) == round(box["height"]) == 280, box
    points = [(box["x"] + x * box["width"], box["y"] + y * box["height"]) for x, y in stroke]
    page.mouse.move(*points[0])
    page.mouse.down()
    for point in points[1:]:
        page.mouse.move(*point, steps=25)  # many small moves, as a hand makes
    page.mouse.up()


def _expect_all_say(page: Page, digit: int) -> None:
    """Wait until every model's metric shows ``digit`` and the page says they agree."""
    for title in MODEL_TITLES:
        value = page.get_by_test_id("stMetric").filter(has_text=title).get_by_test_id("stMetricValue")
        expect(value, f"{title} should say {digit}").to_have_text(str(digit))
    success = page.get_by_test_id("stAlertContentSuccess")
    expect(success).to_contain_text(f"All {len(MODEL_TITLES)} models say {digit}.")
    expect(success.locator("strong")).to_have_text(str(digit))


def _wait_until_idle(page: Page) -> None:
    """The script run is over and no element is left over from an earlier run (Streamlit marks those stale)."""
    expect(page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]')).to_have_count(1)
    expect(page.locator('[data-stale="true"]')).to_have_count(0)


def _box(locator: Locator) -> dict[str, float]:
    box = locator.bounding_box()
    assert box is not None, f"{locator} is not rendered"
    return box


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
    page.goto(f"{app_url}/draw")
    expect(page.get_by_text(EMPTY_HINT)).to_be_visible()
    expect(page.get_by_test_id("stAlertContentError"), "every digit model should load").to_have_count(0)

    # A "1": one vertical stroke.
    _draw(page, [(0.5, 0.15), (0.5, 0.85)])
    _expect_all_say(page, 1)
    expect(page.get_by_text(EMPTY_HINT)).to_have_count(0)
    _wait_until_idle(page)

    # What the model sees: the 28 x 28 input enlarged, then four square stage thumbnails in one row.
    expect(page.get_by_test_id("stImageCaption").filter(has_text="What every model sees")).to_be_visible()
    images = page.locator('[data-testid="stImage"] img')
    expect(images).to_have_count(5)
    for image in images.all():  # loaded, not broken
        expect(image).to_have_js_property("complete", True)
        expect(image).not_to_have_js_property("naturalWidth", 0)
    thumbnails = [_box(image) for image in images.all()[1:]]
    for box in thumbnails:  # the crop of a "1" is thin: unpadded, it is stretched into a tall strip
        assert abs(box["width"] - box["height"]) <= 1, f"stage thumbnails should be square: {thumbnails}"
        assert abs(box["width"] - thumbnails[0]["width"]) <= 1, f"stage thumbnails should share one size: {thumbnails}"
        assert abs(box["y"] - thumbnails[0]["y"]) <= 1, f"stage thumbnails should sit in one row: {thumbnails}"

    # One probability chart per model, side by side in one row.
    charts = [_box(chart) for chart in page.get_by_test_id("stVegaLiteChart").all()]
    assert len(charts) == len(MODEL_TITLES)
    assert all(abs(chart["y"] - charts[0]["y"]) < 2 for chart in charts), charts
    assert all(left["x"] + left["width"] <= right["x"] for left, right in itertools.pairwise(charts)), charts
    page.screenshot(path=tmp_path / "draw-1.png")

    page.get_by_role("button", name="Clear").click()
    expect(page.get_by_text(EMPTY_HINT)).to_be_visible()
    expect(page.get_by_test_id("stMetric")).to_have_count(0)
    expect(page.get_by_test_id("stImage")).to_have_count(0)

    # A "7" in two strokes, released in between. The canvas reports every stroke, so the page first answers for
    # the stem alone; the run that saw both strokes is told apart by its new model-input image.
    model_input = page.locator('[data-testid="stImage"] img').first
    _draw(page, [(0.78, 0.18), (0.42, 0.86)])
    _expect_all_say(page, 1)  # a slanted stem on its own is a 1
    _wait_until_idle(page)
    stem_only = model_input.get_attribute("src")
    _draw(page, [(0.22, 0.18), (0.78, 0.18)])
    expect(model_input).not_to_have_attribute("src", stem_only or "")
    _wait_until_idle(page)
    _expect_all_say(page, 7)
    page.screenshot(path=tmp_path / "draw-7.png")
    expect(page.get_by_test_id("stException")).to_have_count(0)
