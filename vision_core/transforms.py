"""Digit preprocessing (drawing -> MNIST format) and the batched training augmentation.

MNIST format: a (1, 28, 28) float tensor in [0, 1], white digit on black, the digit scaled to fit
a 20 x 20 box and placed so that its centre of mass sits at the centre of the 28 x 28 field. That
is how LeCun, Cortes and Burges made MNIST, so a drawing prepared the same way looks like the
training data wherever and however large it was drawn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

MNIST_SIZE, DIGIT_BOX = 28, 20
_MAX_SIDE = 560  # larger inputs (photos) are shrunk first; a 280 px canvas is untouched
_INK_FLOOR = 0.1  # after background removal, fainter pixels are noise (paper grain, JPEG ringing)
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


class EmptyDrawingError(ValueError):
    """The image holds no strokes to classify (an empty canvas, a blank page)."""


@dataclass(frozen=True)
class DigitSteps:
    """Every stage of ``preprocess_digit``, for showing students what the model sees."""

    ink: torch.Tensor  # (H, W) stroke intensity in [0, 1], white on black
    cropped: torch.Tensor  # (h, w) the bounding box of the strokes
    fitted: torch.Tensor  # (h', w') scaled so the longer side is 20 px
    centered: torch.Tensor  # (1, 28, 28) the model input: centre of mass at the centre


def _to_float_array(image: np.ndarray | Image.Image) -> np.ndarray:
    """(H, W, C) float32 in [0, 1] with C in {1, 3, 4}; alpha kept when the image has one."""
    if isinstance(image, Image.Image):
        if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            array = np.asarray(image, dtype=np.float32)
            peak = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
            return np.clip(array / peak, 0, 1)[..., None]
        has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4) or min(array.shape[:2]) < 1:
        raise ValueError(f"expected an H x W, H x W x 3 or H x W x 4 image, got shape {array.shape}")
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    array = array.astype(np.float32)
    return np.clip(array / 255.0 if array.max() > 1.0 else array, 0, 1)


def stroke_intensity(image: np.ndarray | Image.Image) -> torch.Tensor:
    """(H, W) ink in [0, 1]: white strokes on black, whatever the input's polarity or alpha.

    With transparency the strokes are where the alpha is (a canvas with a transparent background);
    otherwise the luminance is used, inverted when the background is light (a photo of paper), and
    the background level is subtracted so grey paper becomes black.
    """
    array = _to_float_array(image)
    channels = array.shape[2]
    if channels == 4 and array[..., 3].min() < 0.999:
        ink = array[..., 3]
    else:
        ink = array[..., 0] if channels == 1 else array[..., :3] @ _LUMA
        if np.median(ink[::4, ::4]) > 0.5:  # mostly light: dark ink on paper (1 pixel in 16 is plenty to tell)
            ink = 1.0 - ink
    ink = torch.from_numpy(np.ascontiguousarray(ink, dtype=np.float32))
    if max(ink.shape) > _MAX_SIDE:
        scale = _MAX_SIDE / max(ink.shape)
        size = (max(1, round(ink.shape[0] * scale)), max(1, round(ink.shape[1] * scale)))
        ink = F.interpolate(ink[None, None], size=size, mode="bilinear", antialias=True)[0, 0]
    background = ink[::4, ::4].median()  # the background fills most of the image; a sample estimates it
    span = ink.max() - background
    if span < _INK_FLOOR:
        raise EmptyDrawingError("the drawing is empty: draw a digit (or upload an image with a visible digit)")
    ink = ((ink - background) / span).clamp_(0, 1)
    return torch.where(ink < _INK_FLOOR, torch.zeros_like(ink), ink)


def digit_steps(image: np.ndarray | Image.Image) -> DigitSteps:
    """Run the MNIST preparation on ``image`` and keep every stage (see ``preprocess_digit``)."""
    ink = stroke_intensity(image)
    rows = torch.nonzero(ink.amax(dim=1)).flatten()
    cols = torch.nonzero(ink.amax(dim=0)).flatten()
    cropped = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]

    height, width = cropped.shape
    scale = DIGIT_BOX / max(height, width)
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    fitted = F.interpolate(cropped[None, None], size=size, mode="bilinear", antialias=True, align_corners=False)[0, 0]
    fitted = (fitted / fitted.max()).clamp_(0, 1)  # antialiasing dims thin strokes; MNIST's are saturated

    # Integer shift that puts the centre of mass at the field's centre (13.5 in pixel-index coordinates).
    total = fitted.sum()
    ys = torch.arange(fitted.shape[0], dtype=torch.float32)
    xs = torch.arange(fitted.shape[1], dtype=torch.float32)
    com_y = float((fitted.sum(dim=1) * ys).sum() / total)
    com_x = float((fitted.sum(dim=0) * xs).sum() / total)
    top, left = round(13.5 - com_y), round(13.5 - com_x)
    centered = torch.zeros(MNIST_SIZE, MNIST_SIZE)
    # Paste with clipping: a lopsided digit may poke out of the field, as in MNIST itself.
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + fitted.shape[0], MNIST_SIZE), min(left + fitted.shape[1], MNIST_SIZE)
    centered[y0:y1, x0:x1] = fitted[y0 - top : y1 - top, x0 - left : x1 - left]
    return DigitSteps(ink=ink, cropped=cropped, fitted=fitted, centered=centered[None])


def preprocess_digit(image: np.ndarray | Image.Image) -> torch.Tensor:
    """The one way a drawing or photo of a digit becomes model input: a (1, 28, 28) tensor in [0, 1].

    ``image`` is what the canvas returns (H x W x 4 uint8 RGBA, white strokes, transparent or
    black background), an H x W x 3 or H x W array, or a PIL image. Dark strokes on a light
    background are inverted. Raises ``EmptyDrawingError`` when there is nothing drawn.

    >>> canvas = np.zeros((280, 280, 4), np.uint8); canvas[60:220, 130:150] = 255
    >>> preprocess_digit(canvas).shape
    torch.Size([1, 28, 28])
    """
    return digit_steps(image).centered


def to_image(values: torch.Tensor, size: int | None = None) -> Image.Image:
    """A (H, W) or (1, H, W) tensor in [0, 1] as a grayscale image, enlarged to ``size`` px with crisp pixels."""
    pixels = (values.detach().squeeze(0).clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    image = Image.fromarray(pixels, mode="L")
    if size is not None:
        scale = size / max(image.size)
        new_size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(new_size, Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.BILINEAR)
    return image


def to_input(images: torch.Tensor) -> torch.Tensor:
    """Every dataset's eval transform: uint8 images (N, H, W) or (N, C, H, W) -> (N, C, H, W) floats in [0, 1]."""
    return (images.unsqueeze(1) if images.ndim == 3 else images).float().div_(255.0)


