"""Lecture mode in a real browser (issue 12): for each page, a view set up in one browser session is copied with
"Copy link to this view" and opened in a fresh session (another browser context: no shared state), which must show
the same state; the lecturer's scenes step with Previous / Next; the projector view meets its minimum sizes.

Minimum sizes of the projector view (ui/projector.py; README, "Lecture mode"), measured in Chromium at a 1400 px
wide window: body text and captions at least 24 px (computed font-size), every chart's plot at least 400 px tall
(its bounding box, and the screenshot of the chart), the sidebar hidden.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser_fixtures import TIMEOUT_MS, expect, needs_chromium, serve
from PIL import Image

from ui.projector import MIN_CHART_PX, MIN_TEXT_PX
from ui.state import UPLOAD

Browser = Page = Locator = object  # Playwright's types, for the annotations (it may be absent: the tests then skip)
ROOT = Path(__file__).resolve().parent.parent
SCENES = ROOT / "scenes.example.toml"

pytestmark = needs_chromium


@pytest.fixture(scope="module")
def app_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # No pretrained hub weights (the Photo explorer then uses EfficientNet-Lite0, which ships); the example scenes.
    env = {"VISION_SCENES": str(SCENES), "TORCH_HOME": str(tmp_path_factory.mktemp("torch_home"))}
    yield from serve("app.py", tmp_path_factory.mktemp("streamlit") / "streamlit.log", env=env)


@pytest.fixture
def fresh(browser: Browser) -> Iterator[Page]:
    """A second browser context: another visitor, with no cookie and no session of the first."""
    context = browser.new_context(viewport={"width": 1400, "height": 1600})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    try:
        yield page
    finally:
        context.close()


def _idle(page: Page) -> None:
    expect(page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]')).to_have_count(1)
    expect(page.locator('[data-stale="true"]')).to_have_count(0)


def _open(page: Page, url: str) -> None:
    page.goto(url)
    _idle(page)
    expect(page.get_by_test_id("stException")).to_have_count(0)


def _copied_link(page: Page) -> str:
    _idle(page)
    page.get_by_role("button", name="Copy link to this view").click()
    field = page.get_by_label("Link to this view")
    expect(field).to_have_value(re.compile(r"^http"))
    return field.input_value()


def _selectbox(page: Page, label: str) -> Locator:
    """A selectbox's input: its value is the option shown."""
    return page.get_by_role("combobox", name=label, exact=True).first


def _choose(page: Page, label: str, option: str, in_link: str) -> None:
    """Pick ``option`` and wait until the link holds ``in_link`` (the run the choice started is then under way)."""
    box = _selectbox(page, label)
    box.scroll_into_view_if_needed()  # scrolling while the list is open closes it
    box.fill(option)  # typing filters the options; Enter takes the first
    expect(page.get_by_role("option", name=option, exact=True)).to_be_visible()
    box.press("Enter")
    expect(_selectbox(page, label)).to_have_value(option)
    expect(page).to_have_url(re.compile(re.escape(in_link)))
    _idle(page)


def _choose_open(page: Page, label: str, option: str) -> None:
    page.get_by_role("option", name=option, exact=True).click()
    expect(_selectbox(page, label)).to_have_value(option)
    _idle(page)


def test_draw_page_link(page: Page, fresh: Page, app_url: str) -> None:
    _open(page, f"{app_url}/draw")
    page.get_by_text(UPLOAD).click()
    _idle(page)
    page.get_by_role("button", name="Random MNIST test digit").click()
    shown = page.get_by_text(re.compile(r"Test image #\d+, labelled \d"))
    expect(shown).to_be_visible()
    link = _copied_link(page)
    assert "/draw?" in link and "draw_source=upload" in link and "mnist_index=" in link, link
    _open(fresh, link)
    expect(fresh.get_by_role("radio", name=UPLOAD)).to_be_checked()
    expect(fresh.get_by_text(shown.inner_text(), exact=True)).to_be_visible()


def test_augmentation_lab_link(page: Page, fresh: Page, app_url: str) -> None:
    _open(page, f"{app_url}/augment")
    page.get_by_role("button", name="Another digit").click()
    _idle(page)
    seed = page.get_by_label("Seed")
    seed.fill("1234")
    seed.press("Enter")
    _idle(page)
    page.get_by_role("button", name="Add step").click()  # the catalogue's first transform
    _idle(page)
    digit = page.get_by_text(re.compile(r"MNIST test image #\d+, labelled \d")).inner_text()
    page.get_by_role("tab", name="JSON", exact=True).click()
    pipeline = page.get_by_test_id("stCode").filter(has_text="augmentation-pipeline").inner_text()
    assert pipeline.count('"name"') == 3  # the shipped preset's two steps and the added one
    link = _copied_link(page)
    assert "aug_seed=1234" in link and "aug_pipeline=" in link, link
    _open(fresh, link)
    expect(fresh.get_by_label("Seed")).to_have_value("1234")
    expect(fresh.get_by_text(digit, exact=True)).to_be_visible()
    fresh.get_by_role("tab", name="JSON", exact=True).click()
    expect(fresh.get_by_test_id("stCode").filter(has_text="augmentation-pipeline")).to_have_text(pipeline)


