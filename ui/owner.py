"""Who is asking: this browser's owner id (kept across reloads and tabs in a cookie) and the teacher role.

A run or a saved model belongs to the browser that made it. The browser keeps a random token in a cookie; the server
reads it from the request (``st.context.cookies``) and knows the runs of that browser only by a hash of it (the token
itself is never shown or stored with a run). A browser without the cookie gets a new token, which a tiny component
writes into the cookie; if another tab wrote one first, that one is adopted.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time

import streamlit as st

from ui.resources import class_policy
from vision_core.jobs import Caller

COOKIE = "vision_explorer_owner"
_TOKEN = "owner_token"
TEACHER_HOURS = 8  # a sign-in lasts a school day in that browser
_VALID = re.compile(r"[A-Za-z0-9_-]{24,64}")
_REMEMBER = st.components.v2.component(
    "vision_explorer_owner_cookie",
    js="""
export default function ({ data, setStateValue }) {
    const name = data.cookie + "=";
    const found = document.cookie.split("; ").find((part) => part.startsWith(name));
    let token = found ? found.slice(name.length) : null;
    if (!token) {
        token = data.token;
        // A year, the whole site, never sent to other sites.
        document.cookie = `${name}${token}; Max-Age=31536000; Path=/; SameSite=Strict`;
    }
    setStateValue("token", token);
}
""",
)


def _token() -> str:
    cookie = st.context.cookies.get(COOKIE)
    if isinstance(cookie, str) and _VALID.fullmatch(cookie):
        st.session_state[_TOKEN] = cookie
    return st.session_state.setdefault(_TOKEN, secrets.token_urlsafe(24))


def remember_browser() -> None:
    """Store this session's token in the browser's cookie (or adopt the cookie another tab stored). Call it once per
    script run, from app.py: it renders nothing."""
    result = _REMEMBER(key="owner-cookie", data={"cookie": COOKIE, "token": _token()}, height=0)
    adopted = getattr(result, "token", None)
    if isinstance(adopted, str) and _VALID.fullmatch(adopted):
        st.session_state[_TOKEN] = adopted


@st.cache_resource
def _teacher_browsers() -> dict[str, float]:
    """Browsers (owner hashes) signed in as the teacher, and until when. Kept by the server, not in the session: a
    reload, or the next scene of a lecture (which opens its link afresh), keeps the role."""
    return {}


def _owner() -> str:
    return hashlib.sha256(_token().encode()).hexdigest()[:16]


def current_caller() -> Caller:
    """This browser, as the run service knows it, and whether it signed in as the teacher."""
    owner = _owner()
    return Caller(owner=owner, teacher=time.time() < _teacher_browsers().get(owner, 0.0))


def teacher_login() -> None:
    """The sidebar's teacher box (only when the class configuration sets a teacher password)."""
    policy = class_policy()
    if not policy.has_teacher:
        return
    with st.sidebar.expander("Teacher", icon=":material/school:", expanded=False):
        if current_caller().teacher:
            st.caption("Signed in as the teacher: you may stop or delete any run and delete saved runs.")
            if st.button("Sign out", key="teacher-out"):
                _teacher_browsers().pop(_owner(), None)
                st.rerun()
            return
        password = st.text_input("Password", type="password", key="teacher-password")
        if st.button("Sign in", key="teacher-in"):
            if policy.is_teacher_password(password):
                _teacher_browsers()[_owner()] = time.time() + TEACHER_HOURS * 3600
                st.rerun()
            st.error("That is not the teacher's password.")
