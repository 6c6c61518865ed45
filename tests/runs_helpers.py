"""Finished runs without training, for the tests of saving, bundles and imports."""

from __future__ import annotations

import dataclasses

import torch

from vision_core.checkpoints import count_parameters
from vision_core.datasets import get_dataset
from vision_core.registry import get_family, get_spec, load_model
from vision_core.runs import TrainedWeights, bundle_files, run_card, run_metrics
from vision_core.training import RunFinished, TrainConfig, TrainEvent, augment_spec, config_to_dict

COMMON = dict(step=10, epoch=1, lr=1e-3, samples_per_s=100.0, elapsed=2.0, total_steps=10)
EPOCH = TrainEvent(kind="epoch", split="val", loss=0.1, accuracy=0.97, **COMMON)


def finished(model: torch.nn.Module, classes: tuple[str, ...], accuracy: float = 0.97) -> RunFinished:
    return RunFinished(
        kind="done", split="test", loss=0.1, accuracy=accuracy, **COMMON, f1_macro=accuracy, n_test=100,
        train_seconds=1.0, confusion=[[0] * len(classes)] * len(classes), num_params=count_parameters(model),
        device="cpu", predicted=[0] * 100, confidence=[0.5] * 100, classes=classes,
    )  # fmt: skip


def weights_of(model: torch.nn.Module, architecture: str) -> TrainedWeights:
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return TrainedWeights(state, architecture, dataclasses.asdict(model.config))


def shipped_run(name: str = "lenet") -> tuple[TrainConfig, RunFinished, TrainedWeights, torch.nn.Module]:
    """A "finished run" that carries a shipped model (the real weights, so predictions can be compared)."""
    model = load_model(name, device="cpu")
    spec = get_spec(name)
    cfg = TrainConfig(model=name, dataset=get_family(spec.architecture).datasets[0])
    return cfg, finished(model, get_dataset(cfg.dataset).classes), weights_of(model, spec.architecture), model


def bundle_of(cfg: TrainConfig, result: RunFinished, weights: TrainedWeights, name: str) -> bytes:
    """The download format (``runs.write_bundle`` without a run folder)."""
    card = run_card(cfg, result, name, weights)
    return bundle_files(
        card, weights.to_bytes(name), config_to_dict(cfg), augment_spec(cfg), run_metrics(result, [EPOCH])
    )
