"""``load_image``: the one way user uploads become pictures, safely.

Uploads are untrusted: they may be truncated, not images at all, decompression bombs (a tiny file
declaring 30000 x 30000 pixels), 16-bit, CMYK, palette-with-transparency, animated, or rotated by
EXIF. Everything comes out as an upright RGB ``PIL.Image`` or a clear ``ImageError``.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_BYTES = 25 * 1024 * 1024  # a phone photo is 2-12 MB
MAX_PIXELS = 50_000_000  # 50 MP: above any phone camera, far below what would exhaust memory
DRAFT_SIZE = (2048, 2048)  # JPEGs are decoded at a reduced scale when this still covers the need


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
            raise ImageError(f"{path.name} is {path.stat().st_size / 1e6:.0f} MB; the limit is {MAX_BYTES / 1e6:.0f} MB")
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
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float32)
        peak = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        gray = np.clip(array / peak * 255.0, 0, 255).round().astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def load_image(data: bytes | str | os.PathLike | BinaryIO, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode an upload (bytes, a path or a file object) into an upright RGB image.

    Raises ``ImageError`` for anything that is not a usable image.

    >>> load_image(Path("data/samples/coffee.png")).mode  # doctest: +SKIP
    'RGB'
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
            if getattr(image, "n_frames", 1) > 1:
                image.seek(0)  # animations: the first frame
            if image.format == "JPEG":
                image.draft("RGB", DRAFT_SIZE)  # DCT-domain downscale: a 12 MP JPEG decodes ~5x faster
            image.load()
            image = ImageOps.exif_transpose(image)
            return _to_rgb(image)
    except ImageError:
        raise
    except Image.DecompressionBombError as error:
        raise ImageError(f"the image is too large to decode safely ({error})") from error
    except UnidentifiedImageError as error:
        raise ImageError("this file is not an image format we can read (try PNG or JPEG)") from error
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        # PIL reports truncated or corrupt data as OSError / SyntaxError / ValueError.
        raise ImageError(f"the image file is damaged or incomplete ({error})") from error
