"""VGG-style CNN for MNIST digits: stacked 3 x 3 conv + batch-norm stages, max-pooled, global average pooled."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from vision_core.checkpoints import CHECKPOINT_DIR, register_checkpoint
from vision_core.datasets import MNIST
from vision_core.models.layers import ConvClassifier
from vision_core.registry import Family, register_family


@dataclass(frozen=True)
class VGGConfig:
    """Stacks of 3x3 conv + BN + ReLU, a 2x2 max-pool after each stage, then global average pool."""

    widths: tuple[int, ...] = (16, 32, 64)
    convs_per_stage: int = 2
    dropout: float = 0.2
    num_classes: int = 10


class VGG(ConvClassifier):
    """Input (B, 1, 28, 28) in [0, 1], white digit on black; normalised inside."""

    def __init__(self, cfg: VGGConfig = VGGConfig()) -> None:
        super().__init__(cfg, MNIST)
        layers: list[nn.Module] = []
        in_channels = 1
        for width in cfg.widths:
            for _ in range(cfg.convs_per_stage):
                layers += [nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
                in_channels = width
            layers.append(nn.MaxPool2d(2))  # 28 -> 14 -> 7 -> 3
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(cfg.dropout), nn.Linear(in_channels, cfg.num_classes)
        )


FAMILY = register_family(
    Family(
        name="vgg",
        title="VGG-style CNN",
        config=VGGConfig,
        module=VGG,
        bounds={"widths": (1, 512, 6), "convs_per_stage": (1, 6), "dropout": (0.0, 0.99), "num_classes": (10, 10)},
        datasets=(MNIST,),
        recipe={"epochs": 15, "lr": 3e-3, "batch_size": 128, "label_smoothing": 0.05, "weight_decay": 5e-4, "seed": 1},
        description="Stacked 3x3 conv + batch-norm stages, max-pooled, global average pooled.",
    )
)
register_checkpoint(FAMILY, CHECKPOINT_DIR / "vgg.safetensors", name="vgg", source="shipped")
