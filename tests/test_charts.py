"""ui/charts.py: what the chart specs promise (tests/test_browser.py checks how Chromium draws them)."""

import numpy as np
import pandas as pd

from ui.charts import MAX_CHART_POINTS, SMOOTHING_STEPS, epoch_chart, overlay_chart, smooth_by_steps, step_loss_chart


def step_events(steps: int, log_every: int = 10, seed: int = 0) -> pd.DataFrame:
    """A run's logged steps (every ``log_every``, and the last one), with a noisy falling loss."""
    logged = sorted({*range(log_every, steps + 1, log_every), steps})
    noise = np.random.default_rng(seed).normal(0, 0.05, len(logged))
    return pd.DataFrame({"kind": "step", "step": logged, "loss": 2 / (1 + np.array(logged) / 100) + noise})


def smoothed(chart) -> pd.Series:
    data = chart.data if isinstance(chart.data, pd.DataFrame) else chart.layer[0].data
    return data.set_index("step")["smoothed"]


def test_the_smoothed_loss_keeps_its_shape_as_the_run_grows():
    """Issue 10: the smoothing span was a tenth of the points, so the curve drawn for the first steps changed
    while the run went on. Now the early curve is the same however long the run is."""
    early, later = step_loss_chart(step_events(300)), step_loss_chart(step_events(3000))
    first = smoothed(early).loc[:290]  # step 300 is the short run's last; the long run's next step is 310
    assert np.allclose(first, smoothed(later).loc[:290])


def test_smoothing_forgets_with_a_time_constant_in_steps():
    steps = pd.Series([0.0, SMOOTHING_STEPS])
    assert np.isclose(smooth_by_steps(steps, pd.Series([0.0, 1.0]))[-1], 1 / (1 + np.exp(-1)))
    # Logged twice as often, the same curve: the weights depend on steps, not on how many points were logged.
    fine, coarse = step_events(2000, log_every=5), step_events(2000, log_every=10)
    fine["loss"] = coarse["loss"] = 1.0
    assert np.allclose(smooth_by_steps(fine["step"], fine["loss"]), 1.0)


def test_a_long_run_sends_a_bounded_number_of_points_with_the_same_curve():
    """Issue 10: every logged step went to every watcher's browser each second. A run of 200,000 logged steps is
    thinned to MAX_CHART_POINTS, keeping its first and last step, and the curve at the kept steps is the one
    smoothed over all the points."""
    events = step_events(200_000, log_every=1)
    chart = step_loss_chart(events)
    kept = smoothed(chart)
    assert len(kept) <= MAX_CHART_POINTS
    assert kept.index[0] == 1 and kept.index[-1] == 200_000
    everything = pd.Series(smooth_by_steps(events["step"], events["loss"]), index=events["step"])
    assert np.allclose(kept, everything.loc[kept.index])
    short = step_events(300)
    assert len(smoothed(step_loss_chart(short))) == len(short)  # a short run keeps every point


def axes(chart) -> dict[str, dict]:
    spec = chart.to_dict()
    encoding = spec.get("encoding") or spec["layer"][0]["encoding"]
    return {channel: encoding[channel].get("axis", {}) for channel in ("x", "y")}


def test_count_axes_show_whole_numbers_and_value_axes_fixed_digits():
    """A single epoch made vega label its axis "90.000000%" and a short run's steps "1.1, 1.2, ..."."""
    history = pd.DataFrame({"run": ["a"], "epoch": [1.0], "accuracy": [0.9], "loss": [0.3]})
    events = pd.DataFrame(
        [{"kind": "epoch", "epoch": 1, "split": split, "loss": 0.5, "accuracy": 0.9} for split in ("train", "val")]
    )
    for chart in (overlay_chart(history), epoch_chart(events, "accuracy"), epoch_chart(events, "loss")):
        x, y = axes(chart).values()
        assert x["format"] == "d" and x["tickMinStep"] == 1
        assert y["format"] in (".1%", ".3~g")
    x, y = axes(step_loss_chart(step_events(3))).values()
    assert x["format"] == "d" and x["tickMinStep"] == 1 and y["format"] == ".3~g"


def test_the_overlay_keeps_its_plot_height_for_any_number_of_runs():
    history = pd.DataFrame(
        [{"run": f"run {r}", "epoch": e, "accuracy": 0.9, "loss": 0.3} for r in range(8) for e in (1, 2)]
    )
    spec = overlay_chart(history, height=300).to_dict()
    assert spec["height"] == 300 and spec["autosize"] == {"type": "fit-x", "contains": "padding"}
    assert spec["encoding"]["color"]["legend"]["symbolLimit"] == 0  # every run in the legend
