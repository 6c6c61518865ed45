"""Fine-tune: train a model on MNIST, CIFAR-10 or your own classes, in a process of its own, with live charts."""

import dataclasses

import streamlit as st

from ui import state
from ui.augment import STEPS as LAB_STEPS
from ui.owner import current_caller
from ui.resources import class_policy, run_service
from ui.runs import find_run, keep_run, show_ending, show_live, show_results, trained_model, try_it
from ui.weights import offer_download
from vision_core import describe_device, get_dataset, get_spec, resolve_device
from vision_core.augment import PRESETS, AugmentError, PipelineSpec, Step
from vision_core.cost import BudgetError, check_budget, estimate
from vision_core.datasets import MY_CLASSES, list_datasets, train_count
from vision_core.jobs import QueueFullError
from vision_core.models.transfer import BACKBONES, IMAGE_SIZES
from vision_core.registry import WeightsMissingError, weights_available, weights_path
from vision_core.training import (
    INIT_TITLES,
    TrainConfig,
    TrainConfigError,
    allowed_inits,
    default_config,
    describe_augment,
    is_transfer,
    trainable_models,
)

CLASS_SET = "my_classes_file"  # session state, written by the My classes page: the class set to train on
STANDARD, NONE, LAB = "The dataset's standard augmentation", "None", "The Augmentation lab's current pipeline"

service, caller, policy = run_service(), current_caller(), class_policy()
on_gpu = resolve_device("auto").type == "cuda"


def title(name: str) -> str:
    return get_spec(name).title + (" · transfer" if is_transfer(name) else "")


def lab_pipeline() -> PipelineSpec:
    """The pipeline being edited in the Augmentation lab (this session), validated by the lab's own ``Step``."""
    steps = st.session_state.get(LAB_STEPS)
    if steps is None:
        raise AugmentError("the Augmentation lab has no pipeline in this session yet: open the lab and build one")
    return PipelineSpec(tuple(Step(s["name"], s["params"], s["p"]) for s in steps))


def settings(model: str, dataset: str) -> TrainConfig:
    """The run's settings, starting from ``default_config`` (the family's recipe sized for this device)."""
    spec, base = get_spec(model), default_config(model, "auto", dataset)
    kind = f"{dataset}-{'transfer' if is_transfer(model) else 'own'}"  # widget keys: each kind keeps its defaults
    left, right = st.columns(2)
    init = left.radio("Start", allowed_inits(spec), format_func=lambda i: INIT_TITLES[i].capitalize(), key=f"ft_init_{model}")  # fmt: skip
    mode = "full"
    if is_transfer(model):
        titles = {
            "features": "Feature extractor (frozen backbone, new head only)",
            "full": "Full fine-tune (every layer)",
        }
        mode = right.radio("Train", list(titles), format_func=titles.get, key=f"ft_mode_{model}")
    a, b, c, d = st.columns(4)
    optimizers = {"adamw": "AdamW", "adam": "Adam", "sgd": "SGD + momentum", "rmsprop": "RMSprop"}
    optimizer = a.selectbox("Optimizer", list(optimizers), format_func=optimizers.get, key="ft_optimizer")
    lrs = sorted({1e-4, 3e-4, 1e-3, 2e-3, 3e-3, 1e-2, 3e-2, 0.1, base.lr})
    lr = b.select_slider("Learning rate", lrs, value=base.lr, key=f"ft_lr_{model}")
    batch_size = c.select_slider("Batch size", [16, 32, 64, 128, 256, 512], value=base.batch_size, key=f"ft_batch_{kind}")  # fmt: skip
    schedules = {"onecycle": "One-cycle", "cosine": "Cosine", "step": "Step (x0.1 twice)", "none": "Constant"}
    schedule = d.selectbox("LR schedule", list(schedules), format_func=schedules.get, key="ft_schedule")
    a, b, c, d = st.columns(4)
    if dataset == MY_CLASSES:
        train_size = base.train_size
    else:
        sizes = [s for s in get_dataset(dataset).train_sizes if s <= train_count(dataset)]
        value = max(s for s in sizes if s <= base.train_size) if base.train_size >= sizes[0] else sizes[0]
        train_size = a.select_slider("Training images (balanced)", sizes, value=value, format_func="{:,}".format, key=f"ft_size_{kind}")  # fmt: skip
    epochs = b.number_input("Epochs", min_value=1, max_value=50, value=base.epochs, key=f"ft_epochs_{kind}")
    max_steps = c.number_input("Max steps (0: no limit)", min_value=0, max_value=100_000, value=0, key=f"ft_steps_{kind}", help="stop after this many steps even mid-epoch")  # fmt: skip
    choices = [STANDARD, NONE, *[p for p in PRESETS if p != "Empty"], LAB]
    augmentation = d.selectbox("Augmentation", choices, index=0 if base.augment else 1, key=f"ft_augment_{dataset}", help="batched on the device: what the Augmentation lab previews")  # fmt: skip
    cfg = dataclasses.replace(
        base, init=init, mode=mode, optimizer=optimizer, lr=lr, batch_size=batch_size, epochs=int(epochs),
        max_steps=int(max_steps) or None, schedule=schedule, train_size=train_size,
        class_set=st.session_state.get(CLASS_SET) if dataset == MY_CLASSES else None,
        augment={STANDARD: True, NONE: False}.get(augmentation) if augmentation in (STANDARD, NONE) else (lab_pipeline() if augmentation == LAB else PRESETS[augmentation]),
    )  # fmt: skip
    return more_options(cfg, kind)


