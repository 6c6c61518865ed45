"""Augmentation lab: build a torchvision v2 pipeline, preview it, export it, and probe how robust the digit models are."""

import time

import numpy as np
import streamlit as st
import torch
from PIL import Image
from torch import nn

from ui import projector, state
from ui.augment import STEPS, add_step, edit_step, load_spec, show_grid, show_stages
from ui.charts import robustness_chart
from ui.resources import cached_mnist, digit_models
from vision_core import ImageError, get_spec, load_image, predict_prepared, to_image, to_input
from vision_core.augment import (
    CATALOGUE,
    MAX_STEPS,
    PRESETS,
    PREVIEW_MAX_SIDE,
    PROBES,
    AugmentError,
    PipelineSpec,
    Step,
    intermediates,
    list_sample_photos,
    pipeline_to_code,
    preview,
    preview_batch,
    probe_images,
    robustness_curve,
    spec_from_json,
    spec_to_json,
)

MNIST, DRAWING, SAMPLE, UPLOAD = state.AUG_SOURCES


# Fragments: moving the step-by-step or probe controls reruns only that section, not the whole preview.
@st.fragment
def step_by_step(image: torch.Tensor | Image.Image, spec: PipelineSpec, seed: int, count: int, digit: bool) -> None:
    st.markdown("**Step by step**")
    sample = st.number_input(
        "Sample", min_value=1, max_value=count, value=1, help="which sample of the grid, row by row"
    )
    try:
        show_stages(intermediates(image, spec, seed, int(sample) - 1), digit)
    except AugmentError as error:
        st.error(str(error))


@st.fragment
def robustness_probe(digit: torch.Tensor, truth: int | None, models: dict[str, nn.Module]) -> None:
    if truth is None:  # a drawing: the student says what it is; the models' first answer is the starting guess
        guess = next(iter(predict_prepared(digit, models).values())).label
        truth = int(st.number_input("The digit you drew", min_value=0, max_value=9, value=guess, key="aug_truth"))
    probe_column, range_column, points_column = st.columns([2, 3, 1])
    name = probe_column.selectbox("Change", list(PROBES), format_func=lambda n: PROBES[n].title)
    probe = PROBES[name]
    low, high = range_column.slider(
        f"Range ({probe.unit})", min_value=float(probe.low), max_value=float(probe.high),
        value=tuple(float(v) for v in probe.default), key=f"aug_range_{name}",
    )  # fmt: skip
    points = points_column.number_input("Points", min_value=3, max_value=181, value=37, step=2)
    values = np.linspace(low, high, int(points)).tolist()
    try:
        titled = {get_spec(n).title: model for n, model in models.items()}
        table = robustness_curve(digit, truth, name, values, titled)
        chart = robustness_chart(table, truth, f"{probe.title} ({probe.unit})")
        st.altair_chart(projector.chart(chart), width="stretch")
        strip = np.linspace(low, high, 7).tolist()
        for column, value, shown in zip(st.columns(7), strip, probe_images(digit, name, strip), strict=True):
            column.image(to_image(shown, size=84), caption=f"{value:.3g}")
    except AugmentError as error:
        st.error(str(error))


st.title("Augmentation lab")
st.caption(
    "Augmentation shows a model many plausible variants of each training image. Build a pipeline from "
    "torchvision's v2 transforms, see what it makes of a digit or a photo, export it as code, and probe "
    "how the digit models cope when one change is pushed further and further."
)

# --- Source image -------------------------------------------------------------------------------------------------
test = cached_mnist("test")
if state.AUG_DIGIT.get() is None:  # a random digit, then kept (and in the link)
    state.AUG_DIGIT.set(int(np.random.default_rng().integers(len(test))))
source = st.radio("Source image", state.AUG_SOURCES, horizontal=True, **state.AUG_SOURCE.widget())
image, label = None, None
picture, chooser = st.columns([1, 3])
with chooser:
    if source == MNIST:
        if st.button("Another digit", icon=":material/casino:"):
            state.AUG_DIGIT.set(int(np.random.default_rng().integers(len(test))))
        index = state.AUG_DIGIT.get()
        image, label = to_input(test.images[index : index + 1])[0], int(test.labels[index])
        st.caption(f"MNIST test image #{index}, labelled {label}.")
    elif source == DRAWING:
        image = st.session_state.get("last_drawing")
        if image is None:
            st.info("Nothing drawn yet: draw a digit on the Draw page, then come back.", icon=":material/draw:")
            st.page_link("app_pages/draw.py", label="Draw a digit", icon=":material/draw:")
        else:
            st.caption("Your last drawing from the Draw page, as the models see it (28 × 28).")
    elif source == SAMPLE:
        photos = list_sample_photos()
        if not photos:
            st.info("No sample photos in data/samples.")
        else:
            by_name = {photo.name: photo for photo in photos}
            name = st.selectbox(
                "Photo", list(by_name), format_func=lambda n: by_name[n].stem.replace("_", " "),
                **state.AUG_PHOTO.widget(options=list(by_name)),
            )  # fmt: skip
            path = by_name[name]
            try:
                image = load_image(path, max_side=PREVIEW_MAX_SIDE)
            except ImageError as error:
                st.error(f"Cannot use {path.name}: {error}")
    else:
        upload = st.file_uploader("A photo", type=["png", "jpg", "jpeg", "webp", "bmp", "gif"])
        if upload is not None:
            try:
                image = load_image(upload.getvalue(), max_side=PREVIEW_MAX_SIDE)
            except ImageError as error:
                st.error(f"Cannot use this file: {error}")
        if image is not None:
            st.caption(f"Shown at {image.width} × {image.height} (photos are shrunk to 1024 px on the longer side).")
