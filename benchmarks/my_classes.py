"""My classes: how long the My classes page's training takes on this machine's CPU, and how well it recognises new photos.

Three classes of real photos (CIFAR-10's cat, ship and automobile from the shipped subset, ``--per-class`` pictures
each, upscaled as the page keeps uploads), trained with the page's own settings (``default_config`` for "my-classes":
a new head on a frozen EfficientNet-Lite0), then tested on 200 photos per class the run never saw.

    .venv/bin/python benchmarks/my_classes.py
    .venv/bin/python benchmarks/my_classes.py --per-class 50 --classes cat dog
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import torch
from torchvision.transforms.v2.functional import to_pil_image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere, without installing the package

from vision_core.data import load_cifar10
from vision_core.datasets import CIFAR10, MY_CLASSES, get_dataset
from vision_core.my_classes import build_class_set, prepare_picture
from vision_core.training import build_for_training, default_config, fine_tune


def pictures(split, label: int, count: int) -> list[torch.Tensor]:
    """The first ``count`` photos of class ``label``, framed as the page frames an upload."""
    chosen = (split.labels == label).nonzero().flatten()[:count]
    return [prepare_picture(to_pil_image(split.images[i])) for i in chosen]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--classes", nargs="+", default=["cat", "ship", "automobile"])
    parser.add_argument("--per-class", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    names = get_dataset(CIFAR10).classes
    labels = [names.index(name) for name in args.classes]
    train, test = load_cifar10("train"), load_cifar10("test")
    class_set = build_class_set(
        {n: pictures(train, i, args.per_class) for n, i in zip(args.classes, labels, strict=True)}
    )
    unseen = [(picture, k) for k, i in enumerate(labels) for picture in pictures(test, i, 200)]
    preprocess = get_dataset(MY_CLASSES).preprocess
    print(
        f"My classes: {len(args.classes)} classes ({', '.join(args.classes)}), {args.per_class} pictures each; "
        f"CPU, {torch.get_num_threads()} threads"
    )
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "set.safetensors"
        path.write_bytes(class_set.to_bytes())
        cfg = dataclasses.replace(default_config("effnet_lite0", "cpu", MY_CLASSES), class_set=str(path))
        for repeat in range(args.repeats):
            model = build_for_training(dataclasses.replace(cfg, seed=repeat))
            start = time.perf_counter()
            *_, finished = fine_tune(dataclasses.replace(cfg, seed=repeat), model=model)
            seconds = time.perf_counter() - start
            with torch.inference_mode():
                batch = torch.stack([preprocess(to_pil_image(p)) for p, _ in unseen])
                answers = model.eval()(batch).argmax(dim=1)
            right = (answers == torch.tensor([k for _, k in unseen])).float().mean().item()
            print(
                f"seed {repeat}: trained in {seconds:.1f} s ({cfg.epochs} epochs of the head, {finished.train_seconds:.1f} s"
                f" of it training); held-out accuracy {finished.accuracy:.1%}; {len(unseen)} unseen photos: {right:.1%}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
