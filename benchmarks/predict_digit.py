"""Latency of the Draw page's path: preprocessing, each digit model, and all of them on one drawing.

    python benchmarks/predict_digit.py [--repeats 300]

Prints medians (and p90) in milliseconds. Target: preprocessing + all three models <= 5 ms on a 2-core CPU. The last
row is what the Draw page runs: the same on one torch thread, on the page's worker (ui/single_thread.py); on a quiet
machine the two are alike, on a busy one the first is the one that stalls (benchmarks/draw_latency.py shows it).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ui.single_thread import run_single_threaded
from vision_core import describe_device, list_models, load_model, predict_digit, predict_digits, preprocess_digit
from vision_core.predict import classify_digit_input


def canvas_drawing() -> np.ndarray:
    """A 280 x 280 RGBA canvas with a "7" in 20 px white strokes on black, as the canvas returns it."""
    image = Image.new("RGBA", (280, 280), (0, 0, 0, 255))
    pen = ImageDraw.Draw(image)
    pen.line([(70, 60), (210, 60), (120, 230)], fill=(255, 255, 255, 255), width=20, joint="curve")
    return np.asarray(image)


def timings_ms(function: Callable[[], object], repeats: int, warmup: int = 20) -> tuple[float, float]:
    for _ in range(warmup):
        function()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(0.9 * len(samples))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=300)
    args = parser.parse_args()

    drawing = canvas_drawing()
    models = {name: load_model(name) for name in list_models(task="digits")}
    model_input = preprocess_digit(drawing)
    print(
        f"device: {describe_device()}, torch {torch.__version__}, {torch.get_num_threads()} threads, {args.repeats} repeats"
    )
    print(f"{'what':44s} {'median ms':>10s} {'p90 ms':>8s}")
    rows = [("preprocess_digit (280 x 280 canvas)", lambda: preprocess_digit(drawing))]
    rows += [
        (f"{name} forward alone (prepared input)", lambda m=m: classify_digit_input(model_input, m))
        for name, m in models.items()
    ]
    rows += [(f"predict_digit with {name}", lambda m=m: predict_digit(drawing, m)) for name, m in models.items()]
    rows += [(f"predict_digits: preprocess once + {len(models)} models", lambda: predict_digits(drawing, models))]
    # What the Draw page runs: the same on its one-thread worker (ui/single_thread.py), hand-over included.
    rows += [("the same on the one-thread worker", lambda: run_single_threaded(predict_digits, drawing, models))]
    for label, function in rows:
        median, p90 = timings_ms(function, args.repeats)
        print(f"{label:44s} {median:10.2f} {p90:8.2f}")


if __name__ == "__main__":
    main()
