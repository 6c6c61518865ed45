"""Vision explorer: frames the app and routes between pages. Page order and titles live here only."""

import streamlit as st

st.set_page_config(page_title="Vision explorer", page_icon="🔍", layout="wide")
st.navigation(
    [
        st.Page("pages/home.py", title="Home", icon="🏠", default=True),
        st.Page("pages/draw.py", title="Draw a digit", icon="✏️", url_path="draw"),
    ]
).run()
