"""Fine-tune: a short training run in the background with a live chart, queued one at a time per device."""

import streamlit as st

from ui.augment import STEPS as LAB_STEPS
from ui.charts import confusion_chart, epoch_chart, step_loss_chart
from ui.resources import cached_mnist, run_queue, show_on_draw_page
from vision_core import describe_device, get_spec, resolve_device, to_image
from vision_core.augment import PRESETS, AugmentError, PipelineSpec, Step
from vision_core.jobs import JobNotFoundError, events_frame
from vision_core.models.imagenet import WeightsDownloadError
from vision_core.models.transfer import BACKBONES, IMAGE_SIZES
from vision_core.registry import WeightsMissingError, fetch_weights, weights_available, weights_path
from vision_core.training import (
    RUN_NAME,
    TRAIN_SIZES,
    RunSaveError,
    TrainConfig,
    TrainConfigError,
    describe_augment,
    is_transfer,
    misclassified,
    recipe_for,
    run_bundle,
    save_run,
    trainable_models,
)
from vision_core.transforms import mnist_to_input

REFRESH_S = 1.0
BUNDLE_INLINE_PARAMS = 2_000_000  # bigger models build their zip only when asked (VGG16's is half a gigabyte)
INITS = {
    "scratch": "From scratch (random weights)",
    "checkpoint": "From its trained checkpoint",
    "imagenet": "ImageNet-pretrained backbone",
}
LAB = "The Augmentation lab's current pipeline"
AUGMENTATIONS = ["DigitAugment (what trained the shipped models)", "None", *[p for p in PRESETS if p != "Empty"], LAB]

queue = run_queue()
on_gpu = resolve_device("auto").type == "cuda"


def title(name: str) -> str:
    return get_spec(name).title + (" · transfer" if is_transfer(name) else "")


def lab_pipeline() -> PipelineSpec:
    """The pipeline being edited in the Augmentation lab (this session), validated by the lab's own ``Step``."""
    steps = st.session_state.get(LAB_STEPS)
    if steps is None:
        raise AugmentError("the Augmentation lab has no pipeline in this session yet: open the lab and build one")
    return PipelineSpec(tuple(Step(s["name"], s["params"], s["p"]) for s in steps))


def offer_download(name: str) -> None:
    spec = get_spec(name)
    if st.button(
        f"Download the {spec.title} ImageNet weights ({spec.weights.meta['_file_size']:.0f} MB)",
        icon=":material/download:",
    ):
        bar = st.progress(0.0, text="Downloading…")
        try:
            fetch_weights(
                name,
                progress=lambda done, total: bar.progress(
                    min(done / total, 1.0) if total else 0.0, text=f"{done / 1e6:.0f} MB"
                ),
            )
        except (WeightsDownloadError, WeightsMissingError) as error:
            st.error(
                f"The download failed: {error}. Offline? Run `make weights` where there is internet and copy `{weights_path(name).parent}` here."
            )
        else:
            st.rerun()


st.title("Fine-tune")
device_name = describe_device()
st.caption(
    "Train a digit model (or an ImageNet CNN by transfer learning) on MNIST while you watch. Runs go into one queue "
    "per device shared by everyone using this server, so a classroom takes turns on one GPU; you can leave this page "
    "and come back to your run."
)
if on_gpu:
    st.success(f"Training runs on **{device_name}**: full MNIST in seconds.", icon=":material/bolt:")
else:
    st.info(
        f"Training runs on **{device_name}**, which is slow for deep networks: digit models default to 18,000 images "
        "and 2 epochs (LeNet: seconds; the ViT: about a minute), the ImageNet CNNs (VGG16, AlexNet, ResNet-18) to 600 "
        "images, 1 epoch, 64 px inputs and a 1,000-image test (VGG16: a few minutes). The progress bar shows the real "
        "pace and the time left.",
        icon=":material/speed:",
    )

# --- Set up a run ----------------------------------------------------------------------------------------------------
st.subheader("New run")
models = trainable_models()
left, middle, right = st.columns(3)
model = left.selectbox(
    "Model", models, index=models.index("lenet") if "lenet" in models else 0, format_func=title, key="ft_model"
)
spec = get_spec(model)
transfer = is_transfer(model)
kind = "transfer" if transfer else "digits"  # widget keys per kind: each kind keeps its own sensible defaults
recipe = recipe_for(spec.architecture)  # the shipped models' recipes give each architecture its own defaults
if spec.task == "transfer":
    inits = ["imagenet", "scratch"]
elif spec.checkpoint is not None:
    inits = ["scratch", "checkpoint"]
else:
    inits = ["scratch"]
