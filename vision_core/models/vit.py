"""A Vision Transformer for MNIST digits: timm's ``VisionTransformer`` on 4 x 4 patches (49 tokens + a class token)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from vision_core.checkpoints import CHECKPOINT_DIR, register_checkpoint
from vision_core.datasets import MNIST, get_dataset
from vision_core.models.layers import Normalize
from vision_core.registry import Family, register_family


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


class DigitViT(nn.Module):
    """Input (B, 1, 28, 28) in [0, 1], white digit on black; normalised inside."""

    def __init__(self, cfg: ViTConfig = ViTConfig()) -> None:
        super().__init__()
        self.config = cfg
        mnist = get_dataset(MNIST)
        self.normalize = Normalize(mnist.mean, mnist.std)
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


FAMILY = register_family(
    Family(
        name="vit",
        title="Vision Transformer (timm)",
        config=ViTConfig,
        module=DigitViT,
        # Patches of at least 2 px: 1-px patches make 785 tokens and ~170 ms per digit (an import with patch_size=1
        # passed once); 28 must divide into whole patches.
        bounds=dict(
            patch_size=(2, 14),
            embed_dim=(4, 512),
            depth=(1, 12),
            num_heads=(1, 16),
            mlp_ratio=(0.25, 8.0),
            drop_path_rate=(0.0, 0.99),
            num_classes=(10, 10),
        ),
        datasets=(MNIST,),
        recipe={"epochs": 25, "lr": 2e-3, "batch_size": 128, "label_smoothing": 0.05, "weight_decay": 0.05, "seed": 1},
        description="timm's VisionTransformer on 4x4 patches: 49 tokens plus a class token.",
    )
)
register_checkpoint(FAMILY, CHECKPOINT_DIR / "vit.safetensors", name="vit", source="shipped")
