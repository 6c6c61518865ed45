"""Vision explorer: frames the app and routes between pages (their order and titles: ui/navigation.py)."""

import streamlit as st

from ui import projector, state
from ui.navigation import HOME, PAGES
from ui.owner import remember_browser, teacher_login
from ui.scenes import lecture_controls

st.set_page_config(page_title="Vision explorer", page_icon=":material/visibility:", layout="wide")
remember_browser()  # this browser's runs stay its own across reloads and tabs
page = st.navigation(
    [
        st.Page(HOME.path, title=HOME.title, icon=HOME.icon, default=True),
        *(st.Page(page.path, title=page.title, icon=page.icon, url_path=page.url_path) for page in PAGES),
    ]
)
state.publish(page.url_path)  # the link holds this page's view (a fresh session first reads it: ui/state.py)
projector.apply_style()
lecture_controls()
teacher_login()
page.run()