init = middle.radio("Start", inits, format_func=INITS.get, key=f"ft_init_{model}")
mode = "full"
if transfer:
    mode = right.radio(
        "Train", ["features", "full"], key=f"ft_mode_{model}",
        format_func={"features": "Feature extractor (frozen backbone, new head only)", "full": "Full fine-tune (every layer)"}.get,
    )  # fmt: skip
st.caption(spec.description)
if spec.architecture == "vit" and init == "scratch":
    st.caption(
        "A vision transformer learns slowly from scratch: the shipped one trained for 25 epochs on 60,000 images. "
        "A short run stays far below the CNNs; start from its trained checkpoint to fine-tune it instead."
    )

if init == "imagenet" and not weights_available(model):
    st.warning(
        f"**The {spec.title} ImageNet weights are not on this machine** (no `{weights_path(model)}`). {spec.rebuild_hint} "
        "Or start from scratch: the network then learns from random weights, without anything learnt on ImageNet.",
        icon=":material/inventory_2:",
    )
    offer_download(model)
elif transfer and init == "scratch":
    st.warning(
        "Random initialisation: none of ImageNet's features. Expect slower, worse learning than a pretrained start.",
        icon=":material/casino:",
    )

a, b, c, d = st.columns(4)
optimizer = a.selectbox(
    "Optimizer",
    ["adamw", "adam", "sgd", "rmsprop"],
    format_func={"adamw": "AdamW", "adam": "Adam", "sgd": "SGD + momentum", "rmsprop": "RMSprop"}.get,
    key="ft_optimizer",
)
lr = b.select_slider(
    "Learning rate",
    [1e-4, 3e-4, 1e-3, 2e-3, 3e-3, 1e-2, 3e-2, 0.1],
    value=1e-3 if transfer else recipe.lr,
    key=f"ft_lr_{spec.architecture}",
)
batch_size = c.select_slider(
    "Batch size", [16, 32, 64, 128, 256, 512], value=32 if transfer and not on_gpu else 128, key=f"ft_batch_{kind}"
)
schedule = d.selectbox(
    "LR schedule",
    ["onecycle", "cosine", "step", "none"],
    format_func={"onecycle": "One-cycle", "cosine": "Cosine", "step": "Step (x0.1 twice)", "none": "Constant"}.get,
    key="ft_schedule",
)
a, b, c, d = st.columns(4)
default_size = (6_000 if on_gpu else 600) if transfer else (60_000 if on_gpu else 18_000)
train_size = a.select_slider(
    "Training images (balanced)", TRAIN_SIZES, value=default_size, format_func="{:,}".format, key=f"ft_size_{kind}"
)
epochs = b.number_input(
    "Epochs", min_value=1, max_value=50, value=1 if transfer else (3 if on_gpu else 2), key=f"ft_epochs_{kind}"
)
max_steps = c.number_input(
    "Max steps (0: no limit)",
    min_value=0,
    max_value=100_000,
    value=0,
    key=f"ft_steps_{kind}",
    help="stop after this many steps even mid-epoch",
)
augmentation = d.selectbox(
    "Augmentation", AUGMENTATIONS, key="ft_augment", help="the same batched pipeline the Augmentation lab previews"
)

with st.expander("More options"):
    a, b, c, d = st.columns(4)
    weight_decay = a.select_slider(
        "Weight decay",
        [0.0, 1e-5, 1e-4, 5e-4, 1e-3, 1e-2, 0.05],
        value=recipe.weight_decay,
        key=f"ft_wd_{spec.architecture}",
    )
    momentum = b.slider("Momentum (SGD, RMSprop)", 0.0, 0.99, 0.9, key="ft_momentum")
    label_smoothing = c.slider(
        "Label smoothing", 0.0, 0.3, recipe.label_smoothing, step=0.05, key=f"ft_smoothing_{spec.architecture}"
    )
    seed = d.number_input("Seed", min_value=0, max_value=2**31 - 1, value=0, key="ft_seed")
    a, b, c, d = st.columns(4)
    val_size = a.select_slider(
        "Validation images / epoch",
        [200, 500, 1_000, 2_000, 10_000],
        value=200 if transfer and not on_gpu else 2_000,
        format_func="{:,}".format,
        key=f"ft_val_{kind}",
    )
    test_size = b.select_slider(
        "Test images",
        [1_000, 2_000, 5_000, 10_000],
        value=1_000 if transfer and not on_gpu else 10_000,
        format_func="{:,}".format,
        key=f"ft_test_{kind}",
    )
    devices = ["auto", "cpu", "cuda"] if on_gpu else ["auto", "cpu"]
    device = c.radio("Device", devices, horizontal=True, key="ft_device")
    amp = d.checkbox("Mixed precision (bfloat16, GPU only)", value=True, disabled=not on_gpu, key="ft_amp")
    image_size = 64
    if transfer:
        sizes = [s for s in IMAGE_SIZES if s >= BACKBONES[spec.architecture].min_size]
        image_size = st.select_slider(
            "Input size for the ImageNet CNN (px)",
            sizes,
            value=224 if on_gpu else 64,
            key=f"ft_image_{model}",
            help="digits are resized to this square; ImageNet saw 224 px",
        )

