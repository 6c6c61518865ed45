"""The app's one cache: models and datasets are loaded once per process and shared by all sessions.

Cached models are used for inference only (``torch.inference_mode``); training always works on a
fresh build or a private copy, never on these objects.
"""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st
from PIL import Image
from torch import nn

from ui import state
from vision_core import WeightsMissingError, get_spec, list_models, load_mnist, load_model
from vision_core.checkpoints import CheckpointError, ModelCard, read_card
from vision_core.data import MNISTSplit
from vision_core.jobs import RunQueue
from vision_core.photo import GradCam, PhotoReport, analyze, grad_cam
from vision_core.registry import SHIPPED_DIGIT_MODELS

# Saved runs can be large (a VGG16 transfer run is ~0.5 GB): only the most recently used stay in memory.
MAX_CACHED_RUNS = 4


@st.cache_resource(show_spinner="Loading model weights…")
def cached_model(name: str) -> nn.Module:
    return load_model(name)


@st.cache_resource(show_spinner="Loading a saved run…", max_entries=MAX_CACHED_RUNS)
def cached_run(name: str) -> nn.Module:
    return load_model(name)


# Photo analyses, shared by every session: a class often looks at the same sample photo, and moving a slider that
# only changes how results are drawn must not run the network again. Keyed on the photo's hash (``photo_id``);
# the PIL image itself is not hashed (the leading underscore).
@st.cache_data(max_entries=64, show_spinner=False)
def cached_analysis(
    photo_id: str, _photo: Image.Image, model: str, layers: tuple[str, ...], precision: str
) -> PhotoReport:
    return analyze(_photo, model, layers=layers, k=3, module=cached_model(model), precision=precision)


@st.cache_data(max_entries=64, show_spinner=False)
def cached_grad_cam(photo_id: str, _photo: Image.Image, model: str, class_index: int | None) -> GradCam:
    return grad_cam(_photo, model, class_index=class_index, module=cached_model(model))


@st.cache_resource(show_spinner="Loading MNIST…")
def cached_mnist(split: str) -> MNISTSplit:
    return load_mnist(split)


def show_on_draw_page(name: str) -> None:
    """Pick a run that was just saved or imported in this session for the Draw page."""
    state.RUNS_ON_DRAW.set([*state.RUNS_ON_DRAW.get(), name])


def saved_runs() -> list[str]:
    """The digit models saved or imported on this server (not shipped in checkpoints/)."""
    return [name for name in list_models(task="digits") if name not in SHIPPED_DIGIT_MODELS]


def digit_models(names: Sequence[str] | None = None) -> tuple[dict[str, nn.Module], dict[str, str]]:
    """(name -> model) for the digit models ``names`` (default: the shipped ones) that load, and (name -> error
    message) for those that do not."""
    models, problems = {}, {}
    for name in SHIPPED_DIGIT_MODELS if names is None else names:
        try:
            models[name] = cached_model(name) if name in SHIPPED_DIGIT_MODELS else cached_run(name)
        except (WeightsMissingError, CheckpointError) as error:
            problems[name] = str(error)
    return models, problems


def model_card(name: str) -> ModelCard | None:
    checkpoint = get_spec(name).checkpoint
    try:
        return read_card(checkpoint) if checkpoint is not None else None
    except CheckpointError:
        return None


@st.cache_resource
def run_queue() -> RunQueue:
    """The one training queue of this server: every session submits to it and watches its runs (one per device)."""
    return RunQueue()
