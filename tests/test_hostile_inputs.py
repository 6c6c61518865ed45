"""The bad-input corpus: 100+ hostile or odd files, generated here (nothing is downloaded or committed), fed to every
entry point that takes user data.

Entry points, each the exact core path its page runs:

- ``photo``: Photo explorer upload: ``load_image(draft_size=PHOTO_DRAFT_SIZE)`` then ``classify`` with the offline
  EfficientNet-Lite0;
- ``digit``: Draw page upload: ``load_image(max_side=DIGIT_MAX_SIDE, matte="contrast")`` then ``predict_digits`` with every digit model;
- ``augment``: Augmentation lab source: ``load_image(max_side=PREVIEW_MAX_SIDE)`` then ``preview`` with the photo preset;
- ``json``: Augmentation lab "Import JSON": ``spec_from_json``;
- ``pipeline``: what the lab does with an imported pipeline next: ``preview`` of a sample photo at the lab's size,
  nine samples (pasted pipelines that would take minutes and gigabytes are refused, saying what to lower);
- ``checkpoint``: Compare page "Import a run bundle": ``read_bundle`` (``import_run`` validates with it first).

Each file gives a correct result (checked against what the file holds: a cat stays a cat, a 7 stays a 7, an
EXIF-rotated photo comes out upright) or the module's clear ``ValueError`` subclass; any other exception fails.
Each call must finish within ``TIME_BOUND_S`` and must not grow the process's resident memory by more than
``MEMORY_BOUND_MB`` (sampled from /proc every millisecond; tracemalloc's peak covers Python allocations), and a
separate process checks the worst files with ``ru_maxrss``. The last test prints every figure.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import resource
import struct
import subprocess
import sys
import threading
import time
import tracemalloc
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, TiffImagePlugin
from safetensors.torch import save as safetensors_bytes
from synthetic_digits import DrawStyle, draw_digit

from vision_core import load_model, predict_digits
from vision_core.augment import PRESETS, PREVIEW_MAX_SIDE, SHIPPED_DIGIT_PRESET, AugmentError, preview, spec_from_json
from vision_core.augment import spec_to_json as augment_json
from vision_core.checkpoints import CheckpointError, ModelCard, count_parameters
from vision_core.images import DIGIT_MAX_SIDE, MAX_BYTES, PHOTO_DRAFT_SIZE, ImageError, load_image
from vision_core.models.lenet import LeNetConfig
from vision_core.photo import classify
from vision_core.registry import build_model, list_models
from vision_core.runs import MAX_BUNDLE_BYTES, read_bundle
from vision_core.transforms import EmptyDrawingError

# Pillow warns (and goes on) when a file's EXIF block is damaged: expected for this corpus.
pytestmark = pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data" / "samples"
CAT_CLASSES = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}
# Bounds. Time: "no hang over a few seconds", with room for a loaded 2-core CI machine (the slowest file takes
# ~1.5 s there with the load average at 3-6; see the summary). Memory: a 50 MP image (the upload limit) is 200 MB decoded at Pillow's 4 bytes per pixel; with
# alpha, compositing on white needs a second full-size buffer. 640 MB is that, plus headroom for the classifier.
TIME_BOUND_S = 8.0
MEMORY_BOUND_MB = 640
RESULTS: dict[tuple[str, str], tuple[str, float, float, float]] = {}  # (entry, file) -> (outcome, s, rss MB, py MB)


# --- building blocks -------------------------------------------------------------------------------------------------


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_from_rows(width: int, height: int, color_type: int, bit_depth: int, pixel: bytes, extra: bytes = b"") -> bytes:
    """A ``width`` x ``height`` PNG of one colour, streamed through zlib row by row (never held whole in memory)."""
    row = b"\x00" + pixel * width
    same = b"\x02" + b"\x00" * (len(row) - 1)  # filter "Up": each row equals the one above
    packer = zlib.compressobj(9)
    chunks = [packer.compress(row)] + [packer.compress(same) for _ in range(height - 1)] + [packer.flush()]
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + extra
        + png_chunk(b"IDAT", b"".join(chunks))
        + png_chunk(b"IEND", b"")
    )


@functools.cache
def cat() -> Image.Image:
    image = Image.open(SAMPLES / "chelsea.png").convert("RGB")
    image.thumbnail((320, 320))
    return image


@functools.cache
def seven() -> Image.Image:
    """A photographed 7: dark strokes on light paper, 280 x 280."""
    strokes = draw_digit(7, DrawStyle(height=170, center=(140, 140), stroke_width=18))[..., 0]
    return Image.fromarray((235 - strokes.astype(np.float32) * 0.85).astype(np.uint8), "L").convert("RGB")


def with_exif_orientation(image: Image.Image, orientation: int) -> bytes:
    """``image`` stored turned so that the EXIF ``orientation`` turns it back upright."""
    undo = {6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270, 3: Image.Transpose.ROTATE_180}[orientation]
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(image.transpose(undo), "JPEG", quality=92, exif=exif.tobytes())


def gif_with_frames(first: Image.Image, frames: int) -> bytes:
    """A GIF whose first frame is ``first`` and which has ``frames`` frames in all (the rest: 1 x 1 px, 10 ms)."""
    head = encode(first.convert("P", palette=Image.Palette.ADAPTIVE), "GIF")[:-1]  # without the trailer
    tiny = (
        b"\x21\xf9\x04\x00\x01\x00\x00\x00" + b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00"
    )
    return head + tiny * (frames - 1) + b"\x3b"


def jpeg_declaring(width: int, height: int) -> bytes:
    data = bytearray(encode(Image.new("RGB", (16, 16), "gray"), "JPEG"))
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def gif_declaring(width: int, height: int) -> bytes:
    data = bytearray(encode(Image.new("P", (16, 16), 0), "GIF"))
    data[6:10] = struct.pack("<HH", width, height)  # the logical screen ...
    at = 13 + (3 * 2 ** ((data[10] & 7) + 1) if data[10] & 0x80 else 0)  # past the global colour table
    while data[at] == 0x21:  # extensions: label, then sub-blocks until a zero length
        at += 2
        while data[at]:
            at += data[at] + 1
        at += 1
    assert data[at] == 0x2C
    data[at + 5 : at + 9] = struct.pack("<HH", width, height)  # ... and the image descriptor
    return bytes(data)


def png_declaring(width: int, height: int) -> bytes:
    """A valid-looking PNG of a few hundred bytes whose header declares ``width`` x ``height`` RGB pixels."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 1024))
        + png_chunk(b"IEND", b"")
    )


def bmp_declaring(width: int, height: int) -> bytes:
    data = bytearray(encode(Image.new("RGB", (4, 4), "gray"), "BMP"))
    data[18:26] = struct.pack("<ii", width, height)
    return bytes(data)


def webp_declaring_max() -> bytes:
    """A lossless WebP whose header claims 16384 x 16384 (268 MP): the 14-bit size fields all ones."""
    data = bytearray(encode(Image.new("RGB", (4, 4), "gray"), "WEBP", lossless=True))
    at = data.find(b"VP8L") + 9  # chunk id, size (4), signature byte 0x2f
    bits = int.from_bytes(data[at : at + 4], "little") | (0x3FFF | 0x3FFF << 14)
    data[at : at + 4] = bits.to_bytes(4, "little")
    return bytes(data)