def more_options(cfg: TrainConfig, kind: str) -> TrainConfig:
    with st.expander("More options"):
        a, b, c, d = st.columns(4)
        weight_decay = a.select_slider("Weight decay", sorted({0.0, 1e-5, 1e-4, 5e-4, 1e-3, 1e-2, 0.05, cfg.weight_decay}), value=cfg.weight_decay, key=f"ft_wd_{cfg.model}")  # fmt: skip
        momentum = b.slider("Momentum (SGD, RMSprop)", 0.0, 0.99, 0.9, key="ft_momentum")
        smoothing = c.slider(
            "Label smoothing", 0.0, 0.3, cfg.label_smoothing, step=0.05, key=f"ft_smoothing_{cfg.model}"
        )
        seed = d.number_input("Seed", min_value=0, max_value=2**31 - 1, value=0, key="ft_seed")
        a, b, c, d = st.columns(4)
        vals = sorted({200, 500, 1_000, 2_000, cfg.val_size})
        val_size = a.select_slider("Validation images / epoch", vals, value=cfg.val_size, format_func="{:,}".format, key=f"ft_val_{kind}")  # fmt: skip
        tests = [None, 1_000, 2_000, 5_000]
        test_size = b.select_slider("Test images", tests, value=cfg.test_size, format_func=lambda n: "all" if n is None else f"{n:,}", key=f"ft_test_{kind}")  # fmt: skip
        device = c.radio("Device", ["auto", "cpu", "cuda"] if on_gpu else ["auto", "cpu"], horizontal=True, key="ft_device")  # fmt: skip
        amp = d.checkbox("Mixed precision (bfloat16, GPU only)", value=True, disabled=not on_gpu, key="ft_amp")
        image_size = cfg.image_size
        if is_transfer(cfg.model):
            sizes = [s for s in IMAGE_SIZES if s >= BACKBONES[get_spec(cfg.model).architecture].min_size]
            image_size = st.select_slider("Input size for the ImageNet CNN (px)", sizes, value=cfg.image_size, key=f"ft_image_{cfg.model}_{cfg.dataset}", help="images are resized to this square; ImageNet saw 224 px")  # fmt: skip
    return dataclasses.replace(
        cfg, weight_decay=weight_decay, momentum=momentum, label_smoothing=smoothing, seed=int(seed), val_size=val_size,
        test_size=test_size, device=device, amp=amp, image_size=image_size,
    )  # fmt: skip


def start(cfg: TrainConfig) -> None:
    try:
        job = service.submit(cfg, caller)
    except (TrainConfigError, WeightsMissingError, BudgetError, QueueFullError, ValueError) as error:
        st.error(f"Cannot start this run: {error}", icon=":material/block:")
    else:
        state.FT_RUN.set(job.id)


st.title("Fine-tune")
st.caption(
    "Train a model on MNIST digits, CIFAR-10 photos or your own classes while you watch: from scratch, from a trained "
    "model, or by transfer learning from an ImageNet network. Each run trains in a process of its own, in one queue per "
    "device shared by everyone on this server; you can leave this page and come back to your run."
)
device_name = describe_device()
if on_gpu:
    st.success(f"Training runs on **{device_name}**.", icon=":material/bolt:")
else:
    st.info(
        f"Training runs on **{device_name}**, which is slow for deep networks: the defaults are sized for a minute or "
        "two (fewer images, smaller inputs for the ImageNet CNNs). The progress bar shows the real pace.",
        icon=":material/speed:",
    )

