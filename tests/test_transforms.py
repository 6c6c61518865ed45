"""preprocess_digit: the MNIST recipe (crop, fit 20 x 20, centre of mass at the centre) on every input form."""

import numpy as np
import pytest
import torch
from PIL import Image
from synthetic_digits import DrawStyle, draw_digit

from vision_core import DigitAugment, EmptyDrawingError, digit_steps, preprocess_digit


def centre_of_mass(image: torch.Tensor) -> tuple[float, float]:
    image = image.squeeze(0)
    ys, xs = torch.arange(28.0), torch.arange(28.0)
    total = image.sum()
    return float((image.sum(1) * ys).sum() / total), float((image.sum(0) * xs).sum() / total)


def bounding_box(image: torch.Tensor) -> tuple[int, int]:
    rows = torch.nonzero(image.squeeze(0).amax(1) > 0).flatten()
    cols = torch.nonzero(image.squeeze(0).amax(0) > 0).flatten()
    return int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)


@pytest.mark.parametrize("digit", range(10))
@pytest.mark.parametrize(
    "style",
    [
        DrawStyle(),
        DrawStyle(height=90, center=(60, 200), stroke_width=8),  # small, off-centre, thin
        DrawStyle(height=250, center=(140, 140), stroke_width=32, rotation=12),  # large, thick, tilted
    ],
)
def test_digit_fits_20_box_with_centre_of_mass_at_centre(digit, style):
    model_input = preprocess_digit(draw_digit(digit, style))
    assert model_input.shape == (1, 28, 28) and model_input.dtype == torch.float32
    assert model_input.min() >= 0 and model_input.max() == pytest.approx(1.0)
    height, width = bounding_box(model_input)
    assert max(height, width) <= 20 and max(height, width) >= 19  # the longer side is scaled to 20 px
    com_y, com_x = centre_of_mass(model_input)
    assert abs(com_y - 13.5) <= 1 and abs(com_x - 13.5) <= 1


def test_transparent_and_opaque_backgrounds_give_the_same_tensor():
    style = DrawStyle(height=180, center=(120, 150), stroke_width=18, rotation=-8)
    opaque, transparent = draw_digit(3, style, transparent=False), draw_digit(3, style, transparent=True)
    assert (transparent[..., 3] < 255).any() and (opaque[..., 3] == 255).all()
    torch.testing.assert_close(preprocess_digit(opaque), preprocess_digit(transparent))


def test_dark_strokes_on_light_paper_are_inverted():
    canvas = draw_digit(7, DrawStyle())
    strokes = canvas[..., 0].astype(np.float32) / 255
    paper = (0.85 - 0.7 * strokes) * 255  # grey-white paper, dark ink
    photo = np.repeat(paper[..., None], 3, axis=2).astype(np.uint8)
    torch.testing.assert_close(preprocess_digit(photo), preprocess_digit(canvas), atol=0.02, rtol=0)


@pytest.mark.parametrize(
    "convert",
    [
        lambda c: c[..., :3],  # H x W x 3
        lambda c: c[..., 0],  # H x W
        lambda c: Image.fromarray(c),  # PIL RGBA
        lambda c: Image.fromarray(c[..., 0]),  # PIL L
        lambda c: c[..., 0].astype(np.float32) / 255,  # float in [0, 1]
    ],
)
def test_every_input_form_gives_the_same_tensor(convert):
    canvas = draw_digit(5, DrawStyle(height=160, center=(150, 130)))
    torch.testing.assert_close(preprocess_digit(convert(canvas)), preprocess_digit(canvas))


def test_sixteen_bit_image_is_scaled_not_clipped():
    canvas = draw_digit(2, DrawStyle())
    sixteen = Image.fromarray(canvas[..., 0].astype(np.uint16) * 257)  # mode I;16
    torch.testing.assert_close(preprocess_digit(sixteen), preprocess_digit(canvas), atol=1e-3, rtol=0)


@pytest.mark.parametrize(
    "empty",
    [
        np.zeros((280, 280, 4), np.uint8),  # transparent, nothing drawn
        np.dstack([np.zeros((280, 280, 3), np.uint8), np.full((280, 280), 255, np.uint8)]),  # opaque black
        np.full((200, 300, 3), 255, np.uint8),  # a blank white page
        np.full((50, 50), 128, np.uint8),  # flat grey
    ],
)
def test_empty_input_raises_a_clear_error(empty):
    with pytest.raises(EmptyDrawingError, match="empty"):
        preprocess_digit(empty)
    assert issubclass(EmptyDrawingError, ValueError)


@pytest.mark.parametrize(
    "bad", [np.zeros((2, 3, 4, 5), np.uint8), np.zeros((10, 10, 2), np.uint8), np.zeros((0, 5), np.uint8)]
)
def test_malformed_arrays_raise_value_error(bad):
    with pytest.raises(ValueError, match="expected"):
        preprocess_digit(bad)


def test_huge_photo_is_handled_quickly():
    canvas = draw_digit(4, DrawStyle())
    huge = np.asarray(Image.fromarray(255 - canvas[..., 0]).resize((4000, 4000)))
    torch.testing.assert_close(preprocess_digit(huge), preprocess_digit(canvas), atol=0.15, rtol=0)


def test_steps_are_consistent():
    steps = digit_steps(draw_digit(9, DrawStyle(height=120, center=(90, 90))))
    assert steps.ink.shape == (280, 280)
    assert max(steps.fitted.shape) == 20
    assert steps.cropped.shape[0] > steps.cropped.shape[1]  # a 9 is taller than wide
    torch.testing.assert_close(steps.centered, preprocess_digit(draw_digit(9, DrawStyle(height=120, center=(90, 90)))))


def test_digit_augment_keeps_shape_range_and_is_seeded():
    batch = torch.stack([preprocess_digit(draw_digit(d, DrawStyle())) for d in range(10)])
    first = DigitAugment()(batch.clone(), torch.Generator().manual_seed(3))
    again = DigitAugment()(batch.clone(), torch.Generator().manual_seed(3))
    other = DigitAugment()(batch.clone(), torch.Generator().manual_seed(4))
    assert first.shape == batch.shape and first.min() >= 0 and first.max() <= 1
    torch.testing.assert_close(first, again)
    assert not torch.equal(first, other) and not torch.equal(first, batch)