is_digit = isinstance(image, torch.Tensor)
if image is not None:
    picture.image(
        to_image(image, size=140) if is_digit else image,
        caption="source",
        width="stretch" if not is_digit else "content",
    )

# --- The pipeline -------------------------------------------------------------------------------------------------
st.subheader("Pipeline")
if STEPS not in st.session_state:  # the link's pipeline (checked by spec_from_json), else the shipped digit preset
    load_spec(spec_from_json(state.AUG_PIPELINE.get()))
preset_column, button_column = st.columns([4, 1], vertical_alignment="bottom")
preset_column.selectbox("Start from a preset", list(PRESETS), key="aug_preset")
button_column.button("Use preset", on_click=lambda: load_spec(PRESETS[st.session_state.aug_preset]), width="stretch")

steps, problems = [], 0
for number, step in enumerate(st.session_state[STEPS]):
    card = edit_step(step, number, len(st.session_state[STEPS]))
    try:
        steps.append(Step(step["name"], step["params"], step["p"]))
    except AugmentError as error:
        card.error(str(error), icon=":material/warning:")
        problems += 1
if not st.session_state[STEPS]:
    st.info("The pipeline is empty: add a step, or start from a preset.")
add_column, add_button = st.columns([4, 1], vertical_alignment="bottom")
add_column.selectbox(
    "Add a step",
    list(CATALOGUE),
    format_func=lambda n: f"{CATALOGUE[n].title} ({n})" + (" · for digits" if CATALOGUE[n].digits_only else ""),
    key="aug_add",
)
full = len(st.session_state[STEPS]) >= MAX_STEPS
add_button.button(
    "Add step", on_click=add_step, args=("aug_add", is_digit), icon=":material/add:", width="stretch", disabled=full,
    help=f"a pipeline has at most {MAX_STEPS} steps" if full else None,
)  # fmt: skip
spec = None
if problems:
    st.error(f"Fix the {problems} step(s) marked above to see previews and export the pipeline.")
else:
    try:
        spec = PipelineSpec(tuple(steps))
        state.AUG_PIPELINE.set(state.compact_pipeline(spec))  # the link holds the last valid pipeline
    except AugmentError as error:  # rules across steps, such as the step limit
        st.error(str(error))

# --- Preview ------------------------------------------------------------------------------------------------------
if spec is not None and image is not None:
    st.subheader("Preview")
    size_column, seed_column, new_column = st.columns([2, 2, 1], vertical_alignment="bottom")
    grid = size_column.slider(
        "Grid", min_value=1, max_value=6, help="rows and columns of samples", **state.AUG_GRID.widget()
    )
    seed = seed_column.number_input("Seed", min_value=0, max_value=2**31 - 1, step=1, **state.AUG_SEED.widget())
    new_column.button(
        "New samples", icon=":material/casino:", width="stretch",
        on_click=lambda: state.AUG_SEED.set(int(np.random.default_rng().integers(2**31))),
    )  # fmt: skip
    try:
        start = time.perf_counter()
        with st.spinner("Computing the preview (the first one after the server starts also starts its workers)…"):
            samples = preview(image, spec, grid * grid, int(seed))
        seconds = time.perf_counter() - start
        show_grid(samples, grid, is_digit)
        st.caption(
            f"{grid * grid} samples in {seconds * 1000:.0f} ms. The same seed always gives the same grid, and the "
            "exported code's sample(image, seed, i) redoes any one of them."
        )
    except AugmentError as error:
        st.error(str(error))
    else:
        step_by_step(image, spec, int(seed), grid * grid, is_digit)
    if is_digit:
        with st.expander("What training sees: the same pipeline, batched on the device"):
            st.caption(
                "Training augments whole batches at once with per-sample random draws (vision_core.augment.batch_augment), "
                "reading the same parameters; the draws differ from the preview's, the distribution does not."
            )
            try:
                show_grid(preview_batch(image, spec, grid * grid, int(seed)), grid, True)
            except AugmentError as error:
                st.info(f"This pipeline cannot train the digit models: {error}")

# --- Export and import --------------------------------------------------------------------------------------------
st.subheader("Export")
python_tab, json_tab, import_tab = st.tabs(["Python", "JSON", "Import JSON"])
if spec is not None:
    code, text = pipeline_to_code(spec), spec_to_json(spec)
    with python_tab:
        st.code(code, language="python")
        st.download_button(
            "Download augmentation.py", code, file_name="augmentation.py", mime="text/x-python", on_click="ignore"
        )
    with json_tab:
        st.code(text, language="json")
        st.download_button(
            "Download pipeline.json", text, file_name="pipeline.json", mime="application/json", on_click="ignore"
        )
else:
    python_tab.info("Fix the pipeline's steps first.")
    json_tab.info("Fix the pipeline's steps first.")
with import_tab:
    pasted = st.text_area("Paste a pipeline exported as JSON", height=160)
    if st.button("Load JSON", icon=":material/upload_file:"):
        try:
            load_spec(spec_from_json(pasted))
            st.rerun()
        except AugmentError as error:
            st.error(f"Cannot load this pipeline: {error}")

# --- Robustness probe ---------------------------------------------------------------------------------------------
st.subheader("Robustness probe")
st.caption(
    "Push one change further and further and watch each model's confidence in the true digit. "
    "Where a model gets it wrong, its answer is written above the point."
)
models, unavailable = digit_models()
for name, message in unavailable.items():
    st.warning(f"Model {name!r} is unavailable: {message}")
if models:
    digit, truth = (image, label) if is_digit else (None, None)
    if digit is None:
        index = state.AUG_DIGIT.get()
        digit, truth = to_input(test.images[index : index + 1])[0], int(test.labels[index])
        st.caption(f"The probe needs a digit: MNIST test image #{index} (labelled {truth}).")
    robustness_probe(digit, truth, models)
