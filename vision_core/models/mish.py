"""The course's small CNNs for CIFAR-10 (Problem 4 of the assignment on ResNet and small CNNs), with Mish activations.

- ``MishCNN``: a 7 x 7 conv of 32 channels, max-pool, two 3 x 3 convs of 64, Mish, global average pooling, a linear layer.
- ``DeepMishCNN``: six 3 x 3 convs (32, 32, then 64 channels) with BatchNorm and Mish, max-pooled after every two,
  global average pooling, dropout 0.2 and a linear layer.

Trained as in the course: RandomHorizontalFlip and RandomCrop(32, padding=4) (``augment=True`` on CIFAR-10), inputs
normalised with mean = std = 0.5 inside the model.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from vision_core.checkpoints import CHECKPOINT_DIR, register_checkpoint
from vision_core.datasets import CIFAR10
from vision_core.models.layers import ConvClassifier
from vision_core.registry import Family, register_family


@dataclass(frozen=True)
class MishCNNConfig:
    stem: int = 32  # channels of the 7 x 7 conv
    width: int = 64  # channels of the two 3 x 3 convs
    num_classes: int = 10


@dataclass(frozen=True)
class DeepMishCNNConfig:
    widths: tuple[int, ...] = (32, 32, 64, 64, 64, 64)  # one 3 x 3 conv each; a 2 x 2 max-pool after every two
    dropout: float = 0.2
    num_classes: int = 10


class MishCNN(ConvClassifier):
    """Input (B, 3, 32, 32) in [0, 1]; normalised inside."""

    def __init__(self, cfg: MishCNNConfig = MishCNNConfig()) -> None:
        super().__init__(cfg, CIFAR10)
        self.features = nn.Sequential(
            nn.Conv2d(3, cfg.stem, 7, padding=3), nn.Mish(), nn.MaxPool2d(2),  # (B, stem, 16, 16)
            nn.Conv2d(cfg.stem, cfg.width, 3, padding=1), nn.Mish(),
            nn.Conv2d(cfg.width, cfg.width, 3, padding=1), nn.Mish(),  # (B, width, 16, 16)
        )  # fmt: skip
        self.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cfg.width, cfg.num_classes))


class DeepMishCNN(ConvClassifier):
    """Input (B, 3, 32, 32) in [0, 1]; normalised inside."""

    def __init__(self, cfg: DeepMishCNNConfig = DeepMishCNNConfig()) -> None:
        super().__init__(cfg, CIFAR10)
        layers: list[nn.Module] = []
        in_channels = 3
        for index, width in enumerate(cfg.widths):
            layers += [nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.Mish()]
            if index % 2 == 1:
                layers.append(nn.MaxPool2d(2))  # 32 -> 16 -> 8 -> 4
            in_channels = width
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(cfg.dropout), nn.Linear(in_channels, cfg.num_classes)
        )


# What made the shipped checkpoints (``python -m vision_core train mish_cnn``): the shipped 10,000-image subset.
_RECIPE = {
    "epochs": 20,
    "lr": 3e-3,
    "batch_size": 128,
    "weight_decay": 5e-4,
    "seed": 1,
    "augment": True,
    "val_size": 1_000,
}
MISH = register_family(
    Family(
        name="mish_cnn", title="MishCNN (course)", config=MishCNNConfig, module=MishCNN,
        bounds={"stem": (1, 256), "width": (1, 512), "num_classes": (10, 10)}, datasets=(CIFAR10,), recipe=_RECIPE,
        description="The course's small CNN: a 7x7 conv of 32, max-pool, two 3x3 convs of 64, Mish, global average "
        "pooling and a linear layer.",
    )
)  # fmt: skip
DEEP_MISH = register_family(
    Family(
        name="deep_mish_cnn", title="DeepMishCNN (course)", config=DeepMishCNNConfig, module=DeepMishCNN,
        bounds={"widths": (1, 512, 8), "dropout": (0.0, 0.99), "num_classes": (10, 10)}, datasets=(CIFAR10,),
        recipe=_RECIPE,
        description="The course's deeper CNN: six 3x3 convs (32, then 64 channels) with BatchNorm and Mish, pooled, "
        "dropout 0.2.",
    )
)  # fmt: skip
register_checkpoint(MISH, CHECKPOINT_DIR / "mish_cnn.safetensors", name="mish_cnn", source="shipped")
register_checkpoint(DEEP_MISH, CHECKPOINT_DIR / "deep_mish_cnn.safetensors", name="deep_mish_cnn", source="shipped")
