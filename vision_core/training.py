"""Training: a frozen ``TrainConfig`` in, a stream of ``TrainEvent`` records out.

``fine_tune`` never prints and knows nothing of any UI: the CLI prints its events, the app's job
queue (``vision_core.jobs``) keeps them for the page to draw. MNIST stays a uint8 tensor on the
training device and whole batches are augmented there, so there is no per-sample PIL work and no
DataLoader. A ``threading.Event`` passed as ``stop`` ends a run within one layer's work.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import io
import json
import math
import threading
import time
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from safetensors.torch import save as safetensors_bytes
from torch import nn

from vision_core.augment import (
    SHIPPED_DIGIT_PRESET,
    AugmentError,
    PipelineSpec,
    batch_augment,
    pipeline_to_code,
    spec_to_dict,
)
from vision_core.checkpoints import RUN_NAME, ModelCard, count_parameters, save_checkpoint
from vision_core.data import balanced_subset, load_mnist
from vision_core.device import describe_device, resolve_device
from vision_core.evaluation import confusion_matrix, metrics_from_logits, predict_logits
from vision_core.models.mnist import build_digit_model
from vision_core.models.transfer import BACKBONES, TransferConfig, TransferNet
from vision_core.registry import (
    RUNS_DIR,
    ModelSpec,
    WeightsMissingError,
    get_spec,
    list_models,
    load_model,
    register_digit_checkpoint,
    weights_available,
    weights_path,
)
from vision_core.transforms import DigitAugment, mnist_to_input

Optimizer = Literal["sgd", "adam", "adamw", "rmsprop"]
Schedule = Literal["none", "step", "cosine", "onecycle"]
Init = Literal["scratch", "checkpoint", "imagenet"]
Mode = Literal["full", "features"]
TRAIN_SIZES = (600, 1_800, 6_000, 18_000, 60_000)
EVAL_BATCH = 250  # evaluation chunk: small enough that Stop is honoured quickly on a CPU


class TrainConfigError(ValueError):
    """A run that cannot start: unknown model, an option the model does not support, a pipeline that cannot train."""


@dataclass(frozen=True)
class TrainConfig:
    model: str = "lenet"  # a registered digit model, or a transfer model ("vgg16", "alexnet", "resnet18")
    init: Init = "scratch"  # "checkpoint": the model's saved weights; "imagenet": pretrained backbone (transfer models)
    mode: Mode = "full"  # transfer models: "features" trains only the new head on a frozen backbone
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
    test_size: int | None = None  # final evaluation on the first test_size test images; None: all 10,000
    # True: DigitAugment (the shipped recipes); a PipelineSpec: the Augmentation lab's pipeline, batched; False: none.
    augment: bool | PipelineSpec = True
    image_size: int = 64  # transfer models: the 28 x 28 digit is resized to this square (ImageNet saw 224)
    seed: int = 0
    device: str = "auto"
    amp: bool = True  # bfloat16 autocast on CUDA; ignored on the CPU
    log_every: int = 10  # a step event every this many steps (each one syncs the device)

    def __post_init__(self) -> None:
        problems = [
            f"{name} must be positive"
            for name, value in (
                ("lr", self.lr),
                ("batch_size", self.batch_size),
                ("epochs", self.epochs),
                ("train_size", self.train_size),
                ("log_every", self.log_every),
                ("val_size", self.val_size),
            )
            if value <= 0
        ]
        if self.max_steps is not None and self.max_steps <= 0:
            problems.append("max_steps must be positive")
        if self.test_size is not None and self.test_size <= 0:
            problems.append("test_size must be positive")
        if self.optimizer not in ("sgd", "adam", "adamw", "rmsprop"):
            problems.append(f"unknown optimizer {self.optimizer!r}")
        if self.schedule not in ("none", "step", "cosine", "onecycle"):
            problems.append(f"unknown schedule {self.schedule!r}")
        if self.init not in ("scratch", "checkpoint", "imagenet"):
            problems.append(f"unknown init {self.init!r}; choose scratch, checkpoint or imagenet")
        if self.mode not in ("full", "features"):
            problems.append(f"unknown mode {self.mode!r}; choose full or features")
        if not 0 <= self.label_smoothing < 1:
            problems.append("label_smoothing must be in [0, 1)")
        if not 16 <= self.image_size <= 512:
            problems.append("image_size must be between 16 and 512")
        if not isinstance(self.augment, bool | PipelineSpec):
            problems.append("augment must be True, False or an augmentation PipelineSpec")
        if problems:
            raise TrainConfigError("invalid TrainConfig: " + "; ".join(problems))


@dataclass(frozen=True)
class TrainEvent:
    """One record of a run. ``kind``: "step" (a logged training step), "epoch" (one per split), "stopped" or "done"."""

    kind: Literal["step", "epoch", "stopped", "done"]
    step: int
    epoch: int
    split: Literal["train", "val", "test"]
    loss: float
    accuracy: float
    lr: float
    samples_per_s: float
    elapsed: float  # seconds since the run started
    total_steps: int  # the run's planned length: progress is step / total_steps


@dataclass(frozen=True)
class RunFinished(TrainEvent):
    """The last event: test metrics of the trained model, which it carries (on its device)."""

    f1_macro: float
    n_test: int
    train_seconds: float  # training only, evaluation excluded
    confusion: list[list[int]]  # rows: true digit, columns: predicted digit
    num_params: int
    device: str
    model: nn.Module
    predicted: torch.Tensor  # (n_test,) int64 on the CPU: the model's answer for each of the first n_test test images
    confidence: torch.Tensor  # (n_test,) float on the CPU: the softmax probability of that answer


class StopRequested(Exception):
    """Raised inside the model by the stop hooks; ``fine_tune`` turns it into a "stopped" event."""


def make_optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=cfg.momentum > 0
        )
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.RMSprop(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def make_scheduler(
    cfg: TrainConfig, optimizer: torch.optim.Optimizer, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=total_steps, pct_start=0.15)
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    if cfg.schedule == "step":  # x0.1 at 60% and 85% of the run
        milestones = [int(total_steps * 0.6), int(total_steps * 0.85)]
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=0.1)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


def make_augment(cfg: TrainConfig):
    """The batched augmentation ``cfg`` asks for: ``augment(x, generator)`` on (B, 1, 28, 28) batches, or None."""
    if cfg.augment is True:
        return DigitAugment()
    if cfg.augment is False:
        return None
    return batch_augment(cfg.augment)


def trainable_models() -> list[str]:
    """The models ``fine_tune`` accepts: every digit model (shipped and saved runs), then the transfer models."""
    return list_models(task="digits") + list_models(task="transfer")


def is_transfer(name: str) -> bool:
    return get_spec(name).architecture in BACKBONES


def check_config(cfg: TrainConfig) -> ModelSpec:
    """Everything about ``cfg`` that needs the registry, checked before any work (the page calls it on Start).

    Raises ``TrainConfigError`` for a combination that cannot run, ``WeightsMissingError`` when the
    weights it starts from are not on this machine (ImageNet weights are never downloaded here).
    """
    try:
        spec = get_spec(cfg.model)
    except KeyError:
        raise TrainConfigError(f"unknown model {cfg.model!r}; trainable: {', '.join(trainable_models())}") from None
    if spec.task not in ("digits", "transfer"):
        raise TrainConfigError(f"{spec.title} is not a digit model; trainable: {', '.join(trainable_models())}")
    transfer = spec.architecture in BACKBONES
    if cfg.init == "imagenet" and spec.task != "transfer":
        raise TrainConfigError(f"{spec.title} has no ImageNet weights; init 'imagenet' is for {', '.join(BACKBONES)}")
    if cfg.init == "checkpoint" and spec.checkpoint is None:
        raise TrainConfigError(
            f"{spec.title} has no trained digit checkpoint to start from; use init 'imagenet' or 'scratch'"
        )
    if cfg.mode == "features" and not transfer:
        raise TrainConfigError(
            f"feature extraction (a frozen backbone) is for the transfer models {', '.join(BACKBONES)}"
        )
    if transfer and cfg.init != "checkpoint" and cfg.image_size < BACKBONES[spec.architecture].min_size:
        raise TrainConfigError(
            f"{spec.title} needs an image size of at least {BACKBONES[spec.architecture].min_size} px"
        )
    if cfg.train_size < 60_000 and cfg.train_size % 10:
        raise TrainConfigError(f"a balanced training set needs a multiple of 10 images, got {cfg.train_size}")
    if isinstance(cfg.augment, PipelineSpec):
        try:  # a dry run on two blank digits: catches pipelines that change the size or cannot run on 28 x 28
            batch_augment(cfg.augment)(torch.zeros(2, 1, 28, 28), torch.Generator().manual_seed(0))
        except AugmentError as error:
            raise TrainConfigError(f"this augmentation pipeline cannot train the digit models: {error}") from None
    check_device(cfg.device)
    if cfg.init == "checkpoint" and not weights_available(cfg.model):
        raise WeightsMissingError(
            f"no weights for {spec.title} at {weights_path(cfg.model)}. {spec.rebuild_hint}".strip()
        )
    if cfg.init == "imagenet" and not weights_available(cfg.model):
        raise WeightsMissingError(
            f"{spec.title}: the ImageNet weights are not on this machine (no file at {weights_path(cfg.model)}). "
            f"{spec.rebuild_hint} Or train from random weights (init 'scratch')."
        )
    return spec


def check_device(device: str) -> torch.device:
    """``device`` resolved, or a ``TrainConfigError`` saying why it cannot train here (no GPU, no such GPU, a typo)."""
    try:
        resolved = resolve_device(device)
    except (RuntimeError, ValueError) as error:  # torch.device("gpu") is a RuntimeError; CUDA absent a ValueError
        available = "auto, cpu" + (", cuda" if torch.cuda.is_available() else "")
        raise TrainConfigError(
            f"cannot train on device {device!r}: {error}. This machine offers {available}; "
            "'auto' picks the GPU when there is one and the CPU otherwise"
        ) from None
    if resolved.type == "cuda" and resolved.index is not None and resolved.index >= torch.cuda.device_count():
        raise TrainConfigError(
            f"cannot train on {device!r}: this machine has {torch.cuda.device_count()} GPU(s), "
            f"cuda:0 to cuda:{torch.cuda.device_count() - 1}"
        )
    return resolved


def build_for_training(cfg: TrainConfig) -> nn.Module:
    """A fresh model, or a private copy of the saved one: the app's cached models are never trained in place."""
    spec = get_spec(cfg.model)
    if cfg.init == "checkpoint":
        model = load_model(cfg.model, device="cpu").train()
    elif spec.architecture in BACKBONES:  # a transfer model (or a saved transfer run) from scratch or ImageNet
        model = build_digit_model(spec.architecture, TransferConfig(image_size=cfg.image_size))
        if cfg.init == "imagenet":
            model.load_imagenet(weights_path(cfg.model))
    else:
        model = spec.builder()
    if cfg.mode == "features" and isinstance(model, TransferNet):
        model.freeze_backbone()
    return model


