"""The lab's two digit transforms, DigitWarp and StrokeThickness, with nothing but torch and torchvision.

Self-contained on purpose: ``vision_core.augment.pipeline_to_code`` copies this file, from the imports below
on, into exported pipelines, so exported code runs where torchvision alone is installed and gives the lab's
previews pixel for pixel. So import nothing from vision_core here. The batched functions are also what
training runs (``vision_core.augment_kernels``); they follow ``DigitAugment`` draw for draw.
"""

import math

import torch
import torch.nn.functional as F
from torchvision import tv_tensors
from torchvision.transforms import v2


def max_filter(x: torch.Tensor) -> torch.Tensor:
    """3 x 3 maximum: exactly ``F.max_pool2d(x, 3, stride=1, padding=1)``, as two 1-D passes (~10x faster on CPU)."""
    padded = F.pad(x, (1, 1, 1, 1), value=float("-inf"))
    rows = torch.maximum(torch.maximum(padded[..., :-2], padded[..., 1:-1]), padded[..., 2:])
    return torch.maximum(torch.maximum(rows[..., :-2, :], rows[..., 1:-1, :]), rows[..., 2:, :])


def morph_blend(x: torch.Tensor, level: torch.Tensor, dilate: bool, max_whole: int) -> torch.Tensor:
    """Move strokes ``level`` (B, 1, 1, 1) >= 0 steps towards 3 x 3 dilations (or erosions): 1.5 = one and a half.

    ``max_whole`` bounds ``floor(level)``. For levels below 1 this is exactly ``x + level * (dilated - x)``.
    """

    def pool(t: torch.Tensor) -> torch.Tensor:
        return max_filter(t) if dilate else -max_filter(-t)

    whole = level.floor()
    stages = [x, pool(x)]
    for _ in range(max_whole):
        stages.append(pool(stages[-1]))
    base, after = stages[0], stages[1]
    for k in range(1, len(stages) - 1):
        chosen = whole >= k
        base, after = torch.where(chosen, stages[k], base), torch.where(chosen, stages[k + 1], after)
    return base + (level - whole) * (after - base)


