"""AppTest of the home page and the Draw page, driven the way a student would use them.

AppTest has no browser, so it cannot draw on the canvas (tests/test_browser.py does): here ``ui.canvas.digit_canvas``
is replaced by a stand-in that returns what the real canvas sends, a PNG data URL; everything after it is the page's
own code.
"""

import base64
import io
import time

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest
from synthetic_digits import DrawStyle, draw_digit

import ui.canvas
from ui.canvas import MAX_DRAWING_CHARS, DrawingError, decode_drawing
from ui.state import DRAW, UPLOAD
from vision_core import get_spec, list_models

MODELS = list_models(task="digits")
TITLES = [get_spec(name).title for name in MODELS]
# The bound the issue set for a hostile canvas value: refused within 0.1 s, whatever it declares.
REFUSE_WITHIN_S = 0.1


@pytest.fixture
def app(root) -> AppTest:
    return AppTest.from_file(str(root / "app.py"), default_timeout=120).run()


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def data_url(raw: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(raw).decode("ascii")


def answers(app: AppTest) -> dict[str, str]:
    """Model title -> the digit the page shows for it (each model's st.metric)."""
    return {metric.label: metric.value for metric in app.metric}


class FakeCanvas:
    """Stands in for ``ui.canvas.digit_canvas``: returns ``value`` and records what the page passed."""

    def __init__(self, value: str | None) -> None:
        self.value = value
        self.calls: list[dict] = []

    def __call__(self, stroke_width: int, key: str, restore: str | None = None) -> str | None:
        self.calls.append({"stroke_width": stroke_width, "key": key, "restore": restore})
        return self.value


@pytest.fixture
def canvas(monkeypatch) -> FakeCanvas:
    fake = FakeCanvas(None)
    monkeypatch.setattr(ui.canvas, "digit_canvas", fake)  # the page imports it from ui.canvas on every run
    return fake


def drawing_of(digit: int, **style) -> str:
    """A canvas value: the digit in white on an opaque black 280 x 280 RGBA canvas, as a PNG data URL."""
    strokes = draw_digit(digit, DrawStyle(**style))
    return data_url(png(strokes))


def test_home_page_shows_purpose_device_and_models(app):
    assert not app.exception
    text = " ".join(m.value for m in app.markdown)
    assert "Models run on" in text and ("CPU" in text or "GPU" in text or "NVIDIA" in text)
    links = [link.proto.label for link in app.get("page_link")]
    assert links == ["Draw a digit", "Augmentation lab", "Photo explorer", "Fine-tune", "My classes", "Compare"]
    assert len(app.caption) == len(links) and all(len(caption.value) > 40 for caption in app.caption)
    table = app.dataframe[0].value
    assert list(table["name"]) == MODELS
    assert (table["MNIST test accuracy"] > 0.98).all()


def test_draw_page_starts_with_a_hint_not_noise(app, canvas):
    app.switch_page("app_pages/draw.py").run()
    assert not app.exception and not app.error
    assert any("Draw a digit" in info.value for info in app.info)
    assert not answers(app)  # no predictions for an empty canvas
    assert canvas.calls and canvas.calls[-1]["stroke_width"] == 22


def test_a_canvas_drawing_goes_through_the_page(app, canvas):
    canvas.value = drawing_of(3, height=120, center=(180, 100), stroke_width=14)  # small, top right
    app.switch_page("app_pages/draw.py").run()
    assert not app.exception and not app.error
    assert answers(app) == dict.fromkeys(TITLES, "3")
    assert any(f"All {len(MODELS)} models say **3**" in s.value for s in app.success)
    page = " ".join(element.proto.body for element in app.get("html"))  # what the models see, and their bars
    assert "What every model sees: 28 × 28 pixels" in page
    assert all(stage in page for stage in ("1. strokes", "2. cropped", "3. fit 20 × 20", "4. centred"))
    assert page.count("confidence ") == len(MODELS) and " ms<br>MNIST test " in page
    # The Augmentation lab's and Compare's "my drawing": the input the models saw.
    assert tuple(app.session_state["last_drawing"].shape) == (1, 28, 28)


def test_a_cleared_canvas_shows_the_hint(app, canvas):
    canvas.value = ""  # what the canvas sends after Clear
    app.switch_page("app_pages/draw.py").run()
    assert not app.exception and not app.error and not answers(app)
    assert any("Draw a digit" in info.value for info in app.info)


@pytest.mark.parametrize("mode", ["1", "RGB"])
def test_an_8000_by_8000_canvas_value_is_refused_at_once(mode):
    """Issue 10: an 8000 x 8000 image sent as the canvas value (339 KB) ran predict_digits for 8.4 s and grew the
    process by 2 GB. A 1-bit one is 8 kB (refused by the header's pixel count), an RGB one 186 kB (the same), and
    the issue's one is longer than any drawing (refused by its length)."""
    value = data_url(png(np.zeros((8000, 8000), bool) if mode == "1" else np.zeros((8000, 8000, 3), np.uint8)))
    for hostile in (value, value + "A" * (MAX_DRAWING_CHARS - len(value) + 4)):
        start = time.perf_counter()
        with pytest.raises(DrawingError):
            decode_drawing(hostile)
        assert time.perf_counter() - start < REFUSE_WITHIN_S


@pytest.mark.parametrize(
    "value", ["", "data:image/jpeg;base64,/9j/", "data:image/png;base64,not base64!", data_url(b"not a PNG file")]
)
def test_a_canvas_value_that_is_not_a_drawing_is_refused(value):
    with pytest.raises(DrawingError):
        decode_drawing(value)


def test_a_drawing_decodes_to_the_canvas_pixels():
    strokes = draw_digit(7, DrawStyle())
    image = decode_drawing(data_url(png(strokes)))
    assert image.mode == "RGB" and image.size == (280, 280)
    assert np.array_equal(np.asarray(image)[..., 0], strokes[..., 0])


def test_the_page_refuses_a_hostile_canvas_value_with_a_message(app, canvas):
    canvas.value = data_url(png(np.zeros((8000, 8000, 3), np.uint8)))
    app.switch_page("app_pages/draw.py")
    start = time.perf_counter()
    app.run()
    assert time.perf_counter() - start < 10  # a whole page run, models cached: it did not decode 64 MP
    assert not app.exception and not answers(app)
    assert any("Cannot read the drawing" in error.value for error in app.error)


def test_settings_survive_switching_modes_and_pages(app, canvas):
    """Streamlit forgets a widget that a run does not draw: the stroke width came back as 22 after "Upload" or
    another page. ui/state.py keeps it."""
    app.switch_page("app_pages/draw.py").run()
    app.slider(key="stroke_width.widget").set_value(31).run()
    app.radio(key="draw_source.widget").set_value(UPLOAD).run()
    assert not app.slider  # the canvas and its slider are gone in upload mode
    app.radio(key="draw_source.widget").set_value(DRAW).run()
    assert app.slider(key="stroke_width.widget").value == 31 and canvas.calls[-1]["stroke_width"] == 31
    app.switch_page("app_pages/home.py").run()
    app.switch_page("app_pages/draw.py").run()
    assert app.slider(key="stroke_width.widget").value == 31
    assert app.radio(key="draw_source.widget").value == DRAW


def test_the_drawing_comes_back_after_a_mode_switch(app, canvas):
    seven = drawing_of(7)
    canvas.value = seven
    app.switch_page("app_pages/draw.py").run()
    assert answers(app) == dict.fromkeys(TITLES, "7")
    app.radio(key="draw_source.widget").set_value(UPLOAD).run()
    canvas.value = None  # the browser mounts a fresh canvas, which has sent nothing yet
    app.radio(key="draw_source.widget").set_value(DRAW).run()
    assert canvas.calls[-1]["restore"] == seven  # painted back into the fresh canvas
    assert answers(app) == dict.fromkeys(TITLES, "7")  # and still answered


def test_draw_page_reads_a_photographed_digit(app):
    """A photo of paper: dark strokes on light grey, off-centre. The page inverts, centres and predicts."""
    app.switch_page("app_pages/draw.py").run()
    app.radio(key="draw_source.widget").set_value(UPLOAD).run()
    strokes = draw_digit(7, DrawStyle(height=150, center=(90, 180), stroke_width=16, rotation=6))[..., 0]
    paper = (230 - strokes.astype(np.float32) * 0.8).astype(np.uint8)
    app.file_uploader[0].set_value(("seven.png", png(paper), "image/png")).run()
    assert not app.exception and not app.error
    assert answers(app) == dict.fromkeys(TITLES, "7")
    assert any(f"All {len(TITLES)} models say **7**" in s.value for s in app.success)


def test_draw_page_explains_a_bad_upload(app):
    app.switch_page("app_pages/draw.py").run()
    app.radio(key="draw_source.widget").set_value(UPLOAD).run()
    app.file_uploader[0].set_value(("digit.png", b"this is not a PNG", "image/png")).run()
    assert not app.exception
    assert any("Cannot use this file" in e.value for e in app.error)
    assert not answers(app)


def test_random_mnist_digit_shows_every_model_and_stays(app):
    app.switch_page("app_pages/draw.py").run()
    next(b for b in app.button if "Random MNIST" in b.label).click().run()
    assert not app.exception
    shown = answers(app)
    assert list(shown) == TITLES and all(label in "0123456789" for label in shown.values())
    caption = next(image.captions for image in app.get("image") if image.captions)
    app.switch_page("app_pages/home.py").run()
    app.switch_page("app_pages/draw.py").run()
    assert next(image.captions for image in app.get("image") if image.captions) == caption  # the same test digit
