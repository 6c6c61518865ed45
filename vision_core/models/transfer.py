"""ImageNet CNNs re-headed for any dataset here: transfer learning from torchvision's VGG16, AlexNet and ResNet-18, and
from EfficientNet-Lite0, whose ImageNet weights ship with the app (so transfer learning works offline).

Each model takes the dataset's input, a (B, C, H, W) float tensor in [0, 1] with C = 1 (MNIST) or 3, and does the rest
itself: resize to ``image_size``, grey to three channels, the backbone's ImageNet normalisation (what its weights
expect), then the network with a new ``num_classes`` head. So a fine-tuned transfer model drops into the pages,
``evaluate`` and ``fine_tune`` like any other, and its checkpoint (safetensors + card naming the architecture) loads the
same way. Nothing here downloads: ImageNet weights come from the torch hub cache or the EfficientNet-Lite0 package.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import AlexNet_Weights, ResNet18_Weights, VGG16_Weights, WeightsEnum, alexnet, resnet18, vgg16

from vision_core.checkpoints import CheckpointError
from vision_core.datasets import CIFAR10, MNIST, MY_CLASSES, get_dataset
from vision_core.models import imagenet
from vision_core.models.layers import Normalize
from vision_core.registry import Family, ModelSpec, register, register_family

IMAGE_SIZES = (32, 64, 96, 128, 160, 224)  # 224 is what ImageNet saw; smaller is much faster on a CPU


class TransferError(ValueError):
    """A transfer-learning request that cannot work (input too small, weights that do not fit)."""


@dataclass(frozen=True)
class Backbone:
    name: str  # the family and model name
    title: str
    build: Callable[[], nn.Module]  # the ImageNet network, randomly initialised
    head: str  # the 1000-class layer that is replaced by a new one
    min_size: int  # the smallest input side the network's pooling survives
    mean_std: tuple[tuple[float, ...], tuple[float, ...]]
    weights_file: Callable[[], Path]  # the ImageNet weights: torch hub cache or the package
    read_weights: Callable[[Path], dict[str, torch.Tensor]]
    weights: WeightsEnum | None = None  # torchvision's: download URL and size (None: ships in a package)
    about: str = ""


def _torchvision(name: str, title: str, builder: Callable[..., nn.Module], weights: WeightsEnum, head: str, min_size: int) -> Backbone:  # fmt: skip
    transform = weights.transforms()
    return Backbone(
        name, title, partial(builder, weights=None), head, min_size, (tuple(transform.mean), tuple(transform.std)),
        partial(imagenet.hub_checkpoint_path, weights), imagenet.read_weights_file, weights,
        f"torchvision {title.split()[0]} ({imagenet.accuracy_note(weights)})",
    )  # fmt: skip


_LITE0 = imagenet.efficientnet_lite0_config()
BACKBONES: dict[str, Backbone] = {
    b.name: b
    for b in (
        Backbone(
            "effnet_lite0",
            "EfficientNet-Lite0 (ImageNet)",
            imagenet.build_efficientnet_lite0,
            "classifier",
            32,
            (tuple(_LITE0["mean"]), tuple(_LITE0["std"])),
            imagenet.efficientnet_lite0_path,
            imagenet.efficientnet_lite0_state,
            about="Tan & Le 2019, mobile 'Lite' variant (ImageNet-1k top-1 75.1%, 4.7 M parameters); its weights ship "
            "with the app, so it fine-tunes offline",
        ),
        _torchvision("resnet18", "ResNet-18 (ImageNet)", resnet18, ResNet18_Weights.IMAGENET1K_V1, "fc", 32),
        _torchvision("vgg16", "VGG16 (ImageNet)", vgg16, VGG16_Weights.IMAGENET1K_V1, "classifier.6", 32),
        _torchvision("alexnet", "AlexNet (ImageNet)", alexnet, AlexNet_Weights.IMAGENET1K_V1, "classifier.6", 64),
    )
}


@dataclass(frozen=True)
class TransferConfig:
    """The input is resized to ``image_size`` x ``image_size`` before the ImageNet network."""

    image_size: int = 64
    num_classes: int = 10


class TransferNet(nn.Module):
    """An ImageNet CNN with a new head, for (B, 1 or 3, H, W) inputs in [0, 1]."""

    def __init__(self, backbone: str, cfg: TransferConfig = TransferConfig()) -> None:
        super().__init__()
        spec = BACKBONES[backbone]
        if cfg.image_size < spec.min_size:
            raise TransferError(f"{spec.title} needs inputs of at least {spec.min_size} px, got {cfg.image_size}")
        self.backbone, self.config = backbone, cfg
        self.net = spec.build()
        parent_name, _, leaf = spec.head.rpartition(".")
        parent = self.net.get_submodule(parent_name) if parent_name else self.net
        setattr(parent, leaf, nn.Linear(getattr(parent, leaf).in_features, cfg.num_classes))
        # Broadcasting the (1, 3, 1, 1) statistics also turns one grey channel into three.
        self.normalize = Normalize(*spec.mean_std)
        self.frozen = False

    @property
    def head(self) -> nn.Module:
        return self.net.get_submodule(BACKBONES[self.backbone].head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = self.config.image_size
        if x.shape[-1] != size or x.shape[-2] != size:
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=x.shape[-1] > size)
        return self.net(self.normalize(x))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """What the head sees for ``x`` (B, features): with a frozen backbone, training the head on these is exact."""
        seen: list[torch.Tensor] = []
        handle = self.head.register_forward_pre_hook(lambda _module, args: seen.append(args[0]))
        try:
            self(x)
        finally:
            handle.remove()
        return seen[0]

    def load_imagenet(self) -> None:
        """Copy the backbone's ImageNet weights into everything but the new head (raises if they are not here)."""
        spec = BACKBONES[self.backbone]
        path = spec.weights_file()
        state = spec.read_weights(path)
        head = spec.head + "."
        try:
            missing, unexpected = self.net.load_state_dict(
                {k: v for k, v in state.items() if not k.startswith(head)}, strict=False
            )
        except RuntimeError as error:
            raise CheckpointError(f"{path} does not fit {spec.title}: {error}") from error
        if unexpected or any(not k.startswith(head) for k in missing):
            raise CheckpointError(
                f"{path} does not fit {spec.title}: missing {missing[:5]}, unexpected {unexpected[:5]}"
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


for _backbone in BACKBONES.values():
    register_family(
        Family(
            name=_backbone.name,
            title=_backbone.title,
            config=TransferConfig,
            module=partial(TransferNet, _backbone.name),
            bounds={"image_size": (_backbone.min_size, 224), "num_classes": (2, 10)},
            datasets=(MNIST, CIFAR10, MY_CLASSES),
            recipe={"init": "imagenet", "mode": "features", "lr": 1e-3, "epochs": 1},
            description=f"{_backbone.about}; re-headed for the dataset's classes. Inputs are resized (and grey "
            "repeated to three channels) inside the model.",
        )
    )
    # Not a trained model: a starting point for the Fine-tune page (task "transfer"). ``weights_file`` is the ImageNet
    # file, so ``weights_available``, ``fetch_weights`` and ``make weights`` handle it like the photo models' weights.
    _hint = (
        f"Fetch them (once, online) with: python -m vision_core weights {_backbone.name} (downloads "
        f"{_backbone.weights.meta['_file_size']:.0f} MB into the torch hub cache, honouring TORCH_HOME)."
        if _backbone.weights is not None
        else f"Install them with: {imagenet.EFFICIENTNET_PIP}"
    )
    register(
        ModelSpec(
            name=_backbone.name, title=_backbone.title, task="transfer", architecture=_backbone.name,
            preprocess=get_dataset(MNIST).preprocess, labels=(), input_size=(3, 224, 224),
            weights_file=_backbone.weights_file, loader=None, source="backbone", weights=_backbone.weights,
            description=_backbone.about, rebuild_hint=_hint, mean_std=_backbone.mean_std,
        )
    )  # fmt: skip
