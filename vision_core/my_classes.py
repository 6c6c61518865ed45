"""My classes: a student's own 2 to 10 classes of pictures (as in Teachable Machine), checked and kept as one file.

Pictures come from uploads (many files at once), a zip with one folder per class, or the camera. Each becomes a
128 x 128 RGB uint8 tensor (the shorter side resized, the centre cut out: ``datasets.photo_to_input`` frames photos the
same way at prediction time). A ``ClassSet`` is what a run trains on; it travels to the worker process as one
safetensors file (the class names in its metadata), never as a pickle.

Limits (a class shares one server): 2 to 10 classes, 4 to 100 pictures per class, 500 in all; an upload or zip of
more files than that is refused before anything is decoded.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
from PIL import Image
from safetensors import SafetensorError
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_save
from torchvision.transforms import v2

from vision_core.data import Split
from vision_core.images import ImageError, load_image
from vision_core.safezip import ZipError, ZipLimits, open_zip, read_member

IMAGE_SIZE = 128
MIN_CLASSES, MAX_CLASSES = 2, 10
MIN_PER_CLASS, MAX_PER_CLASS = 4, 100  # at least 3 to learn from and 1 held out
MAX_IMAGES = 500
MAX_FILE_BYTES = 25 * 1024 * 1024
MAX_CLASS_NAME = 40
HELD_OUT = 0.2  # of each class, at least one picture: what the run's accuracy is measured on
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")
ZIP_LIMITS = ZipLimits(
    what="a zip of class folders",
    max_bytes=MAX_FILE_BYTES,
    max_members=MAX_IMAGES + 2 * MAX_CLASSES + 16,  # the pictures, their folders, and a little stray (.DS_Store)
    max_index_bytes=256 * 1024,
    max_member_bytes=lambda name: 12 * 1024 * 1024,
)
_PREPARE = v2.Compose([v2.ToImage(), v2.Resize(IMAGE_SIZE, antialias=True), v2.CenterCrop(IMAGE_SIZE)])


class ClassSetError(ValueError):
    """Pictures or class names that cannot make a class set; the message says what to change."""


def prepare_picture(image: Image.Image) -> torch.Tensor:
    """A decoded picture -> (3, 128, 128) uint8: the shorter side resized to 128, the centre cut out."""
    return _PREPARE(image.convert("RGB")).as_subclass(torch.Tensor).contiguous()


def read_pictures(files: Sequence[tuple[str, bytes]]) -> tuple[list[torch.Tensor], list[str]]:
    """Decode uploads (name, bytes) into pictures; each file that is not a usable image is named in the problems."""
    if len(files) > MAX_PER_CLASS:
        raise ClassSetError(f"{len(files):,} files at once: a class takes at most {MAX_PER_CLASS} pictures")
    pictures, problems = [], []
    for name, data in files:
        try:  # decoded small: every picture ends up 128 px, and a 50 MP photo should not cost 200 MB on the way
            pictures.append(prepare_picture(load_image(data, draft_size=(256, 256), max_side=512)))
        except ImageError as error:
            problems.append(f"{name}: {error}")
    return pictures, problems


def read_zip(data: bytes) -> tuple[dict[str, list[torch.Tensor]], list[str]]:
    """A zip with one folder per class (optionally inside one top folder) -> {class name: pictures}, problems."""
    try:
        archive, members = open_zip(data, ZIP_LIMITS)
    except ZipError as error:
        raise ClassSetError(str(error)) from None
    pictures = [name for name in members if Path(name).suffix.lower() in PHOTO_SUFFIXES and "/" in name]
    folders = {name.rsplit("/", 1)[0] for name in pictures}
    tops = {folder.split("/")[0] for folder in folders}
    strip = len(tops) == 1 and all("/" in folder for folder in folders)  # "animals/cat/1.jpg": class "cat"
    classes: dict[str, list[torch.Tensor]] = {}
    problems = [f"{name}: not in a class folder" for name in members if "/" not in name and not name.startswith(".")]
    with archive:
        for name in sorted(pictures):
            folder = name.rsplit("/", 1)[0]
            label = folder.split("/", 1)[1] if strip else folder
            try:
                raw = read_member(archive, members[name], ZIP_LIMITS.max_member_bytes(name))
                picture = prepare_picture(load_image(raw, draft_size=(256, 256), max_side=512))
            except (ZipError, ImageError) as error:
                problems.append(f"{name}: {error}")
                continue
            classes.setdefault(label, []).append(picture)
    if not classes:
        raise ClassSetError(
            "the zip holds no pictures in folders: put each class's pictures in a folder named after it"
        )
    return classes, problems


def check_class_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > MAX_CLASS_NAME or not name.isprintable() or re.search(r"[\\/]", name):
        raise ClassSetError(f"a class name is 1 to {MAX_CLASS_NAME} printable characters without slashes (got {name[:60]!r})")  # fmt: skip
    return name


@dataclass(frozen=True)
class ClassSet:
    classes: tuple[str, ...]
    images: torch.Tensor  # (N, 3, 128, 128) uint8
    labels: torch.Tensor  # (N,) int64

    def counts(self) -> list[int]:
        return torch.bincount(self.labels, minlength=len(self.classes)).tolist()

    def split(self, seed: int = 0) -> tuple[Split, Split]:
        """(training, held-out) pictures: a seeded ``HELD_OUT`` share of each class, at least one, is held out."""
        generator = torch.Generator().manual_seed(seed)
        train, held = [], []
        for label in range(len(self.classes)):
            members = torch.nonzero(self.labels == label).flatten()
            members = members[torch.randperm(len(members), generator=generator)]
            cut = max(1, round(HELD_OUT * len(members)))
            held.append(members[:cut])
            train.append(members[cut:])
        train_index, held_index = torch.cat(train), torch.cat(held)
        return (Split(self.images[train_index], self.labels[train_index]), Split(self.images[held_index], self.labels[held_index]))  # fmt: skip

    def to_bytes(self) -> bytes:
        metadata = {"classes": json.dumps(list(self.classes))}
        return safetensors_save({"images": self.images.contiguous(), "labels": self.labels.contiguous()}, metadata)


def build_class_set(named: Mapping[str, Sequence[torch.Tensor]]) -> ClassSet:
    """Check the classes and their pictures against the limits and make them one ``ClassSet``."""
    names = [check_class_name(name) for name in named]
    if len({name.lower() for name in names}) != len(names):
        raise ClassSetError("two classes have the same name: give each class its own")
    if not MIN_CLASSES <= len(names) <= MAX_CLASSES:
        raise ClassSetError(f"{len(names)} class(es): train on {MIN_CLASSES} to {MAX_CLASSES} classes")
    for name, pictures in zip(names, named.values(), strict=True):
        if len(pictures) < MIN_PER_CLASS:
            raise ClassSetError(f"class {name!r} has {len(pictures)} picture(s): give each class at least {MIN_PER_CLASS}")  # fmt: skip
        if len(pictures) > MAX_PER_CLASS:
            raise ClassSetError(f"class {name!r} has {len(pictures)} pictures: at most {MAX_PER_CLASS} per class")
    total = sum(len(pictures) for pictures in named.values())
    if total > MAX_IMAGES:
        raise ClassSetError(f"{total} pictures in all: at most {MAX_IMAGES}")
    images = torch.stack([picture for pictures in named.values() for picture in pictures])
    labels = torch.tensor([i for i, pictures in enumerate(named.values()) for _ in pictures], dtype=torch.int64)
    if images.shape[1:] != (3, IMAGE_SIZE, IMAGE_SIZE) or images.dtype != torch.uint8:
        raise ClassSetError(f"pictures must be (3, {IMAGE_SIZE}, {IMAGE_SIZE}) uint8 (use prepare_picture)")
    return ClassSet(tuple(names), images, labels)


def class_set_from_bytes(data: bytes) -> ClassSet:
    """A class set file's contents, checked like any upload (it may come back from another machine)."""
    try:
        tensors = safetensors_load(data)
        header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")]).get("__metadata__", {})
        classes = tuple(json.loads(header["classes"]))
    except (SafetensorError, ValueError, KeyError, TypeError, OverflowError) as error:
        raise ClassSetError(f"not a class set file ({clip_error(error)})") from None
    images, labels = tensors.get("images"), tensors.get("labels")
    if images is None or labels is None or len(images) != len(labels) or not all(isinstance(c, str) for c in classes):
        raise ClassSetError("not a class set file (images, labels and class names expected)")
    return build_class_set({name: images[labels == i] for i, name in enumerate(classes)})


def clip_error(error: Exception) -> str:
    text = str(error)
    return text if len(text) < 160 else text[:157] + "..."


@lru_cache(maxsize=4)
def _load(path: str, _mtime_ns: int) -> ClassSet:
    return class_set_from_bytes(Path(path).read_bytes())


def load_class_set(path: str | Path) -> ClassSet:
    """The class set saved at ``path`` (cached while the file is unchanged)."""
    try:
        return _load(str(path), Path(path).stat().st_mtime_ns)
    except FileNotFoundError:
        raise ClassSetError(f"the class set {path} is gone: add the pictures again on the My classes page") from None
