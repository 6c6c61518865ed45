"""Draw a digit: live predictions from every digit model, and what each model sees.

A stroke reruns only the drawing fragment (the canvas, the model input and the answers), not the page.
"""

from functools import partial

import numpy as np
import streamlit as st

from ui import state
from ui.canvas import CANVAS_SIZE, DrawingError, decode_drawing, digit_canvas
from ui.digits import answer_for, show_predictions
from ui.inside import show_cams, show_inside
from ui.resources import SHIPPED_DIGIT_MODELS, cached_mnist, digit_models, saved_runs
from ui.single_thread import run_single_threaded
from vision_core import ImageError, get_spec, load_image, predict_prepared, to_image, to_input
from vision_core.images import DIGIT_MAX_SIDE

SOURCES = (state.DRAW, state.UPLOAD)
CANVAS_KEY = "canvas"
INFO_WIDTH = 420
HINT = "Draw a digit on the black canvas (or upload a photo of one) to see what the models think."


def show_answer(read_image, models, beside) -> None:
    """Read the image (``read_image()``: the decoded drawing or upload, or None), preprocess it once, ask every
    model, and show what they see in the container ``beside`` the source and their answers below."""
    try:  # one hop to the single-threaded worker for all the tensor work (ui/single_thread.py)
        report, input_html = run_single_threaded(answer_for, read_image, models)
    except DrawingError as error:
        st.error(f"Cannot read the drawing: {error}")
        report = None
    with beside:
        if report is None:
            st.info(HINT, icon=":material/draw:", width=INFO_WIDTH)
        else:
            st.html(input_html)
    if report is not None:
        state.LAST_DRAWING.set(report.steps.centered)  # the Augmentation lab's and Compare's "my drawing"
        show_predictions(report.predictions)
        show_inside_the_network(models, report.steps.centered)


def show_inside_the_network(models, digit) -> None:
    """Feature maps, kernels, kernel x patch, attention and CAMs for this drawing, drawn only while the section is
    open: a collapsed section costs a stroke nothing."""
    inside = st.expander("Inside the network: feature maps, filters, attention", icon=":material/layers:", key="inside_open", on_change="rerun")  # fmt: skip
    if inside.open:
        with inside:
            show_inside(models, digit)
    cams = st.expander("Where did each model look? (class activation maps)", icon=":material/visibility:", key="inside_cams_open", on_change="rerun")  # fmt: skip
    if cams.open:
        with cams:
            show_cams(models, digit)


@st.fragment
def drawing(models, stroke_width: int) -> None:
    """The canvas and its answer: all a stroke reruns (a handful of elements: see ui/digits.py)."""
    row = st.container(horizontal=True, gap="large")
    with row:
        # A canvas mounted afresh (the page or the mode changed) gets the kept drawing back.
        restore = None if CANVAS_KEY in st.session_state else state.DRAWING.get()
        value = digit_canvas(stroke_width, key=CANVAS_KEY, restore=restore or None)
    if value is None:
        value = state.DRAWING.get()  # no stroke since the canvas was mounted: the kept drawing, if any
    else:
        state.DRAWING.set(value)
    show_answer(partial(decode_drawing, value) if value else lambda: None, models, row)


@st.fragment
def upload(models) -> None:
    row = st.container(horizontal=True, gap="large")
    image = None
    with row:
        upload = st.file_uploader(
            "A photo or scan of one handwritten digit",
            type=["png", "jpg", "jpeg", "webp", "bmp", "gif"],
            width=CANVAS_SIZE + 120,
        )
        if upload is not None:
            try:
                image = load_image(upload.getvalue(), max_side=DIGIT_MAX_SIDE, matte="contrast")
            except ImageError as error:
                st.error(f"Cannot use this file: {error}")
            else:
                st.image(image, caption="Your upload", width=CANVAS_SIZE)
    show_answer(lambda: image, models, row)


@st.fragment
def mnist_comparison(models) -> None:
    st.subheader("Compare with a real MNIST digit")
    test = cached_mnist("test")
    if st.button("Random MNIST test digit", icon=":material/casino:"):
        state.MNIST_INDEX.set(int(np.random.default_rng().integers(len(test))))
    index = state.MNIST_INDEX.get()
    if index is not None:
        digit_column, predictions_column = st.columns([1, 3])
        model_input = to_input(test.images[index : index + 1])[0]  # MNIST digits need no preprocessing
        digit_column.image(
            to_image(model_input, size=168), caption=f"Test image #{index}, labelled {int(test.labels[index])}"
        )
        with predictions_column:
            show_predictions(run_single_threaded(predict_prepared, model_input, models))


st.title("Draw a digit")
st.caption(
    "Draw a digit with the mouse (or a finger). Each stroke is prepared the way MNIST was made "
    "(crop, fit into 20 × 20, centre of mass in the middle of 28 × 28) and sent to every model."
)

runs = saved_runs()
if runs:  # the shipped models always answer; saved runs (some are large) only when picked
    chosen = st.multiselect(  # only runs that still exist (a link may name a deleted one)
        "Saved runs to ask as well", runs, format_func=lambda name: get_spec(name).title,
        **state.RUNS_ON_DRAW.widget(options=runs),
    )  # fmt: skip
else:
    chosen = []
models, problems = digit_models([*SHIPPED_DIGIT_MODELS, *chosen])
for name, message in problems.items():
    st.error(f"Model {name!r} is unavailable: {message}")
if not models:
    st.stop()

source = st.radio(
    "Input", SOURCES, horizontal=True, label_visibility="collapsed",
    **state.DRAW_SOURCE.widget(),
)  # fmt: skip
if source == state.DRAW:
    # Outside the fragment: a new width reruns the page once; strokes rerun only the fragment.
    stroke_width = st.slider(
        "Stroke width", min_value=6, max_value=40, width=CANVAS_SIZE, **state.STROKE_WIDTH.widget()
    )
    drawing(models, stroke_width)
else:
    upload(models)

st.divider()
mnist_comparison(models)
