"""The app's one cache: models and datasets are loaded once per process and shared by all sessions.

Cached models are used for inference only (``torch.inference_mode``); training always works on a
fresh build or a private copy, never on these objects.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import streamlit as st
from PIL import Image
from torch import nn

from vision_core import WeightsMissingError, get_dataset, get_spec, list_models, load_mnist, load_model
from vision_core.checkpoints import CheckpointError, ModelCard, read_card
from vision_core.data import MNISTSplit, Split
from vision_core.jobs import RunQueue
from vision_core.photo import GradCam, PhotoReport, analyze, grad_cam
from vision_core.policy import Policy, load_policy
from vision_core.runs import register_saved_runs

SHIPPED_DIGIT_MODELS = tuple(list_models(task="digits", source="shipped"))

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


@st.cache_resource(show_spinner="Loading the dataset…")
def cached_split(dataset: str, split: str) -> Split:
    """A dataset's split, once per process (CIFAR-10's JPEG subset takes 1.5 s to decode)."""
    return get_dataset(dataset).load(split)


@st.cache_resource
def class_policy() -> Policy:
    """The class configuration (class.toml), read once when the app starts."""
    return load_policy()


@st.cache_resource
def saved_runs_at_start() -> list[str]:
    """Runs saved on this server before the app started join the registry once per process."""
    return register_saved_runs()


RUNS_ON_DRAW = "runs_on_draw"  # session state: the saved runs this student wants beside the shipped models


def show_on_draw_page(name: str) -> None:
    """Pick a run that was just saved or imported in this session for the Draw page."""
    st.session_state[RUNS_ON_DRAW] = [*st.session_state.get(RUNS_ON_DRAW, []), name]
    st.session_state.pop("draw_runs", None)  # the Draw page's picker starts again from RUNS_ON_DRAW


def saved_runs(task: str = "digits") -> list[str]:
    """The models of ``task`` saved or imported on this server (not shipped in checkpoints/)."""
    saved_runs_at_start()
    return list_models(task=task, source="run")


def digit_models(names: Sequence[str] | None = None) -> tuple[dict[str, nn.Module], dict[str, str]]:
    """(name -> model) for the digit models ``names`` (default: the shipped ones) that load, and (name -> error
    message) for those that do not."""
    models, problems = {}, {}
    saved_runs_at_start()
    for name in SHIPPED_DIGIT_MODELS if names is None else names:
        try:
            models[name] = loaded_model(name)
        except (WeightsMissingError, CheckpointError) as error:
            problems[name] = str(error)
    return models, problems


def loaded_model(name: str) -> nn.Module:
    """Any trained model: shipped ones stay loaded, saved runs take turns in a small cache (some are large)."""
    return cached_model(name) if get_spec(name).source != "run" else cached_run(name)


def model_card(name: str) -> ModelCard | None:
    checkpoint = get_spec(name).checkpoint
    try:
        return read_card(checkpoint) if checkpoint is not None else None
    except CheckpointError:
        return None


@st.cache_resource
def run_service() -> RunQueue:
    """The class's run queue: every session submits to it and watches its runs (one per device, each in a process).

    ``VISION_RUNS=ray`` (Ray on this machine) or a Ray address (``ray://head:10001``, ``auto``): the queue lives in the
    Ray cluster, shared by every app replica (``vision_core.ray_backend``; needs requirements-cluster.txt).
    """
    backend = os.environ.get("VISION_RUNS", "local")
    if backend == "local":
        return RunQueue(policy=class_policy())
    from vision_core.ray_backend import RayQueue  # optional: only a cluster deployment installs Ray

    return RayQueue("local" if backend == "ray" else backend, policy=class_policy())
