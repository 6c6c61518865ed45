"""The three digit models: a LeNet-style CNN, a VGG-style CNN and a ViT built with timm.

Every digit model takes MNIST-format input, a (B, 1, 28, 28) float tensor in [0, 1] with a white
digit on black, and normalises it itself. Keeping the normalisation inside the module means a
model from ``load_model``, from a fine-tune run or from a notebook cannot be fed mis-scaled input.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


class MNISTNormalize(nn.Module):
    """(x - mean) / std with MNIST's statistics; constants, so nothing lands in the state dict."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - MNIST_MEAN) / MNIST_STD


@dataclass(frozen=True)
class LeNetConfig:
    """LeNet-5's layout (two 5x5 conv + pool stages, three dense layers) with ReLU and max-pool."""

    channels: tuple[int, int] = (6, 16)
    hidden: tuple[int, int] = (120, 84)
    num_classes: int = 10


@dataclass(frozen=True)
class VGGConfig:
    """Stacks of 3x3 conv + BN + ReLU, a 2x2 max-pool after each stage, then global average pool."""

    widths: tuple[int, ...] = (16, 32, 64)
    convs_per_stage: int = 2
    dropout: float = 0.2
    num_classes: int = 10


@dataclass(frozen=True)
class ViTConfig:
    """timm's ``VisionTransformer`` on 28 x 28 one-channel input: 4 x 4 patches give 49 tokens."""

    patch_size: int = 4
    embed_dim: int = 64
    depth: int = 6
    num_heads: int = 4
    mlp_ratio: float = 2.0
    drop_path_rate: float = 0.05
    num_classes: int = 10


class LeNet(nn.Module):
    def __init__(self, cfg: LeNetConfig = LeNetConfig()) -> None:
        super().__init__()
        self.config = cfg
        c1, c2 = cfg.channels
        h1, h2 = cfg.hidden
        self.normalize = MNISTNormalize()
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),  # (B, c1, 14, 14)
            nn.Conv2d(c1, c2, 5), nn.ReLU(), nn.MaxPool2d(2),  # (B, c2, 5, 5)
        )  # fmt: skip
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(c2 * 5 * 5, h1), nn.ReLU(), nn.Linear(h1, h2), nn.ReLU(), nn.Linear(h2, cfg.num_classes)
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(self.normalize(x)))


class VGG(nn.Module):
    def __init__(self, cfg: VGGConfig = VGGConfig()) -> None:
        super().__init__()
        self.config = cfg
        layers: list[nn.Module] = []
        in_channels = 1
        for width in cfg.widths:
            for _ in range(cfg.convs_per_stage):
                layers += [nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
                in_channels = width
            layers.append(nn.MaxPool2d(2))  # 28 -> 14 -> 7 -> 3
        self.normalize = MNISTNormalize()
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(cfg.dropout), nn.Linear(in_channels, cfg.num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(self.normalize(x)))


class DigitViT(nn.Module):
    def __init__(self, cfg: ViTConfig = ViTConfig()) -> None:
        super().__init__()
        self.config = cfg
        self.normalize = MNISTNormalize()
        self.vit = VisionTransformer(
            img_size=28,
            patch_size=cfg.patch_size,
            in_chans=1,
            num_classes=cfg.num_classes,
            embed_dim=cfg.embed_dim,
            depth=cfg.depth,
            num_heads=cfg.num_heads,
            mlp_ratio=cfg.mlp_ratio,
            drop_path_rate=cfg.drop_path_rate,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.vit(self.normalize(x))


# architecture name -> (config class, module class); checkpoints name their architecture, never guess it.
ARCHITECTURES: dict[str, tuple[type, type[nn.Module]]] = {
    "lenet": (LeNetConfig, LeNet),
    "vgg": (VGGConfig, VGG),
    "vit": (ViTConfig, DigitViT),
}


def config_from_dict(architecture: str, values: dict[str, Any]) -> Any:
    """Rebuild a config dataclass from its JSON form (lists back to tuples); unknown keys are an error."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; known: {sorted(ARCHITECTURES)}")
    config_cls = ARCHITECTURES[architecture][0]
    fields = {f.name for f in dataclasses.fields(config_cls)}
    unknown = set(values) - fields
    if unknown:
        raise ValueError(f"{architecture} config has unknown fields {sorted(unknown)}")
    return config_cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def build_digit_model(architecture: str, config: Any = None) -> nn.Module:
    """A freshly initialised digit model; ``config`` defaults to the architecture's defaults."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; known: {sorted(ARCHITECTURES)}")
    config_cls, module_cls = ARCHITECTURES[architecture]
    return module_cls(config if config is not None else config_cls())
