"""Synthetic canvas drawings of digits 0-9, for testing the models on input that looks like the Draw page's.

Each digit is a few pen strokes in a unit box (x right, y down). ``draw_digit`` renders them the way
streamlit-drawable-canvas returns a drawing (280 x 280 RGBA, white strokes, opaque black or transparent
background), with the variation people bring: anywhere on the canvas, small or large, thin or thick
strokes, slightly rotated, wobbly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
from PIL import Image, ImageDraw

Stroke = list[tuple[float, float]]


def _arc(cx: float, cy: float, rx: float, ry: float, start: float, end: float, n: int = 24) -> Stroke:
    """Points on an ellipse from ``start`` to ``end`` degrees (0 = right, 90 = down, since y points down)."""
    return [
        (cx + rx * math.cos(math.radians(t)), cy + ry * math.sin(math.radians(t))) for t in np.linspace(start, end, n)
    ]


DIGIT_STROKES: dict[int, list[Stroke]] = {
    0: [_arc(0.5, 0.5, 0.32, 0.45, -90, 275, 40)],
    1: [[(0.52, 0.04), (0.48, 0.96)]],
    2: [_arc(0.5, 0.3, 0.3, 0.25, 195, 375) + [(0.2, 0.95), (0.85, 0.95)]],
    3: [_arc(0.48, 0.28, 0.28, 0.22, 200, 450) + _arc(0.48, 0.72, 0.31, 0.23, -90, 160)],
    4: [[(0.28, 0.04), (0.2, 0.62), (0.85, 0.62)], [(0.68, 0.1), (0.68, 0.96)]],
    5: [[(0.82, 0.05), (0.32, 0.05), (0.27, 0.45)] + _arc(0.5, 0.68, 0.3, 0.27, -140, 160)],
    6: [[(0.72, 0.04), (0.48, 0.18), (0.32, 0.42), (0.25, 0.7)] + _arc(0.5, 0.72, 0.25, 0.22, 180, 545)],
    7: [[(0.15, 0.07), (0.85, 0.07), (0.42, 0.96)]],
    8: [_arc(0.5, 0.27, 0.23, 0.22, 90, 450), _arc(0.5, 0.72, 0.28, 0.23, -90, 270)],
    9: [_arc(0.5, 0.3, 0.26, 0.23, 0, 365), [(0.76, 0.3), (0.7, 0.96)]],
}


@dataclass(frozen=True)
class DrawStyle:
    height: float = 200.0  # px of the digit's box on the 280 px canvas
    center: tuple[float, float] = (140.0, 140.0)
    stroke_width: float = 20.0
    rotation: float = 0.0  # degrees, clockwise
    wobble: float = 0.0  # std of a smooth random displacement, as a fraction of the height
    aspect: float = 0.7  # box width / height


def random_style(rng: np.random.Generator) -> DrawStyle:
    """Variation people bring to the canvas: anywhere, small or large, thin or thick, tilted, wobbly."""
    height = float(rng.uniform(90, 250))
    width = height * 0.7
    margin_x, margin_y = width / 2 + 12, height / 2 + 12
    center = (float(rng.uniform(margin_x, 280 - margin_x)), float(rng.uniform(margin_y, 280 - margin_y)))
    return DrawStyle(
        height=height,
        center=center,
        stroke_width=float(rng.uniform(max(8, height * 0.06), max(12, height * 0.16))),
        rotation=float(rng.uniform(-15, 15)),
        wobble=float(rng.uniform(0, 0.025)),
    )


def draw_digit(
    digit: int,
    style: DrawStyle = DrawStyle(),
    rng: np.random.Generator | None = None,
    transparent: bool = False,
    size: int = 280,
) -> np.ndarray:
    """An (size, size, 4) uint8 RGBA canvas with ``digit`` drawn in white strokes."""
    rng = rng if rng is not None else np.random.default_rng(0)
    supersample = 3  # draw large, then shrink: antialiased edges like a browser canvas
    big = size * supersample
    image = Image.new("L", (big, big), 0)
    pen = ImageDraw.Draw(image)
    angle = math.radians(style.rotation)
    cos, sin = math.cos(angle), math.sin(angle)
    width_px, height_px = style.height * style.aspect, style.height
    for stroke in DIGIT_STROKES[digit]:
        points = np.array(stroke, dtype=np.float64)
        if style.wobble > 0:  # smooth noise: a random walk, low-passed, so lines bend instead of jitter
            dense = np.concatenate([np.linspace(a, b, 6, endpoint=False) for a, b in pairwise(points)] + [points[-1:]])
            noise = np.cumsum(rng.normal(0, style.wobble, dense.shape), axis=0)
            points = dense + (noise - noise.mean(axis=0)) * 0.5
        x = (points[:, 0] - 0.5) * width_px
        y = (points[:, 1] - 0.5) * height_px
        xs = (x * cos - y * sin + style.center[0]) * supersample
        ys = (x * sin + y * cos + style.center[1]) * supersample
        line = list(zip(xs.tolist(), ys.tolist(), strict=True))
        radius = style.stroke_width * supersample / 2
        pen.line(line, fill=255, width=round(radius * 2), joint="curve")
        for px, py in (line[0], line[-1]):  # round caps, like a pen
            pen.ellipse([px - radius, py - radius, px + radius, py + radius], fill=255)
    coverage = np.asarray(image.resize((size, size), Image.Resampling.BOX))
    canvas = np.zeros((size, size, 4), np.uint8)
    if transparent:  # transparent background: white pixels whose alpha is the coverage
        canvas[..., :3] = 255
        canvas[..., 3] = coverage
    else:  # opaque black background: grey levels are the coverage
        canvas[..., :3] = coverage[..., None]
        canvas[..., 3] = 255
    return canvas
