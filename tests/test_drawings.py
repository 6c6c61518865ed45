"""The shipped models must read canvas drawings as reliably as MNIST digits.

300 synthetic drawings (tests/synthetic_digits.py): every digit 30 times, anywhere on the canvas,
small or large, thin or thick strokes, tilted by up to 15 degrees, wobbly.
"""

import numpy as np
import pytest
import torch
from synthetic_digits import draw_digit, random_style

from vision_core import list_models, load_model, preprocess_digit

SHIPPED = ["lenet", "vgg", "vit"]


@pytest.fixture(scope="module")
def drawings() -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(2026)
    inputs, labels = [], []
    for digit in range(10):
        for _ in range(30):
            inputs.append(
                preprocess_digit(draw_digit(digit, random_style(rng), rng, transparent=bool(rng.integers(2))))
            )
            labels.append(digit)
    return torch.stack(inputs), torch.tensor(labels)


@pytest.mark.parametrize("name", SHIPPED)
def test_drawn_digits_are_read_as_reliably_as_mnist(name, drawings):
    assert name in list_models(task="digits")
    inputs, labels = drawings
    with torch.inference_mode():
        predicted = load_model(name, device="cpu")(inputs).argmax(dim=1)
    accuracy = float((predicted == labels).float().mean())
    per_digit = [float((predicted[labels == d] == d).float().mean()) for d in range(10)]
    assert accuracy >= 0.97, f"{name}: {accuracy:.1%} of drawings read correctly"
    assert min(per_digit) >= 0.85, f"{name}: per-digit accuracy {per_digit}"