@contextmanager
def stop_hooks(model: nn.Module, stop: threading.Event) -> Iterator[None]:
    """While inside, every layer's forward and every parameter's gradient checks ``stop`` and raises when it is set.

    A VGG16 step takes seconds on a CPU; checking only between steps would make Stop feel broken.
    The hooks are removed on the way out, also on error.
    """

    def check(*_: Any) -> None:
        if stop.is_set():
            raise StopRequested

    handles = []
    try:
        handles += [m.register_forward_pre_hook(check) for m in model.modules() if next(m.children(), None) is None]
        handles += [p.register_hook(check) for p in model.parameters() if p.requires_grad]
        yield
    finally:
        for handle in handles:
            handle.remove()


def _final_metrics(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor
) -> tuple[dict[str, float], list[list[int]], torch.Tensor, torch.Tensor]:
    logits = predict_logits(model, images, batch_size=EVAL_BATCH)
    confidence, predicted = torch.softmax(logits, dim=1).max(dim=1)
    return metrics_from_logits(logits, labels), confusion_matrix(logits, labels), predicted.cpu(), confidence.cpu()


def fine_tune(
    cfg: TrainConfig, model: nn.Module | None = None, stop: threading.Event | None = None
) -> Iterator[TrainEvent]:
    """Train ``cfg.model`` (or ``model``) on MNIST and yield events; the last one is a ``RunFinished``.

    Setting ``stop`` ends the run within one layer's work: the last event is then a "stopped" one
    (no test evaluation), and the partial events stay with the caller.

    >>> events = list(fine_tune(TrainConfig(model="lenet", train_size=600, max_steps=2, device="cpu")))
    >>> events[-1].kind, events[-1].step
    ('done', 2)
    """
    check_config(cfg)
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    train, test = load_mnist("train"), load_mnist("test")
    subset = balanced_subset(train.labels, cfg.train_size, seed=cfg.seed)
    images, labels = train.images[subset].to(device), train.labels[subset].to(device)  # (N, 28, 28) uint8, (N,)
    val_images, val_labels = test.images[: cfg.val_size], test.labels[: cfg.val_size]

    model = (model if model is not None else build_for_training(cfg)).to(device).train()
    optimizer = make_optimizer(cfg, [p for p in model.parameters() if p.requires_grad])
    steps_per_epoch = math.ceil(len(images) / cfg.batch_size)
    total_steps = (
        cfg.epochs * steps_per_epoch if cfg.max_steps is None else min(cfg.max_steps, cfg.epochs * steps_per_epoch)
    )
    epochs = math.ceil(total_steps / steps_per_epoch)
    scheduler = make_scheduler(cfg, optimizer, total_steps)
    augment = make_augment(cfg)
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cfg.amp and device.type == "cuda" else nullcontext()

    step, seen, start = 0, 0, time.perf_counter()
    last_loss = last_correct = None  # the latest finished step's loss and hits, for a stopped run's last event
    try:
        with stop_hooks(model, stop) if stop is not None else nullcontext():
            for epoch in range(1, epochs + 1):
                order = torch.randperm(len(images), device=device, generator=generator)
                epoch_loss = torch.zeros((), device=device)  # summed on the device: no sync per step
                epoch_correct = torch.zeros((), device=device)
                epoch_seen = 0
                for first in range(0, len(images), cfg.batch_size):
                    if stop is not None and stop.is_set():
                        raise StopRequested
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
                    last_loss, last_correct = loss.detach(), logits.detach().argmax(dim=1) == y
                    epoch_loss += last_loss * len(batch)
                    epoch_correct += last_correct.sum()
                    if step % cfg.log_every == 0 or step == total_steps:
                        elapsed = time.perf_counter() - start
                        yield TrainEvent(
                            kind="step", step=step, epoch=epoch, split="train", loss=float(last_loss),
                            accuracy=float(last_correct.float().mean()), lr=scheduler.get_last_lr()[0],
                            samples_per_s=seen / elapsed, elapsed=elapsed, total_steps=total_steps,
                        )  # fmt: skip
                    if step >= total_steps:
                        break
                elapsed = time.perf_counter() - start
                lr = scheduler.get_last_lr()[0]
                yield TrainEvent(
                    "epoch",
                    step,
                    epoch,
                    "train",
                    float(epoch_loss) / epoch_seen,
                    float(epoch_correct) / epoch_seen,
                    lr,
                    seen / elapsed,
                    elapsed,
                    total_steps,
                )
                val = metrics_from_logits(predict_logits(model, val_images, batch_size=EVAL_BATCH), val_labels)
                yield TrainEvent(
                    "epoch",
                    step,
                    epoch,
                    "val",
                    val["loss"],
                    val["accuracy"],
                    lr,
                    seen / elapsed,
                    time.perf_counter() - start,
                    total_steps,
                )
            train_seconds = time.perf_counter() - start

            model.eval()
            test_images, test_labels = test.images[: cfg.test_size], test.labels[: cfg.test_size]
            test_metrics, confusion, predicted, confidence = _final_metrics(model, test_images, test_labels)
    except StopRequested:
        optimizer.zero_grad(set_to_none=True)  # drop a half-finished backward's gradients
        elapsed = time.perf_counter() - start
        loss_so_far = float(last_loss) if last_loss is not None else math.nan
        accuracy_so_far = float(last_correct.float().mean()) if last_correct is not None else math.nan
        epoch_now = max(1, math.ceil(step / steps_per_epoch))
        lr = scheduler.get_last_lr()[0]
        yield TrainEvent("stopped", step, epoch_now, "train", loss_so_far, accuracy_so_far, lr, seen / max(elapsed, 1e-9), elapsed, total_steps)  # fmt: skip
        return
    yield RunFinished(
        kind="done", step=step, epoch=epochs, split="test", loss=test_metrics["loss"], accuracy=test_metrics["accuracy"],
        lr=scheduler.get_last_lr()[0], samples_per_s=seen / train_seconds, elapsed=time.perf_counter() - start,
        total_steps=total_steps, f1_macro=test_metrics["f1_macro"], n_test=test_metrics["n"], train_seconds=train_seconds,
        confusion=confusion, num_params=count_parameters(model), device=describe_device(device), model=model,
        predicted=predicted, confidence=confidence,
    )  # fmt: skip


