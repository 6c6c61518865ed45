"""Batched augmentation kernels: (B, C, H, W) float batches in [0, 1], each sample with its own random draws.

These are what training runs (through ``vision_core.augment.batch_augment``), on whatever device the
batch is on. Each kernel reads the same parameters as its torchvision v2 counterpart and follows the
torchvision kernel's arithmetic (grids, fill, blur weights), so at fixed parameters the two agree;
``tests/test_augment.py`` checks that. Signature: ``kernel(x, params, p, generator) -> x``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

# Private helpers of the pinned torchvision (0.29), used only for batched hue jitter on RGB batches.
from torchvision.transforms.v2.functional._color import _hsv_to_rgb, _rgb_to_hsv

from vision_core import standalone_transforms as standalone

Tensor = torch.Tensor
Generator = torch.Generator | None
Kernel = Callable[[Tensor, dict[str, Any], float, Generator], Tensor]  # (batch, params, p, generator) -> batch


def uniform(shape: int | tuple[int, ...], low: float, high: float, gen: Generator, device: torch.device) -> Tensor:
    return torch.rand(shape, generator=gen, device=device) * (high - low) + low


def randint(low: Tensor | int, high: Tensor | int, shape: int, gen: Generator, device: torch.device) -> Tensor:
    """Per-sample integers in [low, high) (as floats), like ``torch.randint`` with tensor bounds."""
    low = torch.as_tensor(low, device=device, dtype=torch.float32)
    high = torch.as_tensor(high, device=device, dtype=torch.float32)
    draw = (torch.rand(shape, generator=gen, device=device) * (high - low)).floor()
    return torch.minimum(draw, high - low - 1).clamp(min=0) + low


def coin(batch: int, p: float, gen: Generator, device: torch.device) -> Tensor:
    """(B, 1, 1, 1) bool: where a step with probability ``p`` applies (torchvision's ``rand < p``)."""
    return (torch.rand(batch, generator=gen, device=device) < p).view(-1, 1, 1, 1)


def sample_grid(x: Tensor, grid: Tensor, mode: str) -> Tensor:
    """``grid_sample`` with torchvision's fill=0 rule: a warped mask channel darkens the edges the same way."""
    mask = x.new_ones(x.shape[0], 1, *x.shape[-2:])
    out = F.grid_sample(torch.cat([x, mask], dim=1), grid, mode=mode, padding_mode="zeros", align_corners=False)
    image, mask = out[:, :-1], out[:, -1:]
    return torch.where(mask < 0.5, 0.0, image) if mode == "nearest" else image * mask


def inverse_affine(angle: Tensor, tx: Tensor, ty: Tensor, scale: Tensor, shear_x: Tensor) -> Tensor:
    """(B, 2, 3) output-to-input pixel maps about the centre: torchvision's ``_get_inverse_affine_matrix``, batched."""
    rot, sx = torch.deg2rad(angle), torch.deg2rad(shear_x)
    a = torch.cos(rot)  # the y-shear is always 0 here, so cos(rot - sy) / cos(sy) = cos(rot)
    c = torch.sin(rot)
    b = -(a * torch.tan(sx) + c)
    d = a - c * torch.tan(sx)
    m0, m1, m3, m4 = d / scale, -b / scale, -c / scale, a / scale
    row0 = torch.stack([m0, m1, -m0 * tx - m1 * ty], dim=1)
    row1 = torch.stack([m3, m4, -m3 * tx - m4 * ty], dim=1)
    return torch.stack([row0, row1], dim=1)


def affine_warp(x: Tensor, matrix: Tensor, mode: str) -> Tensor:
    """Apply per-sample (B, 2, 3) inverse pixel maps the way torchvision's ``affine_image`` does."""
    height, width = x.shape[-2:]
    xs = torch.linspace((1.0 - width) * 0.5, (width - 1.0) * 0.5, width, device=x.device)
    ys = torch.linspace((1.0 - height) * 0.5, (height - 1.0) * 0.5, height, device=x.device)
    base = torch.stack(
        [xs.expand(height, width), ys[:, None].expand(height, width), torch.ones(height, width, device=x.device)],
        dim=-1,
    )
    theta = matrix.transpose(1, 2) / torch.tensor([0.5 * width, 0.5 * height], device=x.device)  # (B, 3, 2)
    grid = (base.view(1, -1, 3) @ theta).view(-1, height, width, 2)
    return sample_grid(x, grid, mode)


def gaussian_blur(x: Tensor, kernel_size: int, sigma: Tensor) -> Tensor:
    """Separable Gaussian blur with a per-sample ``sigma`` (B,), reflect padding: torchvision's kernel, batched."""
    batch, channels, height, width = x.shape
    lim = (kernel_size - 1) / (2.0 * math.sqrt(2.0))
    t = torch.linspace(-lim, lim, kernel_size, device=x.device)
    weights = torch.softmax(-((t[None] / sigma[:, None]) ** 2), dim=1).repeat_interleave(channels, dim=0)  # (B*C, k)
    pad = kernel_size // 2
    y = F.pad(x.reshape(1, batch * channels, height, width), [pad, pad, pad, pad], mode="reflect")
    y = F.conv2d(y, weights.view(-1, 1, 1, kernel_size), groups=batch * channels)
    y = F.conv2d(y, weights.view(-1, 1, kernel_size, 1), groups=batch * channels)
    return y.view(batch, channels, height, width)


def luma(x: Tensor) -> Tensor:
    """(B, 1, H, W) grey levels with torchvision's weights; a 1-channel batch is its own grey."""
    if x.shape[1] == 1:
        return x
    r, g, b = x.unbind(dim=1)
    return (r * 0.2989 + g * 0.587 + b * 0.114).unsqueeze(1)


def change_stroke(x: Tensor, amount: Tensor) -> Tensor:
    """Thicker (``amount`` > 0, in 3 x 3 dilations) or thinner (< 0, erosions) strokes; ``amount`` is (B,)."""
    amount = amount.to(x.device, x.dtype).view(-1, 1, 1, 1)
    top = float(amount.abs().max()) if amount.numel() else 0.0
    thicker = standalone.morph_blend(x, amount.clamp(min=0), True, int(top))
    thinner = standalone.morph_blend(x, (-amount).clamp(min=0), False, int(top))
    return torch.where(amount >= 0, thicker, thinner).clamp(0, 1)


def resized_size(height: int, width: int, size: int) -> tuple[int, int]:
    """(height, width) after ``v2.Resize(size)``: torchvision's rule for an int size (the shorter side)."""
    short, long = min(height, width), max(height, width)
    new_short, new_long = size, int(size * long / short)
    return (new_short, new_long) if height <= width else (new_long, new_short)


def resize(x: Tensor, v: dict[str, Any], p: float, gen: Generator) -> Tensor:
    size = resized_size(*x.shape[-2:], v["size"])
    return F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)


