"""``load_image``: the one way user uploads become pictures, safely.

Uploads are untrusted: they may be truncated, not images at all, decompression bombs (a tiny file
declaring 30000 x 30000 pixels), 16-bit, CMYK, palette-with-transparency, animated, or rotated by
EXIF. Everything comes out as an upright RGB ``PIL.Image`` or a clear ``ImageError``.

Large JPEGs are decoded at a reduced scale (``Image.draft``: 1/2, 1/4 or 1/8, done inside the
DCT, so it costs a fraction of a full decode) whenever the result still covers ``draft_size``.

Only the formats the pages offer are opened (``FORMATS``): an EPS renamed ``.jpg`` never reaches
Pillow's Ghostscript plugin, nor any other rarely used decoder. Memory: a decoded image takes 4
bytes per pixel in Pillow (RGB is stored as RGBX), so the 50 MP limit means at most ~200 MB for
the decoded pixels; the conversions below add at most about as much again (measured peaks are in
tests/test_hostile_inputs.py).
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_BYTES = 25 * 1024 * 1024  # a phone photo is 2-12 MB
MAX_PIXELS = 50_000_000  # 50 MP: above any phone camera, far below what would exhaust memory
MAX_ASPECT = 25  # a phone panorama is up to ~10:1; thinner strips are not photos and would blow up a resize
DRAFT_SIZE = (1024, 1024)  # default: a 12 MP JPEG decodes at 1/2 scale (2016 x 1512), enough for any page
# The ImageNet classifiers resize the shorter side to 232-256 px, so a photo decoded to >= 256 px is never upsampled:
# a 12 MP JPEG decodes at 1/8 scale (504 x 378), ~5x faster than in full, with the same top-3 to within ~1 point.
PHOTO_DRAFT_SIZE = (256, 256)
DETECTION_DRAFT_SIZE = (800, 800)  # Faster R-CNN resizes the shorter side to 800 px
# Draw page uploads: the digit preparation works at <= 560 px, and shrinking while decoding keeps a 50 MP photo
# from becoming ~1.5 GB of float arrays there.
DIGIT_MAX_SIDE = 1024
_HIGH_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
Matte = Literal["white", "contrast"]
# What the upload widgets accept (PNG also means APNG) and nothing else:
FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")  # the JPEG opener also returns MPO images
_ROWS_PER_BLOCK = 256  # high-bit images are scaled to 8 bits this many rows at a time: float temporaries stay small


class ImageError(ValueError):
    """The upload is not an image we can use; the message says why in plain words."""


def _read_bytes(data: bytes | str | os.PathLike | BinaryIO) -> bytes:
    if isinstance(data, (bytes, bytearray, memoryview)):
        raw = bytes(data)
    elif isinstance(data, (str, os.PathLike)):
        path = Path(data)
        if not path.is_file():
            raise ImageError(f"{path} is not a file")
        if path.stat().st_size > MAX_BYTES:
            raise ImageError(
                f"{path.name} is {path.stat().st_size / 2**20:.0f} MB; the limit is {MAX_BYTES / 2**20:.0f} MB"
            )
        raw = path.read_bytes()
    else:
        raw = data.read(MAX_BYTES + 1)
    if not raw:
        raise ImageError("the file is empty")
    if len(raw) > MAX_BYTES:
        raise ImageError(f"the file is over {MAX_BYTES / 2**20:.0f} MB; please upload a smaller image")
    return raw


def _high_bit_to_gray(image: Image.Image) -> Image.Image:
    """16-bit, 32-bit integer and float images scaled (not clipped) to 8-bit grey, a block of rows at a time."""
    array = np.asarray(image)
    if image.mode.startswith("I;16"):
        peak = 65535.0
    else:
        top = float(array.max()) if array.size else 0.0
        # "F" images in [0, 1] are floats of that range; "I" holds 16-bit PNGs in older Pillows, 8-bit data otherwise.
        peak = 1.0 if image.mode == "F" and top <= 1.0 else 65535.0 if top > 255 else 255.0
    gray = np.empty(array.shape, dtype=np.uint8)
    for start in range(0, array.shape[0], _ROWS_PER_BLOCK):
        block = array[start : start + _ROWS_PER_BLOCK].astype(np.float32)
        block *= 255.0 / peak
        np.clip(block, 0, 255, out=block)
        gray[start : start + _ROWS_PER_BLOCK] = np.rint(block, out=block)
    return Image.fromarray(gray, mode="L")


def _matte_for(image: Image.Image, matte: Matte) -> tuple[int, int, int]:
    """The colour to composite ``image`` (RGBA or LA) on: white, or for "contrast" black behind light content."""
    if matte == "white":
        return (255, 255, 255)
    small = image.reduce(max(1, max(image.size) // 256))  # an estimate needs no full-size copy
    gray = np.asarray(small.convert("LA"), dtype=np.float32)  # (h, w, 2): luminance, alpha
    weight = gray[..., 1].sum()
    light = weight > 0 and float((gray[..., 0] * gray[..., 1]).sum() / weight) > 127.5
    return (0, 0, 0) if light else (255, 255, 255)


def _to_rgb(image: Image.Image, matte: Matte = "white") -> Image.Image:
    """Any PIL mode -> RGB: alpha composited on a matte, 16-bit and float scaled (not clipped), CMYK converted.

    An RGB image is returned as it is; any other holds at most one full-size copy beside the decoded pixels.
    """
    if image.mode in _HIGH_BIT_MODES:
        return _high_bit_to_gray(image).convert("RGB")
    if image.mode in _ALPHA_MODES or (image.mode in ("P", "L", "RGB") and "transparency" in image.info):
        if image.mode not in ("RGBA", "LA"):  # paste takes these directly; the rest (premultiplied, palette) first
            image = image.convert("RGBA")
        background = Image.new("RGB", image.size, _matte_for(image, matte))
        background.paste(image, mask=image)  # the mask is the image's alpha band: src * a + matte * (1 - a)
        return background
    return image if image.mode == "RGB" else image.convert("RGB")


def _shrink(image: Image.Image, max_side: int) -> Image.Image:
    """``image`` with its longer side at most ``max_side`` px (box-reduced, then antialiased), aspect kept."""
    if max(image.size) <= max_side:
        return image
    scale = max_side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation in place (no copy when there is none); a damaged EXIF block leaves the pixels as stored."""
    with contextlib.suppress(SyntaxError, ValueError, TypeError, KeyError, OSError, struct.error):
        ImageOps.exif_transpose(image, in_place=True)
    return image


