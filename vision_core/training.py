"""Training: a frozen ``TrainConfig`` in, a stream of ``TrainEvent`` records out.

``fine_tune`` never prints and knows nothing of any UI or process: the CLI prints its events, the run service
(``vision_core.jobs``) runs it in a worker process and streams them to the pages. A dataset stays a uint8 tensor on the
training device and whole batches are augmented there: no per-sample PIL work and no DataLoader. A frozen backbone
without augmentation is run once over the data and only its head trains, on the cached features (seconds, not
minutes, on a CPU). Anything with ``is_set()`` passed as ``stop`` ends a run within one layer's work.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from vision_core.augment import AugmentError, PipelineSpec, batch_augment, spec_to_dict
from vision_core.checkpoints import count_parameters, load_checkpoint
from vision_core.data import Split, balanced_subset
from vision_core.datasets import MNIST, MY_CLASSES, DatasetSpec, get_dataset
from vision_core.device import describe_device, resolve_device
from vision_core.evaluation import confusion_matrix, metrics_from_logits, predict_logits
from vision_core.models.transfer import BACKBONES, TransferNet
from vision_core.my_classes import IMAGE_SIZE as MY_CLASSES_IMAGE_SIZE
from vision_core.my_classes import ClassSetError, load_class_set
from vision_core.registry import Family, ModelSpec, WeightsMissingError, get_family, get_spec, list_models
from vision_core.transforms import DigitAugment, to_input

Optimizer = Literal["sgd", "adam", "adamw", "rmsprop"]
Schedule = Literal["none", "step", "cosine", "onecycle"]
Init = Literal["scratch", "checkpoint", "imagenet"]
Mode = Literal["full", "features"]
EVAL_BATCH = 250  # evaluation chunk: small enough that Stop is honoured quickly on a CPU
INIT_TITLES = {
    "scratch": "from scratch",
    "checkpoint": "from its trained checkpoint",
    "imagenet": "from ImageNet weights",
}


class TrainConfigError(ValueError):
    """A run that cannot start: unknown model, an option the model does not support, a pipeline that cannot train."""


class Stop(Protocol):
    def is_set(self) -> bool: ...


@dataclass(frozen=True)
class TrainConfig:
    model: str = "lenet"  # a registered model (shipped, saved run) or a transfer backbone ("effnet_lite0", "vgg16")
    dataset: str = MNIST  # "mnist", "cifar10" or "my-classes" (then ``class_set`` names the file of images)
    class_set: str | None = None
    init: Init = "scratch"  # "checkpoint": the model's saved weights; "imagenet": pretrained backbone (transfer)
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
    train_size: int = 60_000  # balanced per class when below the training set's size; at or above it: everything
    val_size: int = 2_000  # per-epoch validation on the first val_size test images (never used to pick weights)
    test_size: int | None = None  # final evaluation on the first test_size test images; None: all of them
    augment: bool | PipelineSpec = True  # True: the dataset's standard augmentation; a PipelineSpec: the lab's
    image_size: int = 64  # transfer models: the input is resized to this square (ImageNet saw 224)
    seed: int = 0
    device: str = "auto"
    amp: bool = True  # bfloat16 autocast on CUDA; ignored on the CPU
    log_every: int = 10  # a step event every this many steps (each one syncs the device)

    def __post_init__(self) -> None:
        positive = ("lr", "batch_size", "epochs", "train_size", "log_every", "val_size")
        problems = [f"{name} must be positive" for name in positive if getattr(self, name) <= 0]
        for name in ("max_steps", "test_size"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                problems.append(f"{name} must be positive")
        for name, allowed in (
            ("optimizer", Optimizer), ("schedule", Schedule), ("init", Init), ("mode", Mode)
        ):  # fmt: skip
            if getattr(self, name) not in allowed.__args__:
                problems.append(f"unknown {name} {getattr(self, name)!r}; choose {', '.join(allowed.__args__)}")
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
    """The last event: test metrics of the trained model. The model stays with whoever ran ``fine_tune`` (the worker
    process writes it into the run's folder); this record is plain data, cheap to send and keep."""

    f1_macro: float
    n_test: int
    train_seconds: float  # training only, evaluation excluded
    confusion: list[list[int]]  # rows: true class, columns: predicted class
    num_params: int
    device: str
    predicted: list[int]  # the model's answer for each of the first n_test test images
    confidence: list[float]  # the softmax probability of that answer
    classes: tuple[str, ...]


class StopRequested(Exception):
    """Raised inside the model by the stop hooks; ``fine_tune`` turns it into a "stopped" event."""


# --- What a model allows, and sensible settings: policy the pages and the CLI share --------------------------------


def family_of(spec: ModelSpec) -> Family:
    return get_family(spec.architecture)


def is_transfer(name: str) -> bool:
    return get_spec(name).architecture in BACKBONES


def trainable_models(dataset: str | None = None) -> list[str]:
    """Models ``fine_tune`` accepts (on ``dataset``): trained models of that dataset, then the transfer backbones."""
    names = [name for name in list_models() if get_spec(name).task not in ("imagenet", "detection")]
    return [name for name in names if dataset is None or dataset in allowed_datasets(get_spec(name))]


def allowed_datasets(spec: ModelSpec) -> tuple[str, ...]:
    """A trained model continues on its own dataset; a backbone or a fresh build goes wherever its family trains."""
    if spec.task == "transfer":
        return family_of(spec).datasets
    own = next(name for name in family_of(spec).datasets if get_dataset(name).task == spec.task)
    return (own,)


def allowed_inits(spec: ModelSpec) -> list[str]:
    """Where a run of ``spec`` may start: ImageNet weights for a backbone, its checkpoint for a trained model."""
    if spec.task == "transfer":
        return ["imagenet", "scratch"]
    return ["scratch", "checkpoint"] if spec.checkpoint is not None else ["scratch"]


def default_config(model: str, device: str = "auto", dataset: str | None = None) -> TrainConfig:
    """The settings a run of ``model`` starts from on ``device``: the family's recipe, scaled to what the device does
    in a minute or two (a 2-core CPU trains LeNet on 18,000 digits in seconds, VGG16 on 600 digits in minutes)."""
    spec = get_spec(model)
    family = family_of(spec)
    dataset = dataset or allowed_datasets(spec)[0]
    on_gpu = resolve_device(device).type == "cuda"
    base = TrainConfig(model=model, dataset=dataset, device=device)
    base = dataclasses.replace(base, **{k: v for k, v in family.recipe.items() if k != "seed"})
    transfer = spec.task == "transfer"
    sizes = {
        (MNIST, False): (60_000, 3) if on_gpu else (18_000, 2),
        (MNIST, True): (6_000, 1) if on_gpu else (600, 1),
        ("cifar10", False): (50_000, 15) if on_gpu else (5_000, 3),
        ("cifar10", True): (10_000, 2) if on_gpu else (2_000, 1),
    }
    if dataset == MY_CLASSES:
        # A frozen backbone without augmentation: its features are computed once, then only the head trains, 30 times
        # over, in well under a second. 128 px is what the pictures are kept at (my_classes.IMAGE_SIZE).
        return dataclasses.replace(
            base,
            epochs=30,
            batch_size=16,
            image_size=MY_CLASSES_IMAGE_SIZE,
            augment=False,
            val_size=200,
            test_size=1_000,
            log_every=1,
        )
    train_size, epochs = sizes.get((dataset, transfer), (base.train_size, base.epochs))
    small = transfer and not on_gpu
    return dataclasses.replace(
        base, train_size=train_size, epochs=epochs, batch_size=32 if small else base.batch_size,
        val_size=200 if small else (500 if dataset != MNIST else 2_000), test_size=1_000 if small else None,
        image_size=224 if on_gpu else 64, log_every=1 if small else 5,
        augment=not (transfer and base.mode == "features"),
    )  # fmt: skip


def recipe_for(model: str, **overrides: Any) -> TrainConfig:
    """The family's recipe for ``model`` (what made the shipped checkpoint), with ``overrides`` applied."""
    spec = get_spec(model)
    recipe = {**family_of(spec).recipe, "dataset": allowed_datasets(spec)[0]}
    cfg = TrainConfig(model=model, **recipe)
    return dataclasses.replace(cfg, **{k: v for k, v in overrides.items() if v is not None})


def check_config(cfg: TrainConfig) -> ModelSpec:
    """Everything about ``cfg`` that needs the registry, checked before any work (the service calls it on submit).

    Raises ``TrainConfigError`` for a combination that cannot run, ``WeightsMissingError`` when the weights it starts
    from are not on this machine (ImageNet weights are never downloaded here).
    """
    try:
        spec = get_spec(cfg.model)
    except KeyError:
        raise TrainConfigError(f"unknown model {cfg.model!r}; trainable: {', '.join(trainable_models())}") from None
    if spec.task in ("imagenet", "detection"):
        raise TrainConfigError(f"{spec.title} is a photo model; trainable: {', '.join(trainable_models())}")
    try:
        data = get_dataset(cfg.dataset)
    except KeyError as error:
        raise TrainConfigError(str(error.args[0])) from None
    if cfg.dataset not in allowed_datasets(spec):
        raise TrainConfigError(
            f"{spec.title} trains on {', '.join(get_dataset(d).title for d in allowed_datasets(spec))}, not {data.title}"
        )
    if cfg.init not in allowed_inits(spec):
        raise TrainConfigError(f"{spec.title} can start {' or '.join(INIT_TITLES[i] for i in allowed_inits(spec))}")
    transfer = spec.architecture in BACKBONES
    if cfg.mode == "features" and not transfer:
        raise TrainConfigError(
            f"feature extraction (a frozen backbone) is for the transfer models {', '.join(BACKBONES)}"
        )
    if transfer and cfg.init != "checkpoint" and cfg.image_size < BACKBONES[spec.architecture].min_size:
        raise TrainConfigError(
            f"{spec.title} needs an image size of at least {BACKBONES[spec.architecture].min_size} px"
        )
    _check_data(cfg, data)
    _check_augment(cfg, data)
    check_device(cfg.device)
    if cfg.init in ("checkpoint", "imagenet") and not spec.weights_file().is_file():
        what = "ImageNet weights" if cfg.init == "imagenet" else "weights"
        raise WeightsMissingError(
            f"{spec.title}: the {what} are not on this machine (no file at {spec.weights_file()}). {spec.rebuild_hint}"
            + (" Or train from random weights (init 'scratch')." if cfg.init == "imagenet" else "")
        )
    return spec


def _check_data(cfg: TrainConfig, data: DatasetSpec) -> None:
    if data.name == MY_CLASSES:
        if not cfg.class_set:
            raise TrainConfigError("training on my classes needs a class set: add images on the My classes page")
        try:
            load_class_set(cfg.class_set)
        except ClassSetError as error:
            raise TrainConfigError(str(error)) from None
        return
    count = len(data.load("train").labels)
    if cfg.train_size < count and cfg.train_size % len(data.classes):
        raise TrainConfigError(
            f"a balanced training set needs a multiple of {len(data.classes)} images, got {cfg.train_size}"
        )


def _check_augment(cfg: TrainConfig, data: DatasetSpec) -> None:
    if not isinstance(cfg.augment, PipelineSpec):
        return
    size = data.image_size
    try:  # a dry run on two blank images: catches pipelines that change the size or cannot run on this data
        batch_augment(cfg.augment)(torch.zeros(2, data.channels, size, size), torch.Generator().manual_seed(0))
    except AugmentError as error:
        raise TrainConfigError(f"this augmentation pipeline cannot train on {data.title}: {error}") from None


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


# --- Building blocks of a run --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunData:
    train: Split
    val: Split
    test: Split
    classes: tuple[str, ...]


def run_classes(cfg: TrainConfig) -> tuple[str, ...]:
    if cfg.dataset == MY_CLASSES:
        return load_class_set(cfg.class_set).classes
    return get_dataset(cfg.dataset).classes


def load_data(cfg: TrainConfig) -> RunData:
    """The run's training subset (balanced, seeded), validation and test images, as uint8 tensors on the CPU."""
    if cfg.dataset == MY_CLASSES:
        class_set = load_class_set(cfg.class_set)
        train, held_out = class_set.split(seed=cfg.seed)
        return RunData(train, held_out, held_out, class_set.classes)  # few images: the held-out ones test too
    data = get_dataset(cfg.dataset)
    train, test = data.load("train"), data.load("test")
    subset = balanced_subset(train.labels, cfg.train_size, seed=cfg.seed, num_classes=len(data.classes))
    val = Split(test.images[: cfg.val_size], test.labels[: cfg.val_size])
    test = Split(test.images[: cfg.test_size], test.labels[: cfg.test_size])
    return RunData(Split(train.images[subset], train.labels[subset]), val, test, data.classes)


def build_for_training(cfg: TrainConfig) -> nn.Module:
    """A fresh model (seeded: the same config gives the same initial weights in any process), or a private copy of the
    saved one: the app's cached models are never trained in place."""
    torch.manual_seed(cfg.seed)
    spec = get_spec(cfg.model)
    family = family_of(spec)
    if cfg.init == "checkpoint":
        model = load_checkpoint(spec.checkpoint)[0].train()
    elif spec.architecture in BACKBONES:
        model = family.build(family.config(image_size=cfg.image_size, num_classes=len(run_classes(cfg))))
        if cfg.init == "imagenet":
            model.load_imagenet()
    else:
        config = family.config_from_dict(load_checkpoint(spec.checkpoint)[1].config) if spec.source == "run" else None
        model = family.build(config)
    if cfg.mode == "features" and isinstance(model, TransferNet):
        model.freeze_backbone()
    return model


def make_optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=cfg.momentum > 0)  # fmt: skip
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.RMSprop(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def make_scheduler(cfg: TrainConfig, optimizer: torch.optim.Optimizer, total_steps: int) -> torch.optim.lr_scheduler.LRScheduler:  # fmt: skip
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=total_steps, pct_start=0.15)
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    if cfg.schedule == "step":  # x0.1 at 60% and 85% of the run
        milestones = [int(total_steps * 0.6), int(total_steps * 0.85)]
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=0.1)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


