"""MNIST as uint8 tensors, read straight from the IDX ``.gz`` files in ``data/mnist``.

Keeping the whole set as one uint8 tensor (47 MB for the training split) lets training index
batches on the device and augment them there, with no per-sample PIL work and no DataLoader.
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
MNIST_DIR = DATA_DIR / "mnist"
NUM_CLASSES = 10

_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
_IMAGE_MAGIC, _LABEL_MAGIC = 2051, 2049


class DatasetMissingError(FileNotFoundError):
    """The MNIST files are not in ``data/mnist`` (and were not downloaded)."""


@dataclass(frozen=True)
class MNISTSplit:
    images: torch.Tensor  # (N, 28, 28) uint8, white digit on black
    labels: torch.Tensor  # (N,) int64

    def __len__(self) -> int:
        return len(self.labels)

    def to(self, device: torch.device | str) -> MNISTSplit:
        return MNISTSplit(self.images.to(device), self.labels.to(device))


def read_idx(path: Path) -> torch.Tensor:
    """Read one gzip-compressed IDX file (images or labels) into a uint8 tensor."""
    raw = gzip.decompress(path.read_bytes())
    magic = struct.unpack(">I", raw[:4])[0]
    if magic == _IMAGE_MAGIC:
        count, rows, cols = struct.unpack(">III", raw[4:16])
        shape, offset = (count, rows, cols), 16
    elif magic == _LABEL_MAGIC:
        (count,) = struct.unpack(">I", raw[4:8])
        shape, offset = (count,), 8
    else:
        raise ValueError(f"{path.name}: not an IDX image or label file (magic {magic})")
    expected = offset + int(torch.tensor(shape).prod())
    if len(raw) != expected:
        raise ValueError(f"{path.name}: expected {expected} bytes, found {len(raw)} (truncated file?)")
    # bytearray: torch.frombuffer needs a writable buffer to avoid a warning; clone() detaches it.
    return torch.frombuffer(bytearray(raw[offset:]), dtype=torch.uint8).reshape(shape).clone()


def download_mnist(root: Path = MNIST_DIR) -> None:
    """Fetch the MNIST files with torchvision (for online users; tests never call this)."""
    from torchvision.datasets import MNIST

    tmp = root / "_download"
    MNIST(tmp, train=True, download=True)
    MNIST(tmp, train=False, download=True)
    for name in (n for pair in _FILES.values() for n in pair):
        (tmp / "MNIST" / "raw" / name).replace(root / name)


@lru_cache(maxsize=2)
def load_mnist(split: str = "train", root: Path = MNIST_DIR, download: bool = False) -> MNISTSplit:
    """The MNIST ``split`` ("train": 60,000 images, "test": 10,000) as uint8 tensors on the CPU.

    >>> test = load_mnist("test"); test.images.shape, test.labels[:3].tolist()
    (torch.Size([10000, 28, 28]), [7, 2, 1])
    """
    if split not in _FILES:
        raise ValueError(f"unknown split {split!r}; choose from {sorted(_FILES)}")
    image_file, label_file = (root / name for name in _FILES[split])
    if not (image_file.exists() and label_file.exists()):
        if not download:
            raise DatasetMissingError(
                f"MNIST {split} files not found in {root}. Copy them there (see data/mnist/README.md) "
                "or call load_mnist(..., download=True) when online."
            )
        root.mkdir(parents=True, exist_ok=True)
        download_mnist(root)
    images, labels = read_idx(image_file), read_idx(label_file)
    if len(images) != len(labels):
        raise ValueError(f"MNIST {split}: {len(images)} images but {len(labels)} labels")
    return MNISTSplit(images, labels.long())


def balanced_subset(labels: torch.Tensor, size: int, seed: int = 0) -> torch.Tensor:
    """Indices of ``size`` samples, ``size // 10`` per class, drawn without replacement (seeded).

    The course compares models trained on 600 ... 60,000 images with equal counts per class.
    """
    if size >= len(labels):
        return torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    if size % NUM_CLASSES:
        raise ValueError(f"a balanced subset needs a multiple of {NUM_CLASSES} samples, got {size}")
    per_class = size // NUM_CLASSES
    generator = torch.Generator().manual_seed(seed)
    picks = []
    for digit in range(NUM_CLASSES):
        members = torch.nonzero(labels == digit).flatten()
        if len(members) < per_class:
            raise ValueError(f"class {digit} has only {len(members)} samples, {per_class} requested")
        picks.append(members[torch.randperm(len(members), generator=generator)[:per_class]])
    indices = torch.cat(picks)
    return indices[torch.randperm(len(indices), generator=generator)]