def load_image(
    data: bytes | str | os.PathLike | BinaryIO,
    max_pixels: int = MAX_PIXELS,
    draft_size: tuple[int, int] | None = DRAFT_SIZE,
    max_side: int | None = None,
    matte: Matte = "white",
) -> Image.Image:
    """Decode an upload (bytes, a path or a file object) into an upright RGB image.

    JPEGs larger than ``draft_size`` in both directions are decoded at the smallest of 1/2, 1/4
    and 1/8 scale that still covers it (``None``: always full size). ``max_side``: shrink the
    result so its longer side is at most that many pixels (``None``: keep the decoded size).
    Transparent parts are composited on white, or with ``matte="contrast"`` on black when what is
    opaque is light (white strokes on a transparent background stay visible: digit uploads).
    The image carries no metadata (``info`` is empty). Raises ``ImageError`` for anything that
    is not a usable image.

    >>> load_image(Path("data/samples/coffee.png")).size
    (600, 400)
    """
    raw = _read_bytes(data)
    try:
        with Image.open(io.BytesIO(raw), formats=FORMATS) as image:
            width, height = image.size  # from the header: nothing is decoded yet
            if width < 1 or height < 1:
                raise ImageError("the image has no pixels")
            if width * height > max_pixels:
                raise ImageError(
                    f"the image declares {width} x {height} pixels ({width * height / 1e6:.0f} MP); "
                    f"the limit is {max_pixels / 1e6:.0f} MP"
                )
            if max(width, height) > MAX_ASPECT * min(width, height):
                raise ImageError(
                    f"the image is {width} x {height} pixels, a strip thinner than {MAX_ASPECT}:1; please upload a photo"
                )
            # Animations (GIF, APNG, WebP) open at their first frame, and load() decodes only that frame.
            if draft_size is not None and image.format in ("JPEG", "MPO"):
                image.draft("RGB", draft_size)  # DCT-domain downscale: a 12 MP JPEG decodes several times faster
            image.load()
            rgb = _to_rgb(_upright(image), matte)
            if max_side is not None:
                rgb = _shrink(rgb, max_side)
            rgb.info = {}  # text chunks, EXIF, ICC: nothing from the file travels further
            return rgb
    except ImageError:
        raise
    except Image.DecompressionBombError as error:
        raise ImageError(f"the image is too large to decode safely ({error})") from error
    except UnidentifiedImageError as error:
        raise ImageError("this file is not an image format we can read (JPEG, PNG, WebP, GIF, BMP or TIFF)") from error
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as error:
        # PIL reports truncated or corrupt data as OSError / SyntaxError / ValueError / struct.error.
        raise ImageError(f"the image file is damaged or incomplete ({error})") from error
