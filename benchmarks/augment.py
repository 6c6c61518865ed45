"""Augmentation lab benchmark: a 3 x 3 preview of a 1024 x 768 photo, and batched digit augmentation throughput.

Targets (issue 4, 2-core CPU): preview through a 6-step pipeline <= 300 ms; batched digit augmentation
>= 20,000 images/s. Run: ``.venv/bin/python benchmarks/augment.py``. Figures depend on what else the machine
is doing: the load average is printed alongside them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vision_core import load_image, load_mnist, mnist_to_input, resolve_device
from vision_core.augment import (
    PRESETS,
    SHIPPED_DIGIT_PRESET,
    PipelineSpec,
    Step,
    batch_augment,
    list_sample_photos,
    preview,
)
from vision_core.device import describe_device
from vision_core.transforms import DigitAugment

PHOTO_SIZE = (1024, 768)
# The usual photo-training recipe: crop first, then flips, colour, rotation, blur and erasing on the crop.
PHOTO_PIPELINE = PRESETS["ImageNet-style photo training"]
# A harder case: six steps that all work on the full 1024 x 768 image.
FULL_SIZE_PIPELINE = PipelineSpec(
    (
        Step("RandomRotation", {"degrees": (-15.0, 15.0)}),
        Step("RandomHorizontalFlip"),
        Step("ColorJitter"),
        Step("GaussianBlur"),
        Step("RandomPerspective", {"distortion_scale": 0.3}),
        Step("RandomErasing", p=1.0),
    )
)


def photo() -> Image.Image:
    """A shipped sample photo at 1024 x 768, or a synthetic one when data/samples is empty."""
    samples = list_sample_photos()
    if samples:
        return load_image(samples[0]).convert("RGB").resize(PHOTO_SIZE, Image.Resampling.LANCZOS)
    y, x = np.mgrid[0 : PHOTO_SIZE[1], 0 : PHOTO_SIZE[0]].astype(np.float32)
    rgb = np.stack([x / PHOTO_SIZE[0], y / PHOTO_SIZE[1], 0.5 + 0.5 * np.sin(x / 40) * np.cos(y / 55)], axis=-1)
    image = Image.fromarray((rgb * 255).astype(np.uint8))
    ImageDraw.Draw(image).ellipse([200, 150, 600, 600], fill=(220, 50, 40))
    return image


def time_preview(image: Image.Image, spec: PipelineSpec, repeats: int) -> list[float]:
    preview(image, spec, n=9, seed=0)  # warm-up: first calls allocate and load kernels
    times = []
    for seed in range(1, repeats + 1):
        start = time.perf_counter()
        preview(image, spec, n=9, seed=seed)
        times.append((time.perf_counter() - start) * 1000)
    return times


def throughput(augment, batch: torch.Tensor, seconds: float) -> float:
    generator = torch.Generator(device=batch.device).manual_seed(0)
    augment(batch, generator)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        augment(batch, generator)
        count += len(batch)
    if batch.device.type == "cuda":
        torch.cuda.synchronize()
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed previews per pipeline")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per throughput measurement")
    parser.add_argument("--device", default="auto", help="device for the batched augmentation")
    args = parser.parse_args()

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.2f}")
    image = photo()
    print(f"\n3 x 3 preview of a {image.width} x {image.height} photo (ms; target <= 300):")
    for name, spec in (
        ("6-step photo training pipeline", PHOTO_PIPELINE),
        ("6 steps at full size", FULL_SIZE_PIPELINE),
    ):
        times = time_preview(image, spec, args.repeats)
        steps = " > ".join(s.name for s in spec.steps)
        print(f"  {name:32s} median {statistics.median(times):6.0f}  best {min(times):6.0f}   ({steps})")

    device = resolve_device(args.device)
    train = load_mnist("train")
    print(f"\nBatched digit augmentation on {describe_device(device)} (images/s; target >= 20,000):")
    for batch_size in (128, 512):
        batch = mnist_to_input(train.images[:batch_size]).to(device)
        rows = [
            ("shipped preset (batch_augment)", batch_augment(SHIPPED_DIGIT_PRESET)),
            ("DigitAugment, for reference", DigitAugment()),
            ("stronger digit preset (5 steps)", batch_augment(PRESETS["Stronger digit training"])),
        ]
        for name, augment in rows:
            print(f"  batch {batch_size:4d}  {name:34s} {throughput(augment, batch, args.seconds):10,.0f}")
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