augment = {AUGMENTATIONS[0]: True, "None": False}.get(augmentation)
problem = None
if augment is None:
    try:
        augment = lab_pipeline() if augmentation == LAB else PRESETS[augmentation]
    except AugmentError as error:
        problem = str(error)
    else:
        st.caption(f"Augmentation: {describe_augment(augment)}.")
        if augmentation == LAB:
            st.page_link("app_pages/augment.py", label="Edit it in the Augmentation lab", icon=":material/science:")

if st.button("Start run", type="primary", icon=":material/play_arrow:", disabled=problem is not None):
    try:
        cfg = TrainConfig(
            model=model, init=init, mode=mode, optimizer=optimizer, lr=lr, batch_size=batch_size, epochs=int(epochs),
            max_steps=int(max_steps) or None, weight_decay=weight_decay, momentum=momentum, schedule=schedule,
            label_smoothing=label_smoothing, train_size=train_size, val_size=val_size, test_size=test_size,
            augment=augment, image_size=image_size, seed=int(seed), device=device, amp=amp,
            log_every=1 if transfer and not on_gpu else 5,
        )  # fmt: skip
        job = queue.submit(cfg)
    except (TrainConfigError, WeightsMissingError, ValueError) as error:
        st.error(f"Cannot start this run: {error}")
    else:
        st.session_state["ft_job"] = job.id
if problem:
    st.error(f"Cannot use this augmentation: {problem}")

# --- The run -------------------------------------------------------------------------------------------------------


def show_progress(job) -> None:
    position = queue.position(job)
    if job.state == "queued":
        st.info(
            f"Waiting in the {job.device_key} queue: position {position}, with {position} run(s) ahead of it "
            "(the one running included). One run at a time per device.",
            icon=":material/hourglass_top:",
        )
    elif job.state == "running":
        p = job.progress()
        eta = f" · about {p.eta_s:.0f} s of training left" if p.eta_s is not None else ""
        speed = f" · {p.samples_per_s:,.0f} images/s" if p.samples_per_s else ""
        st.progress(
            p.fraction,
            text=f"Step {p.step:,} of {p.total_steps:,}{eta}{speed} · on {job.device}"
            if p.total_steps
            else f"Preparing on {job.device}…",
        )
    if job.active and st.button(
        "Stop" if job.state == "running" else "Cancel", icon=":material/stop:", key=f"stop-{job.id}"
    ):
        queue.cancel(job.id)
        st.rerun()


def show_charts(job) -> None:
    events = events_frame(list(job.events))
    loss_column, epoch_loss_column, accuracy_column = st.columns(3)
    loss_column.altair_chart(step_loss_chart(events), width="stretch")
    epoch_loss_column.altair_chart(epoch_chart(events, "loss"), width="stretch")
    accuracy_column.altair_chart(epoch_chart(events, "accuracy"), width="stretch")


job_id = st.session_state.get("ft_job")
try:
    job = queue.get(job_id) if job_id is not None else None
except JobNotFoundError:
    job = None
watching_active = job is not None and job.active


@st.fragment(run_every=REFRESH_S if watching_active else None)
def live_run() -> None:
    """Redraws the progress and the charts from the job's events every second while the run is active."""
    if job is None:
        return
    show_progress(job)
    show_charts(job)
    if watching_active and not job.active:
        st.rerun(scope="app")  # the run ended: redraw the whole page once, with results and without the timer


