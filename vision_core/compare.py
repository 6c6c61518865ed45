"""Comparing trained models: a scoreboard from the model cards (grouped by dataset), training curves, architecture
summaries (torchinfo), first-layer filters, and sweeps. (A ViT's attention maps are in ``vision_core.inside``.)

Nothing here mutates a model it is given: summaries work on a private copy, because the app's
cached models are shared by every session.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import statistics
import time
from collections.abc import Sequence

import pandas as pd
import torch
import torchinfo
from PIL import Image
from torch import nn

from vision_core.checkpoints import CheckpointError, read_card
from vision_core.datasets import dataset_for_task, get_dataset
from vision_core.device import device_of
from vision_core.jobs import JobView
from vision_core.registry import get_spec, list_models
from vision_core.runs import load_history
from vision_core.training import TrainConfig, TrainEvent
from vision_core.visuals import filter_grid

MAX_SWEEP = 24  # runs per sweep: a grid is queued as that many short runs


class CompareError(ValueError):
    """A comparison that cannot be made: no convolution to show, no attention in a CNN, an empty sweep."""


# --- Scoreboard ---------------------------------------------------------------------------------------------------


@torch.inference_mode()
def measure_latency(model: nn.Module, input_size: Sequence[int], repeats: int = 30, warmup: int = 3) -> float:
    """Median milliseconds for one image through ``model`` on its device (batch of 1, as the pages run it)."""
    device = device_of(model)
    x = torch.rand(1, *input_size, device=device)
    times = []
    for i in range(warmup + repeats):
        start = time.perf_counter()
        model(x)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def carded_models(dataset: str | None = None) -> list[str]:
    """Models with a checkpoint card (shipped ones and saved runs), of one dataset when given, in registry order."""
    return [
        name
        for name in list_models()
        if get_spec(name).checkpoint is not None
        and (dataset is None or get_spec(name).task == get_dataset(dataset).task)
    ]


def scoreboard(names: Sequence[str]) -> pd.DataFrame:
    """One row per model: its card's test metrics, size, training time and device. Reads cards only, never weights
    (a VGG16 run is half a gigabyte): latency is measured on request (``measure_latency``) and joined by the page."""
    rows = []
    for name in names:
        spec = get_spec(name)
        try:
            card = read_card(spec.checkpoint)
        except CheckpointError as error:
            rows.append({"model": spec.title, "name": name, "source": spec.source, "note": str(error)})
            continue
        rows.append(
            {
                "model": spec.title, "name": name, "dataset": get_dataset(card.dataset).title,
                "source": "shipped" if spec.source == "shipped" else "saved run",
                "accuracy": card.metrics.get("accuracy"), "macro-F1": card.metrics.get("f1_macro"), "loss": card.metrics.get("loss"),
                "test images": card.metrics.get("n"), "parameters": card.num_params, "training time (s)": card.train_seconds,
                "trained on": card.device, "note": "",
            }
        )  # fmt: skip
    return pd.DataFrame(rows)


HISTORY_COLUMNS = ["run", "dataset", "epoch", "accuracy", "loss"]


def history_table(runs: Sequence[tuple[JobView, Sequence[TrainEvent]]] = (), saved: Sequence[str] = ()) -> pd.DataFrame:
    """Per-epoch validation accuracy and loss of queue runs (each with its events) and saved runs, one ``run`` label
    each, with the dataset they trained on (the overlay chart draws one dataset at a time)."""
    rows = [
        {"run": f"#{job.id} {job.label}", "dataset": get_dataset(job.cfg.dataset).title, "epoch": event.epoch,
         "accuracy": event.accuracy, "loss": event.loss}
        for job, events in runs
        for event in events
        if event.kind == "epoch" and event.split == "val"
    ]  # fmt: skip
    for name in saved:
        dataset = get_dataset(dataset_name(name)).title
        rows += [
            {
                "run": f"saved: {name}",
                "dataset": dataset,
                "epoch": r["epoch"],
                "accuracy": r["accuracy"],
                "loss": r["loss"],
            }
            for r in load_history(name)
            if r.get("split") == "val"
        ]
    return pd.DataFrame(rows, columns=HISTORY_COLUMNS)


def dataset_name(model: str) -> str:
    """The dataset a trained model's outputs mean ("mnist" for the digit models)."""
    found = dataset_for_task(get_spec(model).task)
    if found is None:
        raise CompareError(f"{model!r} is not trained on one of this app's datasets")
    return found.name