# The recipes that made the shipped checkpoints: `python -m vision_core.train NAME` reruns them.
SHIPPED_RECIPES: dict[str, TrainConfig] = {
    "lenet": TrainConfig(model="lenet", epochs=12, lr=3e-3, batch_size=128, seed=1),
    "vgg": TrainConfig(
        model="vgg", epochs=15, lr=3e-3, batch_size=128, label_smoothing=0.05, weight_decay=5e-4, seed=1
    ),
    "vit": TrainConfig(
        model="vit", epochs=25, lr=2e-3, batch_size=128, label_smoothing=0.05, weight_decay=0.05, seed=1
    ),
}


def recipe_for(model: str, **overrides) -> TrainConfig:
    """The shipped recipe for ``model`` (or the defaults for other models) with ``overrides`` applied."""
    base = SHIPPED_RECIPES.get(model, TrainConfig(model=model))
    return dataclasses.replace(base, **{k: v for k, v in overrides.items() if v is not None})


@dataclass(frozen=True)
class Mistake:
    index: int  # in the MNIST test set
    label: int
    predicted: int
    confidence: float  # the model's probability for its (wrong) answer


def misclassified(finished: RunFinished, labels: torch.Tensor, limit: int = 24) -> list[Mistake]:
    """The run's wrong answers on the test images, most confident first (``labels``: the MNIST test labels)."""
    truth = labels[: finished.n_test].cpu()
    wrong = torch.nonzero(finished.predicted != truth).flatten()
    order = wrong[finished.confidence[wrong].argsort(descending=True)][:limit]
    return [Mistake(int(i), int(truth[i]), int(finished.predicted[i]), float(finished.confidence[i])) for i in order]


