"""Vision explorer: frames the app and routes between pages. Page order and titles live here only."""

import streamlit as st

st.set_page_config(page_title="Vision explorer", page_icon="🔍", layout="wide")
st.navigation(
    [
        st.Page("app_pages/home.py", title="Home", icon="🏠", default=True),
        st.Page("app_pages/draw.py", title="Draw a digit", icon="✏️", url_path="draw"),
        st.Page("app_pages/augment.py", title="Augmentation lab", icon="🧪", url_path="augment"),
        st.Page("app_pages/photo.py", title="Photo explorer", icon="📷", url_path="photo"),
        st.Page("app_pages/finetune.py", title="Fine-tune", icon="🏋️", url_path="finetune"),
        st.Page("app_pages/compare.py", title="Compare", icon="📊", url_path="compare"),
    ]
).run()
