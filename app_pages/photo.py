"""Photo explorer: what ImageNet networks think of a photo, how they see it, and which objects a detector finds."""

import hashlib
import time
from functools import partial
from pathlib import Path

import pandas as pd
import streamlit as st

from ui import projector, state
from ui.resources import SHOWN_CHANNELS, CamChoice, cached_analysis, cached_cam, cached_model
from ui.scenes import kept_uploads
from ui.weights import offer_download
from vision_core import ImageError, describe_device, get_spec, list_models, load_image
from vision_core.cams import CAM_METHODS, MAX_SCORE_CAM_CHANNELS, CamError
from vision_core.checkpoints import CheckpointError
from vision_core.device import device_of
from vision_core.images import DETECTION_DRAFT_SIZE, PHOTO_DRAFT_SIZE
from vision_core.photo import (
    DEFAULT_CLASSIFIER,
    FALLBACK_CLASSIFIER,
    check_cam_layer,
    detect,
    fast_precision,
    first_layer_filters,
)
from vision_core.registry import WeightsMissingError, weights_available, weights_path
from vision_core.visuals import cam_overlay, denormalize, draw_detections, feature_grid, filter_grid, to_png

SAMPLES = Path(__file__).resolve().parent.parent / "data" / "samples"
SAMPLE, UPLOAD = state.PHOTO_SOURCES
FIRST_SAMPLE = state.PHOTO_SAMPLE.default
MIN_SCORE = 0.05  # detections are computed once down to this score; the slider then filters them instantly


def title(name: str) -> str:
    return get_spec(name).title


def download_png(label: str, image, file_name: str, key: str) -> None:
    """A PNG download; the PNG is only encoded when the button is clicked."""
    st.download_button(
        label,
        data=partial(to_png, image),
        file_name=file_name,
        mime="image/png",
        on_click="ignore",
        key=key,
        icon=":material/download:",
    )


def show_cam(photo_id: str, photo, name: str, method: str, target: int | None, precision: str) -> None:
    """One model's CAM over what it saw, with its own layer choice (default: its last spatial layer)."""
    layer_spec = get_spec(name).layers
    choices = list(dict.fromkeys([*layer_spec.choices, layer_spec.cam]))
    layer = st.selectbox(
        f"{title(name)}: layer",
        choices,
        index=choices.index(check_cam_layer(name, None)),
        key=f"photo_cam_layer-{name}",
    )
    try:
        with st.spinner(f"{CAM_METHODS[method].title} for {title(name)}…"):
            cam = cached_cam(photo_id, photo, name, CamChoice(method, layer, target), precision)
    except CamError as error:
        st.warning(str(error), icon=":material/timer_off:")
        return
    picture = denormalize(cam.model_input, get_spec(name).mean_std)
    overlay = cam_overlay(picture, cam.heatmap, colormap=projector.colormap())
    label = f"{CAM_METHODS[method].title} for “{cam.prediction.label}” ({cam.prediction.probability:.1%})"
    st.image(
        overlay,
        caption=f"{label}, {title(name)} at `{cam.layer}`: {cam.forward_passes} forward pass"
        f"{'es' if cam.forward_passes > 1 else ''}, {cam.seconds:.2f} s in {cam.precision}",
    )
    download_png("CAM overlay (PNG)", overlay, f"{name}-{method}-{cam.prediction.index}.png", key=f"png-cam-{name}")


def uploaded_photo() -> bytes:
    """The uploaded photo's bytes; without an upload, the photo a link names by hash while the server keeps it."""
    kinds = ["jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff"]
    upload = st.file_uploader("A photo (JPEG, PNG, WebP, GIF, BMP or TIFF)", type=kinds)
    if upload is not None:
        return upload.getvalue()
    linked = state.PHOTO_UPLOAD.get()
    data = kept_uploads().get(linked) if linked else None
    if data is None:
        gone = " The photo this link named is no longer kept on the server: upload it again." if linked else ""
        st.info("Upload a photo to explore it, or switch to a sample photo." + gone, icon=":material/photo_camera:")
        st.stop()
    st.caption("The uploaded photo this link names (the server keeps recent uploads for a while).")
    return data


