"""Photos through ImageNet classifiers and a COCO detector: top-k, feature maps, CAMs, first-layer filters, boxes.

Every function takes the model by registered name (``"resnet50"``, ``"efficientnet_lite0"``,
``"swin_t"``, a detector) and optionally the already-loaded module (``module=``, e.g. a cached one);
without it the model is loaded with ``load_model``. Preprocessing is always the spec's
``preprocess`` (torchvision's ``weights.transforms()``, timm's data config): one path for
predictions, feature maps, CAMs and the "what the model saw" thumbnail.

>>> from vision_core import load_image
>>> photo = load_image("data/samples/coffee.png")
>>> classify(photo, model="efficientnet_lite0", k=1)[0].label  # doctest: +SKIP
'espresso'
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from PIL import Image
from torch import nn

from vision_core.cams import compute_cam
from vision_core.device import device_of
from vision_core.hooks import LayerError, capture_outputs, resolve_layers
from vision_core.registry import ModelSpec, get_spec, load_model

DEFAULT_CLASSIFIER = "resnet50"
FALLBACK_CLASSIFIER = "efficientnet_lite0"  # ships with its weights: works offline
DEFAULT_DETECTOR = "fasterrcnn_resnet50_fpn_v2"

Precision = Literal["fp32", "bf16"]  # "bf16": autocast to bfloat16, ~0.6x the time on CPUs with native bf16

# Cached models are shared by every browser session (one thread each). The hooks record only their own thread's
# pass (vision_core.hooks), so sessions cannot mix up; this lock also keeps one hooked forward pass of a photo
# model at a time, which bounds what concurrent captures hold (every ResNet-50 layer at once: 34 MB a pass).
# CAMs never hook the shared model (vision_core.cams works on a twin) and do not take it.
_HOOKED_FORWARD = threading.Lock()


@dataclass(frozen=True)
class Prediction:
    label: str
    index: int  # class index in the model's label list
    probability: float


@dataclass(frozen=True)
class Detection:
    box: tuple[float, float, float, float]  # (x0, y0, x1, y1) in the photo's pixels
    label: str
    index: int  # COCO category index (torchvision's 91-entry list)
    score: float


@dataclass(frozen=True)
class PhotoReport:
    """One forward pass of a photo: the top-k, the hooked feature maps and exactly what the model saw."""

    model: str
    predictions: tuple[Prediction, ...]  # best first
    feature_maps: dict[str, torch.Tensor]  # layer -> (C, H, W) on the CPU, in the order asked for
    model_input: torch.Tensor  # (3, H, W), normalised: de-normalise with the spec's mean_std to look at it
    seconds: float  # preprocessing + forward (with hooks) + softmax and top-k
    precision: Precision = "fp32"  # what the forward pass computed in (the logits' dtype), not what was asked for


@dataclass(frozen=True)
class PhotoCam:
    model: str
    method: str  # a key of vision_core.cams.CAM_METHODS
    layer: str
    prediction: Prediction  # the class the map explains
    heatmap: torch.Tensor  # (H, W) in [0, 1] at the model input's resolution; 1 = most evidence for the class
    layer_map: torch.Tensor  # (h, w): the same map at the layer's resolution, as torchcam computed it
    model_input: torch.Tensor  # (3, H, W), normalised
    precision: Precision  # what the passes computed in
    forward_passes: int
    seconds: float


GradCam = PhotoCam  # the name from before the other CAM methods joined Grad-CAM


def _spec_for(model: str, task: str) -> ModelSpec:
    spec = get_spec(model)
    if spec.task != task:
        raise ValueError(f"{model!r} is a {spec.task} model; this needs a {task} model")
    return spec


def _as_rgb(image: Image.Image) -> Image.Image:
    if not isinstance(image, Image.Image):
        raise TypeError(f"expected a PIL image (use vision_core.load_image for uploads), got {type(image).__name__}")
    return image if image.mode == "RGB" else image.convert("RGB")


def _chw(output: torch.Tensor, spec: ModelSpec, layer: str) -> torch.Tensor:
    """One sample's (C, H, W) feature map from a layer output (B, C, H, W), or (B, H, W, C) for Swin."""
    if not isinstance(output, torch.Tensor) or output.dim() != 4:
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise LayerError(f"layer {layer!r} of {spec.name} does not output a feature map (got {shape})")
    sample = output[0]
    return sample.permute(2, 0, 1) if spec.layers is not None and spec.layers.channels_last else sample