# --- Saving a run: a checkpoint the Draw page lists at once, and a download bundle ------------------------------


class RunNameError(ValueError):
    """A run name that cannot become a checkpoint: bad characters, or the name is taken."""


class RunSaveError(OSError):
    """The disk refused a run's checkpoint (full, read-only, no permission); nothing partial was left behind.

    The message says what failed, where, and what to do; the system's error is its ``__cause__``.
    """


def augment_spec(cfg: TrainConfig) -> PipelineSpec:
    """The augmentation as a pipeline spec (``DigitAugment`` is ``SHIPPED_DIGIT_PRESET``; none is the empty spec)."""
    if cfg.augment is True:
        return SHIPPED_DIGIT_PRESET
    return cfg.augment if isinstance(cfg.augment, PipelineSpec) else PipelineSpec()


def describe_augment(augment: bool | PipelineSpec) -> str:
    """A TrainConfig's ``augment`` in words: "DigitAugment (the shipped recipe)", "the pipeline DigitWarp, ..."."""
    if augment is True:
        return "DigitAugment (the shipped recipe)"
    if augment is False or not augment.steps:
        return "no augmentation"
    return "the pipeline " + ", ".join(step.name + (f" (p={step.p:g})" if step.p < 1 else "") for step in augment.steps)


def config_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    """``cfg`` as JSON-able values; a pipeline becomes the Augmentation lab's JSON form."""
    values = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    if isinstance(cfg.augment, PipelineSpec):
        values["augment"] = spec_to_dict(cfg.augment)
    return values


