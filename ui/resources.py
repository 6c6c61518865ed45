"""The app's one cache: models and datasets are loaded once per process and shared by all sessions, and the Photo
explorer's analyses and CAMs are kept (bounded in bytes) for every session.

Cached models are used for inference only (``torch.inference_mode``); training always works on a
fresh build or a private copy, never on these objects.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import streamlit as st
import torch
from PIL import Image
from torch import nn

from ui import state
from vision_core import WeightsMissingError, get_dataset, get_spec, list_models, load_mnist, load_model
from vision_core.checkpoints import CheckpointError, ModelCard, read_card
from vision_core.data import MNISTSplit, Split
from vision_core.jobs import RunQueue
from vision_core.photo import PhotoCam, PhotoReport, analyze, photo_cam
from vision_core.policy import Policy, load_policy
from vision_core.runs import register_saved_runs
from vision_core.visuals import StrongestChannels, strongest_channels

SHIPPED_DIGIT_MODELS = tuple(list_models(task="digits", source="shipped"))

# Saved runs can be large (a VGG16 transfer run is ~0.5 GB): only the most recently used stay in memory.
MAX_CACHED_RUNS = 4


@st.cache_resource(show_spinner="Loading model weights…")
def cached_model(name: str) -> nn.Module:
    return load_model(name)


@st.cache_resource(show_spinner="Loading a saved run…", max_entries=MAX_CACHED_RUNS)
def cached_run(name: str) -> nn.Module:
    return load_model(name)


class BoundedCache:
    """A thread-safe least-recently-used cache bounded in bytes (``size_of`` each value), shared by every session.

    ``st.cache_data`` bounds entries by count only, and one photo analysis with every ResNet-50 layer held 36 MB
    (2.3 GB at its 64 entries). Values are returned as stored, not copied: they are frozen dataclasses that the
    pages only read. A value larger than the whole bound is returned but not kept.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any | None:
        """The value kept for ``key`` (now the most recently used), or None."""
        with self._lock:
            if key not in self._entries:
                return None
            self._entries.move_to_end(key)
            return self._entries[key][0]

    def put(self, key: Hashable, value: Any) -> None:
        """Keep ``value`` as the most recently used, forgetting the least recently used beyond the bound."""
        size = size_of(value)
        with self._lock:
            if size <= self.max_bytes:
                self._entries[key] = (value, size)
                self._entries.move_to_end(key)
                while self.nbytes > self.max_bytes:
                    self._entries.popitem(last=False)

    def get_or_compute(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        value = self.get(key)
        if value is None:
            value = compute()  # outside the lock: other sessions' hits and other keys do not wait for this one
            self.put(key, value)
        return value

    @property
    def nbytes(self) -> int:
        return sum(size for _, size in self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def size_of(value: Any) -> int:
    """Bytes held by the tensors and images in ``value`` (dataclasses, dicts, lists and tuples are walked)."""
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, bytes | bytearray):
        return len(value)
    if isinstance(value, Image.Image):
        return value.width * value.height * len(value.getbands())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return sum(size_of(getattr(value, field.name)) for field in dataclasses.fields(value))
    if isinstance(value, dict):
        return sum(size_of(item) for item in value.values())
    if isinstance(value, (list, tuple)):
        return sum(size_of(item) for item in value)
    return 0


SHOWN_CHANNELS = 64  # the most channels a feature grid of the Photo explorer draws: all a cached analysis keeps
ANALYSIS_CACHE_BYTES = (
    256 * 2**20
)  # an analysis as kept: 6.5 MB with every ResNet-50 layer (36 MB whole), 1.1 MB the defaults
CAM_CACHE_BYTES = 64 * 2**20  # a CAM is about 0.8 MB (the 224 x 224 map and the model input)


@dataclass(frozen=True)
class PhotoAnalysis:
    """What the Photo explorer draws of an analysis: the report without its feature maps, and each layer's
    ``SHOWN_CHANNELS`` strongest channels in float16 (the grids scale each map to its own range)."""

    report: PhotoReport  # feature_maps emptied
    channels: dict[str, StrongestChannels]  # layer -> its strongest channels, in the order asked for


@dataclass(frozen=True)
class CamChoice:
    method: str = "gradcam"  # a key of vision_core.cams.CAM_METHODS
    layer: str | None = None  # None: the model's Grad-CAM layer
    class_index: int | None = None  # None: the model's top-1 class


@st.cache_resource
def photo_caches() -> tuple[BoundedCache, BoundedCache]:
    """(analyses, CAMs) shared by every session: a class often looks at the same sample photo, and a slider that
    only changes how results are drawn must not run the network again."""
    return BoundedCache(ANALYSIS_CACHE_BYTES), BoundedCache(CAM_CACHE_BYTES)


def summarize(report: PhotoReport) -> PhotoAnalysis:
    channels = {
        name: strongest_channels(maps, SHOWN_CHANNELS, dtype=torch.float16)
        for name, maps in report.feature_maps.items()
    }
    return PhotoAnalysis(report=dataclasses.replace(report, feature_maps={}), channels=channels)


def cached_analysis(
    photo_id: str, photo: Image.Image, model: str, layers: tuple[str, ...], precision: str
) -> PhotoAnalysis:
    """``analyze`` summarised, cached by the photo's hash (``photo_id``), model, layers and precision."""
    compute = partial(analyze, photo, model, layers=layers, k=3, module=cached_model(model), precision=precision)
    return photo_caches()[0].get_or_compute((photo_id, model, layers, precision), lambda: summarize(compute()))


def cached_cam(photo_id: str, photo: Image.Image, model: str, choice: CamChoice, precision: str) -> PhotoCam:
    """``photo_cam`` cached by the photo's hash, model, method, layer, class and precision."""
    compute = partial(
        photo_cam, photo, model, choice.method, choice.layer, choice.class_index, cached_model(model), precision
    )
    return photo_caches()[1].get_or_compute((photo_id, model, choice, precision), compute)


def clear_photo_caches() -> None:
    for cache in photo_caches():
        cache.clear()


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


def show_on_draw_page(name: str) -> None:
    """Pick a run that was just saved or imported in this session for the Draw page."""
    state.RUNS_ON_DRAW.set([*state.RUNS_ON_DRAW.get(), name])


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
