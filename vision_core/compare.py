"""Comparing digit models: a scoreboard from the model cards plus latency measured here, architecture
summaries (torchinfo), first-layer filters, and sweeps. (A ViT's attention maps are in ``vision_core.inside``.)

Nothing here mutates a model it is given: summaries work on a private copy, because the app's
cached models are shared by every session.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import statistics
import time
from collections.abc import Mapping, Sequence

import pandas as pd
import torch
import torchinfo
from PIL import Image
from torch import nn

from vision_core.checkpoints import CHECKPOINT_DIR, CheckpointError, read_card
from vision_core.device import device_of
from vision_core.jobs import Job
from vision_core.registry import WeightsMissingError, get_spec, list_models, load_model
from vision_core.training import TRAIN_SIZES, TrainConfig
from vision_core.visuals import filter_grid

MAX_SWEEP = 24  # runs per sweep: a grid is queued as that many short runs


class CompareError(ValueError):
    """A comparison that cannot be made: no convolution to show, no attention in a CNN, an empty sweep."""


# --- Scoreboard ---------------------------------------------------------------------------------------------------


@torch.inference_mode()
def measure_latency(
    model: nn.Module, input_size: Sequence[int] = (1, 28, 28), repeats: int = 30, warmup: int = 3
) -> float:
    """Median milliseconds for one image through ``model`` on its device (batch of 1, as the Draw page runs it)."""
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


def scoreboard(models: Mapping[str, nn.Module] | None = None, repeats: int = 30) -> pd.DataFrame:
    """One row per digit model with a card (shipped and saved runs): test metrics, size, training, latency here.

    ``models`` (name -> loaded model) avoids reloading what the app has cached; missing ones are loaded.
    A model whose weights are missing keeps its card's figures with no latency.
    """
    rows = []
    for name in list_models(task="digits"):
        spec = get_spec(name)
        try:
            card = read_card(spec.checkpoint)
        except CheckpointError:
            continue
        latency, note = None, ""
        try:
            model = models[name] if models is not None and name in models else load_model(name)
            latency = measure_latency(model, spec.input_size, repeats)
        except (WeightsMissingError, CheckpointError) as error:
            note = str(error)
        rows.append(
            {
                "model": spec.title, "name": name,
                "source": "shipped" if spec.checkpoint.parent == CHECKPOINT_DIR else "saved run",
                "accuracy": card.metrics.get("accuracy"), "macro-F1": card.metrics.get("f1_macro"), "loss": card.metrics.get("loss"),
                "test images": card.metrics.get("n"), "parameters": card.num_params, "training time (s)": card.train_seconds,
                "trained on": card.device, "latency (ms)": latency, "note": note,
            }
        )  # fmt: skip
    return pd.DataFrame(rows)


def load_history(name: str) -> list[dict]:
    """A saved run's per-epoch history (written beside its checkpoint by ``save_run``); [] when there is none."""
    checkpoint = get_spec(name).checkpoint
    path = checkpoint.with_name(f"{checkpoint.stem}.history.json") if checkpoint is not None else None
    if path is None or not path.is_file():
        return []
    try:
        history = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return []
    return history if isinstance(history, list) else []


def history_table(jobs: Sequence[Job] = (), saved: Sequence[str] | None = None) -> pd.DataFrame:
    """Per-epoch validation accuracy and loss of queue runs and saved runs, one ``run`` label each (the overlay chart)."""
    rows = []
    for job in jobs:
        for event in list(job.events):
            if event.kind == "epoch" and event.split == "val":
                rows.append(
                    {
                        "run": f"#{job.id} {job.label}",
                        "epoch": event.epoch,
                        "accuracy": event.accuracy,
                        "loss": event.loss,
                    }
                )
    for name in list_models(task="digits") if saved is None else saved:
        for record in load_history(name):
            if record.get("split") == "val":
                rows.append(
                    {
                        "run": f"saved: {name}",
                        "epoch": record["epoch"],
                        "accuracy": record["accuracy"],
                        "loss": record["loss"],
                    }
                )
    return pd.DataFrame(rows, columns=["run", "epoch", "accuracy", "loss"])


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


def scaling_configs(base: TrainConfig, sizes: Sequence[int] = TRAIN_SIZES) -> list[TrainConfig]:
    """``base`` trained on each balanced training-set size (the course's 600 ... 60,000)."""
    if not sizes:
        raise CompareError("pick at least one training-set size")
    return [dataclasses.replace(base, train_size=size) for size in sorted(set(sizes))]


def sweep_table(jobs: Sequence[Job]) -> pd.DataFrame:
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
