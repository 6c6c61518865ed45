"""Image datasets as uint8 tensors: MNIST from its IDX ``.gz`` files, CIFAR-10 from a JPEG subset or the full set.

Keeping a whole split as one uint8 tensor (47 MB for MNIST's training images) lets training index batches on the
device and augment them there, with no per-sample PIL work and no DataLoader. Which dataset means what (classes,
sizes, preprocessing) is ``vision_core.datasets``; this module only reads files.
"""

from __future__ import annotations

import gzip
import io
import struct
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
MNIST_DIR = DATA_DIR / "mnist"
CIFAR10_DIR = DATA_DIR / "cifar10"
CIFAR10_SUBSET = CIFAR10_DIR / "cifar10-jpeg.tar"
CIFAR10_FULL = CIFAR10_DIR / "full"  # torchvision's CIFAR10(root=CIFAR10_FULL, download=True) puts it here
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
_IMAGE_MAGIC, _LABEL_MAGIC = 2051, 2049

Progress = Callable[[int, int | None], None]  # (bytes so far, total bytes or None)


class DatasetMissingError(FileNotFoundError):
    """A dataset's files are not on this machine; the message says how to get them."""


@dataclass(frozen=True)
class Split:
    images: torch.Tensor  # uint8: (N, H, W) for one-channel data (MNIST), (N, C, H, W) otherwise
    labels: torch.Tensor  # (N,) int64

    def __len__(self) -> int:
        return len(self.labels)

    def to(self, device: torch.device | str) -> Split:
        return Split(self.images.to(device), self.labels.to(device))


MNISTSplit = Split  # the name the digit pages and notebooks know


def _check_split(split: str) -> None:
    if split not in ("train", "test"):
        raise ValueError(f"unknown split {split!r}; choose 'train' or 'test'")


# --- MNIST ----------------------------------------------------------------------------------------------------------


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
    for name in (n for pair in _MNIST_FILES.values() for n in pair):
        (tmp / "MNIST" / "raw" / name).replace(root / name)


@lru_cache(maxsize=2)
def load_mnist(split: str = "train", root: Path = MNIST_DIR, download: bool = False) -> Split:
    """The MNIST ``split`` ("train": 60,000 images, "test": 10,000) as uint8 (N, 28, 28) tensors on the CPU.

    >>> test = load_mnist("test"); test.images.shape, test.labels[:3].tolist()
    (torch.Size([10000, 28, 28]), [7, 2, 1])
    """
    _check_split(split)
    image_file, label_file = (root / name for name in _MNIST_FILES[split])
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
    return Split(images, labels.long())


# --- CIFAR-10 -------------------------------------------------------------------------------------------------------


def _read_jpeg_subset(path: Path, split: str) -> Split:
    """``cifar10-jpeg/{split}/{class}/NNNN.jpg`` from the tar, interleaved by file number (0000 of every class, then
    0001, ...), so the first n images of a split hold every class about equally (validation uses the first n)."""
    found = []
    with tarfile.open(path) as tar:
        for member in tar.getmembers():
            parts = member.name.split("/")
            if member.isfile() and len(parts) == 4 and parts[1] == split and parts[2] in CIFAR10_CLASSES:
                found.append((int(Path(parts[3]).stem), CIFAR10_CLASSES.index(parts[2]), member))
        found.sort(key=lambda item: item[:2])
        images = np.stack([np.asarray(Image.open(io.BytesIO(tar.extractfile(m).read())).convert("RGB")) for *_, m in found])  # fmt: skip
    labels = torch.tensor([label for _, label, _ in found], dtype=torch.int64)
    return Split(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), labels)  # (N, 3, 32, 32)


def _read_torchvision_cifar10(root: Path, split: str) -> Split:
    from torchvision.datasets import CIFAR10

    data = CIFAR10(root, train=split == "train", download=False)  # torchvision checks every file's md5 first
    images = torch.from_numpy(data.data).permute(0, 3, 1, 2).contiguous()
    return Split(images, torch.tensor(data.targets, dtype=torch.int64))


def cifar10_full_present(root: Path = CIFAR10_FULL) -> bool:
    return (root / "cifar-10-batches-py" / "test_batch").is_file()


@lru_cache(maxsize=2)
def load_cifar10(split: str = "train") -> Split:
    """CIFAR-10 ``split`` as uint8 (N, 3, 32, 32): the full set when ``make data`` fetched it, else the shipped subset
    (1,000 training and 200 test images per class, JPEG)."""
    _check_split(split)
    if cifar10_full_present():
        return _read_torchvision_cifar10(CIFAR10_FULL, split)
    if not CIFAR10_SUBSET.is_file():
        raise DatasetMissingError(
            f"no CIFAR-10 here: neither the subset {CIFAR10_SUBSET} nor the full set in {CIFAR10_FULL}. "
            "Fetch the full set (once, online) with: make data"
        )
    return _read_jpeg_subset(CIFAR10_SUBSET, split)


def download_cifar10(root: Path = CIFAR10_FULL) -> Path:
    """Fetch the full CIFAR-10 (163 MB) the standard torchvision way into ``root`` (for online users)."""
    from torchvision.datasets import CIFAR10

    root.mkdir(parents=True, exist_ok=True)
    CIFAR10(root, train=True, download=True)
    CIFAR10(root, train=False, download=True)
    load_cifar10.cache_clear()
    return root


# --- Subsets ---------------------------------------------------------------------------------------------------------


def balanced_subset(labels: torch.Tensor, size: int, seed: int = 0, num_classes: int | None = None) -> torch.Tensor:
    """Indices of ``size`` samples, ``size // num_classes`` per class, drawn without replacement (seeded).

    The course compares models trained on 600 ... 60,000 MNIST images with equal counts per class.
    """
    if size >= len(labels):
        return torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    classes = int(labels.max()) + 1 if num_classes is None else num_classes
    if size % classes:
        raise ValueError(f"a balanced subset needs a multiple of {classes} samples, got {size}")
    per_class = size // classes
    generator = torch.Generator().manual_seed(seed)
    picks = []
    for label in range(classes):
        members = torch.nonzero(labels == label).flatten()
        if len(members) < per_class:
            raise ValueError(f"class {label} has only {len(members)} samples, {per_class} requested")
        picks.append(members[torch.randperm(len(members), generator=generator)[:per_class]])
    indices = torch.cat(picks)
    return indices[torch.randperm(len(indices), generator=generator)]