st.title("Photo explorer")
st.caption(
    "Pick a sample photo or upload your own. An ImageNet network names what it sees (top-3), and you can look inside: "
    "feature maps at early, middle and late layers, the first layer's filters, and class activation maps (Grad-CAM "
    "and three relatives), which show the regions that drove a class, for two models side by side. A COCO detector "
    "(Faster R-CNN) finds and boxes objects."
)

# --- which models have their weights here: a file-existence check, so loading the page never touches the network ---
classifiers = [name for name in list_models(task="imagenet") if weights_available(name)]
if not weights_available(DEFAULT_CLASSIFIER):
    st.warning(
        f"**ResNet-50's pretrained weights are missing** on this machine: there is no "
        f"`{weights_path(DEFAULT_CLASSIFIER)}`. Fetch them once with **`make weights MODELS={DEFAULT_CLASSIFIER}`** "
        f"({get_spec(DEFAULT_CLASSIFIER).weights.meta['_file_size']:.0f} MB; plain `make weights` fetches every "
        f"pretrained model the app uses, 1.25 GB) into the torch hub cache; set TORCH_HOME to share one copy in a "
        f"classroom. Until then this page uses **{title(FALLBACK_CLASSIFIER)}**, whose ImageNet weights ship with the app.",
        icon=":material/inventory_2:",
    )
    offer_download(DEFAULT_CLASSIFIER)
if not classifiers:
    st.error(f"No ImageNet model has its weights. {get_spec(FALLBACK_CLASSIFIER).rebuild_hint}")
    st.stop()

# --- the photo ---
source = st.radio(
    "Photo", state.PHOTO_SOURCES, horizontal=True, label_visibility="collapsed", **state.PHOTO_SOURCE.widget()
)
if source == SAMPLE:
    names = sorted(path.name for path in SAMPLES.iterdir() if path.suffix in (".png", ".jpg"))
    sample = st.selectbox("Sample photo", names, **state.PHOTO_SAMPLE.widget(options=names, fallback=FIRST_SAMPLE))
    data = (SAMPLES / sample).read_bytes()
else:
    data = uploaded_photo()
try:
    # At most 1024 px a side: every model here looks at 224-256 px, and a 49 MP PNG should not travel to the browser.
    photo = load_image(data, draft_size=PHOTO_DRAFT_SIZE, max_side=1024)
except ImageError as error:
    st.error(f"Cannot use this file: {error}")
    st.stop()
photo_id = hashlib.sha1(data).hexdigest()
if source == UPLOAD:  # a link to this view names the photo by its hash; the server keeps recent uploads for it
    kept_uploads().put(photo_id, data)
    state.PHOTO_UPLOAD.set(photo_id)

# --- models and layers ---
left, right = st.columns(2)
default = DEFAULT_CLASSIFIER if DEFAULT_CLASSIFIER in classifiers else FALLBACK_CLASSIFIER
model_name = left.selectbox(
    "Model", classifiers, format_func=title, **state.PHOTO_MODEL.widget(options=classifiers, fallback=default)
)
spec = get_spec(model_name)
others = [name for name in classifiers if name != model_name]
transformers = [name for name in others if get_spec(name).layers.channels_last]
compare_key = f"compare-{model_name}"  # as the layers below: each model its own choice, the link the current one's
if compare_key not in st.session_state:
    linked = state.PHOTO_COMPARE.get()
    st.session_state[compare_key] = transformers if linked is None else [name for name in linked if name in others]
compare = right.multiselect("Compare side by side with", others, format_func=title, key=compare_key)
state.PHOTO_COMPARE.set(None if compare == transformers else tuple(compare))
missing = [name for name in list_models(task="imagenet") if name not in classifiers]
if missing:
    right.caption(f"Available once their weights are fetched (`make weights`): {', '.join(map(title, missing))}.")