def rotation(x: Tensor, v: dict[str, Any], p: float, gen: Generator) -> Tensor:
    angle = uniform(x.shape[0], *v["degrees"], gen, x.device)
    zero = torch.zeros_like(angle)
    # torchvision rotates by -angle in its affine convention: positive angles turn counter-clockwise.
    return affine_warp(x, inverse_affine(-angle, zero, zero, zero + 1, zero), v["interpolation"])


def affine(x: Tensor, v: dict[str, Any], p: float, gen: Generator) -> Tensor:
    batch, device, (height, width) = x.shape[0], x.device, x.shape[-2:]
    angle = uniform(batch, *v["degrees"], gen, device)
    max_dx, max_dy = v["translate_x"] * width, v["translate_y"] * height
    tx = torch.round(uniform(batch, -max_dx, max_dx, gen, device))  # whole pixels, as torchvision
    ty = torch.round(uniform(batch, -max_dy, max_dy, gen, device))
    scale = uniform(batch, *v["scale"], gen, device)
    shear = uniform(batch, *v["shear"], gen, device)
    return affine_warp(x, inverse_affine(angle, tx, ty, scale, shear), v["interpolation"])


def hflip(x: Tensor, v: dict[str, Any], p: float, gen: Generator) -> Tensor:
    return torch.where(coin(x.shape[0], p, gen, x.device), x.flip(-1), x)


def vflip(x: Tensor, v: dict[str, Any], p: float, gen: Generator) -> Tensor:
    return torch.where(coin(x.shape[0], p, gen, x.device), x.flip(-2), x)


def pad_index(index: Tensor, n: int, mode: str) -> tuple[Tensor, Tensor | None]:
    """Source indices for positions outside [0, n) under a padding mode; constant padding also returns validity."""
    if mode == "constant":
        return index.clamp(0, n - 1), (index >= 0) & (index < n)
    if mode == "edge" or n == 1:
        return index.clamp(0, n - 1), None
    period = 2 * (n - 1) if mode == "reflect" else 2 * n
    folded = index.remainder(period)
    mirrored = period - folded if mode == "reflect" else period - 1 - folded
    return torch.where(folded < n, folded, mirrored), None


