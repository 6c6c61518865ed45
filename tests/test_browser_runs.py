"""Runs in a real browser: start a run on the Fine-tune page, watch it, stop it, train another and save it; teach the
My classes page two classes from uploaded pictures, train, and try a new photo. Playwright drives Debian's Chromium
against a real ``streamlit run`` (the runs train in their own processes, as in class)."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser_fixtures import expect, needs_chromium, serve
from PIL import Image, ImageDraw

pytestmark = needs_chromium
RUN_S = 240_000  # ms: a run's process starts, loads its data and trains on a shared 2-core machine


@pytest.fixture(scope="module")
def app_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    runs = {"VISION_EXPLORER_RUNS_DIR": str(tmp_path_factory.mktemp("runs"))}  # nothing saved here stays
    yield from serve("app.py", tmp_path_factory.mktemp("streamlit") / "streamlit.log", env=runs)


def set_number(page, label: str, value: int) -> None:
    field = page.get_by_label(label, exact=True)
    field.fill(str(value))
    field.press("Enter")


def test_a_run_is_started_watched_stopped_then_another_trained_and_saved(page, app_url: str) -> None:
    page.goto(f"{app_url}/finetune")
    expect(page.get_by_text("This run needs about")).to_be_visible()
    page.get_by_role("button", name="Start run").click()
    progress = page.get_by_text(re.compile(r"Step [\d,]+ of [\d,]+"))
    expect(progress).to_be_visible(timeout=RUN_S)  # watched: the live fragment shows the steps going by
    page.get_by_role("button", name="Stop").click()
    expect(page.get_by_text(re.compile(r"Stopped at step [\d,]+ of"))).to_be_visible()

    set_number(page, "Max steps (0: no limit)", 20)
    page.get_by_role("button", name="Start run").click()
    expect(page.get_by_test_id("stMetric").filter(has_text="Test accuracy")).to_be_visible(timeout=RUN_S)
    name = page.get_by_label("Name", exact=True)
    name.fill("browser-run")
    name.press("Enter")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_text("Saved as browser-run")).to_be_visible()
    expect(page.get_by_test_id("stException")).to_have_count(0)


def picture(color: tuple[int, int, int], seed: int) -> bytes:
    image = Image.new("RGB", (120, 90), (235, 235, 235))
    ImageDraw.Draw(image).ellipse((10 + seed, 10, 80 + seed, 80), fill=color)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_my_classes_learns_two_uploaded_classes_and_answers_a_new_photo(page, app_url: str, tmp_path: Path) -> None:
    page.goto(f"{app_url}/my-classes")
    expect(page.get_by_text("Number of classes")).to_be_visible()
    for number, (name, color) in enumerate((("red", (210, 30, 30)), ("blue", (30, 40, 210)))):
        field = page.get_by_label(f"Class {number + 1}", exact=True)
        field.fill(name)
        field.press("Enter")
        files = []
        for seed in range(6):
            path = tmp_path / f"{name}{seed}.png"
            path.write_bytes(picture(color, seed * 4))
            files.append(str(path))
        uploader = page.get_by_test_id("stFileUploader").filter(has_text=f"Pictures of {name}")
        uploader.locator('input[type="file"]').set_input_files(files)
        expect(page.get_by_text("6 picture(s)")).to_have_count(number + 1)
    page.get_by_role("button", name="Train").click()
    expect(page.get_by_test_id("stMetric").filter(has_text="Test accuracy")).to_be_visible(timeout=RUN_S)
    new = tmp_path / "new.png"
    new.write_bytes(picture((190, 40, 50), 20))
    try_it = page.get_by_test_id("stFileUploader").filter(has_text="A photo")
    try_it.locator('input[type="file"]').set_input_files(str(new))
    expect(page.get_by_test_id("stProgress").filter(has_text="red:").first).to_be_visible()
    answers = page.get_by_test_id("stProgress").all_inner_texts()
    assert answers and answers[0].startswith("red:"), answers
    expect(page.get_by_test_id("stException")).to_have_count(0)
