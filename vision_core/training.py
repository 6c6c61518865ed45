"""Training: a frozen ``TrainConfig`` in, a stream of ``TrainEvent`` records out.

``fine_tune`` never prints and knows nothing of any UI: the CLI prints its events, the app draws
them. MNIST stays a uint8 tensor on the training device and whole batches are augmented there,
so there is no per-sample PIL work and no DataLoader.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from vision_core.checkpoints import count_parameters
from vision_core.data import balanced_subset, load_mnist
from vision_core.device import describe_device, resolve_device
from vision_core.evaluation import confusion_matrix, metrics_from_logits, predict_logits
from vision_core.registry import get_spec, load_model
from vision_core.transforms import DigitAugment, mnist_to_input

Optimizer = Literal["sgd", "adam", "adamw", "rmsprop"]
Schedule = Literal["none", "step", "cosine", "onecycle"]
TRAIN_SIZES = (600, 1_800, 6_000, 18_000, 60_000)


@dataclass(frozen=True)
class TrainConfig:
    model: str = "lenet"  # a registered digit model
    init: Literal["scratch", "checkpoint"] = "scratch"  # "checkpoint": start from the model's saved weights
    optimizer: Optimizer = "adamw"
    lr: float = 2e-3
    batch_size: int = 128
    epochs: int = 3
    max_steps: int | None = None  # stop after this many steps even mid-epoch (tests, quick demos)
    weight_decay: float = 1e-4
    momentum: float = 0.9  # SGD and RMSprop only
    schedule: Schedule = "onecycle"
    label_smoothing: float = 0.0
    train_size: int = 60_000  # balanced per class below 60,000
    val_size: int = 2_000  # per-epoch validation on the first val_size test images (never used to pick weights)
    augment: bool = True  # DigitAugment: rotation, shear, scale, shift, stroke thickness
    seed: int = 0
    device: str = "auto"
    amp: bool = True  # bfloat16 autocast on CUDA; ignored on the CPU
    log_every: int = 10  # a step event every this many steps (each one syncs the device)

    def __post_init__(self) -> None:
        problems = [
            f"{name} must be positive"
            for name, value in (("lr", self.lr), ("batch_size", self.batch_size), ("epochs", self.epochs), ("train_size", self.train_size), ("log_every", self.log_every))
            if value <= 0
        ]
        if self.max_steps is not None and self.max_steps <= 0:
            problems.append("max_steps must be positive")
        if self.optimizer not in ("sgd", "adam", "adamw", "rmsprop"):
            problems.append(f"unknown optimizer {self.optimizer!r}")
        if self.schedule not in ("none", "step", "cosine", "onecycle"):
            problems.append(f"unknown schedule {self.schedule!r}")
        if not 0 <= self.label_smoothing < 1:
            problems.append("label_smoothing must be in [0, 1)")
        if problems:
            raise ValueError("invalid TrainConfig: " + "; ".join(problems))


@dataclass(frozen=True)
class TrainEvent:
    """One record of a run. ``kind``: "step" (a logged training step), "epoch" (one per split), "done"."""

    kind: Literal["step", "epoch", "done"]
    step: int
    epoch: int
    split: Literal["train", "val", "test"]
    loss: float
    accuracy: float
    lr: float
    samples_per_s: float
    elapsed: float  # seconds since the run started


@dataclass(frozen=True)
class RunFinished(TrainEvent):
    """The last event: full-test metrics of the trained model, which it carries (on its device)."""

    f1_macro: float
    n_test: int
    train_seconds: float  # training only, evaluation excluded
    confusion: list[list[int]]  # rows: true digit, columns: predicted digit
    num_params: int
    device: str
    model: nn.Module


def make_optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=cfg.momentum > 0)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.RMSprop(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def make_scheduler(cfg: TrainConfig, optimizer: torch.optim.Optimizer, total_steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=total_steps, pct_start=0.15)
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    if cfg.schedule == "step":  # x0.1 at 60% and 85% of the run
        milestones = [int(total_steps * 0.6), int(total_steps * 0.85)]
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=0.1)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


def build_for_training(cfg: TrainConfig) -> nn.Module:
    """A fresh model, or a private copy of the saved one: the app's cached models are never trained in place."""
    if cfg.init == "checkpoint":
        return load_model(cfg.model, device="cpu").train()
    return get_spec(cfg.model).builder()


