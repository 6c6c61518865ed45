"""CIFAR-10 on the shipped subset (10,000 training, 2,000 test images), on this machine's CPU: does pretraining pay?

Trains, with the app's own ``fine_tune`` (the runs the Fine-tune page starts), and prints test accuracy and time for:
the course's MishCNN from scratch (5 epochs), EfficientNet-Lite0 with a frozen ImageNet backbone (only a new head
learns), and EfficientNet-Lite0 fine-tuned in full; each with and without augmentation (the course's
RandomHorizontalFlip + RandomCrop(32, padding=4); EfficientNet sees the images resized to ``--image-size``).
Target: the pretrained backbone beats the scratch CNN by at least 15 points.

    .venv/bin/python benchmarks/cifar_transfer.py                   # the table in the README (about 40 minutes)
    .venv/bin/python benchmarks/cifar_transfer.py --train-size 2000 # a quick look
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere, without installing the package

from vision_core.training import RunFinished, TrainConfig, default_config, fine_tune


def rows(args: argparse.Namespace) -> list[tuple[str, TrainConfig]]:
    common = dict(train_size=args.train_size, val_size=500, test_size=None, device="cpu", seed=0, log_every=50)
    scratch = dataclasses.replace(default_config("mish_cnn", "cpu", "cifar10"), epochs=5, **common)
    lite0 = dataclasses.replace(default_config("effnet_lite0", "cpu", "cifar10"), image_size=args.image_size, **common)
    frozen = dataclasses.replace(lite0, mode="features", epochs=args.frozen_epochs, batch_size=64, lr=3e-3)
    full = dataclasses.replace(lite0, mode="full", epochs=args.full_epochs, batch_size=64, lr=1e-3)
    return [
        (f"MishCNN from scratch, {scratch.epochs} epochs", scratch),
        (f"EfficientNet-Lite0, frozen backbone, {frozen.epochs} epochs", frozen),
        (f"EfficientNet-Lite0, full fine-tune, {full.epochs} epochs", full),
    ]


def train(cfg: TrainConfig) -> tuple[RunFinished, float]:
    start = time.perf_counter()
    for event in fine_tune(cfg):
        last = event
    return last, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train-size", type=int, default=10_000)
    parser.add_argument("--image-size", type=int, default=96, help="EfficientNet's input side (ImageNet saw 224)")
    parser.add_argument("--frozen-epochs", type=int, default=10)
    parser.add_argument("--full-epochs", type=int, default=2)
    args = parser.parse_args()
    print(
        f"CIFAR-10 subset: {args.train_size:,} training images, 2,000 test images; CPU, {torch.get_num_threads()} threads"
    )
    print(f"{'run':52s} {'augmentation':>13s} {'test accuracy':>14s} {'time':>9s}")
    results = {}
    for title, cfg in rows(args):
        for augment in (False, True):
            finished, seconds = train(dataclasses.replace(cfg, augment=augment))
            results[(title, augment)] = finished.accuracy
            print(
                f"{title:52s} {'yes' if augment else 'no':>13s} {finished.accuracy:>13.1%} {seconds:>8.0f}s", flush=True
            )
    scratch = max(accuracy for (title, _), accuracy in results.items() if title.startswith("MishCNN"))
    pretrained = max(accuracy for (title, _), accuracy in results.items() if title.startswith("EfficientNet"))
    gain = (pretrained - scratch) * 100
    print(f"best pretrained - best scratch: {gain:+.1f} points (target >= +15): {'met' if gain >= 15 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