def crop_at(x: Tensor, top: Tensor, left: Tensor, size: int, pad: tuple[int, int], mode: str) -> Tensor:
    """(B, C, size, size) crops at per-sample (top, left) of each image padded by ``pad`` = (y, x) pixels."""
    batch, device, (height, width) = x.shape[0], x.device, x.shape[-2:]
    steps = torch.arange(size, device=device)
    rows, row_ok = pad_index(top.long()[:, None] + steps - pad[0], height, mode)
    cols, col_ok = pad_index(left.long()[:, None] + steps - pad[1], width, mode)
    index = torch.arange(batch, device=device)[:, None, None]
    out = x[index, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)  # (B, C, size, size)
    if row_ok is not None:
        out = out * (row_ok[:, :, None] & col_ok[:, None, :]).unsqueeze(1)
    return out


def crop(x: Tensor, v: dict[str, Any], p: float, gen: Generator) -> Tensor:
    batch, device, (height, width) = x.shape[0], x.device, x.shape[-2:]
    size, pad = v["size"], v["padding"]
    pad_y = pad + max(0, size - (height + 2 * pad))  # pad_if_needed: torchvision adds the shortfall on both sides
    pad_x = pad + max(0, size - (width + 2 * pad))
    top = randint(0, height + 2 * pad_y - size + 1, batch, gen, device)
    left = randint(0, width + 2 * pad_x - size + 1, batch, gen, device)
    return crop_at(x, top, left, size, (pad_y, pad_x), v["padding_mode"])


