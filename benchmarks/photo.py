"""The whole photo path for one 12-megapixel JPEG against a bare ResNet-50 forward pass, measured in the same run.

Photo path: ``load_image`` (decode, with ``draft``) -> ``analyze`` (``weights.transforms()``, a forward pass with hooks
at layer1.2 / layer2.3 / layer3.5, softmax, top-3), exactly as the Photo explorer page runs it: the model from
``load_model`` (channels_last), bf16 autocast where the CPU has native bf16 (the page's default there), and also in
exact fp32. Baseline: a bare eager fp32 ResNet-50 (torchvision, default memory format) on a ready (1, 3, 224, 224)
tensor. All are interleaved, so a background load slows them alike; the ratio of medians is the figure (target <= 1.25).

    python benchmarks/photo.py              # the comparison
    python benchmarks/photo.py --variants   # also: ResNet-50 forward in fp32 / channels_last / bf16 autocast

Uses the pretrained ResNet-50 when its weights are in the torch hub cache, else the same architecture randomly
initialised (identical cost).
"""

from __future__ import annotations

import argparse
import atexit
import io
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.models import ResNet50_Weights, resnet50

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere, without installing the package

from vision_core import describe_device, load_image, load_model
from vision_core.images import PHOTO_DRAFT_SIZE
from vision_core.models.imagenet import hub_checkpoint_path
from vision_core.photo import analyze, fast_precision
from vision_core.registry import weights_available

ROOT = Path(__file__).resolve().parents[1]