def epoch_history(events: Sequence[TrainEvent]) -> list[dict[str, Any]]:
    """The per-epoch records (train and val loss and accuracy) as plain dicts: what the Compare page overlays."""
    return [
        {"epoch": e.epoch, "split": e.split, "loss": e.loss, "accuracy": e.accuracy, "elapsed": round(e.elapsed, 3)}
        for e in events
        if e.kind == "epoch"
    ]


def run_metrics(finished: RunFinished) -> dict[str, Any]:
    return {
        "accuracy": finished.accuracy, "f1_macro": finished.f1_macro, "loss": finished.loss, "n": finished.n_test,
        "train_seconds": round(finished.train_seconds, 2), "samples_per_s": round(finished.samples_per_s, 1),
        "num_params": finished.num_params, "device": finished.device, "confusion": finished.confusion,
    }  # fmt: skip


def run_card(cfg: TrainConfig, finished: RunFinished, name: str) -> ModelCard:
    """The model card of a finished run: architecture and config, recipe, data, test metrics, time and device."""
    spec = get_spec(cfg.model)
    size = min(cfg.train_size, 60_000)
    start = {
        "scratch": "from scratch",
        "checkpoint": f"from the {spec.title} checkpoint",
        "imagenet": "from ImageNet weights",
    }[cfg.init]
    return ModelCard(
        name=name,
        title=f"{spec.title}: {name}",
        architecture=spec.architecture,
        config=dataclasses.asdict(finished.model.config),
        num_params=finished.num_params,
        recipe=config_to_dict(cfg),
        seed=cfg.seed,
        data=f"MNIST train, {size:,} {'balanced ' if size < 60_000 else ''}images, {describe_augment(cfg.augment)}; {start}",
        metrics={
            "accuracy": finished.accuracy,
            "f1_macro": finished.f1_macro,
            "loss": finished.loss,
            "n": finished.n_test,
        },
        train_seconds=round(finished.train_seconds, 1),
        device=finished.device,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def check_run_name(name: str, directory: Path | None = None) -> str:
    """``name`` stripped, when it can name a new checkpoint; a ``RunNameError`` says why not otherwise."""
    name, directory = name.strip(), Path(directory or RUNS_DIR)
    if not RUN_NAME.fullmatch(name):
        raise RunNameError("a run name is 1-48 letters, digits, '-' or '_', starting with a letter or digit")
    if name in list_models() or (Path(directory) / f"{name}.safetensors").exists():
        raise RunNameError(f"the name {name!r} is taken; pick another")
    return name


def save_run(
    cfg: TrainConfig, finished: RunFinished, name: str, events: Sequence[TrainEvent] = (), directory: Path | None = None
) -> ModelSpec:
    """Save the run as ``directory/NAME.safetensors`` + card (+ its epoch history) and register it as a digit model.

    ``directory`` defaults to ``checkpoints/runs`` (registered again when the app starts). The run
    is in ``list_models(task="digits")`` at once, so the Draw page shows it on its next rerun.
    A disk that refuses the files (full, read-only, not ours) raises ``RunSaveError`` with a plain
    explanation, after removing whatever this call had written: a failed save never leaves a half
    checkpoint that would block the name or break the next start. The run itself is untouched.
    """
    directory = Path(directory or RUNS_DIR)
    name = check_run_name(name, directory)
    card = run_card(cfg, finished, name)
    weights = directory / f"{name}.safetensors"
    history, history_tmp = directory / f"{name}.history.json", directory / f"{name}.history.json.tmp"
    ours = [path for path in (weights, weights.with_suffix(".json"), history) if not path.exists()]
    try:
        path = save_checkpoint(finished.model, card, directory)
        history_tmp.write_text(json.dumps(epoch_history(events), indent=1) + "\n")
        history_tmp.replace(history)
    except OSError as error:
        for written in (*ours, history_tmp):
            with contextlib.suppress(OSError):  # the folder refuses even that: then nothing was written there
                written.unlink(missing_ok=True)
        raise save_error(error, name, directory) from error
    return register_digit_checkpoint(path, description=f"Saved run: {card.data}")


def save_error(error: OSError, name: str, directory: Path) -> RunSaveError:
    """``error`` from writing run ``name`` into ``directory`` as a ``RunSaveError``: what failed, where, what to do."""
    where = f"{directory}"
    if error.errno == errno.ENOSPC or error.errno == errno.EDQUOT:
        cause = "the disk is full"
        todo = f"free some space on the disk that holds {where} and press Save again"
    elif isinstance(error, PermissionError) or error.errno == errno.EROFS:
        cause = "the folder is read-only or not writable by the app"
        todo = f"make {where} writable for the user running the app (or mount it read-write) and press Save again"
    else:
        cause = error.strerror or type(error).__name__
        todo = f"check that {where} exists and can be written, then press Save again"
    detail = f" ({error.strerror or error}{f': {error.filename}' if error.filename else ''})"
    return RunSaveError(
        f"could not save run {name!r} in {where}: {cause}{detail}. Nothing was saved and nothing half-written "
        f"was left. To fix it, {todo}."
    )


def run_bundle(cfg: TrainConfig, finished: RunFinished, name: str, events: Sequence[TrainEvent] = ()) -> bytes:
    """A zip to download: weights (safetensors), model card, config, the augmentation as code and JSON, metrics."""
    if not RUN_NAME.fullmatch(name):  # the name becomes the zip's folder and file names, and the importer's rule
        raise RunNameError("a run name is 1-48 letters, digits, '-' or '_', starting with a letter or digit")
    card = run_card(cfg, finished, name)
    state = {k: v.detach().cpu().contiguous() for k, v in finished.model.state_dict().items()}
    spec = augment_spec(cfg)
    files = {
        f"{name}.safetensors": safetensors_bytes(state, metadata={"architecture": card.architecture, "name": name}),
        f"{name}.json": card.to_json(),
        "config.json": json.dumps(config_to_dict(cfg), indent=2) + "\n",
        "augmentation.py": pipeline_to_code(spec),
        "augmentation.json": json.dumps(spec_to_dict(spec), indent=2) + "\n",
        "metrics.json": json.dumps({**run_metrics(finished), "history": epoch_history(events)}, indent=2) + "\n",
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for filename, content in files.items():
            archive.writestr(f"{name}/{filename}", content)
    return buffer.getvalue()