def tiff_declaring(width: int, height: int) -> bytes:
    info = TiffImagePlugin.ImageFileDirectory_v2()
    data = bytearray(encode(Image.new("L", (8, 8), 128), "TIFF", tiffinfo=info))
    for tag, value in ((256, width), (257, height)):  # ImageWidth, ImageLength: patch the IFD entries in place
        at = data.find(struct.pack("<HH", tag, 3)) if data[:2] == b"II" else -1
        if at < 0:
            at = data.find(struct.pack("<HH", tag, 4))
            data[at + 8 : at + 12] = struct.pack("<I", value)
        else:
            data[at + 2 : at + 4] = struct.pack("<H", 4)  # SHORT -> LONG, so the value fits
            data[at + 8 : at + 12] = struct.pack("<I", value)
    return bytes(data)


def flip_bytes(data: bytes, start: float, count: int = 60) -> bytes:
    out = bytearray(data)
    at = int(len(out) * start)
    for i in range(at, min(at + count * 5, len(out)), 5):
        out[i] ^= 0x5A
    return bytes(out)


def apng(first: Image.Image, frames: int) -> bytes:
    rest = [Image.new("RGB", first.size, (i % 256, 0, 0)) for i in range(frames - 1)]
    return encode(first, "PNG", save_all=True, append_images=rest, duration=10)


def animated_webp(first: Image.Image, frames: int) -> bytes:
    small = first.resize((64, 64))
    rest = [Image.new("RGB", (64, 64), (i * 7 % 256, i * 13 % 256, i * 29 % 256)) for i in range(frames - 1)]
    return encode(small, "WEBP", save_all=True, append_images=rest, duration=10, quality=50)


def text_png(image: Image.Image, chunks: list[tuple[bytes, bytes]]) -> bytes:
    data = encode(image, "PNG")
    at = data.find(b"IDAT") - 4
    return data[:at] + b"".join(png_chunk(kind, body) for kind, body in chunks) + data[at:]


# --- run bundles and pipeline JSON ----------------------------------------------------------------------------------


def tiny_lenet() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("lenet", LeNetConfig(channels=(4, 8), hidden=(32, 16))).eval()


def card_dict(model: torch.nn.Module, name: str = "tiny-import", **changes) -> dict:
    card = ModelCard(
        name=name,
        title="Tiny LeNet",
        architecture="lenet",
        config={"channels": [4, 8], "hidden": [32, 16], "num_classes": 10},
        num_params=count_parameters(model),
        metrics={"accuracy": 0.5, "f1_macro": 0.5, "loss": 1.2, "n": 100},
    )
    values = json.loads(card.to_json())
    values.update(changes)
    return values


