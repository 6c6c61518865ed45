"""The model registry: the one place where a model name (or a card's architecture name) means something.

Two tables, both filled by the files in ``vision_core/models/`` when ``vision_core.models`` is imported:

- **families** (``Family``): an architecture, as a checkpoint card names it: its config dataclass, its module, the
  bounds an untrusted card's config must respect, the datasets it trains on and its training recipe;
- **models** (``ModelSpec``): a usable model under a name: a family with weights (a shipped checkpoint, a saved run),
  or a pretrained ImageNet / COCO network, with its preprocessing, labels and where its weights live.

Pages, tests, the CLI and notebooks all go through ``get_spec`` / ``list_models`` / ``load_model``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torchvision.models import WeightsEnum

from vision_core.device import resolve_device
from vision_core.hooks import LayerGuide

Source = Literal["shipped", "run", "pretrained", "backbone"]


class WeightsMissingError(FileNotFoundError):
    """A registered model has no weights on disk; the message says how to get them."""


# --- Families: what a checkpoint's "architecture" means ----------------------------------------------------------


@dataclass(frozen=True)
class Family:
    """An architecture that checkpoints name. ``module(config)`` builds it; ``config()`` gives the defaults.

    ``bounds`` holds, for every config field, ``(low, high)`` for a number or ``(low, high, max length)`` for a
    tuple: an imported card's config is checked against them before anything is built, so an untrusted file
    cannot ask for a model of a billion parameters. ``recipe``: ``TrainConfig`` overrides that train it well.
    """

    name: str
    title: str
    config: type
    module: Callable[[Any], nn.Module]
    bounds: Mapping[str, tuple]
    datasets: tuple[str, ...]  # the datasets it trains on ("mnist", "cifar10", "my-classes")
    recipe: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""

    def build(self, config: Any = None) -> nn.Module:
        """A freshly initialised model; ``config`` defaults to the family's defaults."""
        return self.module(self.config() if config is None else config)

    def config_from_dict(self, values: Mapping[str, Any]) -> Any:
        """The config dataclass from its JSON form (lists back to tuples); unknown fields are an error."""
        known = {f.name for f in dataclasses.fields(self.config)}
        if unknown := sorted(set(values) - known):
            raise ValueError(f"{self.name} config has unknown fields {unknown}")
        return self.config(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


_FAMILIES: dict[str, Family] = {}


def lookup(table: Mapping[str, Any], name: str, what: str) -> Any:
    """``table[name]``, or a KeyError that lists what is known (the registries of families, models, datasets)."""
    try:
        return table[name]
    except KeyError:
        raise KeyError(f"unknown {what} {name!r}; known: {', '.join(sorted(table))}") from None


def register_family(family: Family) -> Family:
    """Add ``family``; every config field must have bounds (checked here, not when a bundle is imported)."""
    if family.name in _FAMILIES:
        raise ValueError(f"a family named {family.name!r} is already registered")
    fields = {f.name for f in dataclasses.fields(family.config)}
    if fields != set(family.bounds):
        raise ValueError(f"{family.name}: bounds must cover exactly the config fields {sorted(fields)}")
    _FAMILIES[family.name] = family
    return family


def get_family(name: str) -> Family:
    return lookup(_FAMILIES, name, "architecture")


def list_families(dataset: str | None = None) -> list[str]:
    """Registered architecture names, in registration order; ``dataset=`` keeps those that train on it."""
    return [name for name, f in _FAMILIES.items() if dataset is None or dataset in f.datasets]


def build_model(architecture: str, config: Any = None) -> nn.Module:
    """A freshly initialised model of ``architecture`` (a registered family name)."""
    return get_family(architecture).build(config)


# --- Models: names with weights -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSpec:
    """A usable model. ``weights_file()`` says where its weights are (asked at call time: TORCH_HOME and run folders
    change), ``loader(path, device)`` turns that file into the model in eval mode."""

    name: str
    title: str
    task: str  # what its outputs mean: "digits", "cifar10", "classes" (my classes), "imagenet", "detection", "transfer"
    architecture: str
    preprocess: Callable[[Any], torch.Tensor]  # raw user input (drawing, photo) -> one model input
    labels: tuple[str, ...]
    input_size: tuple[int, int, int]  # (C, H, W)
    weights_file: Callable[[], Path]
    loader: Callable[[Path, torch.device], nn.Module] | None  # None: not loadable as such (an untrained backbone)
    source: Source = "shipped"
    checkpoint: Path | None = None  # a safetensors checkpoint with its model card (.json) beside it
    description: str = ""
    rebuild_hint: str = ""  # how to get missing weights
    weights: WeightsEnum | None = None  # torchvision weights: download URL, file size, metrics
    mean_std: tuple[tuple[float, ...], tuple[float, ...]] | None = None  # the normalisation inside ``preprocess``
    layers: LayerGuide | None = None  # layers for feature maps, CAMs and filters
    builder: Callable[[], nn.Module] | None = None  # pretrained models: the architecture with random weights


_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    """Add ``spec``; a second model with the same name (in any letter case) is an error, not a silent overwrite."""
    if spec.name.lower() in {name.lower() for name in _REGISTRY}:
        raise ValueError(f"a model named {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Forget a saved run (deleted by its owner or the teacher); shipped and pretrained models stay."""
    if get_spec(name).source != "run":
        raise ValueError(f"{name!r} is not a saved run")
    del _REGISTRY[name]


def get_spec(name: str) -> ModelSpec:
    return lookup(_REGISTRY, name, "model")


def list_models(task: str | None = None, source: Source | None = None) -> list[str]:
    """Registered model names in registration order; ``task="digits"`` for the MNIST models, ``source="shipped"``..."""
    return [
        name
        for name, spec in _REGISTRY.items()
        if (task is None or spec.task == task) and (source is None or spec.source == source)
    ]


def load_model(name: str, device: str | torch.device = "auto") -> nn.Module:
    """The named model with its weights, in eval mode, on ``device`` ("auto": GPU when present).

    >>> model = load_model("lenet", device="cpu"); model.training
    False
    """
    spec = get_spec(name)
    if spec.loader is None:
        raise WeightsMissingError(f"{spec.title} is a backbone to fine-tune, not a trained model: train it first")
    path = spec.weights_file()
    if not path.is_file():
        raise WeightsMissingError(f"{spec.title} weights are missing: no file at {path}. {spec.rebuild_hint}".strip())
    return spec.loader(path, resolve_device(device))


def weights_path(name: str) -> Path:
    """Where the named model's weights are (or must be put); only looks at names, never at the network."""
    return get_spec(name).weights_file()


def weights_available(name: str) -> bool:
    """Whether the named model's weights file is on this machine: a file-existence check, instant and offline."""
    return weights_path(name).is_file()
