"""LeNet-style CNN for MNIST digits: two 5 x 5 conv + pool stages and three dense layers (LeCun et al. 1998)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from vision_core.checkpoints import CHECKPOINT_DIR, register_checkpoint
from vision_core.datasets import MNIST
from vision_core.models.layers import ConvClassifier
from vision_core.registry import Family, register_family


@dataclass(frozen=True)
class LeNetConfig:
    """LeNet-5's layout with ReLU and max-pool."""

    channels: tuple[int, int] = (6, 16)
    hidden: tuple[int, int] = (120, 84)
    num_classes: int = 10


class LeNet(ConvClassifier):
    """Input (B, 1, 28, 28) in [0, 1], white digit on black; normalised inside."""

    def __init__(self, cfg: LeNetConfig = LeNetConfig()) -> None:
        super().__init__(cfg, MNIST)
        c1, c2 = cfg.channels
        h1, h2 = cfg.hidden
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),  # (B, c1, 14, 14)
            nn.Conv2d(c1, c2, 5), nn.ReLU(), nn.MaxPool2d(2),  # (B, c2, 5, 5)
        )  # fmt: skip
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(c2 * 5 * 5, h1), nn.ReLU(), nn.Linear(h1, h2), nn.ReLU(), nn.Linear(h2, cfg.num_classes)
        )  # fmt: skip


FAMILY = register_family(
    Family(
        name="lenet",
        title="LeNet-style CNN",
        config=LeNetConfig,
        module=LeNet,
        bounds={"channels": (1, 256, 2), "hidden": (1, 4096, 2), "num_classes": (10, 10)},
        datasets=(MNIST,),
        recipe={"epochs": 12, "lr": 3e-3, "batch_size": 128, "seed": 1},
        description="Two 5x5 conv + pool stages and three dense layers, as in LeCun et al. 1998.",
    )
)
register_checkpoint(FAMILY, CHECKPOINT_DIR / "lenet.safetensors", name="lenet", source="shipped")