def bundle(files: dict[str, bytes | str], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def run_files(name: str = "tiny-import", model: torch.nn.Module | None = None, **card_changes) -> dict[str, bytes]:
    """The files of a run bundle as ``runs.bundle_files`` lays them out (NAME/NAME.safetensors, NAME/NAME.json, ...)."""
    model = model if model is not None else tiny_lenet()
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    history = [{"epoch": 1, "split": "val", "loss": 1.0, "accuracy": 0.6, "elapsed": 1.5}]
    return {
        f"{name}/{name}.safetensors": safetensors_bytes(state, metadata={"architecture": "lenet", "name": name}),
        f"{name}/{name}.json": json.dumps(card_dict(model, name, **card_changes)).encode(),
        f"{name}/config.json": b'{"model": "lenet"}',
        f"{name}/augmentation.json": augment_json(SHIPPED_DIGIT_PRESET).encode(),
        f"{name}/metrics.json": json.dumps({"accuracy": 0.5, "history": history}).encode(),
    }


def replaced(files: dict[str, bytes], **changes: bytes | None) -> dict[str, bytes]:
    """``files`` with members changed by their last path part (``None`` removes one); keyword names use _ for ."""
    out = dict(files)
    for short, content in changes.items():
        key = next(k for k in files if k.rsplit("/", 1)[-1] == short.replace("__", "."))
        if content is None:
            del out[key]
        else:
            out[key] = content
    return out


def patch_zip(data: bytes, old: bytes, new: bytes) -> bytes:
    assert data.count(old) >= 1
    return data.replace(old, new)


def zip_declaring_small(real_size: int) -> bytes:
    """A deflated member of ``real_size`` zero bytes whose headers claim 1,000 bytes (a lying zip bomb)."""
    data = bundle(run_files() | {"tiny-import/metrics.json": b"\x00" * real_size})
    info = next(i for i in zipfile.ZipFile(io.BytesIO(data)).infolist() if i.filename.endswith("metrics.json"))
    return data.replace(struct.pack("<I", info.file_size), struct.pack("<I", 1000))


def many_members(count: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for index in range(count):
            archive.writestr(f"f{index}", b"")
    return buffer.getvalue()


def symlink_bundle() -> bytes:
    files = run_files()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
        link = zipfile.ZipInfo("tiny-import/passwd")
        link.external_attr = 0o120777 << 16
        archive.writestr(link, "/etc/passwd")
    return buffer.getvalue()


def encrypted_flag_bundle() -> bytes:
    data = bytearray(bundle(run_files()))
    at = data.find(b"PK\x01\x02")  # the first central-directory entry: general-purpose flags at offset 8
    data[at + 8] |= 0x01
    return bytes(data)


def pickle_bundle() -> bytes:
    buffer = io.BytesIO()
    torch.save({"weight": torch.zeros(2)}, buffer)  # a torch.save zip: archive/data.pkl inside
    return buffer.getvalue()


# --- the corpus ----------------------------------------------------------------------------------------------------

OK, REFUSED, EITHER = "loads", "refused", "either"


@dataclass(frozen=True)
class Item:
    name: str
    make: Callable[[], bytes]
    image: str = REFUSED  # what load_image must do: OK, REFUSED or EITHER
    message: str = ""  # refused: a phrase the message must contain
    content: str | None = None  # "cat" or "seven": what the photo or digit entry point must recognise
    check: Callable[[Image.Image], None] | None = None  # load_image's result must pass this
    json: bool = False  # a valid pipeline for the JSON import
    bundle: bool = False  # a valid run bundle for the checkpoint import
    bundle_message: str = ""  # refused by the checkpoint import: a phrase its message must contain
    json_message: str = ""
    pipeline_message: str = ""  # a valid pipeline whose preview is refused: a phrase the message must contain
    tags: tuple[str, ...] = field(default_factory=tuple)


def size_is(size: tuple[int, int]) -> Callable[[Image.Image], None]:
    def check(image: Image.Image) -> None:
        assert image.size == size, image.size

    return check


def near_cat(image: Image.Image) -> None:
    """Upright and in colour: the decoded pixels match the original cat to within JPEG noise."""
    assert image.size == cat().size
    difference = np.abs(np.asarray(image, np.int16) - np.asarray(cat(), np.int16)).mean()
    assert difference < 12, difference


def white_where_transparent(image: Image.Image) -> None:
    pixels = np.asarray(image)
    assert (pixels[:10, :10] == 255).all() and image.size == cat().size  # the transparent border is white


def gray_ramp(image: Image.Image) -> None:
    row = np.asarray(image)[0, :, 0].astype(int)
    assert row[0] == 0 and row[-1] == 255 and abs(int(row[len(row) // 2]) - 128) <= 2  # scaled, not clipped


def no_metadata(image: Image.Image) -> None:
    assert image.info == {} and image.size == cat().size


def transparent_border_cat() -> Image.Image:
    rgba = cat().convert("RGBA")
    alpha = Image.new("L", rgba.size, 0)
    alpha.paste(255, (20, 20, rgba.width - 20, rgba.height - 20))
    rgba.putalpha(alpha)
    return rgba


def ramp16() -> Image.Image:
    return Image.fromarray(np.tile(np.linspace(0, 65535, 256).round().astype(np.uint16), (32, 1)))


def cat_palette_transparent() -> bytes:
    palette = transparent_border_cat().convert("P", palette=Image.Palette.ADAPTIVE, colors=255)
    mask = np.asarray(transparent_border_cat())[..., 3] == 0
    pixels = np.asarray(palette).copy()
    pixels[mask] = 255
    image = Image.fromarray(pixels, "P")
    image.putpalette(palette.getpalette()[: 255 * 3] + [255, 0, 255])
    return encode(image, "PNG", transparency=255)


SVG = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="100" height="100"><script>alert(1)</script><rect width="100" height="100"/></svg>'
EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 100 100\n0 0 moveto 100 100 lineto stroke\nshowpage\n%%EOF\n"
PDF = b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
HTML = b"<!DOCTYPE html><html><body><img src=x onerror=alert(document.cookie)></body></html>"
NOT_IMAGE = "not an image"
DAMAGED = "damaged or incomplete"
TOO_BIG = "the limit is 50 MP"


def image_items() -> list[Item]:
    c = cat()
    return [
        # awkward but valid: the right picture comes out
        Item("cat.jpg", lambda: encode(cat(), "JPEG", quality=92), OK, content="cat", check=near_cat),
        Item(
            "cat-cmyk.jpg", lambda: encode(cat().convert("CMYK"), "JPEG", quality=92), OK, content="cat", check=near_cat
        ),
        Item("cat-cmyk.tiff", lambda: encode(cat().convert("CMYK"), "TIFF"), OK, content="cat", check=near_cat),
        Item("cat-exif-rotated-90.jpg", lambda: with_exif_orientation(cat(), 6), OK, content="cat", check=near_cat),
        Item("cat-exif-rotated-180.jpg", lambda: with_exif_orientation(cat(), 3), OK, content="cat", check=near_cat),
        Item("cat.webp", lambda: encode(cat(), "WEBP", quality=90), OK, content="cat", check=near_cat),
        Item(
            "cat-deflate.tiff",
            lambda: encode(cat(), "TIFF", compression="tiff_deflate"),
            OK,
            content="cat",
            check=near_cat,
        ),
        Item("cat.bmp", lambda: encode(cat(), "BMP"), OK, content="cat", check=near_cat),
        Item(
            "cat-alpha-border.png",
            lambda: encode(transparent_border_cat(), "PNG"),
            OK,
            content="cat",
            check=white_where_transparent,
        ),
        Item("cat-palette-transparent.png", cat_palette_transparent, OK, check=white_where_transparent),
        Item(
            "cat-gray-16bit.png",
            lambda: encode(Image.fromarray(np.asarray(cat().convert("L"), np.uint16) * 257), "PNG"),
            OK,
            check=size_is(c.size),
        ),
        Item("ramp-16bit.png", lambda: encode(ramp16(), "PNG"), OK, check=gray_ramp),
        Item("ramp-16bit.tiff", lambda: encode(ramp16(), "TIFF"), OK, check=gray_ramp),
        Item(
            "ramp-float32.tiff",
            lambda: encode(Image.fromarray(np.tile(np.linspace(0, 1, 256, dtype=np.float32), (32, 1)), "F"), "TIFF"),
            OK,
            check=gray_ramp,
        ),
        Item(
            "cat-html-in-text-chunks.png",
            lambda: text_png(
                cat(),
                [
                    (b"tEXt", b"Comment\x00<script>alert(1)</script>"),
                    (b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00<x:xmpmeta><script>alert(2)</script></x:xmpmeta>"),
                ],
            ),
            OK,
            content="cat",
            check=no_metadata,
        ),
        Item(
            "cat-jpeg-then-zip.jpg",
            lambda: encode(cat(), "JPEG", quality=92) + bundle(run_files()),
            OK,
            content="cat",
            check=near_cat,
            bundle_message="not a zip",
        ),
        Item(
            "cat-gif-then-js.gif",
            lambda: encode(cat(), "GIF") + b"/*<script>*/alert(1)//",
            OK,
            content="cat",
            check=size_is(c.size),
        ),
        Item(
            "cat-bigexif-64kb.jpg",
            lambda: encode(cat(), "JPEG", exif=b"Exif\x00\x00" + b"\x00" * 65_000),
            OK,
            content="cat",
            check=near_cat,
        ),
        Item(
            "cat-exif-orientation-99.jpg",
            lambda: encode(cat(), "JPEG", exif=_exif_bytes(99)),
            OK,
            content="cat",
            check=near_cat,
        ),
        Item(
            "cat-exif-garbage.jpg",
            lambda: encode(cat(), "JPEG", exif=b"Exif\x00\x00MM\x00*\x00\x00\xff\xff" + b"\xff" * 40),
            OK,
            content="cat",
            check=near_cat,
        ),
        Item("seven-on-paper.png", lambda: encode(seven(), "PNG"), OK, content="seven", check=size_is((280, 280))),
        Item(
            "seven-exif-rotated-270.jpg",
            lambda: with_exif_orientation(seven(), 8),
            OK,
            content="seven",
            check=size_is((280, 280)),
        ),
        Item(
            "seven-16bit.tiff",
            lambda: encode(Image.fromarray(np.asarray(seven().convert("L"), np.uint16) * 257), "TIFF"),
            OK,
            content="seven",
        ),
        Item("seven-palette.gif", lambda: encode(seven().convert("P"), "GIF"), OK, content="seven"),
        Item("seven-black-on-transparent.png", lambda: encode(_ink_on_transparent(), "PNG"), OK, content="seven"),
        Item(
            "seven-then-2999-frames.gif",
            lambda: gif_with_frames(seven(), 3000),
            OK,
            content="seven",
            check=size_is((280, 280)),
            tags=("frames",),
        ),
        Item(
            "seven-then-299-frames.webp",
            lambda: animated_webp(seven(), 300),
            OK,
            content="seven",
            check=size_is((64, 64)),
        ),
        Item("seven-then-199-frames.apng", lambda: apng(seven(), 200), OK, content="seven", check=size_is((280, 280))),
        Item("one-pixel.png", lambda: encode(Image.new("RGB", (1, 1), (10, 20, 30)), "PNG"), OK, check=size_is((1, 1))),
        Item(
            "panorama-20-to-1.jpg",
            lambda: encode(Image.new("RGB", (4000, 200), "skyblue"), "JPEG"),
            OK,
            check=size_is((4000, 200)),
        ),
        Item("blank-page.png", lambda: encode(Image.new("L", (600, 400), 240), "PNG"), OK, check=size_is((600, 400))),
        # refused, with a clear message
        Item("strip-30-to-1.png", lambda: encode(Image.new("RGB", (3000, 100)), "PNG"), message="thinner than"),
        Item("strip-10000x1.bmp", lambda: encode(Image.new("RGB", (10000, 1)), "BMP"), message="thinner than"),
        Item("truncated.jpg", lambda: encode(cat(), "JPEG")[:4000], message=DAMAGED),
        Item("truncated.png", lambda: encode(cat(), "PNG")[:30000], message=DAMAGED),
        Item("truncated.webp", lambda: encode(cat(), "WEBP")[:3000], message=DAMAGED),
        Item("truncated.gif", lambda: encode(cat(), "GIF")[:20000], message=DAMAGED),
        Item("truncated.bmp", lambda: encode(cat(), "BMP")[:50000], message=DAMAGED),
        Item("truncated.tiff", lambda: encode(cat(), "TIFF")[:50000]),  # Pillow writes the directory last: unreadable
        Item("corrupt-scan.jpg", lambda: flip_bytes(encode(cat(), "JPEG"), 0.4), EITHER, check=size_is(c.size)),
        Item("corrupt-idat.png", lambda: flip_bytes(encode(cat(), "PNG"), 0.5), message=DAMAGED),
        Item(
            "corrupt-header.tiff",
            lambda: encode(cat(), "TIFF")[:4] + b"\xff\xff\xff\x7f" + encode(cat(), "TIFF")[8:],
            EITHER,
        ),
        Item("png-signature-then-zeros.png", lambda: b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, message=NOT_IMAGE),
        Item("bomb-declared-100000x100000.png", lambda: png_declaring(100_000, 100_000), message="too large"),
        Item("bomb-declared-7100x7100.png", lambda: png_declaring(7100, 7100), message=TOO_BIG),
        Item("bomb-declared-65500x65500.jpg", lambda: jpeg_declaring(65500, 65500), message="too large"),
        Item("bomb-declared-9000x9000.jpg", lambda: jpeg_declaring(9000, 9000), message=TOO_BIG),
        Item("bomb-declared-65535x65535.gif", lambda: gif_declaring(65535, 65535), message="too large"),
        Item("bomb-declared-30000x30000.bmp", lambda: bmp_declaring(30000, 30000), message="too large"),
        Item("bomb-declared-16384x16384.webp", webp_declaring_max, message="too large"),
        Item("bomb-declared-60000x60000.tiff", lambda: tiff_declaring(60000, 60000), message="too large"),
        Item(
            "bomb-ratio-7000x7000.png",
            lambda: png_from_rows(7000, 7000, 2, 8, b"\x5a\xc8\x1e"),
            OK,
            check=size_is((7000, 7000)),
            tags=("heavy",),
        ),
        Item(
            "bomb-ratio-7000x7000-rgba.png",
            lambda: png_from_rows(7000, 7000, 6, 8, b"\x5a\xc8\x1e\x80"),
            OK,
            check=size_is((7000, 7000)),
            tags=("heavy",),
        ),
        Item(
            "bomb-ratio-7000x7000-16bit.png",
            lambda: png_from_rows(7000, 7000, 0, 16, b"\x80\x00"),
            OK,
            check=size_is((7000, 7000)),
            tags=("heavy",),
        ),
        Item("bomb-ratio-8000x8000.png", lambda: png_from_rows(8000, 8000, 2, 8, b"\x5a\xc8\x1e"), message=TOO_BIG),
        Item(
            "bomb-ztxt-50mb.png",
            lambda: text_png(cat(), [(b"zTXt", b"Comment\x00\x00" + zlib.compress(b"A" * 50_000_000, 9))]),
            message="Decompressed data too large",  # Pillow caps text chunks at 1 MB
        ),
        Item(
            "bomb-iccp-50mb.png",
            lambda: text_png(cat(), [(b"iCCP", b"icc\x00\x00" + zlib.compress(b"\x00" * 50_000_000, 9))]),
            message="Decompressed data too large",  # Pillow caps text chunks at 1 MB
        ),
        Item(
            "20000-text-chunks.png",
            lambda: text_png(cat(), [(b"tEXt", b"k\x00" + b"v" * 20)] * 20_000),
            OK,
            check=no_metadata,
        ),
        Item("zero-bytes.jpg", lambda: b"", message="empty", bundle_message="empty", json_message="not valid JSON"),
        Item(
            "over-25mb.jpg",
            lambda: encode(cat(), "JPEG") + b"\x00" * MAX_BYTES,
            message="over 25 MB",
            bundle_message="MB",
        ),
        Item("random-bytes.jpg", lambda: np.random.default_rng(1).bytes(5000), message=NOT_IMAGE),
        Item("svg-renamed.png", lambda: SVG, message=NOT_IMAGE),
        Item("eps-renamed.jpg", lambda: EPS, message=NOT_IMAGE),  # never reaches Pillow's Ghostscript plugin
        Item("pdf-renamed.png", lambda: PDF, message=NOT_IMAGE),
        Item("html-renamed.jpg", lambda: HTML, message=NOT_IMAGE),
        Item("ico-renamed.png", lambda: encode(Image.new("RGB", (32, 32), "red"), "ICO"), message=NOT_IMAGE),
        Item("ppm-renamed.png", lambda: encode(Image.new("RGB", (32, 32), "red"), "PPM"), message=NOT_IMAGE),
        Item("tga-renamed.jpg", lambda: encode(Image.new("RGB", (32, 32), "red"), "TGA"), message=NOT_IMAGE),
    ]


def _exif_bytes(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def _ink_on_transparent() -> Image.Image:
    ink = 255 - np.asarray(seven().convert("L"))  # dark strokes, opaque; the paper becomes transparent
    rgba = np.zeros((*ink.shape, 4), np.uint8)
    rgba[..., 3] = np.clip(ink.astype(int) * 2, 0, 255)
    return Image.fromarray(rgba, "RGBA")


def hostile_pipelines() -> list[Item]:
    """Valid pipelines, as a student might paste them, that would take minutes or gigabytes on a photo."""

    def pipeline(*steps: tuple[str, dict]) -> Callable[[], bytes]:
        return lambda: json.dumps({"steps": [{"name": name, "params": params} for name, params in steps]}).encode()

    blur_101 = ("GaussianBlur", {"kernel_size": 101, "sigma": [50, 50]})
    return [
        # Issue 10: 96 s and 4.4 GB for one sample, while every other session's preview waited.
        Item("issue-10-resize-4096-blur-101.json", pipeline(("Resize", {"size": 4096}), blur_101), json=True,
             pipeline_message="step 1 (Resize) makes 4096 × 4096 images"),
        Item("resize-2048-blur-101.json", pipeline(("Resize", {"size": 2048}), blur_101), json=True,
             pipeline_message="lower its kernel_size"),
        Item("blur-101-times-32.json", pipeline(*[blur_101] * 32), json=True, pipeline_message="lower its kernel_size"),
        Item("elastic-sigma-50.json", pipeline(("ElasticTransform", {"sigma": 50.0})), json=True,
             pipeline_message="lower its sigma"),
        Item("crop-4096-padding-1024.json", pipeline(("RandomCrop", {"size": 4096, "padding": 1024})), json=True,
             pipeline_message="lower its size to 2048 or less and its padding to 768 or less"),
        Item("crop-padding-1024.json", pipeline(("RandomCrop", {"size": 512, "padding": 1024})), json=True,
             pipeline_message="lower its padding to 768 or less"),
        Item("resized-crop-4096.json", pipeline(("RandomResizedCrop", {"size": 4096})), json=True,
             pipeline_message="lower its size to 2048 or less"),
        Item("resize-up-down-32-times.json", pipeline(*[("Resize", {"size": 2048}), ("Resize", {"size": 64})] * 16),
             json=True, pipeline_message="takes the longest"),
        Item("noise-32-times.json", pipeline(*[("GaussianNoise", {})] * 32), json=True, pipeline_message="estimated"),
        Item("rotations-32-times.json", pipeline(*[("RandomRotation", {"degrees": [-180, 180]})] * 32), json=True,
             pipeline_message="estimated"),
        Item("rotations-8-times.json", pipeline(*[("RandomRotation", {"degrees": [-180, 180]})] * 8), json=True),
        Item("resize-2048.json", pipeline(("Resize", {"size": 2048})), json=True, pipeline_message="send back"),
        Item("resize-1024.json", pipeline(("Resize", {"size": 1024})), json=True),
    ]  # fmt: skip


def json_items() -> list[Item]:
    valid = augment_json(PRESETS["Stronger digit training"])
    step = '{"steps": [{"name": "GaussianBlur", %s}]}'
    return [
        # The stronger digit preset: nine samples of its elastic step on a photo are over the lab's time estimate.
        Item("pipeline.json", lambda: valid.encode(), json=True, pipeline_message="lower its sigma"),
        Item("pipeline-utf16.json", lambda: valid.encode("utf-16"), json=True, pipeline_message="lower its sigma"),
        Item("photo-pipeline.json", lambda: augment_json(PRESETS["ImageNet-style photo training"]).encode(), json=True),
        *hostile_pipelines(),
        Item("deeply-nested.json", lambda: b"[" * 50_000 + b"]" * 50_000, json_message="not valid JSON"),
        Item(
            "deeply-nested-steps.json",
            lambda: b'{"steps": ' + b"[" * 30_000 + b"]" * 30_000 + b"}",
            json_message="not valid JSON",
        ),
        Item("over-100k.json", lambda: b'{"steps": [], "x": "' + b"a" * 200_000 + b'"}', json_message="100,000"),
        Item("5000-digit-number.json", lambda: (step % ('"p": ' + "9" * 5000)).encode(), json_message="not valid JSON"),
        Item(
            "400-digit-number.json",
            lambda: (step % ('"params": {"kernel_size": ' + "9" * 400 + "}")).encode(),
            json_message="finite",
        ),
        Item("nan-probability.json", lambda: (step % '"p": NaN').encode(), json_message="finite"),
        Item(
            "infinite-sigma.json",
            lambda: (step % '"params": {"sigma": [0.1, Infinity]}').encode(),
            json_message="finite",
        ),
        Item(
            "unknown-transform.json",
            lambda: b'{"steps": [{"name": "os.system", "params": {"cmd": "rm -rf /"}}]}',
            json_message="unknown transform",
        ),
        Item(
            "huge-transform-name.json",
            lambda: ('{"steps": [{"name": "' + "x" * 90_000 + '"}]}').encode(),
            json_message="unknown transform",
        ),
        Item(
            "wrong-types.json",
            lambda: b'{"steps": [{"name": "GaussianBlur", "params": [1, 2], "p": "0.5"}]}',
            json_message="params",
        ),
        Item("steps-not-a-list.json", lambda: b'{"steps": "GaussianBlur"}', json_message="steps"),
        Item(
            "forty-steps.json",
            lambda: json.dumps({"steps": [{"name": "RandomHorizontalFlip"}] * 40}).encode(),
            json_message="at most",
        ),
        Item("kernel-1e300.json", lambda: (step % '"params": {"kernel_size": 1e300}').encode(), json_message="at most"),
        Item("unknown-fields.json", lambda: (step % '"__class__": "x"').encode(), json_message="unknown field"),
        Item("invalid-utf8.json", lambda: b'{"steps": [\xff\xfe\xfd]}', json_message="not valid JSON"),
    ]


def bundle_items() -> list[Item]:
    files = run_files
    return [
        Item("run-bundle.zip", lambda: bundle(files()), bundle=True),
        Item("run-bundle-flat.zip", lambda: bundle({k.split("/")[-1]: v for k, v in files().items()}), bundle=True),
        Item("run-bundle-stored.zip", lambda: bundle(files(), zipfile.ZIP_STORED), bundle=True),
        Item(
            "bare.safetensors",
            lambda: files()["tiny-import/tiny-import.safetensors"],
            bundle_message="bare .safetensors",
        ),
        Item("torch-save.pt", pickle_bundle, bundle_message="pickle"),
        Item("pickle.pkl", lambda: b"\x80\x04\x95" + b"\x00" * 40, bundle_message="pickle"),
        Item("truncated.zip", lambda: bundle(files())[:3000], bundle_message="damaged"),
        Item("corrupt-member.zip", lambda: flip_bytes(bundle(files()), 0.3, 20), bundle_message="damaged"),
        Item(
            "bomb-declared-70mb.zip",
            lambda: bundle(files() | {"tiny-import/tiny-import.safetensors": b"\x00" * 70_000_000}),
            bundle_message="unpacks to 67 MB",
        ),
        Item(
            "bomb-ratio-20mb-card.zip",
            lambda: bundle(files() | {"tiny-import/tiny-import.json": b" " * 20_000_000}),
            bundle_message="limit is 1 MB",
        ),
        Item(
            "bomb-ratio-60mb-weights.zip",
            lambda: bundle(files() | {"tiny-import/tiny-import.safetensors": b"\x00" * 60_000_000}),
            bundle_message="zip bomb",
        ),
        Item("bomb-lying-sizes.zip", lambda: zip_declaring_small(5_000_000), bundle_message="damaged"),
        Item(
            "20-members.zip",
            lambda: bundle(files() | {f"tiny-import/extra{i}.txt": b"x" for i in range(15)}),
            bundle_message="at most 16",
        ),
        Item("5000-members.zip", lambda: many_members(5000), bundle_message="5,000 files"),
        Item(
            "traversal.zip",
            lambda: bundle(files() | {"../../etc/cron.d/evil": b"* * * * * root rm -rf /"}),
            bundle_message="unsafe file name",
        ),
        Item(
            "absolute-path.zip",
            lambda: bundle({"/tmp/x.safetensors" if k.endswith("tensors") else k: v for k, v in files().items()}),
            bundle_message="unsafe file name",
        ),
        Item(
            "backslash-path.zip",
            lambda: bundle(files() | {"..\\..\\evil.txt": b"x"}),
            bundle_message="unsafe file name",
        ),
        Item("symlink-member.zip", symlink_bundle, bundle_message="symbolic link"),
        Item("encrypted-flag.zip", encrypted_flag_bundle, bundle_message="encrypted"),
        Item(
            "no-card.zip",
            lambda: bundle(replaced(files(), **{"tiny-import__json": None})),
            bundle_message="no model card",
        ),
        Item(
            "no-weights.zip",
            lambda: bundle(replaced(files(), **{"tiny-import__safetensors": None})),
            bundle_message="exactly one",
        ),
        Item(
            "two-weights.zip",
            lambda: bundle(files() | {"tiny-import/b.safetensors": b"x"}),
            bundle_message="exactly one",
        ),
        Item(
            "card-not-json.zip",
            lambda: bundle(replaced(files(), **{"tiny-import__json": b"{not json"})),
            bundle_message="not valid JSON",
        ),
        Item(
            "card-deeply-nested.zip",
            lambda: bundle(replaced(files(), **{"tiny-import__json": b"[" * 100_000 + b"]" * 100_000})),
            bundle_message="not valid JSON",
        ),
        Item(
            "card-unknown-architecture.zip",
            lambda: bundle(files(architecture="resnet9000")),
            bundle_message="unknown architecture",
        ),
        Item(
            "card-architecture-a-list.zip", lambda: bundle(files(architecture=["lenet"])), bundle_message="architecture"
        ),
        Item(
            "card-nan-accuracy.zip",
            lambda: bundle(
                replaced(
                    files(),
                    **{
                        "tiny-import__json": json.dumps(
                            card_dict(tiny_lenet()) | {"metrics": {"accuracy": float("nan")}}
                        ).encode()
                    },
                )
            ),
            bundle_message="finite",
        ),
        Item(
            "card-metrics-a-list.zip",
            lambda: bundle(files(metrics=[1, 2])),
            bundle_message="metrics must be a JSON object",
        ),
        Item("card-title-megabyte.zip", lambda: bundle(files(title="x" * 900_000)), bundle_message="title"),
        Item(
            "card-name-mismatch.zip",
            lambda: bundle(
                replaced(files(), **{"tiny-import__json": json.dumps(card_dict(tiny_lenet(), "../../evil")).encode()})
            ),
            bundle_message="the weights are",
        ),
        Item(
            "config-absurd-lenet.zip",
            lambda: bundle(files(config={"channels": [256, 256], "hidden": [4096, 4096], "num_classes": 10})),
            bundle_message="limit is 16,777,216",
        ),
        Item(
            "config-absurd-vit.zip",
            lambda: bundle(files(architecture="vit", config={"embed_dim": 1024, "depth": 24, "num_heads": 16})),
            bundle_message="from 4 to 512",
        ),
        Item(
            "config-giant-number.zip",
            lambda: bundle(files(architecture="vit", config={"embed_dim": 10**12})),
            bundle_message="from 4 to 512",
        ),
        Item("config-wrong-type.zip", lambda: bundle(files(config={"channels": "abc"})), bundle_message="list"),
        Item(
            "config-unknown-field.zip",
            lambda: bundle(files(config={"channels": [4, 8], "layers": 9})),
            bundle_message="unknown fields",
        ),
        Item(
            "config-does-not-build.zip",
            lambda: bundle(files(architecture="vit", config={"embed_dim": 30, "num_heads": 7})),
            bundle_message="does not build",
        ),
        Item(
            "config-wrong-classes.zip",
            lambda: bundle(files(config={"channels": [4, 8], "hidden": [32, 16], "num_classes": 1000})),
            bundle_message="num_classes",
        ),
        Item("param-count-lie.zip", lambda: bundle(files(num_params=12)), bundle_message="parameters"),
        Item(
            "shape-mismatch.zip",
            lambda: bundle(
                replaced(
                    files(),
                    **{
                        "tiny-import__json": json.dumps(
                            card_dict(
                                tiny_lenet(),
                                config={"channels": [6, 16], "hidden": [32, 16], "num_classes": 10},
                                num_params=count_parameters(
                                    build_model("lenet", LeNetConfig(channels=(6, 16), hidden=(32, 16)))
                                ),
                            )
                        ).encode()
                    },
                )
            ),
            bundle_message="does not match",
        ),
        Item(
            "float16-weights.zip",
            lambda: bundle(
                replaced(
                    files(),
                    **{
                        "tiny-import__safetensors": safetensors_bytes(
                            {k: v.half() for k, v in tiny_lenet().state_dict().items()}
                        )
                    },
                )
            ),
            bundle_message="dtype",
        ),
        Item(
            "nan-weights.zip",
            lambda: bundle(
                replaced(
                    files(),
                    **{
                        "tiny-import__safetensors": safetensors_bytes(
                            {k: torch.full_like(v, float("nan")) for k, v in tiny_lenet().state_dict().items()}
                        )
                    },
                )
            ),
            bundle_message="NaN",
        ),
        Item(
            "garbage-weights.zip",
            lambda: bundle(
                replaced(files(), **{"tiny-import__safetensors": b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage"})
            ),
            bundle_message="not a readable safetensors",
        ),
        Item(
            "lying-safetensors-header.zip",
            lambda: bundle(replaced(files(), **{"tiny-import__safetensors": _lying_safetensors()})),
            bundle_message="not a readable safetensors",
        ),
        Item(
            "history-malformed.zip",
            lambda: bundle(replaced(files(), **{"metrics__json": b'{"history": [1, 2, 3]}'})),
            bundle_message="history",
        ),
        Item(
            "png-renamed.zip",
            lambda: encode(cat(), "PNG"),
            OK,
            content="cat",
            check=near_cat,
            bundle_message="not a zip",
        ),
    ]


def _lying_safetensors() -> bytes:
    header = json.dumps({"w": {"dtype": "F32", "shape": [10**9, 10**9], "data_offsets": [0, 4]}}).encode()
    return struct.pack("<Q", len(header)) + header + b"\x00" * 4


CORPUS = {item.name: item for item in image_items() + json_items() + bundle_items()}


@functools.cache
def data_of(name: str) -> bytes:
    return CORPUS[name].make()


# --- the entry points ----------------------------------------------------------------------------------------------


@functools.cache
def lite0() -> torch.nn.Module:
    return load_model("efficientnet_lite0", device="cpu")


@functools.cache
def digit_models() -> dict[str, torch.nn.Module]:
    return {name: load_model(name, device="cpu") for name in ("lenet", "vgg", "vit")}


def photo_entry(item: Item, data: bytes) -> str:
    image = load_image(data, draft_size=PHOTO_DRAFT_SIZE)
    predictions = classify(image, "efficientnet_lite0", k=3, module=lite0())
    probabilities = [p.probability for p in predictions]
    assert (
        len(predictions) == 3 and probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1.0001
    )
    if item.content == "cat":
        assert predictions[0].label in CAT_CLASSES, predictions
    return predictions[0].label


def digit_entry(item: Item, data: bytes) -> str:
    image = load_image(data, max_side=DIGIT_MAX_SIDE, matte="contrast")  # as the Draw page
    assert max(image.size) <= DIGIT_MAX_SIDE
    report = predict_digits(image, digit_models())
    for prediction in report.predictions.values():
        assert abs(sum(prediction.probs) - 1) < 1e-4 and prediction.model_input.shape == (1, 28, 28)
    if item.content == "seven":
        assert list(report.labels.values()).count(7) >= 2, report.labels
    return "/".join(str(label) for label in report.labels.values())


def augment_entry(item: Item, data: bytes) -> str:
    image = load_image(data, max_side=PREVIEW_MAX_SIDE)  # as the lab
    assert max(image.size) <= 1024
    samples = preview(image, PRESETS["ImageNet-style photo training"], n=4, seed=0)
    assert len(samples) == 4 and all(isinstance(s, Image.Image) for s in samples)
    return f"{len(samples)} samples"


def json_entry(item: Item, data: bytes) -> str:
    spec = spec_from_json(data)
    assert augment_json(spec_from_json(augment_json(spec))) == augment_json(spec)
    return f"{len(spec.steps)} steps"


@functools.cache
def lab_photo() -> Image.Image:
    return load_image(SAMPLES / "astronaut.png", max_side=PREVIEW_MAX_SIDE)  # 512 x 512, as the lab shows it


def pipeline_entry(item: Item, data: bytes) -> str:
    samples = preview(lab_photo(), spec_from_json(data), n=9, seed=0)  # as the lab, once the pipeline is loaded
    assert len(samples) == 9 and all(isinstance(s, Image.Image) for s in samples)
    return f"{len(samples)} samples of {samples[0].width} × {samples[0].height}"


def checkpoint_entry(item: Item, data: bytes) -> str:
    loaded = read_bundle(data)
    model = build_model(loaded.card.architecture, LeNetConfig(channels=(4, 8), hidden=(32, 16)))
    model.load_state_dict(loaded.state)
    x = torch.rand(2, 1, 28, 28)
    torch.testing.assert_close(model.eval()(x), tiny_lenet()(x))  # the very weights that were bundled
    return f"{loaded.card.name}: {len(loaded.state)} tensors"


ENTRIES: dict[str, tuple[Callable[[Item, bytes], str], tuple[type[ValueError], ...]]] = {
    "photo": (photo_entry, (ImageError,)),
    "digit": (digit_entry, (ImageError, EmptyDrawingError)),
    "augment": (augment_entry, (ImageError, AugmentError)),
    "json": (json_entry, (AugmentError,)),
    "pipeline": (pipeline_entry, (AugmentError,)),
    "checkpoint": (checkpoint_entry, (CheckpointError,)),
}


def expectation(entry: str, item: Item) -> tuple[str, str]:
    """(OK / REFUSED / EITHER, a phrase the refusal must contain) for ``item`` at ``entry``."""
    if entry == "json":
        return (OK, "") if item.json else (REFUSED, item.json_message)
    if entry == "pipeline":
        if item.json:
            return (REFUSED, item.pipeline_message) if item.pipeline_message else (OK, "")
        return REFUSED, item.json_message
    if entry == "checkpoint":
        return (OK, "") if item.bundle else (REFUSED, item.bundle_message)
    if item.json or item.bundle or item.name.endswith((".json", ".zip", ".safetensors", ".pt", ".pkl")):
        return (OK, "") if item.image == OK else (REFUSED, NOT_IMAGE if item.image == REFUSED else "")
    return item.image, item.message


# --- measuring --------------------------------------------------------------------------------------------------------


class PeakRSS:
    """The highest resident set size seen while the block runs, sampled from /proc/self/statm every millisecond."""

    def __init__(self) -> None:
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.available = Path("/proc/self/statm").exists()
        self.start = self.peak = self.now()
        self._stop = threading.Event()

    def now(self) -> int:
        if not self.available:
            return 0
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * self.page

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.now())
            time.sleep(0.001)

    def __enter__(self) -> PeakRSS:
        self.start = self.peak = self.now()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.now())

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.start) / 2**20


def measure(entry: str, item: Item, data: bytes) -> tuple[str | None, BaseException | None, float, float, float]:
    function, _ = ENTRIES[entry]
    result, error = None, None
    tracemalloc.start()
    try:
        with PeakRSS() as rss:
            start = time.perf_counter()
            try:
                result = function(item, data)
            except Exception as caught:
                error = caught
            seconds = time.perf_counter() - start
    finally:
        python_peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    return result, error, seconds, rss.growth_mb, python_peak


def warm_up() -> None:
    """Load the models and run each path once, so the measurements see uploads, not first-call set-up."""
    lite0(), digit_models()
    for entry in ("photo", "digit", "augment"):
        measure(entry, CORPUS["cat.jpg"], data_of("cat.jpg"))
    measure("json", CORPUS["pipeline.json"], data_of("pipeline.json"))
    measure("pipeline", CORPUS["photo-pipeline.json"], data_of("photo-pipeline.json"))  # starts the preview workers
    measure("checkpoint", CORPUS["run-bundle.zip"], data_of("run-bundle.zip"))


@pytest.fixture(scope="module", autouse=True)
def warmed():
    warm_up()


# --- the tests -------------------------------------------------------------------------------------------------------


def test_the_corpus_is_what_it_claims() -> None:
    """A few generated files checked against their description, so the tests below test what they say."""
    assert len(CORPUS) >= 100
    assert Image.open(io.BytesIO(data_of("seven-then-2999-frames.gif"))).n_frames == 3000
    assert Image.open(io.BytesIO(data_of("seven-then-299-frames.webp"))).n_frames == 300
    assert Image.open(io.BytesIO(data_of("bomb-ratio-7000x7000.png"))).size == (7000, 7000)
    assert len(data_of("bomb-ratio-7000x7000.png")) < 200_000  # 147 MB of pixels in a file under 200 KB
    with pytest.raises(Image.DecompressionBombError, match="268435456 pixels"):  # 16384 x 16384
        Image.open(io.BytesIO(data_of("bomb-declared-16384x16384.webp")))
    assert Image.open(io.BytesIO(data_of("cat-cmyk.jpg"))).mode == "CMYK"
    assert Image.open(io.BytesIO(data_of("ramp-16bit.png"))).mode.startswith("I")
    assert Image.open(io.BytesIO(data_of("cat-exif-rotated-90.jpg"))).getexif()[0x0112] == 6
    assert len(data_of("over-25mb.jpg")) > MAX_BYTES and len(data_of("over-25mb.jpg")) > MAX_BUNDLE_BYTES
    assert data_of("bomb-ratio-60mb-weights.zip")[:2] == b"PK" and len(data_of("bomb-ratio-60mb-weights.zip")) < 200_000
    names = zipfile.ZipFile(io.BytesIO(data_of("traversal.zip"))).namelist()
    assert "../../etc/cron.d/evil" in names


@pytest.mark.parametrize("name", list(CORPUS))
@pytest.mark.parametrize("entry", list(ENTRIES))
def test_every_entry_point_gives_a_result_or_a_clear_error(entry: str, name: str) -> None:
    item, data = CORPUS[name], data_of(name)
    expected, phrase = expectation(entry, item)
    result, error, seconds, rss_mb, python_mb = measure(entry, item, data)
    outcome = result if error is None else f"{type(error).__name__}: {error}"
    RESULTS[(entry, name)] = (outcome, seconds, rss_mb, python_mb)
    allowed = ENTRIES[entry][1]
    if error is not None and not isinstance(error, allowed):
        raise AssertionError(f"{entry} on {name}: {type(error).__name__} is not a clear error") from error
    if expected == OK:
        blank = entry == "digit" and isinstance(error, EmptyDrawingError) and item.content != "seven"
        assert error is None or blank, f"{entry} on {name} should work: {outcome}"
    elif expected == REFUSED:
        assert error is not None, f"{entry} should refuse {name}, but gave {result!r}"
        if phrase and not isinstance(error, EmptyDrawingError):
            assert phrase in str(error), f"{entry} on {name}: {error}"
    assert len(str(error or "")) < 600, "messages quote untrusted input only briefly"
    assert seconds < TIME_BOUND_S, f"{entry} on {name} took {seconds:.1f} s"
    assert rss_mb < MEMORY_BOUND_MB and python_mb < MEMORY_BOUND_MB, f"{entry} on {name}: {rss_mb:.0f} MB"


@pytest.mark.parametrize("name", [name for name, item in CORPUS.items() if item.check is not None])
def test_load_image_gives_the_right_picture(name: str) -> None:
    """What the entry points decoded is the file's content: right size, upright, colours, alpha on white, no metadata."""
    CORPUS[name].check(load_image(data_of(name)))


def test_byte_limits_hold_for_paths_and_file_objects(tmp_path) -> None:
    """Uploads arrive as bytes; notebooks pass paths and file objects: each is refused before it is read whole."""
    big = tmp_path / "big.jpg"
    with big.open("wb") as file:
        file.truncate(MAX_BYTES + 1)  # sparse: costs no disk
    with pytest.raises(ImageError, match="MB"):
        load_image(big)

    class Endless(io.RawIOBase):
        read_so_far = 0

        def readable(self) -> bool:
            return True

        def readinto(self, buffer) -> int:
            buffer[:] = b"\xff" * len(buffer)
            self.read_so_far += len(buffer)
            return len(buffer)

    stream = Endless()
    with pytest.raises(ImageError, match="over 25 MB"):
        load_image(io.BufferedReader(stream))
    assert stream.read_so_far <= MAX_BYTES + 2 * 2**20  # bounded: it stopped just past the limit


HEAVY = [
    *(name for name, item in CORPUS.items() if "heavy" in item.tags),
    "over-25mb.jpg",
    "seven-then-2999-frames.gif",
    "bomb-ztxt-50mb.png",
    "bomb-declared-70mb.zip",
    "bomb-ratio-60mb-weights.zip",
    "bomb-lying-sizes.zip",
    "run-bundle.zip",
]


def peak_in_forked_child(entry: str, name: str) -> float:
    """Run one file through one entry point in a fork of this (warmed) process; its ru_maxrss growth in MB.

    A forked child's ru_maxrss starts at its resident size at the fork, so the growth is exactly the extra memory
    that this one call touched at its peak. Used in a separate single-threaded process (OpenMP is not fork-safe).
    """
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: measure, report, leave without running any cleanup of the parent's
        try:
            start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            with contextlib.suppress(ValueError):  # a refusal: fine here, the corpus tests check which error
                ENTRIES[entry][0](CORPUS[name], data_of(name))
            os.write(write, str((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - start) / 1024).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        report = pipe.read()
    os.waitpid(pid, 0)
    return float(report)


@pytest.mark.skipif(not hasattr(os, "fork") or sys.platform != "linux", reason="measured with fork and ru_maxrss")
def test_worst_files_stay_under_the_memory_bound_in_a_fresh_process() -> None:
    """ru_maxrss (every page ever touched) per call, in a separate process: what the 1 ms sampler could miss."""
    script = """
import torch
torch.set_num_threads(1)
import test_hostile_inputs as t
t.warm_up()
for name in t.HEAVY:
    t.data_of(name)
for entry in ("photo", "digit", "augment", "checkpoint"):
    for name in t.HEAVY:
        if (entry == "checkpoint") == name.endswith(".zip"):  # the others are refused from their first bytes
            print(entry, name, t.peak_in_forked_child(entry, name), flush=True)
"""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    peaks = {}
    for line in done.stdout.splitlines():
        entry, name, megabytes = line.split()
        peaks[(entry, name)] = float(megabytes)
        RESULTS[(f"{entry} (fork)", name)] = ("", 0.0, float(megabytes), 0.0)
    assert len(peaks) == 3 * sum(not n.endswith(".zip") for n in HEAVY) + sum(n.endswith(".zip") for n in HEAVY)
    assert max(peaks.values()) < MEMORY_BOUND_MB, max(peaks.items(), key=lambda kv: kv[1])
    assert peaks[("digit", "bomb-ratio-7000x7000.png")] > 100  # it measures something: 49 MP decoded is ~190 MB


def test_summary_of_bounds(capsys) -> None:
    """Prints the figures (run with -s to see them): per entry point the slowest file and the largest memory growth."""
    if not RESULTS:
        pytest.skip("the figures come from the corpus tests above")
    lines = [f"{'entry':<17} {'files':>5} {'slowest s':>9} {'(file)':<32} {'growth MB':>9} {'(file)':<32} {'py MB':>6}"]
    for entry in [*ENTRIES, *(f"{e} (fork)" for e in ENTRIES)]:
        rows = [(name, *values) for (e, name), values in RESULTS.items() if e == entry]
        if not rows:
            continue
        slow, big = max(rows, key=lambda r: r[2]), max(rows, key=lambda r: r[3])
        timing = "-" if "fork" in entry else f"{slow[2]:.2f}"
        python = "-" if "fork" in entry else f"{max(r[4] for r in rows):.1f}"
        slowest = "" if "fork" in entry else slow[0][:32]
        lines.append(
            f"{entry:<17} {len(rows):>5} {timing:>9} {slowest:<32} {big[3]:>9.0f} {big[0][:32]:<32} {python:>6}"
        )
    lines.append(f"bounds: {TIME_BOUND_S:.0f} s per call, {MEMORY_BOUND_MB} MB memory growth per call")
    with capsys.disabled():
        print("\n" + "\n".join(lines))


# --- through the pages' own widgets (AppTest) ------------------------------------------------------------------------


def open_page(page: str):
    from streamlit.testing.v1 import AppTest

    app = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180).run()
    return app.switch_page(page).run()


def errors(app) -> str:
    return " | ".join(error.value for error in app.error)


def test_hostile_uploads_through_the_draw_and_augmentation_pages() -> None:
    app = open_page("app_pages/draw.py")
    app.radio[0].set_value("Upload a photo of a handwritten digit").run()
    app.file_uploader[0].set_value(("scan.jpg", data_of("eps-renamed.jpg"), "image/jpeg")).run()
    assert not app.exception and "Cannot use this file" in errors(app) and not app.metric
    app.file_uploader[0].set_value(("seven.jpg", data_of("seven-exif-rotated-270.jpg"), "image/jpeg")).run()
    assert not app.exception and not app.error
    assert [m.value for m in app.metric].count("7") >= 2  # the EXIF turn was undone before the models saw it

    app = open_page("app_pages/augment.py")
    app.radio[0].set_value("Upload a photo").run()
    app.file_uploader[0].set_value(("big.png", data_of("bomb-declared-100000x100000.png"), "image/png")).run()
    assert not app.exception and "too large" in errors(app)
    app.text_area[0].set_value(data_of("deeply-nested-steps.json").decode()[:90_000] + "]}").run()
    next(button for button in app.button if button.label == "Load JSON").click().run()
    assert not app.exception and "Cannot load this pipeline" in errors(app)


def test_hostile_upload_through_the_photo_page(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # no ResNet-50 weights: the page uses EfficientNet-Lite0
    app = open_page("app_pages/photo.py")
    app.radio[0].set_value("Upload a photo").run()
    app.file_uploader[0].set_value(("photo.jpg", data_of("pdf-renamed.png"), "image/jpeg")).run()
    assert not app.exception and "not an image" in errors(app)


def test_run_bundles_through_the_compare_page_reach_the_draw_page(tmp_path, monkeypatch) -> None:
    from vision_core import registry, runs

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(runs, "RUNS_DIR", tmp_path)
    app = open_page("app_pages/compare.py")
    importer = next(button for button in app.button if button.label == "Import")
    app.file_uploader[0].set_value(("run.zip", data_of("traversal.zip"), "application/zip")).run()
    importer.click().run()
    assert not app.exception and "unsafe file name" in errors(app) and not list(tmp_path.glob("*.*"))
    app.file_uploader[0].set_value(("run.zip", data_of("run-bundle.zip"), "application/zip"))
    app.text_input[0].set_value("hostile-corpus-run")
    next(button for button in app.button if button.label == "Import").click().run()
    assert not app.exception and not app.error
    assert any("Imported hostile-corpus-run" in s.value for s in app.success)
    assert "hostile-corpus-run" in list_models(task="digits")
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [
        "hostile-corpus-run.history.json",
        "hostile-corpus-run.json",
        "hostile-corpus-run.owner",
        "hostile-corpus-run.safetensors",
    ]
    assert "hostile-corpus-run" in set(app.dataframe[0].value["name"])  # on the scoreboard at once
    app.switch_page("app_pages/draw.py").run()
    next(button for button in app.button if "Random MNIST" in button.label).click().run()
    assert not app.exception and "LeNet-style CNN: hostile-corpus-run" in [m.label for m in app.metric]