if job is not None:
    st.subheader(f"Run #{job.id}")
    st.caption(f"{job.label} · {describe_augment(job.cfg.augment)} · device: {job.device}")
    live_run()
    result = job.result
    if job.state == "failed":
        st.error(f"The run failed: {job.error}")
    elif job.state == "cancelled":
        st.info("This run was cancelled before it started.")
    elif job.state == "stopped":
        last = job.events[-1] if job.events else None
        where = f" at step {last.step:,} of {last.total_steps:,} after {last.elapsed:.1f} s" if last else ""
        st.warning(
            f"Stopped{where}. The charts keep what it learnt so far; a stopped run is not tested, so it cannot be saved.",
            icon=":material/stop:",
        )
    elif result is not None:
        st.subheader("Results")
        cols = st.columns(6)
        cols[0].metric("Test accuracy", f"{result.accuracy:.2%}")
        cols[1].metric("Macro-F1", f"{result.f1_macro:.4f}")
        cols[2].metric("Test loss", f"{result.loss:.4f}")
        cols[3].metric("Training time", f"{result.train_seconds:.1f} s")
        cols[4].metric("Samples/s", f"{result.samples_per_s:,.0f}")
        cols[5].metric("Parameters", f"{result.num_params:,}")
        st.caption(f"Tested on the first {result.n_test:,} MNIST test images; trained on {result.device}.")
        matrix_column, gallery_column = st.columns([1, 1])
        with matrix_column:
            st.markdown("**Confusion matrix**")
            st.altair_chart(confusion_chart(result.confusion), width="content")
        with gallery_column:
            test = cached_mnist("test")
            mistakes = misclassified(result, test.labels, limit=24)
            wrong = result.n_test - sum(result.confusion[d][d] for d in range(10))
            st.markdown(f"**Misclassified test digits**: {wrong:,} in all, the most confident mistakes first")
            for row in range(0, len(mistakes), 6):
                for column, mistake in zip(st.columns(6), mistakes[row : row + 6], strict=False):
                    column.image(
                        to_image(mnist_to_input(test.images[mistake.index : mistake.index + 1])[0], size=84),
                        caption=f"{mistake.label} → {mistake.predicted} ({mistake.confidence:.0%})",
                    )
            if not mistakes:
                st.success("No mistakes on these test images.")

        st.subheader("Keep it")
        if job.model_released:
            st.info(
                "This run's trained model was released to free memory (only the latest runs keep theirs); its figures stay."
            )
        else:
            name_column, save_column = st.columns([3, 1], vertical_alignment="bottom")
            name = name_column.text_input(
                "Checkpoint name", value=f"{job.cfg.model}-run{job.id}", key=f"ft_name_{job.id}"
            )
            if save_column.button("Save checkpoint", icon=":material/save:", width="stretch", key=f"ft_save_{job.id}"):
                try:
                    saved = save_run(job.cfg, result, name, job.events)
                except RunSaveError as error:  # full disk, read-only folder: the results above stay, the bundle works
                    st.error(f"Saving failed: {error}", icon=":material/save:")
                    st.info("This run's results stay on this page, and the download bundle below needs no disk space.")
                except (ValueError, OSError) as error:  # a bad or taken name, a card problem, a name taken meanwhile
                    st.error(f"Cannot save: {error}")
                else:
                    show_on_draw_page(saved.name)
                    st.success(
                        f"Saved as **{saved.name}** (safetensors + model card). It is on the Draw page and the Compare scoreboard now.",
                        icon=":material/save:",
                    )
                    st.page_link("app_pages/draw.py", label="Try it on the Draw page", icon=":material/draw:")
            bundle_name = name.strip()
            if not RUN_NAME.fullmatch(bundle_name):  # the bundle's file names, and what the importer accepts
                bundle_name = f"{job.cfg.model}-run{job.id}"
            if result.num_params <= BUNDLE_INLINE_PARAMS or st.session_state.get("ft_bundle") == job.id:
                st.download_button(
                    "Download bundle (weights, model card, config, augmentation code, metrics)", data=run_bundle(job.cfg, result, bundle_name, job.events),
                    file_name=f"{bundle_name}.zip", mime="application/zip", icon=":material/inventory_2:",
                )  # fmt: skip
            elif st.button(
                f"Prepare a download bundle ({result.num_params * 4 / 1e6:,.0f} MB of weights)",
                icon=":material/inventory_2:",
            ):
                st.session_state["ft_bundle"] = job.id
                st.rerun()

# --- Everyone's runs ---------------------------------------------------------------------------------------------
jobs = queue.jobs()
if jobs:
    st.subheader("Queue")
    rows = [
        {
            "run": j.id, "model": j.label, "device": j.device_key, "state": j.state, "position": queue.position(j),
            "test accuracy": j.result.accuracy if j.result else None, "mine": j.id == job_id,
        }
        for j in reversed(jobs)
    ]  # fmt: skip
    st.dataframe(
        rows, hide_index=True, column_config={"test accuracy": st.column_config.NumberColumn(format="percent")}
    )
    watch_column, button_column = st.columns([3, 1], vertical_alignment="bottom")
    ids = [j.id for j in reversed(jobs)]
    chosen = watch_column.selectbox("Show run", ids, format_func=lambda i: f"#{i} {queue.get(i).label}", key="ft_watch")
    if button_column.button("Show", width="stretch"):
        st.session_state["ft_job"] = chosen
        st.rerun()
