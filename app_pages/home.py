"""Home: what the app is for, the device it runs on, and the models it has."""

import pandas as pd
import streamlit as st

from ui.navigation import PAGES
from ui.resources import model_card
from vision_core import describe_device, get_spec, list_models

st.title("Vision explorer")
st.markdown(
    "Deep-learning vision, made tangible: for lectures, students and anyone learning on their own. "
    "Everything runs on this machine, offline; a GPU is used when there is one."
)
for page in PAGES:
    st.page_link(page.path, label=page.title, icon=page.icon)
    st.caption(page.summary)

st.subheader("This machine")
st.write(f"Models run on: **{describe_device()}**")

st.subheader("Digit models")
rows = []
for name in list_models(task="digits"):
    spec, card = get_spec(name), model_card(name)
    rows.append(
        {
            "model": spec.title,
            "name": name,
            "parameters": card.num_params if card else None,
            "MNIST test accuracy": card.metrics.get("accuracy") if card else None,
            "macro-F1": card.metrics.get("f1_macro") if card else None,
            "training time (s)": card.train_seconds if card else None,
            "trained on": card.device if card else "weights missing",
        }
    )
st.dataframe(
    pd.DataFrame(rows),
    hide_index=True,
    column_config={
        "MNIST test accuracy": st.column_config.NumberColumn(format="percent"),
        "macro-F1": st.column_config.NumberColumn(format="%.4f"),
        "parameters": st.column_config.NumberColumn(format="localized"),
    },
)
