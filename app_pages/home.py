"""Home: what the app is for, the device it runs on, and the models it has."""

import pandas as pd
import streamlit as st

from ui.resources import model_card
from vision_core import describe_device, get_spec, list_models

st.title("Vision explorer")
st.markdown(
    "Deep-learning vision, made tangible: for lectures, students and anyone learning on their own. "
    "Everything runs on this machine, offline; a GPU is used when there is one."
)
PAGES = (
    ("app_pages/draw.py", "Draw a digit", "✏️",
     "Draw on a canvas and watch three MNIST models (a LeNet-style CNN, a VGG-style CNN and a Vision "
     "Transformer) answer side by side, with the exact 28 × 28 input each one sees."),
    ("app_pages/augment.py", "Augmentation lab", "🧪",
     "Build a torchvision transforms pipeline, preview what it does, export it as code, and probe how far "
     "a digit can be rotated, shifted or blurred before the models give up."),
    ("app_pages/photo.py", "Photo explorer", "📷",
     "Upload a photo: ImageNet top-3, feature maps from early, middle and late layers, first-layer "
     "filters, Grad-CAM, a transformer side by side, and object detection."),
    ("app_pages/finetune.py", "Fine-tune", "🏋️",
     "Train or fine-tune a model in a couple of minutes with live charts, then save it and draw on it."),
    ("app_pages/compare.py", "Compare", "📊",
     "A scoreboard of every model by accuracy, F1, loss, size, training time and latency; architectures, "
     "filters, attention maps, and hyperparameter sweeps."),
)  # fmt: skip
for page, label, icon, summary in PAGES:
    st.page_link(page, label=label, icon=icon)
    st.caption(summary)

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
