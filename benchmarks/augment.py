"""Augmentation lab benchmark: preview latency (digits and photos), the bounds, and batched digit augmentation.

Targets (issues 4 and 10, 2-core CPU): a 3 x 3 photo preview through a 6-step pipeline <= 300 ms; batched digit
augmentation >= 20,000 images/s; the issue-10 pipeline refused or stopped within 2 s, and a digit preview during
a heavy one within 0.5 s. Previews run in the sandbox's worker processes, as in the app, so their figures include
the trip there and back. Run: ``.venv/bin/python benchmarks/augment.py``; ``--calibrate`` measures the per-step
costs behind the lab's time estimate against it (``_NS_PER_VALUE`` in ``vision_core/augment.py``). Figures depend on what
else the machine is doing: the load average is printed alongside them.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torchvision.transforms import v2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vision_core import load_image, load_mnist, load_model, resolve_device, to_input
from vision_core.augment import (
    CATALOGUE,
    PRESETS,
    PREVIEW_LIMITS,
    PREVIEW_MAX_SIDE,
    SHIPPED_DIGIT_PRESET,
    AugmentError,
    PipelineSpec,
    Step,
    batch_augment,
    build_pipeline,
    default_params,
    intermediates,
    list_sample_photos,
    preview,
    preview_cost,
    robustness_curve,
    spec_from_json,
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
ISSUE_PIPELINE = (
    '{"steps": [{"name": "Resize", "params": {"size": 4096}},'
    ' {"name": "GaussianBlur", "params": {"kernel_size": 101, "sigma": [50, 50]}}]}'
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


def timings(call: Callable[[int], object], repeats: int) -> list[float]:
    """Milliseconds per call (``call(i)``, a new seed each time), after one warm-up call."""
    call(0)
    times = []
    for i in range(1, repeats + 1):
        start = time.perf_counter()
        call(i)
        times.append((time.perf_counter() - start) * 1000)
    return times


def report(name: str, times: list[float], note: str = "") -> None:
    p90 = statistics.quantiles(times, n=10)[-1] if len(times) >= 10 else max(times)
    print(f"  {name:52s} median {statistics.median(times):8.1f}  p90 {p90:8.1f}  {note}")


def previews(digit: torch.Tensor, repeats: int) -> None:
    start = time.perf_counter()
    preview(digit, SHIPPED_DIGIT_PRESET, n=1)
    print(f"\nWorker pool start (the first preview after the server starts): {time.perf_counter() - start:.1f} s")
    lab_photo = load_image(list_sample_photos()[0], max_side=PREVIEW_MAX_SIDE) if list_sample_photos() else photo()
    big = photo()
    models = {name: load_model(name, device="cpu") for name in ("lenet", "vgg", "vit")}
    values = np.linspace(-90, 90, 37).tolist()
    print(
        f"\nLab requests, end to end (ms; {repeats} each; the sample photo is {lab_photo.width} x {lab_photo.height}):"
    )
    rows = [
        ("3 x 3 digit preview, shipped preset", lambda i: preview(digit, SHIPPED_DIGIT_PRESET, 9, i)),
        ("3 x 3 digit preview, stronger preset", lambda i: preview(digit, PRESETS["Stronger digit training"], 9, i)),
        ("digit step by step, sample 9", lambda i: intermediates(digit, SHIPPED_DIGIT_PRESET, i, 8)),
        ("robustness probe, 37 points x 3 models (in-process)", lambda i: robustness_curve(digit, 7, "rotation", values, models)),
        ("3 x 3 sample-photo preview, ImageNet-style preset", lambda i: preview(lab_photo, PHOTO_PIPELINE, 9, i)),
        ("sample-photo step by step, sample 36, ImageNet-style", lambda i: intermediates(lab_photo, PHOTO_PIPELINE, i, 35)),
        (f"3 x 3 preview of {big.width} x {big.height}, ImageNet-style (target 300)", lambda i: preview(big, PHOTO_PIPELINE, 9, i)),
        (f"3 x 3 preview of {big.width} x {big.height}, 6 steps at full size", lambda i: preview(big, FULL_SIZE_PIPELINE, 9, i)),
    ]  # fmt: skip
    for name, call in rows:
        report(name, timings(call, repeats if "full size" not in name else max(3, repeats // 3)))


def bounds(digit: torch.Tensor, repeats: int) -> None:
    sample = load_image(list_sample_photos()[0], max_side=PREVIEW_MAX_SIDE) if list_sample_photos() else photo()
    hostile = spec_from_json(ISSUE_PIPELINE)
    refusals = []
    for _ in range(repeats):
        start = time.perf_counter()
        try:
            preview(sample, hostile)
        except AugmentError as error:
            message = str(error)
        refusals.append((time.perf_counter() - start) * 1000)
    print("\nBounds (target: refused or stopped within 2 s; a digit preview meanwhile within 0.5 s):")
    report("issue-10 pipeline on the sample photo: refused in", refusals)
    print(f"    {message}")

    heavy = PipelineSpec((Step("GaussianBlur", {"kernel_size": 51, "sigma": (20.0, 20.0)}),))
    unestimated = dataclasses.replace(PREVIEW_LIMITS, max_estimated_seconds=float("inf"))
    big = photo()
    cases = (
        ("heavy but allowed: 6 full-size steps on 1024 x 768", lambda: preview(big, FULL_SIZE_PIPELINE, 9, 0)),
        (f"runaway (estimate lifted), stopped at {PREVIEW_LIMITS.seconds:g} s", lambda: preview(big, heavy, 9, 0, unestimated)),
    )  # fmt: skip
    for name, heavy_call in cases:
        during, heavy_seconds = digit_previews_during(digit, heavy_call)
        report(f"digit preview during a {name}", during, f"(heavy one: {heavy_seconds:.1f} s)")


def digit_previews_during(digit: torch.Tensor, heavy_call: Callable[[], object]) -> tuple[list[float], float]:
    """Milliseconds of 3 x 3 digit previews, one after another, while ``heavy_call`` runs in another thread."""
    finished: list[float] = []

    def run_heavy() -> None:
        start = time.perf_counter()
        with contextlib.suppress(AugmentError):
            heavy_call()
        finished.append(time.perf_counter() - start)

    thread = threading.Thread(target=run_heavy)
    thread.start()
    time.sleep(0.2)  # the heavy preview is in its worker
    during = []
    while thread.is_alive() and len(during) < 200:
        start = time.perf_counter()
        preview(digit, SHIPPED_DIGIT_PRESET, 9, len(during))
        during.append((time.perf_counter() - start) * 1000)
        time.sleep(0.02)
    thread.join()
    return during, finished[0]


def calibrate() -> None:
    """Per catalogue step, ns per value on a 1024 x 768 photo with one thread, as the workers run: PIL / tensor."""
    torch.set_num_threads(1)
    image = photo()
    tensor = v2.ToDtype(torch.float32, scale=True)(v2.ToImage()(image)).as_subclass(torch.Tensor)
    print("\nPer step on a 1024 x 768 photo, ns per value (pixel x channel) of its larger image, PIL / tensor:")
    print(f"  {'':22s} {'measured':>16s}   {'estimated':>16s}   (the estimate includes ~2 ns to send the result back)")
    for name, info in CATALOGUE.items():
        spec = PipelineSpec((Step(name, default_params(name), p=1.0),))
        transform = build_pipeline(spec).transforms[-1]
        measured, estimated = [], []
        for source in ([] if info.needs_tensor else [image]) + [tensor]:
            cost = preview_cost(source, spec, samples=1)
            values = cost.largest_image[0] * cost.largest_image[1] * 3
            seconds = statistics.median(timings(lambda i, t=transform, s=source: t(s), 5)) / 1000
            measured.append(f"{seconds * 1e9 / values:6.1f}")
            estimated.append(f"{cost.seconds * 1e9 / values:6.1f}")
        print(f"  {name:22s} {' / '.join(measured):>16s}   {' / '.join(estimated):>16s}")


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


def batched(device_name: str, seconds: float) -> None:
    device = resolve_device(device_name)
    train = load_mnist("train")
    print(f"\nBatched digit augmentation on {describe_device(device)} (images/s; target >= 20,000):")
    for batch_size in (128, 512):
        batch = to_input(train.images[:batch_size]).to(device)
        rows = [
            ("shipped preset (batch_augment)", batch_augment(SHIPPED_DIGIT_PRESET)),
            ("DigitAugment, for reference", DigitAugment()),
            ("stronger digit preset (5 steps)", batch_augment(PRESETS["Stronger digit training"])),
        ]
        for name, augment in rows:
            print(f"  batch {batch_size:4d}  {name:34s} {throughput(augment, batch, seconds):10,.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30, help="timed requests per row")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per throughput measurement")
    parser.add_argument("--device", default="auto", help="device for the batched augmentation")
    parser.add_argument("--calibrate", action="store_true", help="measure the per-step costs of the time estimate")
    args = parser.parse_args()

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.2f}")
    if args.calibrate:
        calibrate()
        return
    digit = to_input(load_mnist("test").images[:1])[0]
    previews(digit, args.repeats)
    bounds(digit, args.repeats)
    batched(args.device, args.seconds)
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