def resized_crop(x: Tensor, v: dict[str, Any], p: float, gen: Generator) -> Tensor:
    batch, device, (height, width) = x.shape[0], x.device, x.shape[-2:]
    size, (s0, s1), (r0, r1) = v["size"], v["scale"], v["ratio"]
    # torchvision's 10 attempts at an area and aspect ratio that fit, all drawn at once.
    area = height * width * uniform((batch, 10), s0, s1, gen, device)
    aspect = torch.exp(uniform((batch, 10), math.log(r0), math.log(r1), gen, device))
    w, h = torch.round(torch.sqrt(area * aspect)), torch.round(torch.sqrt(area / aspect))
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first, found = fits.float().argmax(dim=1, keepdim=True), fits.any(dim=1)
    w, h = w.gather(1, first)[:, 0], h.gather(1, first)[:, 0]
    ratio = width / height  # the fallback: a central crop with the nearest allowed aspect ratio
    fw, fh = (
        (width, round(width / r0)) if ratio < r0 else (round(height * r1), height) if ratio > r1 else (width, height)
    )
    w, h = torch.where(found, w, float(fw)), torch.where(found, h, float(fh))
    top = torch.where(found, randint(0, height - h + 1, batch, gen, device), float((height - fh) // 2))
    left = torch.where(found, randint(0, width - w + 1, batch, gen, device), float((width - fw) // 2))
    return resized_crop_at(x, top, left, h, w, size)


def resized_crop_at(x: Tensor, top: Tensor, left: Tensor, h: Tensor, w: Tensor, size: int) -> Tensor:
    """Per-sample (top, left, h, w) boxes, each resized to ``size`` x ``size`` (bilinear).

    Samples where F.interpolate samples the crop (half-pixel centres, clamped to the crop): equal to
    torchvision's crop-then-resize whenever the crop is enlarged, which is always so at size >= input.
    """
    height, width = x.shape[-2:]
    steps = torch.arange(size, device=x.device) + 0.5
    ys = top[:, None] + torch.minimum((steps * (h[:, None] / size) - 0.5).clamp(min=0), h[:, None] - 1)
    xs = left[:, None] + torch.minimum((steps * (w[:, None] / size) - 0.5).clamp(min=0), w[:, None] - 1)
    grid_x, grid_y = (2 * xs + 1) / width - 1, (2 * ys + 1) / height - 1
    grid = torch.stack(torch.broadcast_tensors(grid_x[:, None, :], grid_y[:, :, None]), dim=-1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def perspective_coefficients(start: Tensor, end: Tensor) -> Tensor:
    """(B, 8) coefficients mapping ``end`` corners (B, 4, 2) back to ``start`` (4, 2): torchvision's system, batched."""
    batch = end.shape[0]
    rows = []
    for i in range(4):
        px, py = end[:, i, 0], end[:, i, 1]
        sx, sy = start[i, 0].expand(batch), start[i, 1].expand(batch)
        one, zero = torch.ones_like(px), torch.zeros_like(px)
        rows.append(torch.stack([px, py, one, zero, zero, zero, -sx * px, -sx * py], dim=1))
        rows.append(torch.stack([zero, zero, zero, px, py, one, -sy * px, -sy * py], dim=1))
    return torch.linalg.solve(torch.stack(rows, dim=1), start.reshape(1, 8).expand(batch, 8))


def perspective(x: Tensor, v: dict[str, Any], p: float, gen: Generator) -> Tensor:
    batch, device, (height, width) = x.shape[0], x.device, x.shape[-2:]
    bh, bw = int(v["distortion_scale"] * (height // 2)) + 1, int(v["distortion_scale"] * (width // 2)) + 1

    def draw(low: int, high: int) -> Tensor:
        return randint(low, high, batch, gen, device)

    corners = [(draw(0, bw), draw(0, bh)), (draw(width - bw, width), draw(0, bh))]
    corners += [(draw(width - bw, width), draw(height - bh, height)), (draw(0, bw), draw(height - bh, height))]
    end = torch.stack([torch.stack(c, dim=1) for c in corners], dim=1).double()  # (B, 4, 2)
    start = torch.tensor(
        [[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], device=device, dtype=torch.float64
    )
    warped = perspective_warp(x, perspective_coefficients(start, end).float(), v["interpolation"])
    return torch.where(coin(batch, p, gen, device), warped, x)


def perspective_warp(x: Tensor, coeffs: Tensor, mode: str) -> Tensor:
    """Apply per-sample (B, 8) perspective coefficients the way torchvision's ``perspective_image`` does."""
    batch, device, (height, width) = x.shape[0], x.device, x.shape[-2:]
    xs = torch.linspace(0.5, width - 0.5, width, device=device)
    ys = torch.linspace(0.5, height - 0.5, height, device=device)
    base = torch.stack(
        [xs.expand(height, width), ys[:, None].expand(height, width), torch.ones(height, width, device=device)], dim=-1
    ).view(1, -1, 3)
    theta1 = coeffs[:, :6].view(-1, 2, 3).transpose(1, 2) / torch.tensor([0.5 * width, 0.5 * height], device=device)
    theta2 = torch.cat([coeffs[:, 6:], torch.ones(batch, 1, device=device)], dim=1)[:, :, None]  # (B, 3, 1)
    grid = ((base @ theta1) / (base @ theta2) - 1).view(batch, height, width, 2)
    return sample_grid(x, grid, mode)


def elastic_kernel_size(sigma: float) -> int:
    """The side of the blur kernel that smooths ``v2.ElasticTransform``'s displacement field: odd, about 8 sigma."""
    kernel = int(8 * sigma + 1)
    return kernel + 1 - kernel % 2


def elastic(x: Tensor, v: dict[str, Any], p: float, gen: Generator) -> Tensor:
    batch, device, (height, width) = x.shape[0], x.device, x.shape[-2:]
    kernel = elastic_kernel_size(v["sigma"])
    sigma = torch.full((batch,), v["sigma"], device=device)
    dx = gaussian_blur(torch.rand(batch, 1, height, width, generator=gen, device=device) * 2 - 1, kernel, sigma)
    dy = gaussian_blur(torch.rand(batch, 1, height, width, generator=gen, device=device) * 2 - 1, kernel, sigma)
    displacement = torch.cat([dx * v["alpha"] / width, dy * v["alpha"] / height], dim=1).permute(0, 2, 3, 1)
    return elastic_warp(x, displacement, v["interpolation"])


def elastic_warp(x: Tensor, displacement: Tensor, mode: str) -> Tensor:
    """Move pixels by a per-sample (B, H, W, 2) displacement in normalised units, as torchvision's ``elastic``."""
    device, (height, width) = x.device, x.shape[-2:]
    xs = torch.linspace((1 - width) / width, (width - 1) / width, width, device=device)
    ys = torch.linspace((1 - height) / height, (height - 1) / height, height, device=device)
    identity = torch.stack([xs.expand(height, width), ys[:, None].expand(height, width)], dim=-1)
    return sample_grid(x, identity + displacement, mode)


def blend(a: Tensor, b: Tensor, ratio: Tensor) -> Tensor:
    return (a * ratio + b * (1 - ratio)).clamp(0, 1)


def adjust_brightness(x: Tensor, factor: Tensor) -> Tensor:
    return (x * factor.view(-1, 1, 1, 1)).clamp(0, 1)


def adjust_contrast(x: Tensor, factor: Tensor) -> Tensor:
    return blend(x, luma(x).mean(dim=(1, 2, 3), keepdim=True), factor.view(-1, 1, 1, 1))


def adjust_saturation(x: Tensor, factor: Tensor) -> Tensor:
    return x if x.shape[1] == 1 else blend(x, luma(x), factor.view(-1, 1, 1, 1))  # a grey image has no saturation


def adjust_hue(x: Tensor, shift: Tensor) -> Tensor:
    if x.shape[1] == 1:
        return x
    h, s, v = _rgb_to_hsv(x).unbind(dim=1)
    return _hsv_to_rgb(torch.stack([(h + shift.view(-1, 1, 1)).remainder(1.0), s, v], dim=1))


def color_jitter(x: Tensor, v: dict[str, Any], p: float, gen: Generator) -> Tensor:
    batch, device = x.shape[0], x.device
    ops: list[tuple[int, Callable[[Tensor, Tensor], Tensor], Tensor]] = []
    adjust = (adjust_brightness, adjust_contrast, adjust_saturation)
    for index, name in enumerate(("brightness", "contrast", "saturation")):
        if v[name] > 0:
            ops.append((index, adjust[index], uniform(batch, max(0.0, 1 - v[name]), 1 + v[name], gen, device)))
    if v["hue"] > 0:
        ops.append((3, adjust_hue, uniform(batch, -v["hue"], v["hue"], gen, device)))
    order = torch.rand(batch, 4, generator=gen, device=device).argsort(dim=1)  # each sample its own order
    for slot in range(4):
        for index, op, factor in ops:
            x = torch.where((order[:, slot] == index).view(-1, 1, 1, 1), op(x, factor), x)
    return x


def blur(x: Tensor, v: dict[str, Any], p: float, gen: Generator) -> Tensor:
    return gaussian_blur(x, v["kernel_size"], uniform(x.shape[0], *v["sigma"], gen, x.device))


def noise(x: Tensor, v: dict[str, Any], p: float, gen: Generator) -> Tensor:
    out = x + (v["mean"] + torch.randn(x.shape, generator=gen, device=x.device) * v["sigma"])
    return out.clamp(0, 1) if v["clip"] else out


def erasing(x: Tensor, v: dict[str, Any], p: float, gen: Generator) -> Tensor:
    batch, device, (height, width) = x.shape[0], x.device, x.shape[-2:]
    (s0, s1), (r0, r1) = v["scale"], v["ratio"]
    area = height * width * uniform((batch, 10), s0, s1, gen, device)
    aspect = torch.exp(uniform((batch, 10), math.log(r0), math.log(r1), gen, device))
    h, w = torch.round(torch.sqrt(area * aspect)), torch.round(torch.sqrt(area / aspect))
    fits = (h < height) & (w < width)
    first, found = fits.float().argmax(dim=1, keepdim=True), fits.any(dim=1)
    h, w = h.gather(1, first)[:, 0], w.gather(1, first)[:, 0]
    top = randint(0, (height - h + 1).clamp(min=1), batch, gen, device)[:, None]
    left = randint(0, (width - w + 1).clamp(min=1), batch, gen, device)[:, None]
    rows = torch.arange(height, device=device)[None]
    cols = torch.arange(width, device=device)[None]
    in_rows = (rows >= top) & (rows < top + h[:, None])
    in_cols = (cols >= left) & (cols < left + w[:, None])
    box = (in_rows[:, :, None] & in_cols[:, None, :] & found.view(-1, 1, 1)).unsqueeze(1)
    return torch.where(box & coin(batch, p, gen, device), v["value"], x)


def invert(x: Tensor, v: dict[str, Any], p: float, gen: Generator) -> Tensor:
    return torch.where(coin(x.shape[0], p, gen, x.device), 1.0 - x, x)


def grayscale(x: Tensor, v: dict[str, Any], p: float, gen: Generator) -> Tensor:
    applies = coin(x.shape[0], p, gen, x.device)
    return x if x.shape[1] == 1 else torch.where(applies, luma(x).expand_as(x), x)


def stroke_thickness(x: Tensor, v: dict[str, Any], p: float, gen: Generator) -> Tensor:
    # DigitAugment's stroke step, draw for draw: the shipped preset matches it bit for bit.
    return standalone.stroke_thickness(x, **v, generator=gen)


def digit_warp(x: Tensor, v: dict[str, Any], p: float, gen: Generator) -> Tensor:
    # DigitAugment's geometry, draw for draw and operation for operation (see vision_core.transforms).
    return standalone.digit_warp(x, **v, generator=gen)
