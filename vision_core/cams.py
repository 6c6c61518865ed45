"""Class activation maps with torchcam: Grad-CAM, Grad-CAM++, Score-CAM and LayerCAM at a chosen layer.

One function, ``compute_cam``, serves photos (``photo.photo_cam``) and digits (``digit_cam``). torchcam's
extractors register hooks on the model they are given; the models here are the app's shared cached
objects, so the extractor works on a twin (``hooks.borrowed_twin``: new module objects, the same weight tensors): its
hooks see only this call's forward passes, no other session waits on a lock while a Score-CAM runs, and
the twin's hooks are removed by the extractor's context manager even when the computation fails.

Score-CAM runs one forward pass per channel of the layer, so its cost is bounded by ``max_channels``
(a layer with more channels is refused before any of those passes run).

>>> from vision_core import load_model
>>> cam = digit_cam(load_model("lenet", device="cpu"), torch.zeros(1, 28, 28), "gradcam")
>>> cam.layer, tuple(cam.layer_map.shape), tuple(cam.heatmap.shape)
('features.3', (10, 10), (28, 28))
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn
from torchcam.methods import GradCAM, GradCAMpp, LayerCAM, ScoreCAM

from vision_core.device import device_of
from vision_core.hooks import borrowed_twin, resolve_layers
from vision_core.inside import as_batch, conv_layers, find_vit

# Score-CAM forward passes per photo map (one per channel). Measured on the 2-core CPU, EfficientNet-Lite0 in bf16:
# blocks.2 (40 channels) 0.4-1.3 s, blocks.5 (192) 3.1-7.0 s, blocks.6 (320) 4.1-10.1 s, the spread being other
# work on the machine. 128 keeps a map to a few seconds: EfficientNet-Lite0 up to blocks.4, ResNet-50 up to maxpool
# (its layer1 has 256 channels, each pass a whole ResNet-50), Swin-T's first stage.
MAX_SCORE_CAM_CHANNELS = 128
DIGIT_BATCH = 64  # Score-CAM's masked inputs per forward pass: 64 digits are 200 KB
DIGIT_MAX_CHANNELS = 256  # the shipped digit models have at most 64 (VGG's last conv: 66 passes, 33 ms measured)
PHOTO_BATCH = 8  # masked photos per pass: torchcam's default of 32 would hold four times the activations at once


@dataclass(frozen=True)
class CamMethod:
    title: str
    extractor: type  # the torchcam class
    gradients: bool  # needs a backward pass (Score-CAM does not: it runs forward passes instead)
    summary: str  # one sentence for the page


CAM_METHODS: dict[str, CamMethod] = {
    "gradcam": CamMethod("Grad-CAM", GradCAM, True, "Each channel weighted by the class score's average gradient over the map (Selvaraju et al. 2017)."),
    "gradcampp": CamMethod("Grad-CAM++", GradCAMpp, True, "Like Grad-CAM, with per-position weights from higher-order gradients: better for several objects of one class (Chattopadhyay et al. 2018)."),
    "scorecam": CamMethod("Score-CAM", ScoreCAM, False, "No gradients: each channel masks the input, and the class score the masked input gets is that channel's weight (Wang et al. 2020). One forward pass per channel."),
    "layercam": CamMethod("LayerCAM", LayerCAM, True, "Every position weighted by its own positive gradient, not a channel average: finer maps at early layers (Jiang et al. 2021)."),
}  # fmt: skip


class CamError(ValueError):
    """A CAM that cannot be computed: an unknown method or layer, a class out of range, a Score-CAM too costly."""


@dataclass(frozen=True)
class CamMap:
    method: str  # a key of CAM_METHODS
    layer: str
    class_index: int  # the class the map explains
    probability: float  # the model's probability for that class
    predicted: int  # the model's top-1 class for this input
    layer_map: torch.Tensor  # (h, w) at the layer's resolution, in [0, 1]: torchcam's normalised output
    heatmap: torch.Tensor  # (H, W) at the input's resolution (bilinear), max 1 unless the map is all zero
    forward_passes: int
    seconds: float  # the twin, the passes and the map


def compute_cam(
    model: nn.Module,
    model_input: torch.Tensor,
    layer: str,
    method: str = "gradcam",
    class_index: int | None = None,
    *,
    reshape: Callable[[torch.Tensor], torch.Tensor] | None = None,
    precision: str = "fp32",
    batch_size: int = PHOTO_BATCH,
    max_channels: int = MAX_SCORE_CAM_CHANNELS,
) -> CamMap:
    """``method``'s map for ``class_index`` (default: the top-1 class) at ``layer`` for ``model_input`` (1, C, H, W).

    ``reshape`` turns the layer's output into (B, C, h, w) when it is laid out otherwise (a ViT's tokens, Swin's
    channels-last maps). ``precision="bf16"`` runs the passes under bfloat16 autocast. ``model`` is never hooked.
    """
    if method not in CAM_METHODS:
        raise CamError(f"unknown CAM method {method!r}; choose one of {', '.join(CAM_METHODS)}")
    if model_input.dim() != 4 or model_input.shape[0] != 1:
        raise CamError(f"expected one input as a (1, C, H, W) batch, got shape {tuple(model_input.shape)}")
    info = CAM_METHODS[method]
    start = time.perf_counter()
    resolve_layers(model, [layer])  # a LayerError listing the valid names, before anything is hooked
    device = device_of(model)
    options = {"batch_size": batch_size} if info.extractor is ScoreCAM else {}
    with (
        borrowed_twin(model) as twin,
        torch.inference_mode(False),  # also when called from inside an inference_mode block
        torch.enable_grad() if info.gradients else torch.no_grad(),
        torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"),
        info.extractor(twin, layer, input_shape=tuple(model_input.shape[1:]), reshape_transform=reshape, **options) as extractor,
    ):  # fmt: skip
        # A fresh tensor that asks for gradients, so the graph exists even when the weights are frozen.
        scores = twin(model_input.detach().clone().to(device).requires_grad_(info.gradients))  # (1, classes)
        index = int(scores[0].argmax()) if class_index is None else class_index
        if not 0 <= index < scores.shape[1]:
            raise CamError(f"class_index must be between 0 and {scores.shape[1] - 1}, got {class_index}")
        channels = extractor.hook_a[0].shape[1]
        if info.extractor is ScoreCAM and channels > max_channels:
            raise CamError(
                f"Score-CAM at {layer} would run {channels} forward passes (one per channel); pick a layer with "
                f"at most {max_channels} channels, or another method"
            )
        layer_map = extractor(class_idx=index, scores=scores)[0][0].detach().float().cpu()  # (h, w)
    probabilities = torch.softmax(scores.detach().float(), dim=1)[0].cpu()
    heatmap = F.interpolate(layer_map[None, None], size=tuple(model_input.shape[-2:]), mode="bilinear")[0, 0]
    peak = heatmap.max()
    return CamMap(
        method=method,
        layer=layer,
        class_index=index,
        probability=float(probabilities[index]),
        predicted=int(probabilities.argmax()),
        layer_map=layer_map,
        heatmap=heatmap / peak if peak > 0 else heatmap,
        forward_passes=1 + (1 + channels if info.extractor is ScoreCAM else 0),
        seconds=time.perf_counter() - start,
    )


def tokens_to_grid(tokens: torch.Tensor, prefix: int) -> torch.Tensor:
    """A ViT layer's (B, prefix + g*g, C) tokens -> (B, C, g, g): the patch tokens as a map, class token dropped."""
    patches = tokens[:, prefix:]
    side = int(patches.shape[1] ** 0.5)
    return patches.transpose(1, 2).reshape(patches.shape[0], patches.shape[2], side, side)