def stroke_thickness(
    x: torch.Tensor,
    thicker: float = 0.3,
    thinner: float = 0.2,
    max_thicker: float = 1.0,
    max_thinner: float = 0.6,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """(B, C, H, W) in [0, 1]: each sample's strokes thicker (probability ``thicker``), thinner, or unchanged."""
    batch, device = x.shape[0], x.device
    choice = torch.rand(batch, generator=generator, device=device)
    amount = torch.rand(batch, generator=generator, device=device).view(-1, 1, 1, 1)
    is_thicker = (choice < thicker).view(-1, 1, 1, 1)
    is_thinner = ((choice >= thicker) & (choice < thicker + thinner)).view(-1, 1, 1, 1)
    # amount < 1, so a level stays below its maximum and needs ceil(maximum) - 1 whole steps at most.
    most_thicker, most_thinner = max(0, math.ceil(max_thicker) - 1), max(0, math.ceil(max_thinner) - 1)
    x = torch.where(is_thicker, morph_blend(x, max_thicker * amount, True, most_thicker), x)
    x = torch.where(is_thinner, morph_blend(x, max_thinner * amount, False, most_thinner), x)
    return x.clamp_(0, 1)


def digit_warp(
    x: torch.Tensor,
    degrees: float = 12.0,
    translate: float = 2.0,
    scale: tuple[float, float] = (0.85, 1.15),
    shear: float = 12.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """(B, C, H, W): each sample rotated, sheared, scaled per axis and shifted (in pixels) by its own draws."""
    batch, device, (height, width) = x.shape[0], x.device, x.shape[-2:]

    def uniform(low: float, high: float) -> torch.Tensor:
        return torch.rand(batch, generator=generator, device=device) * (high - low) + low

    angle = uniform(-degrees, degrees) * (math.pi / 180)
    shear_angle = uniform(-shear, shear) * (math.pi / 180)
    scale_x, scale_y = uniform(*scale), uniform(*scale)
    shift_x, shift_y = translate * 2 / width, translate * 2 / height  # pixels -> normalised grid units
    tx, ty = uniform(-shift_x, shift_x), uniform(-shift_y, shift_y)
    cos, sin, tan = angle.cos(), angle.sin(), shear_angle.tan()
    # The aspect factors keep a rotation a rotation on non-square photos; they are exactly 1.0 on 28 x 28.
    theta = torch.stack(
        [
            torch.stack([cos / scale_x, (sin + cos * tan) / scale_x * (height / width), tx], dim=1),
            torch.stack([-sin / scale_y * (width / height), (cos - sin * tan) / scale_y, ty], dim=1),
        ],
        dim=1,
    )  # (B, 2, 3): output to input coordinates, the inverse of rotate . shear . scale
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _require(title: str, ok: bool, rule: str, value: object) -> None:
    if not ok:
        raise ValueError(f"{title}: {rule} (got {value!r})")


class _PerImage(v2.Transform):
    """Runs a batched function on one float image (C, H, W), drawing from torch's global random generator."""

    def __init__(self, **params: object) -> None:
        super().__init__()
        self.params = params

    def batched(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def transform(self, inpt, params):
        if not isinstance(inpt, torch.Tensor) or not torch.is_floating_point(inpt):
            raise TypeError(
                f"{type(self).__name__} needs a float image tensor: put v2.ToImage() and "
                "v2.ToDtype(torch.float32, scale=True) before it"
            )
        out = self.batched(inpt.as_subclass(torch.Tensor)[None])[0]
        return tv_tensors.wrap(out, like=inpt) if isinstance(inpt, tv_tensors.TVTensor) else out

    def extra_repr(self) -> str:
        return ", ".join(f"{key}={value!r}" for key, value in self.params.items())


class StrokeThickness(_PerImage):
    """Thicker or thinner strokes: a blend towards 3 x 3 dilations or erosions, by a random amount."""

    def __init__(
        self, thicker: float = 0.3, thinner: float = 0.2, max_thicker: float = 1.0, max_thinner: float = 0.6
    ) -> None:
        title = "StrokeThickness"
        _require(title, thicker >= 0 and thinner >= 0, "thicker and thinner must be at least 0", (thicker, thinner))
        _require(title, thicker + thinner <= 1, "thicker + thinner must be at most 1", thicker + thinner)
        _require(title, max_thicker >= 0, "max_thicker must be at least 0", max_thicker)
        _require(title, max_thinner >= 0, "max_thinner must be at least 0", max_thinner)
        super().__init__(thicker=thicker, thinner=thinner, max_thicker=max_thicker, max_thinner=max_thinner)

    def batched(self, x: torch.Tensor) -> torch.Tensor:
        return stroke_thickness(x, **self.params)


class DigitWarp(_PerImage):
    """Random rotation, shear, per-axis scale and pixel shift: the shipped digit models' training geometry."""

    def __init__(
        self,
        degrees: float = 12.0,
        translate: float = 2.0,
        scale: tuple[float, float] = (0.85, 1.15),
        shear: float = 12.0,
    ) -> None:
        title = "DigitWarp"
        _require(
            title, degrees >= 0 and translate >= 0, "degrees and translate must be at least 0", (degrees, translate)
        )
        _require(title, 0 <= shear < 90, "shear must be at least 0 and below 90 degrees", shear)
        _require(title, 0 < scale[0] <= scale[1], "scale must be a range (low, high) with 0 < low <= high", scale)
        super().__init__(degrees=degrees, translate=translate, scale=tuple(scale), shear=shear)

    def batched(self, x: torch.Tensor) -> torch.Tensor:
        return digit_warp(x, **self.params)
