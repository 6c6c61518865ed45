"""What went wrong only in a browser, for tests/test_browser.py (served on its own, with the server profile): the
charts of ui/charts.py in the cases that broke.

    streamlit run tests/ui_gallery.py
"""

import sys
from pathlib import Path

import pandas as pd
import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # streamlit puts only this folder on the path

from ui.charts import epoch_chart, overlay_chart, step_loss_chart

st.set_page_config(layout="wide")  # as app.py

# Compare: eight runs' validation curves (the default selection collapsed the plot from 5 runs on).
history = pd.DataFrame(
    [
        {"run": f"run {run}: lenet, lr {0.001 * (run + 1):g}", "epoch": epoch, "accuracy": 0.9 + 0.01 * epoch + 0.002 * run, "loss": 0.3 / epoch}
        for run in range(8)
        for epoch in range(1, 6)
    ]
)  # fmt: skip
st.altair_chart(overlay_chart(history), width="stretch")

# Fine-tune: a run three logged steps and one epoch in.
events = pd.DataFrame(
    [{"kind": "step", "step": step, "epoch": 1, "split": "train", "loss": 1.0 / step, "accuracy": None} for step in (1, 2, 3)]
    + [{"kind": "epoch", "step": 3, "epoch": 1, "split": split, "loss": 0.5, "accuracy": 0.9} for split in ("train", "val")]
)  # fmt: skip
st.altair_chart(step_loss_chart(events), width="stretch")
st.altair_chart(epoch_chart(events, "loss"), width="stretch")
st.altair_chart(overlay_chart(history[history["epoch"] == 1].head(1)), width="stretch")