# --- Inside a model -----------------------------------------------------------------------------------------------


def architecture_summary(model: nn.Module, input_size: Sequence[int] = (1, 28, 28), depth: int = 3) -> pd.DataFrame:
    """torchinfo's layer table: layer (dotted name), type, output shape and parameters held, down to ``depth``.

    The parameters column adds up to the model's total: a layer shows what it holds itself, and a
    layer at the depth limit also what its hidden children hold.
    """
    private = copy.deepcopy(model).cpu().eval()
    names = {id(module): name for name, module in private.named_modules()}
    stats = torchinfo.summary(
        private,
        input_size=(1, *input_size),
        depth=depth,
        col_names=("output_size", "num_params"),
        verbose=0,
        device="cpu",
        mode="eval",
    )
    rows = []
    for info in stats.summary_list:
        if info.depth > depth or (info.depth == 0 and info.leftover_params() == 0):
            continue
        params = info.num_params if info.depth == depth or info.is_leaf_layer else info.leftover_params()
        name = names.get(id(info.module), info.var_name) or "(model)"
        rows.append(
            {
                "layer": name,
                "type": info.class_name,
                "depth": info.depth,
                "output shape": str(list(info.output_size)),
                "parameters": params,
            }
        )
    return pd.DataFrame(rows)


def first_conv(model: nn.Module) -> tuple[str, torch.Tensor]:
    """The first convolution's name and kernels (out, in, k, k): what the model looks for in raw pixels."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            return name, module.weight.detach().float().cpu().clone()
    raise CompareError(f"{type(model).__name__} has no convolution")


def filter_image(weights: torch.Tensor, tile: int = 40) -> Image.Image:
    """Kernels as tiles, each scaled to its own range; one-channel (digit) kernels in grey, RGB ones in colour."""
    if weights.dim() != 4 or weights.shape[1] not in (1, 3):
        raise CompareError(f"expected (N, 1 or 3, k, k) kernels, got shape {tuple(weights.shape)}")
    return filter_grid(weights.expand(-1, 3, -1, -1) if weights.shape[1] == 1 else weights, tile=tile)


# --- Sweeps -------------------------------------------------------------------------------------------------------


def grid_configs(
    base: TrainConfig, batch_sizes: Sequence[int], lrs: Sequence[float], optimizers: Sequence[str]
) -> list[TrainConfig]:
    """Every combination of the chosen batch sizes, learning rates and optimizers on top of ``base``."""
    combos = list(itertools.product(batch_sizes, lrs, optimizers))
    if not combos:
        raise CompareError("pick at least one batch size, one learning rate and one optimizer")
    if len(combos) > MAX_SWEEP:
        raise CompareError(f"{len(combos)} settings is too many for one sweep (at most {MAX_SWEEP})")
    return [dataclasses.replace(base, batch_size=b, lr=lr, optimizer=o) for b, lr, o in combos]


def scaling_configs(base: TrainConfig, sizes: Sequence[int]) -> list[TrainConfig]:
    """``base`` trained on each balanced training-set size (the course's 600 ... 60,000 MNIST digits)."""
    if not sizes:
        raise CompareError("pick at least one training-set size")
    return [dataclasses.replace(base, train_size=size) for size in sorted(set(sizes))]


def sweep_table(jobs: Sequence[JobView]) -> pd.DataFrame:
    """One row per sweep run: its setting, state, and (when done) test accuracy, macro-F1, loss and time."""
    rows = []
    for job in jobs:
        cfg, result = job.cfg, job.result
        rows.append(
            {
                "run": job.id, "setting": f"batch {cfg.batch_size} · lr {cfg.lr:g} · {cfg.optimizer}",
                "batch size": cfg.batch_size, "lr": cfg.lr, "optimizer": cfg.optimizer, "train size": min(cfg.train_size, 60_000),
                "state": job.state, "accuracy": result.accuracy if result else None, "macro-F1": result.f1_macro if result else None,
                "loss": result.loss if result else None, "training time (s)": result.train_seconds if result else None,
            }
        )  # fmt: skip
    return pd.DataFrame(rows)