try:
    module = cached_model(model_name)
except (WeightsMissingError, CheckpointError) as error:
    st.error(f"Cannot load the model: {error}")
    st.stop()
precision = "fp32"
if fast_precision(device_of(module)) == "bf16":  # where the model runs, which is where the arithmetic happens
    fast = left.toggle(
        "Fast mode: bfloat16 arithmetic",
        value=True,
        key="photo_fast",
        help="This processor computes in bfloat16 natively: ResNet-50 runs in about 0.6x the time. Probabilities "
        "stay within a few points of float32; switch off to see exactly what float32 computes. Predictions, feature "
        "maps and class activation maps all follow this switch.",
    )
    precision = "bf16" if fast else "fp32"

prediction_area = st.container()  # filled below, once the layer choices (made further down) are known
st.subheader("Feature maps")
st.caption(
    "Forward hooks record each chosen layer's output. Each tile is one channel (a learned detector), strongest mean "
    "activation first, each scaled to its own range: early layers respond to edges and colours, later ones to parts."
)
controls = st.columns([3, 1])
layers_key = f"layers-{model_name}"  # each model keeps its own choice; the link holds the current model's
if layers_key not in st.session_state:
    linked = [name for name in state.PHOTO_LAYERS.get() if name in spec.layers.choices]
    st.session_state[layers_key] = linked or list(spec.layers.defaults)
picked = controls[0].multiselect("Layers (early to late)", spec.layers.choices, key=layers_key)
layers = [name for name in spec.layers.choices if name in picked]  # network order, whatever order they were picked in
state.PHOTO_LAYERS.set(() if layers == list(spec.layers.defaults) else tuple(layers))
count = controls[1].slider(
    "Channels per layer", min_value=4, max_value=SHOWN_CHANNELS, step=4, **state.PHOTO_CHANNELS.widget()
)

try:
    analysis = cached_analysis(photo_id, photo, model_name, tuple(layers), precision)
    compared = [cached_analysis(photo_id, photo, name, (), precision).report for name in compare]
except (WeightsMissingError, CheckpointError) as error:
    st.error(f"Cannot load the model: {error}")
    st.stop()
report = analysis.report

with prediction_area:
    photo_column, *model_columns = st.columns(2 + len(compared))
    with photo_column:
        st.image(photo, caption=f"The photo: {photo.width} × {photo.height} px as decoded")
        _, height, width = report.model_input.shape
        seen = f"What {spec.title} saw: the {width} × {height} input tensor, de-normalised"
        st.image(denormalize(report.model_input, spec.mean_std), width=160, caption=seen)
    for column, result in zip(model_columns, [report, *compared], strict=True):
        with column:
            st.markdown(f"**{title(result.model)}**", help=get_spec(result.model).description)
            for prediction in result.predictions:
                st.progress(prediction.probability, text=f"{prediction.label}: {prediction.probability:.1%}")
            st.caption(
                f"{result.seconds * 1000:.0f} ms on {describe_device()} in {result.precision}: preprocessing, forward "
                "pass, top-3"
            )

grid_columns = st.columns(min(3, max(1, len(layers))))
for i, layer in enumerate(layers):
    grid = feature_grid(analysis.channels[layer], count=count)
    channels, height, width = grid.shape
    with grid_columns[i % len(grid_columns)]:
        st.image(
            grid.image,
            caption=f"{layer}: {channels} channels × {height} × {width} px; the {len(grid.channels)} strongest",
        )
        download_png("Feature maps (PNG)", grid.image, f"{model_name}-{layer}-feature-maps.png", key=f"png-{layer}")

st.subheader("First-layer filters")
filters = first_layer_filters(model_name, module=module)
number, _, kernel_height, kernel_width = filters.shape
st.image(
    filter_grid(filters),
    width=420,
    caption=f"The {number} RGB {kernel_height} × {kernel_width} kernels of `{spec.layers.first_conv}`, each scaled to "
    "its own largest weight (grey is zero): the colour and edge patterns the network looks for in the pixels.",
)