def fine_tune(cfg: TrainConfig, model: nn.Module | None = None) -> Iterator[TrainEvent]:
    """Train ``cfg.model`` (or ``model``) on MNIST and yield events; the last one is a ``RunFinished``.

    >>> events = list(fine_tune(TrainConfig(model="lenet", train_size=600, max_steps=2, device="cpu")))
    >>> events[-1].kind, events[-1].step
    ('done', 2)
    """
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    train, test = load_mnist("train"), load_mnist("test")
    subset = balanced_subset(train.labels, cfg.train_size, seed=cfg.seed)
    images, labels = train.images[subset].to(device), train.labels[subset].to(device)  # (N, 28, 28) uint8, (N,)
    val_images, val_labels = test.images[: cfg.val_size], test.labels[: cfg.val_size]

    model = (model if model is not None else build_for_training(cfg)).to(device).train()
    optimizer = make_optimizer(cfg, [p for p in model.parameters() if p.requires_grad])
    steps_per_epoch = math.ceil(len(images) / cfg.batch_size)
    total_steps = cfg.epochs * steps_per_epoch if cfg.max_steps is None else min(cfg.max_steps, cfg.epochs * steps_per_epoch)
    epochs = math.ceil(total_steps / steps_per_epoch)
    scheduler = make_scheduler(cfg, optimizer, total_steps)
    augment = DigitAugment() if cfg.augment else None
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cfg.amp and device.type == "cuda" else nullcontext()

    step, seen, start = 0, 0, time.perf_counter()
    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(images), device=device, generator=generator)
        epoch_loss = torch.zeros((), device=device)  # summed on the device: no sync per step
        epoch_correct = torch.zeros((), device=device)
        epoch_seen = 0
        for first in range(0, len(images), cfg.batch_size):
            batch = order[first : first + cfg.batch_size]
            x, y = mnist_to_input(images[batch]), labels[batch]
            if augment is not None:
                x = augment(x, generator)
            with autocast:
                logits = model(x)
                loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            seen += len(batch)
            epoch_seen += len(batch)
            epoch_loss += loss.detach() * len(batch)
            epoch_correct += (logits.detach().argmax(dim=1) == y).sum()
            if step % cfg.log_every == 0 or step == total_steps:
                elapsed = time.perf_counter() - start
                yield TrainEvent(
                    kind="step", step=step, epoch=epoch, split="train", loss=float(loss),
                    accuracy=float((logits.argmax(dim=1) == y).float().mean()), lr=scheduler.get_last_lr()[0],
                    samples_per_s=seen / elapsed, elapsed=elapsed,
                )  # fmt: skip
            if step >= total_steps:
                break
        elapsed = time.perf_counter() - start
        lr = scheduler.get_last_lr()[0]
        yield TrainEvent("epoch", step, epoch, "train", float(epoch_loss) / epoch_seen, float(epoch_correct) / epoch_seen, lr, seen / elapsed, elapsed)
        val = metrics_from_logits(predict_logits(model, val_images), val_labels)
        yield TrainEvent("epoch", step, epoch, "val", val["loss"], val["accuracy"], lr, seen / elapsed, time.perf_counter() - start)
    train_seconds = time.perf_counter() - start

    model.eval()
    logits = predict_logits(model, test.images)
    test_metrics = metrics_from_logits(logits, test.labels)
    yield RunFinished(
        kind="done", step=step, epoch=epochs, split="test", loss=test_metrics["loss"], accuracy=test_metrics["accuracy"],
        lr=scheduler.get_last_lr()[0], samples_per_s=seen / train_seconds, elapsed=time.perf_counter() - start,
        f1_macro=test_metrics["f1_macro"], n_test=test_metrics["n"], train_seconds=train_seconds,
        confusion=confusion_matrix(logits, test.labels), num_params=count_parameters(model),
        device=describe_device(device), model=model,
    )  # fmt: skip


# The recipes that made the shipped checkpoints: `python -m vision_core.train NAME` reruns them.
SHIPPED_RECIPES: dict[str, TrainConfig] = {
    "lenet": TrainConfig(model="lenet", epochs=12, lr=3e-3, batch_size=128, seed=1),
    "vgg": TrainConfig(model="vgg", epochs=15, lr=3e-3, batch_size=128, label_smoothing=0.05, weight_decay=5e-4, seed=1),
    "vit": TrainConfig(model="vit", epochs=25, lr=2e-3, batch_size=128, label_smoothing=0.05, weight_decay=0.05, seed=1),
}


def recipe_for(model: str, **overrides) -> TrainConfig:
    """The shipped recipe for ``model`` (or the defaults for other models) with ``overrides`` applied."""
    base = SHIPPED_RECIPES.get(model, TrainConfig(model=model))
    return dataclasses.replace(base, **{k: v for k, v in overrides.items() if v is not None})
