"""The model registry: the one place where a model name means something.

A ``ModelSpec`` says how to build a model, where its weights live, how its input is prepared and
what its outputs mean. Pages, tests, the CLI and notebooks all go through ``get_spec`` /
``list_models`` / ``load_model``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vision_core.checkpoints import CHECKPOINT_DIR, CheckpointError, load_checkpoint, read_card
from vision_core.device import resolve_device
from vision_core.models.mnist import build_digit_model
from vision_core.transforms import mnist_to_input, preprocess_digit

DIGIT_LABELS = tuple(str(d) for d in range(10))


class WeightsMissingError(FileNotFoundError):
    """A registered model has no weights on disk; the message says how to get them."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    title: str
    task: str  # "digits" (MNIST, 10 classes)
    architecture: str
    builder: Callable[[], nn.Module]  # a freshly initialised model (for training from scratch)
    preprocess: Callable[[Any], torch.Tensor]  # raw user input (drawing, photo) -> one model input
    eval_transform: Callable[[torch.Tensor], torch.Tensor]  # dataset tensors -> a model-input batch
    labels: tuple[str, ...]
    input_size: tuple[int, int, int]  # (C, H, W)
    checkpoint: Path | None = None  # weights (.safetensors) with a model card (.json) beside them
    description: str = ""
    rebuild_hint: str = ""  # how to recreate missing weights


_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    """Add ``spec``; a second model with the same name is an error, not a silent overwrite."""
    if spec.name in _REGISTRY:
        raise ValueError(f"a model named {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def get_spec(name: str) -> ModelSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; registered: {sorted(_REGISTRY)}") from None


def list_models(task: str | None = None) -> list[str]:
    """Registered model names, in registration order; ``task="digits"`` for the MNIST models."""
    return [name for name, spec in _REGISTRY.items() if task is None or spec.task == task]


def load_model(name: str, device: str | torch.device = "auto") -> nn.Module:
    """The named model with its weights, in eval mode, on ``device`` ("auto": GPU when present).

    >>> model = load_model("lenet", device="cpu"); model.training
    False
    """
    spec = get_spec(name)
    if spec.checkpoint is None or not spec.checkpoint.with_suffix(".safetensors").exists():
        raise WeightsMissingError(f"no weights for {name!r} at {spec.checkpoint}. {spec.rebuild_hint}".strip())
    model, card = load_checkpoint(spec.checkpoint, device=resolve_device(device))
    if card.architecture != spec.architecture:
        raise CheckpointError(f"{spec.checkpoint.name} holds a {card.architecture}, but {name!r} is a {spec.architecture}")
    return model


def register_digit_checkpoint(path: Path, description: str = "") -> ModelSpec:
    """Register a saved digit checkpoint (its card names the architecture) under the card's name."""
    card = read_card(path)
    return register(
        ModelSpec(
            name=card.name,
            title=card.title,
            task="digits",
            architecture=card.architecture,
            builder=partial(build_digit_model, card.architecture),
            preprocess=preprocess_digit,
            eval_transform=mnist_to_input,
            labels=DIGIT_LABELS,
            input_size=(1, 28, 28),
            checkpoint=Path(path).with_suffix(".safetensors"),
            description=description,
            rebuild_hint=f"Rebuild it with: python -m vision_core.train {card.architecture}",
        )
    )


_SHIPPED_DIGIT_MODELS = {
    "lenet": ("LeNet-style CNN", "Two 5x5 conv + pool stages and three dense layers, as in LeCun et al. 1998."),
    "vgg": ("VGG-style CNN", "Stacked 3x3 conv + batch-norm stages, max-pooled, global average pooled."),
    "vit": ("Vision Transformer (timm)", "timm's VisionTransformer on 4x4 patches: 49 tokens plus a class token."),
}
for _name, (_title, _description) in _SHIPPED_DIGIT_MODELS.items():
    register(
        ModelSpec(
            name=_name,
            title=_title,
            task="digits",
            architecture=_name,
            builder=partial(build_digit_model, _name),
            preprocess=preprocess_digit,
            eval_transform=mnist_to_input,
            labels=DIGIT_LABELS,
            input_size=(1, 28, 28),
            checkpoint=CHECKPOINT_DIR / f"{_name}.safetensors",
            description=_description,
            rebuild_hint=f"Rebuild it with: python -m vision_core.train {_name}",
        )
    )
