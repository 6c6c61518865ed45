"""Pictures of what a network computes: feature-map and filter grids, kernels beside their maps, CAM and attention
overlays, detection boxes, PNG bytes.

Everything returns PIL images (or bytes), so a page, a notebook or a test can show or save them.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from vision_core.photo import Detection

# Colour maps as anchor colours at positions in [0, 1], linearly interpolated (no matplotlib needed).
VIRIDIS = (
    (0.0, (68, 1, 84)),
    (0.25, (59, 82, 139)),
    (0.5, (33, 145, 140)),
    (0.75, (94, 201, 98)),
    (1.0, (253, 231, 37)),
)
Colormap = Sequence[tuple[float, tuple[int, int, int]]]  # (position in [0, 1], RGB) stops
JET = ((0.0, (0, 0, 128)), (0.11, (0, 0, 255)), (0.36, (0, 255, 255)), (0.64, (255, 255, 0)), (0.89, (255, 0, 0)), (1.0, (128, 0, 0)))  # fmt: skip
_GAP = 2  # pixels between tiles
_PALETTE = ((230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60))  # fmt: skip


def colorize(values: np.ndarray, colormap: Sequence[tuple[float, tuple[int, int, int]]] = VIRIDIS) -> np.ndarray:
    """Values in [0, 1] (any shape) -> uint8 RGB (shape + (3,))."""
    positions = [position for position, _ in colormap]
    channels = [np.interp(values, positions, [color[c] for _, color in colormap]) for c in range(3)]
    return np.stack(channels, axis=-1).round().astype(np.uint8)


def denormalize(model_input: torch.Tensor, mean_std: tuple[Sequence[float], Sequence[float]]) -> Image.Image:
    """A normalised (3, H, W) model input back to the RGB picture the model saw."""
    mean, std = (torch.tensor(v, dtype=torch.float32).view(3, 1, 1) for v in mean_std)
    pixels = (model_input.detach().float().cpu() * std + mean).clamp(0, 1)
    return Image.fromarray((pixels.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), mode="RGB")


def _tile(tiles: np.ndarray, columns: int, background: int) -> Image.Image:
    """(N, h, w, 3) uint8 tiles -> one image, ``columns`` wide, with gaps."""
    count, height, width, _ = tiles.shape
    rows = math.ceil(count / columns)
    canvas = np.full((rows * (height + _GAP) - _GAP, columns * (width + _GAP) - _GAP, 3), background, np.uint8)
    for i, tile in enumerate(tiles):
        top, left = (i // columns) * (height + _GAP), (i % columns) * (width + _GAP)
        canvas[top : top + height, left : left + width] = tile
    return Image.fromarray(canvas, mode="RGB")


def _enlarge(tiles: np.ndarray, minimum: int) -> np.ndarray:
    """Repeat pixels so each (N, h, w, 3) tile is at least ``minimum`` px: crisp, so the real resolution shows."""
    scale = max(1, math.ceil(minimum / min(tiles.shape[1:3])))
    return tiles.repeat(scale, axis=1).repeat(scale, axis=2)


@dataclass(frozen=True)
class StrongestChannels:
    """The channels of a (C, H, W) feature map with the highest mean activation: what a feature grid draws.

    Kept instead of the whole map where memory counts (the photo cache): ResNet-50's ``conv1`` is
    3.2 MB as 64 float32 channels, 0.8 MB as its 16 strongest in float16.
    """

    maps: torch.Tensor  # (k, H, W), strongest mean first
    channels: tuple[int, ...]  # their indices in the layer
    means: tuple[float, ...]  # their mean activations (of the float32 map)
    shape: tuple[int, int, int]  # the whole layer's (C, H, W)


def strongest_channels(maps: torch.Tensor, keep: int, dtype: torch.dtype = torch.float32) -> StrongestChannels:
    """The ``keep`` channels of ``maps`` (C, H, W) with the highest means, stored as ``dtype``."""
    if maps.dim() != 3:
        raise ValueError(f"expected a (C, H, W) feature map, got shape {tuple(maps.shape)}")
    maps = maps.detach().float().cpu()
    means = maps.mean(dim=(1, 2))
    order = means.argsort(descending=True, stable=True)[: max(1, min(keep, maps.shape[0]))]
    return StrongestChannels(
        maps=maps[order].to(dtype),
        channels=tuple(order.tolist()),
        means=tuple(means[order].tolist()),
        shape=tuple(maps.shape),
    )


@dataclass(frozen=True)
class FeatureGrid:
    image: Image.Image
    shape: tuple[int, int, int]  # the layer's output (C, H, W)
    channels: tuple[int, ...]  # the channels shown, strongest mean activation first
    means: tuple[float, ...]  # their mean activations


def _own_range(maps: torch.Tensor) -> np.ndarray:
    """Each (H, W) map of (N, H, W) scaled to [0, 1] by its own minimum and maximum; a flat map becomes 0."""
    maps = maps.detach().float().cpu()
    low, high = maps.amin(dim=(1, 2), keepdim=True), maps.amax(dim=(1, 2), keepdim=True)
    span = high - low
    return torch.where(span > 0, (maps - low) / span.clamp_min(1e-12), torch.zeros_like(maps)).numpy()


def feature_grid(maps: torch.Tensor | StrongestChannels, count: int = 16, tile: int = 64) -> FeatureGrid:
    """The ``count`` channels of a (C, H, W) feature map with the highest mean activation, each scaled to its own range.

    Per-map normalisation shows each channel's pattern; the means (in ``FeatureGrid.means``)
    say how strong it is compared with the others. ``maps`` may be a ``StrongestChannels`` kept earlier.
    """
    strongest = maps if isinstance(maps, StrongestChannels) else strongest_channels(maps, count)
    shown = max(1, min(count, len(strongest.channels)))
    tiles = _enlarge(colorize(_own_range(strongest.maps[:shown])), tile)
    image = _tile(tiles, columns=math.ceil(math.sqrt(shown)), background=255)
    return FeatureGrid(
        image=image, shape=strongest.shape, channels=strongest.channels[:shown], means=strongest.means[:shown]
    )


def channel_grid(maps: torch.Tensor, columns: int = 8, tile: int = 40) -> Image.Image:
    """Every channel of a (C, H, W) feature map in index order (channel 0 top left), each scaled to its own range."""
    if maps.dim() != 3:
        raise ValueError(f"expected a (C, H, W) feature map, got shape {tuple(maps.shape)}")
    return _tile(_enlarge(colorize(_own_range(maps)), tile), columns=min(columns, maps.shape[0]), background=255)


def _kernel_tiles(weights: torch.Tensor) -> np.ndarray:
    """(N, C, k, k) kernels (C = 1 or 3) -> (N, k, k, 3) uint8, each scaled by its own largest magnitude: grey is 0."""
    weights = weights.detach().float().cpu().expand(-1, 3, -1, -1)
    peak = weights.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
    return ((0.5 + 0.5 * weights / peak) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def kernels_beside_maps(weights: torch.Tensor, maps: torch.Tensor, columns: int = 3, tile: int = 56) -> Image.Image:
    """Each one-channel kernel (N, 1, k, k) next to the map it produced (N, H, W): pairs in index order, ``columns``
    pairs a row; kernels grey around zero (lighter is positive), maps scaled to their own range in viridis."""
    if weights.dim() != 4 or weights.shape[1] != 1 or maps.dim() != 3 or weights.shape[0] != maps.shape[0]:
        raise ValueError(f"expected (N, 1, k, k) kernels and (N, H, W) maps, got {tuple(weights.shape)} and {tuple(maps.shape)}")  # fmt: skip
    kernels = np.asarray([Image.fromarray(t).resize((tile, tile), Image.Resampling.NEAREST) for t in _kernel_tiles(weights)])  # fmt: skip
    outputs = np.asarray([Image.fromarray(t).resize((tile, tile), Image.Resampling.NEAREST) for t in colorize(_own_range(maps))])  # fmt: skip
    pairs = np.concatenate([kernels, np.full((len(kernels), tile, _GAP, 3), 255, np.uint8), outputs], axis=2)
    return _tile(pairs, columns=min(columns, len(pairs)), background=255)


def filter_grid(weights: torch.Tensor, tile: int = 32) -> Image.Image:
    """(N, 3, k, k) RGB kernels as colour tiles, each scaled by its own largest magnitude: grey is zero,
    brighter / darker channels are positive / negative weights."""
    if weights.dim() != 4 or weights.shape[1] != 3:
        raise ValueError(f"expected (N, 3, k, k) RGB kernels, got shape {tuple(weights.shape)}")
    pixels = _kernel_tiles(weights)
    return _tile(_enlarge(pixels, tile), columns=math.ceil(math.sqrt(len(pixels))), background=255)


def cam_overlay(
    picture: Image.Image, heatmap: torch.Tensor, size: int = 448, alpha: float = 0.45, colormap: Colormap = JET
) -> Image.Image:
    """``heatmap`` ((H, W) in [0, 1]) in jet colours (or ``colormap``) over ``picture``, both resized to ``size`` px
    wide. The projector view passes VIRIDIS: its lightness rises steadily, so the map reads on a washed-out screen."""
    height = max(1, round(size * picture.height / picture.width))
    base = np.asarray(picture.convert("RGB").resize((size, height), Image.Resampling.BICUBIC), dtype=np.float32)
    heat = F.interpolate(heatmap.detach().float().cpu()[None, None], size=(height, size), mode="bilinear")[0, 0]
    colored = colorize(heat.clamp(0, 1).numpy(), colormap).astype(np.float32)
    return Image.fromarray(((1 - alpha) * base + alpha * colored).round().astype(np.uint8), mode="RGB")


def heat_image(values: torch.Tensor, size: int = 112) -> Image.Image:
    """A small (g, g) map (a ViT's attention to its patches), scaled to its own maximum, in viridis with crisp cells."""
    scaled = (values.detach().float().cpu() / values.max().clamp_min(1e-12)).clamp(0, 1).numpy()
    return Image.fromarray(colorize(scaled)).resize((size, size), Image.Resampling.NEAREST)


def overlay_image(digit: torch.Tensor, values: torch.Tensor, size: int = 224) -> Image.Image:
    """A map ((g, g), any size, in [0, 1]) in jet colours over the (1, 28, 28) digit."""
    grey = (digit.detach().cpu().reshape(digit.shape[-2:]).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    return cam_overlay(Image.fromarray(grey, mode="L"), values, size=size)


def draw_detections(image: Image.Image, detections: Sequence[Detection]) -> Image.Image:
    """A copy of ``image`` with each detection's box and "label score" drawn on it."""
    picture = image.convert("RGB")
    draw = ImageDraw.Draw(picture)
    line = max(2, round(min(picture.size) / 250))
    font = ImageFont.load_default(size=max(12, 6 * line))
    for detection in detections:
        color = _PALETTE[detection.index % len(_PALETTE)]
        draw.rectangle(detection.box, outline=color, width=line)
        text = f"{detection.label} {detection.score:.0%}"
        left, top = detection.box[0], max(0, detection.box[1] - font.size - 2 * line)
        draw.rectangle(draw.textbbox((left, top), text, font=font), fill=color)
        draw.text((left, top), text, fill=(255, 255, 255), font=font)
    return picture


def to_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()
