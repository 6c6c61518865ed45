"""Vision explorer: frames the app and routes between pages (their order and titles: ui/navigation.py)."""

import streamlit as st

from ui.navigation import HOME, PAGES

st.set_page_config(page_title="Vision explorer", page_icon=":material/visibility:", layout="wide")
st.navigation(
    [
        st.Page(HOME.path, title=HOME.title, icon=HOME.icon, default=True),
        *(st.Page(page.path, title=page.title, icon=page.icon, url_path=page.url_path) for page in PAGES),
    ]
).run()