def fast_precision(device: str | torch.device = "cpu") -> Precision:
    """ "bf16" where ``device`` computes bfloat16 natively (AVX512-BF16 / AMX CPUs, recent GPUs), else "fp32".

    Where bf16 is only emulated it is slower than fp32, so it is never chosen there.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    try:
        return "bf16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "fp32"
    except (AttributeError, RuntimeError):  # a build without oneDNN
        return "fp32"


def check_layers(model: str, layers: Sequence[str] | None) -> tuple[str, ...]:
    """The layer names to hook: the model's early/middle/late defaults when ``layers`` is None.

    Names must come from the model's ``layers.choices`` (blocks and stages whose output is one
    feature map); anything else raises ``LayerError`` listing the valid names.
    """
    spec = get_spec(model)
    if spec.layers is None:
        raise LayerError(f"{spec.title} has no feature-map layers to show")
    if layers is None:
        return spec.layers.defaults
    unknown = [name for name in layers if name not in spec.layers.choices]
    if unknown:
        raise LayerError(
            f"{spec.title} has no feature-map layer {', '.join(map(repr, unknown))}; "
            f"valid names: {', '.join(spec.layers.choices)}"
        )
    return tuple(dict.fromkeys(layers))  # order kept, duplicates dropped


def analyze(
    image: Image.Image,
    model: str = DEFAULT_CLASSIFIER,
    layers: Sequence[str] | None = None,
    k: int = 3,
    module: nn.Module | None = None,
    precision: Precision = "fp32",
) -> PhotoReport:
    """Classify ``image`` and capture feature maps at ``layers`` in the same forward pass.

    ``precision="bf16"`` runs the forward pass under bfloat16 autocast: faster where the hardware
    has native bf16 (see ``fast_precision``), with probabilities within a few points of fp32;
    the default fp32 gives exactly what torchvision / timm compute.

    >>> report = analyze(load_image("data/samples/chelsea.png"), "efficientnet_lite0")  # doctest: +SKIP
    >>> [p.label for p in report.predictions], {n: tuple(t.shape) for n, t in report.feature_maps.items()}  # doctest: +SKIP
    (['tiger cat', 'Egyptian cat', 'tabby'], {'blocks.1': (24, 56, 56), 'blocks.2': (40, 28, 28), 'blocks.4': (112, 14, 14)})
    """
    spec = _spec_for(model, "imagenet")
    names = check_layers(model, layers)
    if not 1 <= k <= len(spec.labels):
        raise ValueError(f"k must be between 1 and {len(spec.labels)}, got {k}")
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
    module = load_model(model) if module is None else module
    device = device_of(module)
    start = time.perf_counter()
    model_input = spec.preprocess(_as_rgb(image))  # (3, 224, 224)
    with (
        _HOOKED_FORWARD,
        torch.inference_mode(),
        torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"),
        capture_outputs(module, names) as outputs,
    ):
        logits = module(model_input.unsqueeze(0).to(device))  # (1, 1000)
    probabilities = torch.softmax(logits.float(), dim=1)[0]
    top = probabilities.topk(k)
    predictions = tuple(
        Prediction(label=spec.labels[i], index=i, probability=p)
        for p, i in zip(top.values.tolist(), top.indices.tolist(), strict=True)
    )
    seconds = time.perf_counter() - start
    maps = {name: _chw(outputs[name], spec, name).float().cpu() for name in names}
    computed: Precision = "bf16" if logits.dtype == torch.bfloat16 else "fp32"
    return PhotoReport(
        model=model,
        predictions=predictions,
        feature_maps=maps,
        model_input=model_input,
        seconds=seconds,
        precision=computed,
    )


def classify(
    image: Image.Image,
    model: str = DEFAULT_CLASSIFIER,
    k: int = 3,
    module: nn.Module | None = None,
    precision: Precision = "fp32",
) -> list[Prediction]:
    """The ``k`` most probable ImageNet classes for ``image``, best first.

    >>> [p.label for p in classify(load_image("data/samples/coffee.png"), "efficientnet_lite0", k=1)]  # doctest: +SKIP
    ['espresso']
    """
    return list(analyze(image, model, layers=(), k=k, module=module, precision=precision).predictions)


def feature_maps(
    image: Image.Image,
    model: str = DEFAULT_CLASSIFIER,
    layers: Sequence[str] | None = None,
    module: nn.Module | None = None,
    precision: Precision = "fp32",
) -> dict[str, torch.Tensor]:
    """Layer name -> its (C, H, W) output for ``image`` (float32, on the CPU), captured with forward hooks
    that are removed afterwards, also on error."""
    return analyze(image, model, layers=layers, k=1, module=module, precision=precision).feature_maps


def check_cam_layer(model: str, layer: str | None) -> str:
    """The layer a CAM of ``model`` uses: the spec's Grad-CAM layer when ``layer`` is None, else one of the
    feature-map layers (``layers.choices``); anything else raises ``LayerError`` listing the valid names."""
    spec = get_spec(model)
    if spec.layers is None:
        raise LayerError(f"{spec.title} has no layer to compute a class activation map at")
    if layer is None:
        return spec.layers.cam
    if layer != spec.layers.cam and layer not in spec.layers.choices:
        valid = ", ".join(dict.fromkeys([*spec.layers.choices, spec.layers.cam]))
        raise LayerError(f"{spec.title} has no CAM layer {layer!r}; valid names: {valid}")
    return layer


def _channels_first(output: torch.Tensor) -> torch.Tensor:
    return output.permute(0, 3, 1, 2)  # Swin's (B, H, W, C) -> (B, C, H, W)


def photo_cam(
    image: Image.Image,
    model: str = DEFAULT_CLASSIFIER,
    method: str = "gradcam",
    layer: str | None = None,
    class_index: int | None = None,
    module: nn.Module | None = None,
    precision: Precision = "fp32",
) -> PhotoCam:
    """A class activation map (torchcam's Grad-CAM, Grad-CAM++, Score-CAM or LayerCAM; see ``vision_core.cams``)
    for ``class_index`` (default: the top-1 class) at ``layer`` (default: the last spatial layer before pooling).

    Score-CAM runs one forward pass per channel of ``layer`` and refuses layers with more than
    ``cams.MAX_SCORE_CAM_CHANNELS`` channels (``CamError``). The shared ``module`` is never hooked.

    >>> cam = photo_cam(load_image("data/samples/chelsea.png"), "efficientnet_lite0", "layercam")  # doctest: +SKIP
    >>> cam.prediction.label, tuple(cam.heatmap.shape)  # doctest: +SKIP
    ('tiger cat', (224, 224))
    """
    spec = _spec_for(model, "imagenet")
    layer = check_cam_layer(model, layer)
    if class_index is not None and not 0 <= class_index < len(spec.labels):
        raise ValueError(f"class_index must be between 0 and {len(spec.labels) - 1}, got {class_index}")
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
    module = load_model(model) if module is None else module
    model_input = spec.preprocess(_as_rgb(image))  # (3, 224, 224)
    reshape = _channels_first if spec.layers.channels_last else None
    cam = compute_cam(module, model_input[None], layer, method, class_index, reshape=reshape, precision=precision)
    return PhotoCam(
        model=model,
        method=method,
        layer=layer,
        prediction=Prediction(label=spec.labels[cam.class_index], index=cam.class_index, probability=cam.probability),
        heatmap=cam.heatmap,
        layer_map=cam.layer_map,
        model_input=model_input,
        precision=precision,
        forward_passes=cam.forward_passes,
        seconds=cam.seconds,
    )


def grad_cam(
    image: Image.Image, model: str = DEFAULT_CLASSIFIER, class_index: int | None = None, module: nn.Module | None = None
) -> PhotoCam:
    """Grad-CAM (Selvaraju et al. 2017) for ``class_index`` (default: the top-1 class) at the model's last spatial
    layer: ``photo_cam`` with ``method="gradcam"``.

    Each channel of the layer's output is weighted by the spatial mean of the class score's
    gradient with respect to it; the ReLU of the weighted sum, upsampled to the input size, is the map.
    """
    return photo_cam(image, model, "gradcam", class_index=class_index, module=module)


def first_layer_filters(model: str = DEFAULT_CLASSIFIER, module: nn.Module | None = None) -> torch.Tensor:
    """The kernels of the convolution that sees the RGB pixels: (N, 3, k, k), e.g. ResNet-50's 64 x 3 x 7 x 7."""
    spec = _spec_for(model, "imagenet")
    if spec.layers is None:
        raise LayerError(f"{spec.title} has no first convolution to show")
    module = load_model(model) if module is None else module
    conv = resolve_layers(module, [spec.layers.first_conv])[spec.layers.first_conv]
    return conv.weight.detach().float().cpu().clone()


def detect(
    image: Image.Image, threshold: float = 0.5, model: str = DEFAULT_DETECTOR, module: nn.Module | None = None
) -> list[Detection]:
    """COCO objects in ``image`` scoring at least ``threshold``, best first, boxes in the photo's pixels.

    >>> detect(load_image("data/samples/motorcycle_left.png"))[0].label  # doctest: +SKIP
    'motorcycle'
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be between 0 and 1, got {threshold}")
    spec = _spec_for(model, "detection")
    module = load_model(model) if module is None else module
    model_input = spec.preprocess(_as_rgb(image))  # (3, H, W) in [0, 1]; the detector resizes and normalises inside
    with torch.inference_mode():
        output = module([model_input.to(device_of(module))])[0]
    keep = output["scores"] >= threshold
    boxes, labels, scores = output["boxes"][keep].cpu(), output["labels"][keep].cpu(), output["scores"][keep].cpu()
    return [
        Detection(box=tuple(box), label=spec.labels[label], index=label, score=score)
        for box, label, score in zip(boxes.tolist(), labels.tolist(), scores.tolist(), strict=True)
    ]
