"""ImageNet CNNs re-headed for digits: torchvision's VGG16, AlexNet and ResNet-18 for transfer learning on MNIST.

Each model takes the digit models' input, a (B, 1, 28, 28) float tensor in [0, 1], and does the
rest itself: resize to ``image_size``, grey to three channels and ImageNet normalisation (the
statistics the pretrained weights expect), then the torchvision network with a new 10-class head.
So a fine-tuned transfer model drops into the Draw page, ``evaluate`` and ``fine_tune`` like any
digit model, and its checkpoint (safetensors + card naming the architecture) loads the same way.

ImageNet weights come from the torch hub cache (see ``vision_core.models.imagenet``); nothing here
downloads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import AlexNet_Weights, ResNet18_Weights, VGG16_Weights, WeightsEnum, alexnet, resnet18, vgg16

from vision_core.checkpoints import CheckpointError
from vision_core.models.imagenet import read_weights_file
from vision_core.models.mnist import ARCHITECTURES


@dataclass(frozen=True)
class Backbone:
    title: str
    build: Callable[..., nn.Module]  # torchvision builder, called with weights=None
    weights: WeightsEnum  # the ImageNet weights: URL, file size, normalisation
    head: str  # the 1000-class layer that is replaced by a 10-class one
    min_size: int  # the smallest input side the network's pooling survives


BACKBONES: dict[str, Backbone] = {
    "vgg16": Backbone("VGG16 (ImageNet)", vgg16, VGG16_Weights.IMAGENET1K_V1, "classifier.6", 32),
    "alexnet": Backbone("AlexNet (ImageNet)", alexnet, AlexNet_Weights.IMAGENET1K_V1, "classifier.6", 64),
    "resnet18": Backbone("ResNet-18 (ImageNet)", resnet18, ResNet18_Weights.IMAGENET1K_V1, "fc", 32),
}
IMAGE_SIZES = (32, 64, 112, 224)  # 224 is what ImageNet saw; smaller is much faster on a CPU


class TransferError(ValueError):
    """A transfer-learning request that cannot work (input too small, weights that do not fit)."""


@dataclass(frozen=True)
class TransferConfig:
    """The digit is resized to ``image_size`` x ``image_size`` before the ImageNet network."""

    image_size: int = 64
    num_classes: int = 10


class TransferNet(nn.Module):
    """A torchvision ImageNet CNN with a new head, for (B, 1, 28, 28) digits in [0, 1]."""

    backbone: ClassVar[str]

    def __init__(self, cfg: TransferConfig = TransferConfig()) -> None:
        super().__init__()
        spec = BACKBONES[self.backbone]
        if cfg.image_size < spec.min_size:
            raise TransferError(f"{spec.title} needs inputs of at least {spec.min_size} px, got {cfg.image_size}")
        self.config = cfg
        self.net = spec.build(weights=None)
        parent_name, _, leaf = spec.head.rpartition(".")
        parent = self.net.get_submodule(parent_name) if parent_name else self.net
        old = getattr(parent, leaf)
        setattr(parent, leaf, nn.Linear(old.in_features, cfg.num_classes))
        transform = spec.weights.transforms()
        # Constants, not state: (1, 3, 1, 1) broadcasting also turns the one grey channel into three.
        self.register_buffer("mean", torch.tensor(transform.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(transform.std).view(1, 3, 1, 1), persistent=False)
        self.frozen = False

    @property
    def head(self) -> nn.Module:
        return self.net.get_submodule(BACKBONES[self.backbone].head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = self.config.image_size
        if x.shape[-1] != size or x.shape[-2] != size:
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        return self.net((x - self.mean) / self.std)  # (B, 1, s, s) -> (B, 3, s, s)

    def load_imagenet(self, path: Path) -> None:
        """Copy the ImageNet weights at ``path`` (a torchvision hub file) into everything but the new head."""
        state = read_weights_file(path)
        head = BACKBONES[self.backbone].head + "."
        try:
            missing, unexpected = self.net.load_state_dict(
                {k: v for k, v in state.items() if not k.startswith(head)}, strict=False
            )
        except RuntimeError as error:
            raise CheckpointError(f"{path} does not fit {BACKBONES[self.backbone].title}: {error}") from error
        if unexpected or any(not k.startswith(head) for k in missing):
            raise CheckpointError(
                f"{path} does not fit {BACKBONES[self.backbone].title}: missing {missing[:5]}, unexpected {unexpected[:5]}"
            )

    def freeze_backbone(self) -> None:
        """Feature extraction: only the new head learns; the backbone (batch-norm statistics and dropout too) stays fixed."""
        self.frozen = True
        for parameter in self.net.parameters():
            parameter.requires_grad_(False)
        for parameter in self.head.parameters():
            parameter.requires_grad_(True)
        self.train(self.training)

    def train(self, mode: bool = True) -> TransferNet:
        super().train(mode)
        if self.frozen:
            self.net.eval()
            self.head.train(mode)
        return self


class VGG16Transfer(TransferNet):
    backbone = "vgg16"


class AlexNetTransfer(TransferNet):
    backbone = "alexnet"


class ResNet18Transfer(TransferNet):
    backbone = "resnet18"


# Checkpoint cards name their architecture; these names make saved transfer runs load like the digit models.
ARCHITECTURES.update(
    {
        "vgg16": (TransferConfig, VGG16Transfer),
        "alexnet": (TransferConfig, AlexNetTransfer),
        "resnet18": (TransferConfig, ResNet18Transfer),
    }
)
