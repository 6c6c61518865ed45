"""Rendering of digit predictions and of "what the model sees". Draws only; computes nothing."""

from __future__ import annotations

import streamlit as st
import torch
from torch.nn import functional as F

from ui.charts import digit_probability_chart
from ui.resources import model_card
from vision_core import DigitPrediction, DigitSteps, get_spec, to_image


def show_predictions(predictions: dict[str, DigitPrediction], key: str) -> None:
    """One column per model: the label, its confidence, latency and the 10 probabilities on one scale."""
    labels = {name: p.label for name, p in predictions.items()}
    if len(set(labels.values())) > 1:
        said = ", ".join(f"{get_spec(name).title} says **{label}**" for name, label in labels.items())
        st.warning(f"The models disagree: {said}.", icon=":material/balance:")
    elif labels:
        verdict = f"All {len(labels)} models say" if len(labels) > 1 else "The model says"
        st.success(f"{verdict} **{next(iter(labels.values()))}**.", icon=":material/check_circle:")
    for column, (name, prediction) in zip(st.columns(len(predictions)), predictions.items(), strict=True):
        with column:
            st.metric(get_spec(name).title, prediction.label, help=get_spec(name).description)
            card = model_card(name)
            tested = f" · MNIST test {card.metrics['accuracy']:.2%}" if card and card.metrics else ""
            st.caption(f"confidence {prediction.confidence:.1%} · {prediction.seconds * 1000:.1f} ms{tested}")
            st.altair_chart(digit_probability_chart(prediction), width="stretch", key=f"{key}-{name}")


def _square(values: torch.Tensor) -> torch.Tensor:
    """Pad a (H, W) stage with black to a square: st.image stretches thumbnails to the column width, so a thin
    stage (the crop of a "1" is about 8 x 84 px) would otherwise become a 700 px tall strip."""
    height, width = values.shape[-2:]
    side = max(height, width)
    top, left = (side - height) // 2, (side - width) // 2
    return F.pad(values, (left, side - width - left, top, side - height - top))


def show_model_input(steps: DigitSteps) -> None:
    """The 28 x 28 input enlarged, then each preprocessing stage as a small image."""
    st.image(to_image(steps.centered, size=196), caption="What every model sees: 28 × 28 pixels")
    stages = [
        (to_image(steps.ink, size=84), "1. strokes"),
        (to_image(_square(steps.cropped), size=84), "2. cropped"),
        (to_image(_square(steps.fitted), size=84), "3. fit 20 × 20"),
        (to_image(steps.centered, size=84), "4. centred"),
    ]
    for column, (image, caption) in zip(st.columns(len(stages)), stages, strict=True):
        column.image(image, caption=caption, width=84)  # one size for all four, whatever the column width
