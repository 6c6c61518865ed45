"""load_image on a generated corpus of awkward and hostile uploads: each gives a correct RGB image or a clear ImageError."""

from __future__ import annotations

import io
import struct
import time
import zlib

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from vision_core import preprocess_digit
from vision_core.images import PHOTO_DRAFT_SIZE, ImageError, load_image


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def noise_jpeg(width: int, height: int, seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return encode(Image.fromarray(pixels), "JPEG", quality=90)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_declaring(width: int, height: int) -> bytes:
    """A valid-looking PNG of a few hundred bytes whose header declares ``width`` x ``height`` RGB pixels."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 1024))
        + png_chunk(b"IEND", b"")
    )


def pixel(image: Image.Image, xy: tuple[int, int]) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)[xy[1], xy[0]]


def assert_rgb(image: Image.Image, size: tuple[int, int]) -> None:
    assert isinstance(image, Image.Image) and image.mode == "RGB" and image.size == size


# --- uploads that must be refused with a clear message --------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: noise_jpeg(256, 256)[:6000], "damaged or incomplete"),
        (lambda: png_declaring(30000, 30000), "too large"),
        (lambda: png_declaring(8000, 8000), "64 MP"),  # under PIL's own bomb limit: ours refuses it
        (lambda: b"", "empty"),
        (lambda: b"Shopping list:\n- milk\n- a cat photo\n", "not an image"),
        (lambda: encode(Image.new("RGB", (3000, 10), "white"), "PNG"), "thinner than"),
        (lambda: b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "not an image"),
    ],
    ids=["truncated-jpeg", "png-30000x30000", "png-64mp", "zero-bytes", "text", "thin-strip", "png-signature-only"],
)
def test_refuses_with_a_clear_image_error(make, message: str) -> None:
    start = time.perf_counter()
    with pytest.raises(ImageError, match=message) as caught:
        load_image(make())
    assert isinstance(caught.value, ValueError)  # pages catch it as bad input
    assert time.perf_counter() - start < 2.0  # refused from the header: nothing huge is decoded


def test_text_file_renamed_jpg_is_refused_from_its_path(tmp_path) -> None:
    path = tmp_path / "holiday.jpg"
    path.write_text("This is not really a photo.\n")
    with pytest.raises(ImageError, match="not an image"):
        load_image(path)


def test_missing_path_and_oversized_file_are_refused(tmp_path, monkeypatch) -> None:
    with pytest.raises(ImageError, match="not a file"):
        load_image(tmp_path / "nowhere.png")
    monkeypatch.setattr("vision_core.images.MAX_BYTES", 1000)
    with pytest.raises(ImageError, match="MB"):
        load_image(noise_jpeg(128, 128))


# --- awkward but valid uploads: the right picture comes out ---------------------------------------


def test_cmyk_jpeg_comes_out_with_the_right_colours() -> None:
    red_in_cmyk = Image.new("CMYK", (32, 24), (0, 255, 255, 0))
    image = load_image(encode(red_in_cmyk, "JPEG", quality=95))
    assert_rgb(image, (32, 24))
    assert np.abs(pixel(image, (16, 12)) - [255, 0, 0]).max() <= 12


def test_16_bit_png_is_scaled_not_clipped() -> None:
    ramp = np.tile(np.linspace(0, 65535, 256).round().astype(np.uint16), (16, 1))  # 0 .. 65535, left to right
    image = load_image(encode(Image.fromarray(ramp), "PNG"))
    assert_rgb(image, (256, 16))
    row = np.asarray(image)[4, :, 0].astype(int)
    assert row[0] == 0 and row[-1] == 255
    assert abs(row[128] - 128) <= 1  # a clipping decoder would give 255 from the 256th level on
    assert np.all(np.diff(row) >= 0) and len(np.unique(row)) > 200


def test_palette_png_with_transparency_is_composited_on_white() -> None:
    image = Image.new("P", (20, 10), 0)
    image.putpalette([255, 0, 0, 0, 160, 0] + [0] * 762)  # index 0 red (transparent), 1 green
    image.paste(1, (10, 0, 20, 10))
    loaded = load_image(encode(image, "PNG", transparency=0))
    assert_rgb(loaded, (20, 10))
    assert pixel(loaded, (2, 5)).tolist() == [255, 255, 255]  # transparent: white, not the hidden red
    assert pixel(loaded, (15, 5)).tolist() == [0, 160, 0]


def test_rgba_and_grayscale_alpha_are_composited_on_white() -> None:
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 2] = 255  # blue ...
    rgba[:, :2, 3] = 255  # ... opaque on the left, transparent on the right
    loaded = load_image(encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert pixel(loaded, (0, 0)).tolist() == [0, 0, 255] and pixel(loaded, (3, 0)).tolist() == [255, 255, 255]
    gray_alpha = Image.merge("LA", [Image.new("L", (4, 4), 0), Image.new("L", (4, 4), 0)])  # black, transparent
    assert pixel(load_image(encode(gray_alpha, "PNG")), (1, 1)).tolist() == [255, 255, 255]


def test_animated_gif_gives_its_first_frame() -> None:
    frames = [Image.new("RGB", (16, 16), color) for color in ("red", "lime", "blue")]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(io.BytesIO(data)).n_frames == 3
    image = load_image(data)
    assert_rgb(image, (16, 16))
    assert pixel(image, (8, 8)).tolist() == [255, 0, 0]


def test_exif_rotated_jpeg_comes_out_upright() -> None:
    stored = np.zeros((30, 60, 3), np.uint8)
    stored[:, :30] = (255, 0, 0)  # red left half, blue right half, as stored
    stored[:, 30:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    image = load_image(encode(Image.fromarray(stored), "JPEG", quality=95, exif=exif.tobytes()))
    assert_rgb(image, (30, 60))  # portrait now
    assert np.abs(pixel(image, (15, 5)) - [255, 0, 0]).max() < 30  # the stored left is the displayed top
    assert np.abs(pixel(image, (15, 55)) - [0, 0, 255]).max() < 30


def test_one_pixel_image() -> None:
    image = load_image(encode(Image.new("RGB", (1, 1), (10, 20, 30)), "PNG"))
    assert_rgb(image, (1, 1))
    assert pixel(image, (0, 0)).tolist() == [10, 20, 30]


def test_very_wide_panorama_is_kept_whole() -> None:
    image = load_image(noise_jpeg(6000, 400), draft_size=PHOTO_DRAFT_SIZE)
    assert_rgb(image, (6000, 400))  # draft never shrinks below the asked size: 400 px is already less


def test_large_jpeg_is_drafted_but_still_covers_the_asked_size() -> None:
    data = noise_jpeg(4032, 3024)
    assert_rgb(load_image(data, draft_size=PHOTO_DRAFT_SIZE), (504, 378))  # 1/8 scale: both sides still >= 256
    assert_rgb(load_image(data, draft_size=(512, 512)), (1008, 756))  # 1/4
    assert_rgb(load_image(data, draft_size=(1024, 1024)), (2016, 1512))  # 1/2
    assert_rgb(load_image(data, draft_size=None), (4032, 3024))
    portrait = noise_jpeg(600, 2000)
    assert_rgb(load_image(portrait, draft_size=(512, 512)), (600, 2000))  # 600 // 512 = 1: no reduction
    assert_rgb(load_image(portrait, draft_size=PHOTO_DRAFT_SIZE), (300, 1000))  # 600 // 256 = 2: half


def test_accepts_bytes_paths_and_file_objects(tmp_path) -> None:
    data = encode(Image.new("L", (5, 7), 128), "PNG")
    path = tmp_path / "gray.png"
    path.write_bytes(data)
    for source in (data, bytearray(data), path, str(path), io.BytesIO(data)):
        image = load_image(source)
        assert_rgb(image, (5, 7))
        assert pixel(image, (2, 3)).tolist() == [128, 128, 128]


@pytest.mark.parametrize("stroke", [(255, 255, 255, 255), (0, 0, 0, 255)], ids=["white", "black"])
def test_a_digit_on_a_transparent_background_survives_with_the_contrast_matte(stroke):
    # A canvas export is white strokes on transparency: on the default white matte it would vanish.
    drawing = Image.new("RGBA", (140, 140), (0, 0, 0, 0))
    ImageDraw.Draw(drawing).line([(70, 20), (70, 120)], fill=stroke, width=12)
    buffer = io.BytesIO()
    drawing.save(buffer, format="PNG")
    loaded = load_image(buffer.getvalue(), matte="contrast")
    digit = preprocess_digit(loaded)  # raises EmptyDrawingError if the strokes were lost
    reference = preprocess_digit(np.asarray(drawing))  # the canvas path: RGBA, alpha-aware
    assert torch.allclose(digit, reference, atol=0.05)