def augment_spec(cfg: TrainConfig) -> PipelineSpec:
    """The run's augmentation as a pipeline spec (``True``: the dataset's standard one; none: the empty spec)."""
    if cfg.augment is True:
        return get_dataset(cfg.dataset).augment
    return cfg.augment if isinstance(cfg.augment, PipelineSpec) else PipelineSpec()


def make_augment(cfg: TrainConfig) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None:
    """The batched augmentation ``cfg`` asks for: ``augment(x, generator)`` on (B, C, H, W) batches, or None."""
    if cfg.augment is True and cfg.dataset == MNIST:
        return (
            DigitAugment()
        )  # what trained the shipped digit models (batch_augment of its spec is the same, bit for bit)
    spec = augment_spec(cfg)
    return batch_augment(spec) if spec.steps else None


def describe_augment(augment: bool | PipelineSpec, dataset: str = MNIST) -> str:
    """A TrainConfig's ``augment`` in words: "the standard MNIST augmentation (DigitWarp, StrokeThickness)"."""
    spec = get_dataset(dataset).augment if augment is True else augment
    if spec is False or not spec.steps:
        return "no augmentation"
    steps = ", ".join(step.name + (f" (p={step.p:g})" if step.p < 1 else "") for step in spec.steps)
    return (
        f"the standard {get_dataset(dataset).title} augmentation ({steps})"
        if augment is True
        else f"the pipeline {steps}"
    )