@dataclass(frozen=True)
class DigitAugment:
    """Random geometry and stroke thickness for whole batches, on whatever device the batch is on.

    Covers what differs between MNIST and canvas drawings after ``preprocess_digit``: slight
    rotation, wobble (shear, uneven scale), small offsets, and thicker or thinner strokes. One
    ``grid_sample`` and two pooling ops per batch keep it far faster than per-image PIL transforms.
    """

    degrees: float = 12.0
    translate: float = 2.0  # pixels
    scale: tuple[float, float] = (0.85, 1.15)
    shear: float = 12.0  # degrees
    thicker: float = 0.3  # probability of a dilated stroke
    thinner: float = 0.2  # probability of an eroded stroke

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``x``: (B, 1, 28, 28) float in [0, 1] -> the same shape, augmented."""
        batch, device = x.shape[0], x.device

        def uniform(low: float, high: float) -> torch.Tensor:
            return torch.rand(batch, generator=generator, device=device) * (high - low) + low

        angle = uniform(-self.degrees, self.degrees) * (math.pi / 180)
        shear = uniform(-self.shear, self.shear) * (math.pi / 180)
        scale_x, scale_y = uniform(*self.scale), uniform(*self.scale)
        shift = self.translate * 2 / MNIST_SIZE  # pixels -> normalised grid units
        tx, ty = uniform(-shift, shift), uniform(-shift, shift)
        # theta maps output coordinates to input coordinates: inverse of rotate . shear . scale.
        cos, sin, tan = angle.cos(), angle.sin(), shear.tan()
        theta = torch.stack(
            [
                torch.stack([cos / scale_x, (sin + cos * tan) / scale_x, tx], dim=1),
                torch.stack([-sin / scale_y, (cos - sin * tan) / scale_y, ty], dim=1),
            ],
            dim=1,
        )  # (B, 2, 3)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

        # Stroke thickness: blend towards a 3 x 3 dilation or erosion by a random amount.
        choice = torch.rand(batch, generator=generator, device=device)
        amount = torch.rand(batch, generator=generator, device=device).view(-1, 1, 1, 1)
        dilated = F.max_pool2d(x, 3, stride=1, padding=1)
        eroded = -F.max_pool2d(-x, 3, stride=1, padding=1)
        thicker = (choice < self.thicker).view(-1, 1, 1, 1)
        thinner = ((choice >= self.thicker) & (choice < self.thicker + self.thinner)).view(-1, 1, 1, 1)
        x = torch.where(thicker, x + amount * (dilated - x), x)
        x = torch.where(thinner, x + 0.6 * amount * (eroded - x), x)
        return x.clamp_(0, 1)
