"""Draw a digit: live predictions from every digit model, and what each model sees."""

import numpy as np
import streamlit as st

# The canvas component raises when imported outside a running app, so it is imported here, in the page.
from streamlit_drawable_canvas import st_canvas

from ui.digits import show_model_input, show_predictions
from ui.resources import RUNS_ON_DRAW, SHIPPED_DIGIT_MODELS, cached_mnist, digit_models, saved_runs
from vision_core import (
    EmptyDrawingError,
    ImageError,
    get_spec,
    load_image,
    mnist_to_input,
    predict_digits,
    predict_prepared,
    to_image,
)
from vision_core.images import DIGIT_MAX_SIDE

CANVAS_SIZE = 280
DRAW, UPLOAD = "Draw on the canvas", "Upload a photo of a handwritten digit"

st.title("Draw a digit")
st.caption(
    "Draw a digit with the mouse (or a finger). Each stroke is prepared the way MNIST was made "
    "(crop, fit into 20 × 20, centre of mass in the middle of 28 × 28) and sent to every model."
)

runs = saved_runs()
if runs:  # the shipped models always answer; saved runs (some are large) only when picked
    if "draw_runs" not in st.session_state:
        st.session_state["draw_runs"] = [name for name in st.session_state.get(RUNS_ON_DRAW, []) if name in runs]
    st.multiselect(
        "Saved runs to ask as well",
        runs,
        key="draw_runs",
        format_func=lambda name: get_spec(name).title,
        on_change=lambda: st.session_state.update({RUNS_ON_DRAW: st.session_state["draw_runs"]}),
    )
models, problems = digit_models([*SHIPPED_DIGIT_MODELS, *st.session_state.get("draw_runs", [])])
for name, message in problems.items():
    st.error(f"Model {name!r} is unavailable: {message}")
if not models:
    st.stop()

st.session_state.setdefault("canvas_generation", 0)
source = st.radio("Input", [DRAW, UPLOAD], horizontal=True, label_visibility="collapsed")
left, right = st.columns([1, 1], gap="large")
image = None
with left:
    if source == DRAW:
        stroke_width = st.slider("Stroke width", min_value=6, max_value=40, value=22)
        canvas = st_canvas(
            stroke_width=stroke_width,
            stroke_color="#FFFFFF",
            background_color="#000000",
            height=CANVAS_SIZE,
            width=CANVAS_SIZE,
            drawing_mode="freedraw",
            return_image_data=True,
            key=f"canvas-{st.session_state.canvas_generation}",
        )
        if st.button("Clear", icon=":material/ink_eraser:"):
            st.session_state.canvas_generation += 1  # a new key mounts a fresh, empty canvas
            st.rerun()
        image = canvas.image_data
    else:
        upload = st.file_uploader(
            "A photo or scan of one handwritten digit", type=["png", "jpg", "jpeg", "webp", "bmp", "gif"]
        )
        if upload is not None:
            try:
                image = load_image(upload.getvalue(), max_side=DIGIT_MAX_SIDE, matte="contrast")
            except ImageError as error:
                st.error(f"Cannot use this file: {error}")
            else:
                st.image(image, caption="Your upload", width=CANVAS_SIZE)

report = None
if image is not None:
    try:
        report = predict_digits(image, models)
        st.session_state["last_drawing"] = report.steps.centered  # the Augmentation lab's "my drawing" source
    except EmptyDrawingError:
        report = None
with right:
    if report is None:
        st.info(
            "Draw a digit on the black canvas (or upload a photo of one) to see what the models think.",
            icon=":material/draw:",
        )
    else:
        show_model_input(report.steps)
        st.caption(f"Preprocessing took {report.preprocess_seconds * 1000:.1f} ms.")
if report is not None:
    show_predictions(report.predictions, key="drawn")

st.divider()
st.subheader("Compare with a real MNIST digit")
test = cached_mnist("test")
if st.button("Random MNIST test digit", icon=":material/casino:"):
    st.session_state.mnist_index = int(np.random.default_rng().integers(len(test)))
if "mnist_index" in st.session_state:
    index = st.session_state.mnist_index
    digit_column, predictions_column = st.columns([1, 3])
    model_input = mnist_to_input(test.images[index : index + 1])[0]  # MNIST digits need no preprocessing
    digit_column.image(
        to_image(model_input, size=168), caption=f"Test image #{index}, labelled {int(test.labels[index])}"
    )
    with predictions_column:
        show_predictions(predict_prepared(model_input, models), key="mnist")
