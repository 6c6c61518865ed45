"""``load_image``: the one way user uploads become pictures, safely.

Uploads are untrusted: they may be truncated, not images at all, decompression bombs (a tiny file
declaring 30000 x 30000 pixels), 16-bit, CMYK, palette-with-transparency, animated, or rotated by
EXIF. Everything comes out as an upright RGB ``PIL.Image`` or a clear ``ImageError``.

Large JPEGs are decoded at a reduced scale (``Image.draft``: 1/2, 1/4 or 1/8, done inside the
DCT, so it costs a fraction of a full decode) whenever the result still covers ``draft_size``.
"""

from __future__ import annotations

import io
import os
import struct
from pathlib import Path
from typing import BinaryIO

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
_HIGH_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


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
                f"{path.name} is {path.stat().st_size / 1e6:.0f} MB; the limit is {MAX_BYTES / 1e6:.0f} MB"
            )
        raw = path.read_bytes()
    else:
        raw = data.read(MAX_BYTES + 1)
    if not raw:
        raise ImageError("the file is empty")
    if len(raw) > MAX_BYTES:
        raise ImageError(f"the file is over {MAX_BYTES / 1e6:.0f} MB; please upload a smaller image")
    return raw


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB: alpha composited on white, 16-bit and float scaled (not clipped), CMYK converted."""
    if image.mode in _HIGH_BIT_MODES:
        array = np.asarray(image, dtype=np.float32)
        top = float(array.max()) if array.size else 0.0
        if image.mode.startswith("I;16"):
            peak = 65535.0
        elif image.mode == "F" and top <= 1.0:
            peak = 1.0  # float images in [0, 1]
        else:
            peak = 65535.0 if top > 255 else 255.0  # "I" holds 16-bit PNGs in older Pillows, 8-bit data otherwise
        gray = np.clip(array / peak * 255.0, 0, 255).round().astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode in ("P", "L", "RGB") and "transparency" in image.info
    ):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; a damaged EXIF block leaves the pixels as stored rather than failing the upload."""
    try:
        return ImageOps.exif_transpose(image)
    except (SyntaxError, ValueError, TypeError, KeyError, OSError, struct.error):
        return image


def load_image(
    data: bytes | str | os.PathLike | BinaryIO,
    max_pixels: int = MAX_PIXELS,
    draft_size: tuple[int, int] | None = DRAFT_SIZE,
) -> Image.Image:
    """Decode an upload (bytes, a path or a file object) into an upright RGB image.

    JPEGs larger than ``draft_size`` in both directions are decoded at the smallest of 1/2, 1/4
    and 1/8 scale that still covers it (``None``: always full size). Raises ``ImageError`` for
    anything that is not a usable image.

    >>> load_image(Path("data/samples/coffee.png")).size
    (600, 400)
    """
    raw = _read_bytes(data)
    try:
        with Image.open(io.BytesIO(raw)) as image:
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
            return _to_rgb(_upright(image))
    except ImageError:
        raise
    except Image.DecompressionBombError as error:
        raise ImageError(f"the image is too large to decode safely ({error})") from error
    except UnidentifiedImageError as error:
        raise ImageError("this file is not an image format we can read (try PNG or JPEG)") from error
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as error:
        # PIL reports truncated or corrupt data as OSError / SyntaxError / ValueError / struct.error.
        raise ImageError(f"the image file is damaged or incomplete ({error})") from error
