"""Digit predictions: one drawing in, label + probabilities + the exact model input out."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import nn

from vision_core.device import device_of
from vision_core.transforms import DigitSteps, digit_steps, preprocess_digit


@dataclass(frozen=True)
class DigitPrediction:
    label: int
    probs: tuple[float, ...]  # 10 probabilities summing to 1
    model_input: torch.Tensor  # (1, 28, 28) in [0, 1]: exactly what the model saw
    seconds: float  # time in the model (forward + softmax), preprocessing excluded

    @property
    def confidence(self) -> float:
        return self.probs[self.label]


@torch.inference_mode()
def classify_digit_input(model_input: torch.Tensor, model: nn.Module) -> DigitPrediction:
    """Run ``model`` on an already-prepared (1, 28, 28) input."""
    start = time.perf_counter()
    logits = model(model_input.unsqueeze(0).to(device_of(model)))
    probs = torch.softmax(logits.float(), dim=1)[0].cpu()
    seconds = time.perf_counter() - start
    return DigitPrediction(
        label=int(probs.argmax()), probs=tuple(probs.tolist()), model_input=model_input, seconds=seconds
    )


def predict_digit(image: np.ndarray | Image.Image, model: nn.Module) -> DigitPrediction:
    """Preprocess a drawing the MNIST way and classify it.

    >>> from vision_core import load_model
    >>> canvas = np.zeros((280, 280, 4), np.uint8); canvas[60:220, 130:150] = 255  # a "1"
    >>> predict_digit(canvas, load_model("lenet", device="cpu")).label
    1
    """
    return classify_digit_input(preprocess_digit(image), model)


def predict_prepared(model_input: torch.Tensor, models: Mapping[str, nn.Module]) -> dict[str, DigitPrediction]:
    """Classify one MNIST-format (1, 28, 28) input with every model in ``models`` (name -> model)."""
    return {name: classify_digit_input(model_input, model) for name, model in models.items()}


@dataclass(frozen=True)
class DigitReport:
    """Everything the Draw page shows for one drawing: the preprocessing stages and each model's answer."""

    steps: DigitSteps
    predictions: dict[str, DigitPrediction]
    preprocess_seconds: float

    @property
    def labels(self) -> dict[str, int]:
        return {name: p.label for name, p in self.predictions.items()}

    @property
    def models_agree(self) -> bool:
        return len(set(self.labels.values())) <= 1


def predict_digits(image: np.ndarray | Image.Image, models: Mapping[str, nn.Module]) -> DigitReport:
    """Preprocess ``image`` once (keeping every stage), then classify it with each of ``models``.

    Raises ``EmptyDrawingError`` when there is nothing drawn.
    """
    start = time.perf_counter()
    steps = digit_steps(image)
    preprocess_seconds = time.perf_counter() - start
    return DigitReport(
        steps=steps, predictions=predict_prepared(steps.centered, models), preprocess_seconds=preprocess_seconds
    )