def twelve_megapixel_jpeg(seed: int = 0) -> bytes:
    """A 4032 x 3024 JPEG (a 12 MP phone photo's size) with photo-like detail: a sample photo enlarged, plus sensor noise."""
    base = (
        Image.open(ROOT / "data" / "samples" / "chelsea.png")
        .convert("RGB")
        .resize((4032, 3024), Image.Resampling.BICUBIC)
    )
    noise = np.random.default_rng(seed).normal(0, 4, (3024, 4032, 3))
    pixels = np.clip(np.asarray(base, dtype=np.float32) + noise, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


def timed(function: Callable[[], object]) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def forward_variants(model: torch.nn.Module, repeats: int) -> None:
    """ResNet-50 forward on a ready tensor: fp32 vs channels_last vs bf16 autocast, interleaved."""
    x = torch.rand(1, 3, 224, 224)
    last = resnet50().eval()
    last.load_state_dict(model.state_dict())
    last = last.to(memory_format=torch.channels_last)
    x_last = x.contiguous(memory_format=torch.channels_last)

    def bf16(net: torch.nn.Module, inp: torch.Tensor) -> Callable[[], object]:
        def run() -> object:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return net(inp)

        return run

    variants = {
        "fp32, NCHW (eager default)": lambda: model(x),
        "fp32, channels_last": lambda: last(x_last),
        "bf16 autocast, NCHW": bf16(model, x),
        "bf16 autocast, channels_last": bf16(last, x_last),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    with torch.inference_mode():
        for run in variants.values():  # warm-up: oneDNN picks and caches its kernels on the first calls
            run(), run()
        for _ in range(repeats):
            for name, run in variants.items():
                times[name].append(timed(run))
    baseline = median_ms(times["fp32, NCHW (eager default)"])
    print("\nResNet-50 forward on a ready 224 x 224 tensor (median of interleaved runs):")
    for name, samples in times.items():
        print(f"  {name:32s} {median_ms(samples):7.1f} ms  ({median_ms(samples) / baseline:.2f}x fp32 NCHW)")


def photo_model() -> tuple[torch.nn.Module, str]:
    """ResNet-50 exactly as the page gets it (``load_model``: the registry's loader, channels_last), pretrained when
    the weights are in the hub cache, else random weights saved where torchvision looks (same cost, same code path)."""
    if weights_available("resnet50"):
        return load_model("resnet50", device="cpu"), "pretrained (torch hub cache)"
    os.environ["TORCH_HOME"] = home = tempfile.mkdtemp(prefix="photo-bench-")
    atexit.register(shutil.rmtree, home, ignore_errors=True)  # 100 MB of random weights: gone when the run ends
    path = hub_checkpoint_path(ResNet50_Weights.DEFAULT)
    path.parent.mkdir(parents=True)
    torch.save(resnet50().state_dict(), path)
    return load_model("resnet50", device="cpu"), "random init (pretrained weights not in the hub cache; same cost)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--variants", action="store_true", help="also compare fp32 / channels_last / bf16 forwards")
    args = parser.parse_args()
    torch.manual_seed(0)

    model, weights = photo_model()
    bare = resnet50().eval()  # the baseline: the same weights in a plain eager fp32 model, default memory format
    bare.load_state_dict(model.state_dict())
    jpeg = twelve_megapixel_jpeg()
    x = torch.rand(1, 3, 224, 224)
    page_precision = fast_precision("cpu")  # what the page uses by default on this machine

    print(f"{describe_device('cpu')}, {platform.processor() or platform.machine()}, torch {torch.__version__}")
    print(f"ResNet-50 weights: {weights}")
    print(f"Input: a 4032 x 3024 JPEG, {len(jpeg) / 1e6:.1f} MB; decoded with draft {PHOTO_DRAFT_SIZE}")

    def photo_path(precision: str) -> tuple[float, float]:
        start = time.perf_counter()
        image = load_image(jpeg, draft_size=PHOTO_DRAFT_SIZE)
        decoded = time.perf_counter()
        analyze(image, "resnet50", layers=None, k=3, module=model, precision=precision)  # hooks: the 3 defaults
        return decoded - start, time.perf_counter() - decoded

    precisions = list(dict.fromkeys([page_precision, "fp32"]))
    with torch.inference_mode():
        for _ in range(3):  # warm-up: oneDNN creates and caches its kernels on the first calls
            bare(x), *(photo_path(p) for p in precisions)
    bare_times: list[float] = []
    decode_times: dict[str, list[float]] = {p: [] for p in precisions}
    model_times: dict[str, list[float]] = {p: [] for p in precisions}
    for _ in range(args.repeats):  # interleaved, so background load slows all alike
        with torch.inference_mode():
            bare_times.append(timed(lambda: bare(x)))
        for precision in precisions:
            decode, rest = photo_path(precision)
            decode_times[precision].append(decode)
            model_times[precision].append(rest)
    full_decode = [timed(lambda: load_image(jpeg, draft_size=None)) for _ in range(max(3, args.repeats // 5))]

    baseline = median_ms(bare_times)
    rows = [("bare eager fp32 ResNet-50 forward, ready tensor", baseline, "")]
    for precision in precisions:
        total = median_ms([d + m for d, m in zip(decode_times[precision], model_times[precision], strict=True)])
        label = "page default" if precision == page_precision else "exact"
        rows += [
            (f"whole photo path, {precision} ({label})", total, f"= {total / baseline:.2f}x (target <= 1.25x)"),
            (f"  decode (draft to {photo_path_size(jpeg)})", median_ms(decode_times[precision]), ""),
            ("  preprocess + forward with hooks + top-3", median_ms(model_times[precision]), ""),
        ]
    rows.append(("for reference: full-size decode, no draft", median_ms(full_decode), ""))
    print(f"\nMedians of {args.repeats} interleaved runs:")
    for label, ms, note in rows:
        print(f"  {label:50s} {ms:7.1f} ms  {note}")
    if args.variants:
        forward_variants(bare, args.repeats)


def photo_path_size(jpeg: bytes) -> str:
    width, height = load_image(jpeg, draft_size=PHOTO_DRAFT_SIZE).size
    return f"{width} x {height}"


if __name__ == "__main__":
    main()
