"""The app's one cache: models and datasets are loaded once per process and shared by all sessions.

Cached models are used for inference only (``torch.inference_mode``); training always works on a
fresh build or a private copy, never on these objects.
"""

from __future__ import annotations

import streamlit as st
from torch import nn

from vision_core import WeightsMissingError, get_spec, list_models, load_mnist, load_model
from vision_core.checkpoints import CheckpointError, ModelCard, read_card
from vision_core.data import MNISTSplit
from vision_core.jobs import RunQueue


@st.cache_resource(show_spinner="Loading model weights…")
def cached_model(name: str) -> nn.Module:
    return load_model(name)


@st.cache_resource(show_spinner="Loading MNIST…")
def cached_mnist(split: str) -> MNISTSplit:
    return load_mnist(split)


def digit_models() -> tuple[dict[str, nn.Module], dict[str, str]]:
    """(name -> model) for every digit model that loads, and (name -> error message) for those that do not."""
    models, problems = {}, {}
    for name in list_models(task="digits"):
        try:
            models[name] = cached_model(name)
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
