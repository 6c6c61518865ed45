"""Altair chart builders. They return charts; the pages decide where to draw them."""

from __future__ import annotations

import math

import altair as alt
import numpy as np
import pandas as pd


def robustness_chart(table: pd.DataFrame, label: int, axis_title: str, height: int = 320) -> alt.LayerChart:
    """Each model's confidence in the true digit against the swept value; where a model is wrong, its answer
    is written above the point (a 6 turned 180 degrees reads "9")."""
    base = alt.Chart(table).encode(
        x=alt.X("value:Q", title=axis_title),
        y=alt.Y(
            "confidence:Q",
            scale=alt.Scale(domain=[0, 1]),
            axis=alt.Axis(format="%", title=f"confidence in the true digit ({label})"),
        ),
        color=alt.Color("model:N", title="model"),
    )
    tooltip = [
        alt.Tooltip("value:Q", format=".3g"), "model:N", alt.Tooltip("confidence:Q", format=".1%"),
        alt.Tooltip("predicted:N", title="predicted digit"), alt.Tooltip("predicted_confidence:Q", format=".1%", title="its confidence"),
    ]  # fmt: skip
    line = base.mark_line()
    points = base.mark_point(filled=True, size=36).encode(
        shape=alt.Shape("correct:N", title="right?", scale=alt.Scale(domain=[True, False], range=["circle", "cross"])),
        tooltip=tooltip,
    )
    answers = base.transform_filter("!datum.correct").mark_text(dy=-9, fontSize=11).encode(text="predicted:N")
    return (line + points + answers).properties(height=height)


# --- Fine-tune and Compare ---------------------------------------------------------------------------------------

SPLIT_COLORS = alt.Scale(domain=["train", "val"], range=["#5b8def", "#e4572e"])
# Axes of counts (epochs, steps) show whole numbers only; value axes a fixed number of digits. Vega derives the
# precision from the tick step otherwise, and an axis over a single value (one epoch, one run) has a step of 0:
# labels like "90.000000%", or steps "1.1, 1.2, ...".
COUNT_AXIS = {"format": "d", "tickMinStep": 1}
PERCENT_FORMAT, LOSS_FORMAT = ".1%", ".3~g"
# The smoothed loss forgets with a time constant in training steps, so its shape at a step never changes as the run
# goes on (a span of a tenth of the points did: the curve reshaped itself while the lecturer talked over it).
SMOOTHING_STEPS = 50
# A browser draws a few thousand points of a line as fast as it draws a hundred; a long run logs far more steps, and
# every watcher's browser would re-render them all each second.
MAX_CHART_POINTS = 2000


def smooth_by_steps(steps: pd.Series, values: pd.Series, time_constant: float = SMOOTHING_STEPS) -> np.ndarray:
    """Exponential moving average over (possibly unevenly) logged steps: each point's weight decays by e every
    ``time_constant`` steps; normalised by the weights so far, so the first points are not pulled towards 0."""
    smoothed = np.empty(len(values))
    total = weight = 0.0
    previous = None
    for index, (step, value) in enumerate(zip(steps.to_numpy(float), values.to_numpy(float), strict=True)):
        decay = 0.0 if previous is None else math.exp(-(step - previous) / time_constant)
        total, weight, previous = total * decay + value, weight * decay + 1.0, step
        smoothed[index] = total / weight
    return smoothed


def thin_out(table: pd.DataFrame, max_points: int = MAX_CHART_POINTS) -> pd.DataFrame:
    """At most ``max_points`` rows, evenly spaced, the first and the last kept (smooth before thinning, so the curve
    is the same with all the points)."""
    if len(table) <= max_points:
        return table
    keep = np.unique(np.linspace(0, len(table) - 1, max_points).round().astype(int))
    return table.iloc[keep]


def step_loss_chart(events: pd.DataFrame, height: int = 240) -> alt.LayerChart:
    """Training loss at each logged step (faint) and its exponential moving average (bold)."""
    steps = events.loc[events["kind"] == "step", ["step", "loss"]].copy()
    steps["smoothed"] = smooth_by_steps(steps["step"], steps["loss"])
    steps = thin_out(steps)
    base = alt.Chart(steps).encode(x=alt.X("step:Q", title="step", axis=alt.Axis(**COUNT_AXIS)))
    raw = base.mark_line(color="#b9c9ef", strokeWidth=1).encode(
        y=alt.Y("loss:Q", title="training loss", axis=alt.Axis(format=LOSS_FORMAT))
    )
    smooth = base.mark_line(color="#1f4fb5", strokeWidth=2.5).encode(
        y="smoothed:Q", tooltip=["step:Q", alt.Tooltip("loss:Q", format=".4f"), alt.Tooltip("smoothed:Q", format=".4f")]
    )
    return (raw + smooth).properties(height=height, title="Loss per step (smoothed)")


