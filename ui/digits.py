"""Rendering of digit predictions and of "what the model sees". Draws only; computes nothing.

Light on purpose: the Draw page redraws this on every stroke. The 10 probabilities are HTML bars (one ``st.html``
per model) rather than altair charts: three vega-lite charts cost the server about 25 ms each to build and
validate (measured: most of a 55-390 ms rerun), and the browser a chart embed each, for 10 bars. The images are small PNGs inlined as data URLs and
enlarged by the browser with crisp pixels: no media-file round trip per image.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable, Mapping

import numpy as np
import streamlit as st
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

from ui.resources import model_card
from vision_core import DigitPrediction, DigitReport, DigitSteps, EmptyDrawingError, get_spec, predict_digits, to_image

BAR_HEIGHT = 72  # px for a probability of 1
INPUT_SIZE, STAGE_SIZE = 196, 84  # px on screen
# One stylesheet for both HTML blocks (st.html keeps a leading <style>; the class names are ours alone). Text takes
# the theme's colour; the answer's bar and the others are orange and blue, both over 4.5:1 on white.
STYLE = f"""<style>
.vx-note {{ font-size: 0.875rem; margin: 0.25rem 0; }}
.vx-bars {{ display: flex; align-items: flex-end; height: {BAR_HEIGHT + 22}px; border-bottom: 1px solid #8a8d96; }}
.vx-bar {{ flex: 1; display: flex; flex-direction: column; align-items: center; justify-content: flex-end;
          font-size: 0.8rem; line-height: 1.4; }}
.vx-bar i {{ display: block; width: 70%; background: #3b6fd8; border-radius: 2px 2px 0 0; }}
.vx-bar.vx-top i {{ background: #c2410c; }}
.vx-figure {{ margin: 0; }}
.vx-figure img {{ display: block; image-rendering: pixelated; }}
.vx-figure figcaption {{ font-size: 0.875rem; text-align: center; }}
.vx-stages {{ display: flex; gap: 0.5rem; margin-top: 0.75rem; }}
</style>"""


def show_verdict(predictions: dict[str, DigitPrediction]) -> None:
    """One line above the answers: every model agrees (on what), or which model says what."""
    labels = {name: p.label for name, p in predictions.items()}
    if len(set(labels.values())) > 1:
        said = ", ".join(f"{get_spec(name).title} says **{label}**" for name, label in labels.items())
        st.warning(f"The models disagree: {said}.", icon=":material/balance:")
    elif labels:
        verdict = f"All {len(labels)} models say" if len(labels) > 1 else "The model says"
        st.success(f"{verdict} **{next(iter(labels.values()))}**.", icon=":material/check_circle:")


def show_predictions(predictions: dict[str, DigitPrediction]) -> None:
    """The verdict, then one column per model: its answer (st.metric, the model's description as help), confidence
    and latency, and the 10 probabilities on one 0-1 scale (the same height means the same probability everywhere)."""
    show_verdict(predictions)
    for column, (name, prediction) in zip(st.columns(len(predictions)), predictions.items(), strict=True):
        spec = get_spec(name)
        column.metric(spec.title, prediction.label, help=spec.description)
    cells = "".join(f"<div>{probability_bars(p, _tested(name))}</div>" for name, p in predictions.items())
    st.html(
        f'{STYLE}<div style="display:grid;gap:1rem;grid-template-columns:repeat({len(predictions)},minmax(0,1fr))">{cells}</div>'
    )


def _tested(name: str) -> str:
    card = model_card(name)
    return f"MNIST test {card.metrics['accuracy']:.2%}" if card and card.metrics.get("accuracy") else ""


def probability_bars(prediction: DigitPrediction, note: str = "") -> str:
    """HTML: two caption lines (confidence and time in the model; ``note``) over 10 bars, digit 0 to 9, on a fixed
    0-1 scale. Two lines always, so that the bars of models side by side start at one height. Needs ``STYLE``."""
    bars = "".join(
        f'<div class="vx-bar{" vx-top" if digit == prediction.label else ""}" title="{digit}: {probability:.2%}">'
        f'<i style="height:{max(1.0, probability * BAR_HEIGHT):.1f}px"></i>{digit}</div>'  # >= 1 px: every slot shows
        for digit, probability in enumerate(prediction.probs)
    )
    caption = f"confidence {prediction.confidence:.1%} · {prediction.seconds * 1000:.1f} ms<br>{html.escape(note) or '&nbsp;'}"
    return (
        f'<p class="vx-note">{caption}</p>'
        f'<div class="vx-bars" role="img" aria-label="probabilities of the digits 0 to 9">{bars}</div>'
    )


def _square(values: torch.Tensor) -> torch.Tensor:
    """Pad a (H, W) stage with black to a square, so a thin stage (the crop of a "1" is about 8 x 84 px) shows as
    a thin digit in a square, not stretched into a tall strip."""
    height, width = values.shape[-2:]
    side = max(height, width)
    top, left = (side - height) // 2, (side - width) // 2
    return F.pad(values, (left, side - width - left, top, side - height - top))


def _png_url(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)  # tiny images: speed over the last few bytes
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure(image: Image.Image, size: int, caption: str, css_class: str) -> str:
    return (
        f'<figure class="vx-figure {css_class}" style="width:{size}px"><img src="{_png_url(image)}" '
        f'alt="{html.escape(caption)}" width="{size}" height="{size}"><figcaption>{html.escape(caption)}</figcaption>'
        f"</figure>"
    )


def model_input_html(steps: DigitSteps, preprocess_seconds: float) -> str:
    """HTML: the 28 x 28 input enlarged, then each preprocessing stage as a square thumbnail in one row, and the
    time the preprocessing took."""
    stages = [
        (to_image(steps.ink, size=STAGE_SIZE), "1. strokes"),
        (to_image(_square(steps.cropped), size=STAGE_SIZE), "2. cropped"),
        (to_image(_square(steps.fitted)), "3. fit 20 × 20"),  # small: the browser enlarges it, pixels kept
        (to_image(steps.centered), "4. centred"),
    ]
    thumbnails = "".join(_figure(image, STAGE_SIZE, caption, "vx-stage") for image, caption in stages)
    model_input = _figure(to_image(steps.centered), INPUT_SIZE, "What every model sees: 28 × 28 pixels", "vx-input")
    return (
        f'{STYLE}<div class="vx-model-input">{model_input}<div class="vx-stages">{thumbnails}</div>'
        f'<p class="vx-note">Preprocessing took {preprocess_seconds * 1000:.1f} ms.</p></div>'
    )


def answer_for(
    read_image: Callable[[], Image.Image | np.ndarray | None], models: Mapping[str, nn.Module]
) -> tuple[DigitReport | None, str]:
    """(every model's answer, the HTML of what they see) for the image ``read_image()`` returns; (None, "") for no
    image or an empty one. No Streamlit call: the page runs it on the single-threaded worker (ui/single_thread.py),
    decoding included."""
    image = read_image()
    if image is None:
        return None, ""
    try:
        report = predict_digits(image, models)
    except EmptyDrawingError:
        return None, ""
    return report, model_input_html(report.steps, report.preprocess_seconds)