@contextmanager
def stop_hooks(model: nn.Module, stop: Stop) -> Iterator[None]:
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


# --- The run -------------------------------------------------------------------------------------------------------


@dataclass
class Learner:
    """What trains and how a batch becomes its input: the whole model on images (augmented), or, with a frozen
    backbone and no augmentation, only the head on features the backbone computed once."""

    net: nn.Module
    data: RunData  # images (uint8) or features (float)
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None
    on_features: bool

    def inputs(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.on_features:
            return batch
        x = to_input(batch)
        return self.augment(x, generator) if self.augment is not None else x

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        prepare = (lambda x: x) if self.on_features else to_input
        return predict_logits(self.net, images, batch_size=EVAL_BATCH, prepare=prepare)


def _features(model: TransferNet, split: Split, device: torch.device) -> Split:
    chunks = [model.embed(to_input(split.images[i : i + EVAL_BATCH].to(device))) for i in range(0, len(split), EVAL_BATCH)]  # fmt: skip
    return Split(torch.cat(chunks) if chunks else torch.zeros(0), split.labels.to(device))


def make_learner(cfg: TrainConfig, model: nn.Module, data: RunData, device: torch.device) -> Learner:
    augment = make_augment(cfg)
    on_features = isinstance(model, TransferNet) and model.frozen and augment is None
    if not on_features:
        return Learner(model, RunData(*(s.to(device) for s in (data.train, data.val, data.test)), data.classes), augment, False)  # fmt: skip
    model.eval()
    with torch.inference_mode():
        features = [_features(model, split, device) for split in (data.train, data.val, data.test)]
    model.train()
    return Learner(model.head, RunData(*features, data.classes), None, True)


@dataclass
class Run:
    """The state of one run between its steps: what trains, its optimizer and schedule, where it stands."""

    cfg: TrainConfig
    learner: Learner
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    generator: torch.Generator
    steps_per_epoch: int
    total_steps: int
    step: int = 0
    seen: int = 0
    start: float = dataclasses.field(default_factory=time.perf_counter)
    last_loss: torch.Tensor | None = None  # the latest finished step's loss and hits, for a stopped run's last event
    last_correct: torch.Tensor | None = None

    @property
    def epochs(self) -> int:
        return math.ceil(self.total_steps / self.steps_per_epoch)

    def event(self, kind: str, epoch: int, split: str, loss: float, accuracy: float) -> dict[str, Any]:
        elapsed = time.perf_counter() - self.start
        return dict(
            kind=kind, step=self.step, epoch=epoch, split=split, loss=loss, accuracy=accuracy,
            lr=self.scheduler.get_last_lr()[0], samples_per_s=self.seen / max(elapsed, 1e-9), elapsed=elapsed,
            total_steps=self.total_steps,
        )  # fmt: skip

    def train_step(self, x: torch.Tensor, y: torch.Tensor, autocast) -> None:
        with autocast:
            logits = self.learner.net(x)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=self.cfg.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        self.step, self.seen = self.step + 1, self.seen + len(y)
        self.last_loss, self.last_correct = loss.detach(), logits.detach().argmax(dim=1) == y

    def epoch(self, epoch: int, autocast) -> Iterator[TrainEvent]:
        """One pass over the (shuffled) training data: step events as it goes, then the epoch's train and val events."""
        train, cfg = self.learner.data.train, self.cfg
        order = torch.randperm(len(train), device=train.labels.device, generator=self.generator)
        loss_sum = torch.zeros((), device=train.labels.device)  # summed on the device: no sync per step
        correct_sum, seen = torch.zeros((), device=train.labels.device), 0
        for first in range(0, len(train), cfg.batch_size):
            batch = order[first : first + cfg.batch_size]
            self.train_step(self.learner.inputs(train.images[batch], self.generator), train.labels[batch], autocast)
            seen += len(batch)
            loss_sum += self.last_loss * len(batch)
            correct_sum += self.last_correct.sum()
            if self.step % cfg.log_every == 0 or self.step == self.total_steps:
                accuracy = float(self.last_correct.float().mean())
                yield TrainEvent(**self.event("step", epoch, "train", float(self.last_loss), accuracy))
            if self.step >= self.total_steps:
                break
        yield TrainEvent(**self.event("epoch", epoch, "train", float(loss_sum) / seen, float(correct_sum) / seen))
        val = metrics_from_logits(self.learner.logits(self.learner.data.val.images), self.learner.data.val.labels)
        yield TrainEvent(**self.event("epoch", epoch, "val", val["loss"], val["accuracy"]))

    def finish(self, model: nn.Module, train_seconds: float, device: torch.device) -> RunFinished:
        """The trained model on the test images: metrics, confusion matrix and every answer with its confidence."""
        test = self.learner.data.test
        logits = self.learner.logits(test.images)
        metrics = metrics_from_logits(logits, test.labels)
        confidence, predicted = torch.softmax(logits, dim=1).max(dim=1)
        return RunFinished(
            **self.event("done", self.epochs, "test", metrics["loss"], metrics["accuracy"]),
            f1_macro=metrics["f1_macro"], n_test=metrics["n"], train_seconds=train_seconds,
            confusion=confusion_matrix(logits, test.labels), num_params=count_parameters(model),
            device=describe_device(device), predicted=predicted.cpu().tolist(), confidence=confidence.cpu().tolist(),
            classes=self.learner.data.classes,
        )  # fmt: skip

    def stopped(self) -> TrainEvent:
        loss = float(self.last_loss) if self.last_loss is not None else math.nan
        accuracy = float(self.last_correct.float().mean()) if self.last_correct is not None else math.nan
        return TrainEvent(**self.event("stopped", max(1, math.ceil(self.step / self.steps_per_epoch)), "train", loss, accuracy))  # fmt: skip


def plan_run(cfg: TrainConfig, model: nn.Module, data: RunData, device: torch.device) -> Run:
    """Everything a run needs before its first step. The learner starts on the images; ``make_learner`` may swap it."""
    steps_per_epoch = math.ceil(len(data.train) / cfg.batch_size)
    total_steps = min(cfg.max_steps or cfg.epochs * steps_per_epoch, cfg.epochs * steps_per_epoch)
    frozen = isinstance(model, TransferNet) and model.frozen
    optimizer = make_optimizer(cfg, [p for p in (model.head if frozen else model).parameters() if p.requires_grad])
    return Run(
        cfg=cfg, learner=Learner(model, data, None, False), optimizer=optimizer,
        scheduler=make_scheduler(cfg, optimizer, total_steps), generator=torch.Generator(device=device).manual_seed(cfg.seed),
        steps_per_epoch=steps_per_epoch, total_steps=total_steps,
    )  # fmt: skip


def fine_tune(cfg: TrainConfig, model: nn.Module | None = None, stop: Stop | None = None) -> Iterator[TrainEvent]:
    """Train ``cfg.model`` (or ``model``, which is then trained in place) and yield events; the last is a ``RunFinished``.

    Setting ``stop`` ends the run within one layer's work: the last event is then a "stopped" one (no test
    evaluation), and the partial events stay with the caller.

    >>> events = list(fine_tune(TrainConfig(model="lenet", train_size=600, max_steps=2, device="cpu")))
    >>> events[-1].kind, events[-1].step
    ('done', 2)
    """
    check_config(cfg)
    device = resolve_device(cfg.device)
    model = (model if model is not None else build_for_training(cfg)).to(device).train()
    torch.manual_seed(cfg.seed)  # after the build, so a model built by the caller trains exactly as one built here
    data = load_data(cfg)
    run = plan_run(cfg, model, data, device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cfg.amp and device.type == "cuda" else nullcontext()
    try:
        with stop_hooks(model, stop) if stop is not None else nullcontext():
            run.learner = make_learner(cfg, model, data, device)  # may compute a frozen backbone's features: stoppable
            for epoch in range(1, run.epochs + 1):
                yield from run.epoch(epoch, autocast)
            train_seconds = time.perf_counter() - run.start
            model.eval()
            finished = run.finish(model, train_seconds, device)
    except StopRequested:
        yield run.stopped()
        return
    yield finished


# --- After a run ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mistake:
    index: int  # in the test split
    label: int
    predicted: int
    confidence: float  # the model's probability for its (wrong) answer


def misclassified(finished: RunFinished, labels: torch.Tensor, limit: int = 24) -> list[Mistake]:
    """The run's wrong answers on the test images, most confident first (``labels``: the test split's labels)."""
    truth = labels[: finished.n_test].cpu()
    predicted, confidence = torch.tensor(finished.predicted), torch.tensor(finished.confidence)
    wrong = torch.nonzero(predicted != truth).flatten()
    order = wrong[confidence[wrong].argsort(descending=True)][:limit]
    return [Mistake(int(i), int(truth[i]), int(predicted[i]), float(confidence[i])) for i in order]


def near_chance(finished: RunFinished) -> bool:
    """Whether the run learnt next to nothing: test accuracy within 5 points of guessing (10% on 10 classes)."""
    return finished.accuracy < 1 / len(finished.classes) + 0.05


def config_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    """``cfg`` as JSON-able values; a pipeline becomes the Augmentation lab's JSON form."""
    values = dataclasses.asdict(cfg)
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