def digit_cam_layers(model: nn.Module) -> list[str]:
    """The layers a digit model's CAM can use, early to late: a CNN's convolutions; a ViT's token streams entering
    each block's attention (``blocks.i.norm1``: after the last block only the class token reaches the head, so
    the patch tokens there get no gradient)."""
    vit = find_vit(model)
    if vit is None:
        return conv_layers(model)
    prefix = next(name for name, module in model.named_modules() if module is vit)
    return [f"{prefix + '.' if prefix else ''}blocks.{i}.norm1" for i in range(len(vit.blocks))]


def digit_cam(
    model: nn.Module,
    digit: torch.Tensor,
    method: str = "gradcam",
    layer: str | None = None,
    class_index: int | None = None,
) -> CamMap:
    """``method``'s map for a digit ((1, 28, 28) in [0, 1]) at ``layer`` (default: the last of ``digit_cam_layers``)."""
    layers = digit_cam_layers(model)
    layer = layers[-1] if layer is None else layer
    if layer not in layers:
        raise CamError(f"{type(model).__name__} has no CAM layer {layer!r}; choose one of {', '.join(layers)}")
    vit = find_vit(model)
    reshape = partial(tokens_to_grid, prefix=vit.num_prefix_tokens) if vit is not None else None
    return compute_cam(
        model,
        as_batch(digit),
        layer,
        method,
        class_index,
        reshape=reshape,
        batch_size=DIGIT_BATCH,
        max_channels=DIGIT_MAX_CHANNELS,
    )
