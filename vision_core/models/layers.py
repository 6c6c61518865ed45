"""Building blocks the model families share."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from vision_core.datasets import get_dataset


class Normalize(nn.Module):
    """(x - mean) / std per channel, with constants, so nothing lands in the state dict.

    Every family normalises inside the module: a model from ``load_model``, a fine-tune run or a notebook takes
    inputs in [0, 1] and cannot be fed mis-scaled ones.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class ConvClassifier(nn.Module):
    """The shape of the course's CNNs: normalise, ``features`` (convolutions), ``classifier`` (pooling, dense layers).

    Subclasses build the two ``nn.Sequential`` parts; the layer names (``features.0``, ...) are what feature maps,
    CAMs and checkpoints refer to.
    """

    features: nn.Sequential
    classifier: nn.Sequential

    def __init__(self, config: Any, dataset: str) -> None:
        super().__init__()
        self.config = config
        data = get_dataset(dataset)  # its statistics: inputs come in [0, 1], the model normalises them itself
        self.normalize = Normalize(data.mean, data.std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(self.normalize(x)))
