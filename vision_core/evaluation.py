"""Test-set metrics: accuracy, macro-F1 and cross-entropy loss, on any dataset's uint8 images."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.functional.classification import multiclass_confusion_matrix, multiclass_f1_score

from vision_core.data import load_mnist
from vision_core.device import device_of
from vision_core.transforms import to_input


@torch.inference_mode()
def predict_logits(
    model: nn.Module,
    images: torch.Tensor,
    batch_size: int = 1000,
    prepare: Callable[[torch.Tensor], torch.Tensor] = to_input,
) -> torch.Tensor:
    """(N, classes) logits for ``images`` (uint8 (N, H, W) or (N, C, H, W)), each chunk through ``prepare``."""
    device = device_of(model)
    was_training = model.training
    model.eval()
    try:
        chunks = [
            model(prepare(images[i : i + batch_size].to(device))).float() for i in range(0, len(images), batch_size)
        ]
    finally:
        model.train(was_training)
    return torch.cat(chunks)


def metrics_from_logits(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    labels = labels.to(logits.device)
    preds = logits.argmax(dim=1)
    return {
        "accuracy": float((preds == labels).float().mean()),
        "f1_macro": float(multiclass_f1_score(preds, labels, num_classes=logits.shape[1], average="macro")),
        "loss": float(F.cross_entropy(logits, labels)),
        "n": len(labels),
    }


def confusion_matrix(logits: torch.Tensor, labels: torch.Tensor) -> list[list[int]]:
    """Rows: true class, columns: predicted class."""
    matrix = multiclass_confusion_matrix(logits.argmax(dim=1), labels.to(logits.device), num_classes=logits.shape[1])
    return matrix.cpu().tolist()


def evaluate(
    model: nn.Module, split: str = "test", limit: int | None = None, dataset: str = "mnist"
) -> dict[str, float]:
    """Accuracy, macro-F1, mean cross-entropy and image count on ``dataset``'s ``split`` (the first ``limit`` images).

    >>> from vision_core import load_model
    >>> round(evaluate(load_model("lenet", device="cpu"), limit=2000)["accuracy"], 2) >= 0.99
    True
    """
    from vision_core.datasets import get_dataset  # the registry of datasets imports the augmentations: load it late

    data = load_mnist(split) if dataset == "mnist" else get_dataset(dataset).load(split)
    images, labels = (data.images, data.labels) if limit is None else (data.images[:limit], data.labels[:limit])
    return metrics_from_logits(predict_logits(model, images), labels)
