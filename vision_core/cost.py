"""What a training run will cost, from its config alone, before it is queued: memory and time.

The model is built on the meta device (no memory) and run once on one image of the dataset's shape: torch's
``FlopCounterMode`` counts its FLOPs, forward hooks add up the activations it keeps for the backward pass. With the
batch size, the number of images it will see and the device's sustained speed (``Budget.gflops_per_second``), that
gives the run's peak memory and duration, good to a factor of about two: enough to refuse a run that would take 35 GB
or three hours with a message that says what to lower.

>>> from vision_core.policy import Policy
>>> estimate(TrainConfig(model="lenet", train_size=600, device="cpu"), Policy().cpu).memory_mb < 2_000
True
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from vision_core.datasets import MY_CLASSES, get_dataset
from vision_core.models.transfer import BACKBONES
from vision_core.policy import MB, Budget
from vision_core.registry import get_family, get_spec
from vision_core.training import TrainConfig, run_classes

TORCH_BASELINE_MB = 900  # a worker's data segment once torch and the models are imported (measured: ~790 MB)
SAVED_PER_OUTPUT = 1.0  # autograd keeps about one tensor per layer for the backward pass (a ReLU's shares its input's)
OPTIMIZER_BYTES = {"sgd": 12, "rmsprop": 12, "adam": 16, "adamw": 16}  # per trained parameter: weight, grad, state


class BudgetError(ValueError):
    """A run that would exceed the class's budget; the message says how much it needs and what to lower."""


@dataclass(frozen=True)
class Estimate:
    parameters: int
    trained_parameters: int
    gflops_per_image: float  # one forward pass
    batch_mb_per_image: float  # what each image of a batch adds: its activations, and what backward keeps of them
    train_images: int  # images the training steps see, all epochs together
    eval_images: int  # validation (every epoch) and test images
    memory_mb: float
    seconds: float

    def describe(self) -> str:
        flops = f"{self.gflops_per_image:.2g} GFLOPs" if self.gflops_per_image >= 0.1 else f"{self.gflops_per_image * 1e3:.2g} MFLOPs"  # fmt: skip
        return (
            f"about {self.memory_mb:,.0f} MB and {_duration(self.seconds)} ({self.parameters:,} parameters, "
            f"{flops} per image, {self.train_images:,} training images seen)"
        )


def _duration(seconds: float) -> str:
    return f"{seconds:,.0f} s" if seconds < 120 else f"{seconds / 60:,.0f} min"


def _probe(model: nn.Module, shape: tuple[int, ...]) -> tuple[float, float]:
    """(FLOPs, activation bytes) of one forward pass on the meta device."""
    outputs = []

    def keep(_module: nn.Module, _args: tuple, output: object) -> None:
        if isinstance(output, torch.Tensor):
            outputs.append(output.numel() * output.element_size())

    leaves = [m for m in model.modules() if next(m.children(), None) is None]
    handles = [m.register_forward_hook(keep) for m in leaves]
    try:
        with FlopCounterMode(display=False) as flops:
            model(torch.zeros(shape, device="meta"))
    finally:
        for handle in handles:
            handle.remove()
    return float(flops.get_total_flops()), float(sum(outputs))


@lru_cache(maxsize=256)  # pages ask on every rerun; a config and a budget always give the same answer
def estimate(cfg: TrainConfig, budget: Budget) -> Estimate:
    """The memory and time ``cfg`` needs on a device with ``budget``'s speed (``cfg`` already passed check_config)."""
    spec, data = get_spec(cfg.model), get_dataset(cfg.dataset)
    family = get_family(spec.architecture)
    transfer = spec.architecture in BACKBONES
    config = family.config(image_size=cfg.image_size, num_classes=len(run_classes(cfg))) if transfer else None
    with torch.device("meta"):
        model = family.build(config).eval()
    parameters = sum(p.numel() for p in model.parameters())
    frozen = transfer and cfg.mode == "features"
    trained = sum(p.numel() for p in model.head.parameters()) if frozen else parameters
    flops, activations = _probe(model, (1, data.channels, data.image_size, data.image_size))
    count = len(data.load("train")) if data.name != MY_CLASSES else 500
    train_images = min(cfg.train_size, count) * cfg.epochs
    if cfg.max_steps is not None:
        train_images = min(train_images, cfg.max_steps * cfg.batch_size)
    eval_images = cfg.val_size * cfg.epochs + (cfg.test_size or 10_000)
    # A frozen backbone without augmentation runs once over the data; its head trains on features for almost free.
    if frozen:  # no backward through the backbone; without augmentation, even its forward runs once per image
        passes = (count if cfg.augment is False else train_images) + eval_images
    else:
        passes = 3 * train_images + eval_images  # forward, and a backward of about twice its cost
    saved = 0 if frozen else activations * SAVED_PER_OUTPUT
    memory = (
        TORCH_BASELINE_MB * MB
        + parameters * 4 * 2  # the weights, and a second copy while ImageNet weights are loaded
        + trained * (OPTIMIZER_BYTES[cfg.optimizer] - 4)
        + cfg.batch_size * (saved + activations)  # what the backward pass keeps, and the forward's own buffers
        + count * data.channels * data.image_size**2  # the dataset, uint8
    )
    return Estimate(
        parameters=parameters, trained_parameters=trained, gflops_per_image=flops / 1e9,
        batch_mb_per_image=(saved + activations) / MB, train_images=train_images, eval_images=eval_images,
        memory_mb=memory / MB, seconds=passes * flops / (budget.gflops_per_second * 1e9),
    )  # fmt: skip


def _what_to_lower(cfg: TrainConfig, found: Estimate, budget: Budget) -> str:
    fixed = found.memory_mb - cfg.batch_size * found.batch_mb_per_image  # weights, optimizer, data: any batch size
    fits = int((budget.memory_mb - fixed) / max(found.batch_mb_per_image, 1e-6))
    transfer = get_spec(cfg.model).architecture in BACKBONES
    if fits >= 1:
        advice = f"lower the batch size to at most {fits}"
    elif transfer and cfg.mode == "full":
        advice = f"its weights and optimizer alone need {fixed:,.0f} MB: train only the new head (feature extractor)"
    else:
        advice = f"its weights and optimizer alone need {fixed:,.0f} MB: pick a smaller model"
    return advice + (" or a smaller image size" if transfer and cfg.image_size > 32 else "")


def check_budget(cfg: TrainConfig, budget: Budget) -> Estimate:
    """The estimate, or a ``BudgetError`` when the run would exceed ``budget``, naming what to lower and how far."""
    found = estimate(cfg, budget)
    problems = []
    if found.memory_mb > budget.memory_mb:
        advice = _what_to_lower(cfg, found, budget)
        problems.append(f"it needs {found.memory_mb:,.0f} MB and a run may use {budget.memory_mb:,} MB: {advice}")
    if found.seconds > budget.wall_seconds:
        transfer = get_spec(cfg.model).architecture in BACKBONES
        most = int(found.train_images * budget.wall_seconds / found.seconds)
        problems.append(
            f"it would take {_duration(found.seconds)} and a run may take {_duration(budget.wall_seconds)}: train on at "
            f"most about {most:,} images in all, epochs included (now {found.train_images:,}: fewer epochs or images"
            f"{', a smaller image size' if transfer else ''})"
        )
    if problems:
        raise BudgetError(f"This run is too big for this server: {'; '.join(problems)}.")
    return found
