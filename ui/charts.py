"""Altair chart builders. They return charts; the pages decide where to draw them."""

from __future__ import annotations

import altair as alt
import pandas as pd

from vision_core.predict import DigitPrediction


def digit_probability_chart(prediction: DigitPrediction, height: int = 150) -> alt.Chart:
    """Bars of the 10 class probabilities on a fixed 0-1 scale, so charts side by side compare directly."""
    table = pd.DataFrame({"digit": [str(d) for d in range(10)], "probability": prediction.probs})
    table["top"] = table["digit"] == str(prediction.label)
    return (
        alt.Chart(table)
        .mark_bar()
        .encode(
            x=alt.X("digit:N", sort=None, axis=alt.Axis(labelAngle=0, title=None)),
            y=alt.Y("probability:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%", title=None, tickCount=5)),
            color=alt.condition("datum.top", alt.value("#e4572e"), alt.value("#5b8def")),
            tooltip=["digit", alt.Tooltip("probability:Q", format=".2%")],
        )
        .properties(height=height)
    )