def test_photo_explorer_link(page: Page, fresh: Page, app_url: str) -> None:
    _open(page, f"{app_url}/photo")
    _choose(page, "Sample photo", "coffee.png", "photo_sample=coffee.png")
    channels = page.get_by_role("slider", name="Channels per layer")
    channels.focus()
    page.keyboard.press("End")  # 64 (a slider, not a list: a list far down the page closes as images load)
    expect(page).to_have_url(re.compile("photo_channels=64"))
    _idle(page)
    top = page.get_by_test_id("stProgress").first
    expect(top).to_contain_text("%")
    answer = top.inner_text()
    grids = page.get_by_text(re.compile(r"the 64 strongest$"))
    expect(grids).not_to_have_count(0)
    link = _copied_link(page)
    assert "photo_sample=coffee.png" in link and "photo_channels=64" in link, link
    _open(fresh, link)
    expect(_selectbox(fresh, "Sample photo")).to_have_value("coffee.png")
    expect(fresh.get_by_role("slider", name="Channels per layer")).to_have_value("64")
    expect(fresh.get_by_test_id("stProgress").first).to_have_text(answer)
    expect(fresh.get_by_text(re.compile(r"the 64 strongest$"))).to_have_count(grids.count())


def test_fine_tune_link(page: Page, fresh: Page, app_url: str) -> None:
    _open(page, f"{app_url}/finetune")
    _choose(page, "Dataset", "CIFAR-10", "ft_data=cifar10")
    model = _selectbox(page, "Model").input_value()
    link = _copied_link(page)
    assert "ft_data=cifar10" in link, link
    _open(fresh, link)
    expect(_selectbox(fresh, "Dataset")).to_have_value("CIFAR-10")
    expect(_selectbox(fresh, "Model")).to_have_value(model)


def test_compare_link(page: Page, fresh: Page, app_url: str) -> None:
    _open(page, f"{app_url}/compare")
    _selectbox(page, "Model").click()
    name = page.get_by_role("option").nth(1).inner_text()
    _choose_open(page, "Model", name)
    expect(page).to_have_url(re.compile(r"cmp_inspect=" + re.escape(name.rsplit("(", 1)[-1].rstrip(")")) + r"\b"))
    _idle(page)
    link = _copied_link(page)
    assert "cmp_inspect=" in link, link
    _open(fresh, link)
    expect(_selectbox(fresh, "Model")).to_have_value(name)


def test_a_page_without_settings_links_to_the_page(page: Page, fresh: Page, app_url: str) -> None:
    _open(page, f"{app_url}/my-classes")
    link = _copied_link(page)
    assert link.split("?")[0].endswith("/my-classes"), link
    _open(fresh, link)
    expect(fresh.get_by_role("heading", name="My classes")).to_be_visible()


def test_scenes_step_with_next_and_previous(page: Page, app_url: str) -> None:
    _open(page, app_url)
    steps = page.get_by_test_id("stSidebar")
    expect(steps.get_by_text("7 scenes: Next opens the first.")).to_be_visible()
    steps.get_by_role("link", name="Next").click()
    _idle(page)
    expect(page.get_by_text("Scene 1 of 7:")).to_be_visible()
    assert "scene=1" in page.url and "stroke_width=30" in page.url
    expect(page.get_by_role("slider", name="Stroke width")).to_have_value("30")
    page.get_by_test_id("stSidebar").get_by_role("link", name="Next").click()
    _idle(page)
    expect(page.get_by_text("Scene 2 of 7:")).to_be_visible()
    expect(page.get_by_text(re.compile(r"Test image #42, labelled \d"))).to_be_visible()
    page.get_by_test_id("stSidebar").get_by_role("link", name="Previous").click()
    _idle(page)
    expect(page.get_by_text("Scene 1 of 7:")).to_be_visible()


def _plot_height(chart: Locator) -> float:
    box = chart.locator("path.background").first.bounding_box()  # the plot area vega draws
    assert box is not None
    return box["height"]


def test_projector_view_meets_its_minimum_sizes(page: Page, app_url: str) -> None:
    _open(page, f"{app_url}/augment")
    chart = page.get_by_test_id("stVegaLiteChart").first
    chart.scroll_into_view_if_needed()  # a chart off screen may not be drawn yet
    expect(chart.locator("path.background")).not_to_have_count(0)
    assert _plot_height(chart) < MIN_CHART_PX  # the measure tells the views apart: 320 px outside the projector

    _open(page, f"{app_url}/augment?projector=1")
    expect(page.get_by_test_id("stSidebar")).to_be_hidden()
    leave = page.get_by_role("button", name="Leave projector view")  # the way back out, on the page
    expect(leave).to_be_visible()
    sizes = page.evaluate(
        """() => [...document.querySelectorAll('[data-testid="stMarkdownContainer"] p, [data-testid="stCaptionContainer"]')]
            .filter(e => e.offsetParent !== null && e.textContent.trim())
            .map(e => parseFloat(getComputedStyle(e).fontSize))"""
    )
    assert sizes and min(sizes) >= MIN_TEXT_PX, sizes
    chart = page.get_by_test_id("stVegaLiteChart").first
    chart.scroll_into_view_if_needed()
    expect(chart.locator("path.background")).not_to_have_count(0)
    assert _plot_height(chart) >= MIN_CHART_PX
    shot = Image.open(io.BytesIO(chart.screenshot()))
    assert shot.height >= MIN_CHART_PX, shot.size  # the screenshot: plot, axes and legend, at 1 px per CSS px
    leave.click()
    expect(page.get_by_test_id("stSidebar")).to_be_visible()
    expect(page).not_to_have_url(re.compile("projector="))