st.subheader("Class activation maps: where is the evidence?")
method_column, class_column, second_column = st.columns(3)
method = method_column.selectbox(
    "Method", list(CAM_METHODS), format_func=lambda m: CAM_METHODS[m].title,
    **state.PHOTO_CAM.widget(options=list(CAM_METHODS)),
)  # fmt: skip
top = [prediction.index for prediction in report.predictions]
TOP_1 = -1  # not None: a selectbox seeded with None shows no choice at all
classes = [TOP_1, *top, *(i for i in range(len(spec.labels)) if i not in top)]
choice = class_column.selectbox(
    "Explain the class", classes, format_func=lambda i: "each model's top-1" if i == TOP_1 else spec.labels[i],
    **state.PHOTO_CLASS.widget(options=classes, fallback=TOP_1),
)  # fmt: skip
target = None if choice == TOP_1 else choice
partners = [None, *others]
second = second_column.selectbox(
    "Side by side with",
    partners,
    index=1 if len(partners) > 1 else 0,
    format_func=lambda name: "no second model" if name is None else title(name),
    key="photo_cam_second",
)
st.caption(
    CAM_METHODS[method].summary
    + (
        f" Score-CAM is offered at layers of at most {MAX_SCORE_CAM_CHANNELS} channels (early and middle ones)."
        if method == "scorecam"
        else ""
    )
)
for column, name in zip(st.columns(2), [model_name, second], strict=True):
    with column:
        if name is None:
            hint = (
                "Pick a second model above to see its map beside this one."
                if others
                else "Only this model's weights are here: fetch others with `make weights` to compare two maps."
            )
            st.info(hint, icon=":material/compare:")
            continue
        show_cam(photo_id, photo, name, method, target, precision)

st.subheader("Object detection")
detectors = [name for name in list_models(task="detection") if weights_available(name)]
if not detectors:
    st.info(
        "Object detection needs the COCO weights of Faster R-CNN, which are not on this machine. Fetch them once with "
        "**`make weights`**, or download one here.",
        icon=":material/inventory_2:",
    )
    for name in list_models(task="detection"):
        offer_download(name)
else:
    left, right = st.columns(2)
    detector = left.selectbox("Detector", detectors, format_func=title)
    left.caption(get_spec(detector).description)
    threshold = right.slider("Score threshold", min_value=MIN_SCORE, max_value=0.95, value=0.5, step=0.05)
    key = (photo_id, detector)
    if st.button("Find objects", icon=":material/search:"):
        with st.spinner(f"Running {title(detector)}…"):
            start = time.perf_counter()
            # Decoded again, larger: the classifiers need 256 px, the detector looks at 800.
            scene = load_image(data, draft_size=DETECTION_DRAFT_SIZE, max_side=1333)  # Faster R-CNN's own max_size
            found = detect(scene, threshold=MIN_SCORE, model=detector, module=cached_model(detector))
            st.session_state.detections = (key, scene, found, time.perf_counter() - start)
    stored = st.session_state.get("detections")
    if stored is not None and stored[0] == key:
        _, scene, found, seconds = stored
        shown = [detection for detection in found if detection.score >= threshold]
        summary = f"{len(shown)} objects scoring at least {threshold:.0%} ({title(detector)}, {seconds:.1f} s on {describe_device()})"
        st.image(draw_detections(scene, shown), caption=summary)
        if shown:
            rows = [
                {"label": d.label, "score": d.score, "box (x0, y0, x1, y1)": ", ".join(f"{v:.0f}" for v in d.box)}
                for d in shown
            ]
            score_bar = st.column_config.ProgressColumn(format="percent", min_value=0, max_value=1)
            st.dataframe(pd.DataFrame(rows), hide_index=True, column_config={"score": score_bar})