def epoch_chart(events: pd.DataFrame, metric: str = "accuracy", height: int = 240) -> alt.Chart:
    """Train and validation ``metric`` ("loss" or "accuracy") per epoch."""
    epochs = events.loc[events["kind"] == "epoch", ["epoch", "split", metric]]
    percent = metric == "accuracy"
    return per_epoch_lines(
        epochs,
        metric,
        PERCENT_FORMAT if percent else LOSS_FORMAT,
        color=alt.Color("split:N", scale=SPLIT_COLORS, title=None),
        tooltip=["epoch:Q", "split:N", alt.Tooltip(f"{metric}:Q", format=".2%" if percent else ".4f")],
    ).properties(height=height, title=f"{metric.capitalize()} per epoch")


def per_epoch_lines(table: pd.DataFrame, field: str, axis_format: str, title: str = "", **encodings) -> alt.Chart:
    """Lines with points of ``field`` per whole epoch, on a y axis that need not start at 0."""
    y_axis = alt.Axis(format=axis_format, title=title or field)
    return (
        alt.Chart(table)
        .mark_line(point=True)
        .encode(
            x=alt.X("epoch:Q", axis=alt.Axis(**COUNT_AXIS)),
            y=alt.Y(f"{field}:Q", scale=alt.Scale(zero=False), axis=y_axis),
            **encodings,
        )
    )


def confusion_chart(confusion: list[list[int]], height: int = 360) -> alt.LayerChart:
    """A 10 x 10 heat map: rows are the true digits, columns the predictions; counts written in the cells."""
    rows = [
        {"true": str(t), "predicted": str(p), "count": n} for t, row in enumerate(confusion) for p, n in enumerate(row)
    ]
    table = pd.DataFrame(rows)
    table["dark"] = table["count"] > table["count"].max() / 2
    base = alt.Chart(table).encode(
        x=alt.X("predicted:O", axis=alt.Axis(labelAngle=0, orient="top")), y=alt.Y("true:O", title="true digit")
    )
    cells = base.mark_rect().encode(
        color=alt.Color("count:Q", scale=alt.Scale(scheme="blues", type="symlog"), legend=None),
        tooltip=["true:O", "predicted:O", "count:Q"],
    )
    counts = base.mark_text(fontSize=11).encode(
        text="count:Q", color=alt.condition("datum.dark", alt.value("white"), alt.value("#333333"))
    )
    return (cells + counts).properties(height=height, width=height)


def overlay_chart(history: pd.DataFrame, height: int = 300) -> alt.Chart:
    """Validation accuracy per epoch, one line per run, every run named in the legend below.

    ``height`` is the plot's, whatever the number of runs: the chart fits the width only and grows downwards by
    the legend's rows. (Fitted into a fixed height, with one legend row per run, 8 runs squeezed the plot to a
    flat line without a y axis and cut the legend after 5 runs.)
    """
    return per_epoch_lines(
        history,
        "accuracy",
        PERCENT_FORMAT,
        title="validation accuracy",
        color=alt.Color("run:N", legend=alt.Legend(orient="bottom", columns=1, labelLimit=600, symbolLimit=0)),
        tooltip=["run:N", "epoch:Q", alt.Tooltip("accuracy:Q", format=".2%"), alt.Tooltip("loss:Q", format=".4f")],
    ).properties(height=height, autosize=alt.AutoSizeParams(type="fit-x", contains="padding"))


def sweep_bar_chart(table: pd.DataFrame, height: int = 300) -> alt.Chart:
    """Test error of each finished sweep setting as bars from zero (differences of tenths of a percent stay visible)."""
    done = table.dropna(subset=["accuracy"]).assign(error=lambda t: 1 - t["accuracy"])
    return (
        alt.Chart(done)
        .mark_bar()
        .encode(
            x=alt.X("setting:N", sort="y", axis=alt.Axis(labelAngle=-30, labelLimit=240), title=None),
            y=alt.Y("error:Q", axis=alt.Axis(format=".1%", title="test error (lower is better)")),
            color=alt.Color("optimizer:N"),
            tooltip=[
                "setting:N",
                alt.Tooltip("accuracy:Q", format=".2%"),
                alt.Tooltip("macro-F1:Q", format=".4f"),
                alt.Tooltip("training time (s):Q", format=".1f"),
            ],
        )
        .properties(height=height)
    )


def scaling_chart(table: pd.DataFrame, height: int = 300) -> alt.Chart:
    """Test accuracy against the training-set size (log scale)."""
    done = table.dropna(subset=["accuracy"])
    return (
        alt.Chart(done)
        .mark_line(point=True)
        .encode(
            x=alt.X(
                "train size:Q",
                scale=alt.Scale(type="log"),
                axis=alt.Axis(format=",d", title="training images (balanced)"),
            ),
            y=alt.Y("accuracy:Q", scale=alt.Scale(zero=False), axis=alt.Axis(format="%", title="test accuracy")),
            tooltip=[
                alt.Tooltip("train size:Q", format=",d"),
                alt.Tooltip("accuracy:Q", format=".2%"),
                alt.Tooltip("training time (s):Q", format=".1f"),
            ],
        )
        .properties(height=height)
    )
