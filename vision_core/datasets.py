"""The dataset registry: what a run trained on, so models, augmentation presets, the scoreboard and the pages agree.

A ``DatasetSpec`` names a dataset's classes, image size and channels, the statistics its models normalise with
(inside the model, so no caller can forget), where its files live, how a user's picture becomes an input of the
right shape (``preprocess``), and how to fetch the full set when only a subset ships.

>>> get_dataset("cifar10").classes[:3], get_dataset("cifar10").image_size
(('airplane', 'automobile', 'bird'), 32)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torchvision.transforms import v2

from vision_core import data
from vision_core.augment import CIFAR10_COURSE_PRESET, SHIPPED_DIGIT_PRESET, PipelineSpec, Step
from vision_core.registry import lookup
from vision_core.transforms import preprocess_digit

MNIST, CIFAR10, MY_CLASSES = "mnist", "cifar10", "my-classes"


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    title: str
    task: str  # the ModelSpec.task of the models trained on it
    classes: tuple[str, ...]  # empty for "my classes": each class set names its own
    channels: int
    image_size: int  # images are image_size x image_size
    mean: tuple[float, ...]  # the normalisation its models apply inside (documentation; the models own it)
    std: tuple[float, ...]
    folder: Path
    train_sizes: tuple[int, ...]  # balanced training-set sizes the pages offer (the largest: everything)
    preprocess: Callable[[Any], torch.Tensor]  # a user's drawing or photo -> one (C, H, W) input in [0, 1]
    load: Callable[[str], data.Split] | None  # "train" / "test" -> uint8 tensors; None for "my classes"
    augment: PipelineSpec  # what ``augment=True`` means when training on it (the Augmentation lab previews it)
    fetch: Callable[[], Path] | None = None  # the full set, for online users (``make data``)
    about: str = ""


def photo_to_input(size: int) -> Callable[[Image.Image], torch.Tensor]:
    """A photo -> (3, size, size) in [0, 1]: the shorter side resized to ``size`` (antialiased), the centre cut out.

    CIFAR-10 images and "my classes" images are whole-frame pictures of one object, so a photo is framed the same way.
    """
    return v2.Compose(
        [v2.ToImage(), v2.Resize(size, antialias=True), v2.CenterCrop(size), v2.ToDtype(torch.float32, scale=True)]
    )


_DATASETS: dict[str, DatasetSpec] = {}


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    if spec.name in _DATASETS:
        raise ValueError(f"a dataset named {spec.name!r} is already registered")
    _DATASETS[spec.name] = spec
    return spec


def get_dataset(name: str) -> DatasetSpec:
    return lookup(_DATASETS, name, "dataset")


def list_datasets() -> list[str]:
    return list(_DATASETS)


def dataset_for_task(task: str) -> DatasetSpec | None:
    """The dataset whose models have ``task`` ("digits" -> MNIST), or None (ImageNet, detection)."""
    return next((spec for spec in _DATASETS.values() if spec.task == task), None)


def train_count(name: str) -> int:
    """How many training images the dataset has on this machine (CIFAR-10: the subset, or the full set if fetched)."""
    return len(get_dataset(name).load("train").labels)


register_dataset(
    DatasetSpec(
        name=MNIST, title="MNIST digits", task="digits", classes=tuple(str(d) for d in range(10)), channels=1,
        image_size=28, mean=(0.1307,), std=(0.3081,), folder=data.MNIST_DIR,
        train_sizes=(600, 1_800, 6_000, 18_000, 60_000), preprocess=preprocess_digit, load=data.load_mnist,
        augment=SHIPPED_DIGIT_PRESET,
        about="70,000 handwritten digits, 28 x 28 grey (LeCun, Cortes and Burges); all of it ships with the app.",
    )
)  # fmt: skip
register_dataset(
    DatasetSpec(
        name=CIFAR10, title="CIFAR-10", task="cifar10", classes=data.CIFAR10_CLASSES, channels=3, image_size=32,
        mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), folder=data.CIFAR10_DIR,
        train_sizes=(1_000, 2_000, 5_000, 10_000, 50_000), preprocess=photo_to_input(32), load=data.load_cifar10,
        augment=CIFAR10_COURSE_PRESET,
        fetch=data.download_cifar10,
        about="Small colour photos of 10 classes, 32 x 32 (Krizhevsky, Nair and Hinton). A subset ships (1,000 "
        "training and 200 test images per class); `make data` fetches the full 60,000.",
    )
)  # fmt: skip
register_dataset(
    DatasetSpec(
        name=MY_CLASSES, title="My classes", task="classes", classes=(), channels=3, image_size=128,
        mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), folder=data.DATA_DIR, train_sizes=(),
        preprocess=photo_to_input(128), load=None,
        augment=PipelineSpec((Step("RandomHorizontalFlip"), Step("RandomResizedCrop", {"size": 128, "scale": (0.6, 1.0)}))),
        about="Your own 2 to 10 classes, from uploads, a zip or the camera (the My classes page).",
    )
)  # fmt: skip
