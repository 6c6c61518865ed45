"""AppTest of the home page and the Draw page, driven the way a student would use them."""

import io
import sys

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest
from synthetic_digits import DrawStyle, draw_digit

from vision_core import get_spec, list_models

TITLES = [get_spec(name).title for name in list_models(task="digits")]


@pytest.fixture
def app(root) -> AppTest:
    return AppTest.from_file(str(root / "app.py"), default_timeout=120).run()


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_home_page_shows_purpose_device_and_models(app):
    assert not app.exception
    text = " ".join(m.value for m in app.markdown)
    assert "Models run on" in text and ("CPU" in text or "GPU" in text or "NVIDIA" in text)
    links = [link.proto.label for link in app.get("page_link")]
    assert links == ["Draw a digit", "Augmentation lab", "Photo explorer", "Fine-tune", "My classes", "Compare"]
    assert len(app.caption) == len(links) and all(len(caption.value) > 40 for caption in app.caption)
    table = app.dataframe[0].value
    assert list(table["name"]) == list_models(task="digits")
    assert (table["MNIST test accuracy"] > 0.98).all()


def test_draw_page_starts_with_a_hint_not_noise(app):
    app.switch_page("app_pages/draw.py").run()
    assert not app.exception and not app.error
    assert any("Draw a digit" in info.value for info in app.info)
    assert not app.metric  # no predictions for an empty canvas


def test_draw_page_reads_a_photographed_digit(app):
    """A photo of paper: dark strokes on light grey, off-centre. The page inverts, centres and predicts."""
    app.switch_page("app_pages/draw.py").run()
    app.radio[0].set_value("Upload a photo of a handwritten digit").run()
    strokes = draw_digit(7, DrawStyle(height=150, center=(90, 180), stroke_width=16, rotation=6))[..., 0]
    paper = (230 - strokes.astype(np.float32) * 0.8).astype(np.uint8)
    app.file_uploader[0].set_value(("seven.png", png(paper), "image/png")).run()
    assert not app.exception and not app.error
    assert [m.label for m in app.metric] == TITLES
    assert [m.value for m in app.metric] == ["7"] * len(TITLES)
    assert any(f"All {len(TITLES)} models say **7**" in s.value for s in app.success)
    captions = [caption for image in app.get("image") for caption in image.captions]
    assert "What every model sees: 28 × 28 pixels" in captions
    assert {"1. strokes", "2. cropped", "3. fit 20 × 20", "4. centred"} <= set(captions)


def test_draw_page_explains_a_bad_upload(app):
    app.switch_page("app_pages/draw.py").run()
    app.radio[0].set_value("Upload a photo of a handwritten digit").run()
    app.file_uploader[0].set_value(("digit.png", b"this is not a PNG", "image/png")).run()
    assert not app.exception
    assert any("Cannot use this file" in e.value for e in app.error)
    assert not app.metric


def test_random_mnist_digit_shows_three_predictions(app):
    app.switch_page("app_pages/draw.py").run()
    next(b for b in app.button if "Random MNIST" in b.label).click().run()
    assert not app.exception
    assert [m.label for m in app.metric] == TITLES
    assert all(m.value in [str(d) for d in range(10)] for m in app.metric)


CANVAS_MODULE = "streamlit_drawable_canvas"


def drawing_page_with_canvas(drawing_path: str) -> None:
    """The Draw page with the canvas component replaced by one that returns a given drawing.

    AppTest cannot drive a custom component, so this swaps in a stand-in module before the page
    imports it; everything after the canvas is the page's own code. (The browser test draws for real.)
    """
    import runpy
    import sys
    import types
    from pathlib import Path

    import numpy as np

    class Result:
        image_data = np.load(drawing_path)

    sys.modules["streamlit_drawable_canvas"] = types.SimpleNamespace(st_canvas=lambda **kwargs: Result())
    runpy.run_path(str(Path.cwd() / "app_pages" / "draw.py"), run_name="__main__")


def test_a_canvas_drawing_goes_through_the_page(tmp_path, root, monkeypatch):
    monkeypatch.chdir(root)
    # The stand-in canvas goes into this process's sys.modules: put the real one back afterwards.
    monkeypatch.setitem(sys.modules, CANVAS_MODULE, sys.modules.get(CANVAS_MODULE))
    drawing = draw_digit(3, DrawStyle(height=120, center=(180, 100), stroke_width=14))  # small, top right
    np.save(tmp_path / "drawing.npy", drawing)
    app = AppTest.from_function(
        drawing_page_with_canvas, args=(str(tmp_path / "drawing.npy"),), default_timeout=120
    ).run()
    assert not app.exception, app.exception
    assert [m.value for m in app.metric] == ["3"] * len(TITLES)
    latency = [c.value for c in app.caption if "confidence" in c.value]
    assert len(latency) == len(TITLES) and all(" ms" in c for c in latency)
