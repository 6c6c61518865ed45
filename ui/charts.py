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
            y=alt.Y(
                "probability:Q",
                scale=alt.Scale(domain=[0, 1]),
                axis=alt.Axis(format="%", title=None, values=[0, 0.25, 0.5, 0.75, 1]),
            ),
            color=alt.condition("datum.top", alt.value("#e4572e"), alt.value("#5b8def")),
            tooltip=["digit", alt.Tooltip("probability:Q", format=".2%")],
        )
        .properties(height=height)
    )


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


def step_loss_chart(events: pd.DataFrame, height: int = 240) -> alt.LayerChart:
    """Training loss at each logged step (faint) and its exponential moving average (bold)."""
    steps = events.loc[events["kind"] == "step", ["step", "loss"]].copy()
    steps["smoothed"] = steps["loss"].ewm(span=max(2, len(steps) // 10), adjust=True).mean()
    base = alt.Chart(steps).encode(x=alt.X("step:Q", title="step"))
    raw = base.mark_line(color="#b9c9ef", strokeWidth=1).encode(y=alt.Y("loss:Q", title="training loss"))
    smooth = base.mark_line(color="#1f4fb5", strokeWidth=2.5).encode(
        y="smoothed:Q", tooltip=["step:Q", alt.Tooltip("loss:Q", format=".4f"), alt.Tooltip("smoothed:Q", format=".4f")]
    )
    return (raw + smooth).properties(height=height, title="Loss per step (smoothed)")


def epoch_chart(events: pd.DataFrame, metric: str = "accuracy", height: int = 240) -> alt.Chart:
    """Train and validation ``metric`` ("loss" or "accuracy") per epoch."""
    epochs = events.loc[events["kind"] == "epoch", ["epoch", "split", metric]]
    percent = metric == "accuracy"
    return (
        alt.Chart(epochs)
        .mark_line(point=True)
        .encode(
            x=alt.X("epoch:Q", axis=alt.Axis(tickMinStep=1, format="d")),
            y=alt.Y(
                f"{metric}:Q", scale=alt.Scale(zero=False), axis=alt.Axis(format="%" if percent else "", title=metric)
            ),
            color=alt.Color("split:N", scale=SPLIT_COLORS, title=None),
            tooltip=["epoch:Q", "split:N", alt.Tooltip(f"{metric}:Q", format=".2%" if percent else ".4f")],
        )
        .properties(height=height, title=f"{metric.capitalize()} per epoch")
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
    """Validation accuracy per epoch, one line per run."""
    return (
        alt.Chart(history)
        .mark_line(point=True)
        .encode(
            x=alt.X("epoch:Q", axis=alt.Axis(tickMinStep=1, format="d")),
            y=alt.Y("accuracy:Q", scale=alt.Scale(zero=False), axis=alt.Axis(format="%", title="validation accuracy")),
            color=alt.Color("run:N", legend=alt.Legend(orient="bottom", columns=1, labelLimit=600)),
            tooltip=["run:N", "epoch:Q", alt.Tooltip("accuracy:Q", format=".2%"), alt.Tooltip("loss:Q", format=".4f")],
        )
        .properties(height=height)
    )


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