st.subheader("New run")
left, right = st.columns(2)
datasets = list_datasets()
dataset = left.selectbox("Dataset", datasets, format_func=lambda d: get_dataset(d).title, **state.FT_DATASET.widget(options=datasets))  # fmt: skip
left.caption(get_dataset(dataset).about)
models = trainable_models(dataset)
default_model = {"mnist": "lenet", "cifar10": "mish_cnn", MY_CLASSES: "effnet_lite0"}.get(dataset, models[0])
if f"ft_model_{dataset}" not in st.session_state:  # each dataset keeps its own choice; a link's model comes first
    st.session_state[f"ft_model_{dataset}"] = next(m for m in (state.FT_MODEL.get(), default_model, models[0]) if m in models)  # fmt: skip
model = right.selectbox("Model", models, format_func=title, key=f"ft_model_{dataset}")
state.FT_MODEL.set(model)
right.caption(get_spec(model).description)
if dataset == MY_CLASSES and not st.session_state.get(CLASS_SET):
    st.info("Add pictures of your classes first, on the My classes page.", icon=":material/add_photo_alternate:")
    st.page_link("app_pages/my_classes.py", label="My classes", icon=":material/category:")

try:
    cfg = settings(model, dataset)
    problem = None
except AugmentError as error:
    cfg, problem = None, f"Cannot use this augmentation: {error}"
if cfg is not None:
    if cfg.init == "imagenet" and not weights_available(model):
        spec = get_spec(model)
        st.warning(f"**The {spec.title} ImageNet weights are not on this machine** (no `{weights_path(model)}`). {spec.rebuild_hint} Or start from scratch: the network then learns from random weights.", icon=":material/inventory_2:")  # fmt: skip
        offer_download(model)
    elif is_transfer(model) and cfg.init == "scratch":
        st.warning("Random initialisation: none of ImageNet's features. Expect slower, worse learning than a pretrained start.", icon=":material/casino:")  # fmt: skip
    st.caption(f"Augmentation: {describe_augment(cfg.augment, cfg.dataset)}.")
    try:
        budget = policy.budget(resolve_device(cfg.device).type)
        st.caption(f"This run needs {estimate(cfg, budget).describe()} (estimated before it starts).")
        check_budget(cfg, budget)
    except BudgetError as error:
        problem = str(error)
    except (TrainConfigError, ValueError, KeyError):
        pass  # explained when Start is pressed
if problem:
    st.error(problem, icon=":material/block:")
if st.button("Start run", type="primary", icon=":material/play_arrow:", disabled=cfg is None or problem is not None):
    start(cfg)

# --- The run -------------------------------------------------------------------------------------------------------
mine = service.jobs(owner=caller.owner)
job = find_run(state.FT_RUN.get() or (mine[-1].id if mine else None))  # a link's run, else this browser's latest
if job is not None:
    st.subheader(f"Run #{job.id}" + ("" if job.owned_by(caller) else " (someone else's: you can watch it)"))
    st.caption(f"{job.label} · {describe_augment(job.cfg.augment, job.cfg.dataset)} · device: {job.device}")
    show_live(job)
    show_ending(job)
    if job.result is not None:
        show_results(job)
        keep_run(job, caller)
        if job.cfg.dataset != "mnist" and (job.owned_by(caller) or caller.teacher):
            with st.expander("Try it on a photo", icon=":material/photo_camera:"):
                try_it(trained_model(job.id, job.owner), job.cfg.dataset, job.result.classes, key=f"ft-try-{job.id}")

# --- Everyone's runs ---------------------------------------------------------------------------------------------
jobs = service.jobs()
if jobs:
    st.subheader("Queue")
    rows = [
        {"run": j.id, "model": j.label, "device": j.device_key, "state": j.state, "position": j.position,
         "test accuracy": j.result.accuracy if j.result else None, "mine": j.owned_by(caller)}
        for j in reversed(jobs)
    ]  # fmt: skip
    st.dataframe(rows, hide_index=True, column_config={"test accuracy": st.column_config.NumberColumn(format="percent")})  # fmt: skip
    watch_column, button_column = st.columns([3, 1], vertical_alignment="bottom")
    labels = {j.id: f"#{j.id} {j.label}" for j in jobs}
    chosen = watch_column.selectbox("Show run", list(reversed(labels)), format_func=labels.get, key="ft_watch")
    if button_column.button("Show", width="stretch"):
        state.FT_RUN.set(chosen)
        st.rerun()
