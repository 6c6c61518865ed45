"""Lecture mode's sidebar: "Copy link to this view", the projector toggle, and a lecturer's scenes with
Previous / Next; the scenes file, and the server's short memory of uploaded photos that links name by hash.

A scene is a link to a view of the app: a page and its query (``/photo?photo_sample=coffee.png&photo_cam=gradcam``),
as "Copy link to this view" gives it. A lecturer lists scenes in a TOML file (``scenes.example.toml``)::

    [[scene]]
    title = "Grad-CAM on the coffee cup"
    link = "/photo?photo_sample=coffee.png"

The file is named by ``$VISION_SCENES``, else by ``[lecture] scenes = "path"`` in the class configuration
(``class.toml``, or ``$VISION_EXPLORER_CONFIG``; a relative path is relative to that file). Previous / Next open
the neighbouring scene's link in this tab, so each scene starts from its link alone, exactly as a copied link does
for anyone else (a new session: the link is the whole state; ``scene=N`` in it says where the lecturer is).
"""

from __future__ import annotations

import html
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

import streamlit as st

from ui import state
from ui.navigation import HOME, PAGES
from ui.resources import BoundedCache
from vision_core.policy import CONFIG_FILE

MAX_SCENES = 200
MAX_TITLE = 120
MAX_LINK = 4_000
UPLOADS_KEPT_BYTES = 100 * 2**20  # uploaded photos a link can name by hash: the newest, up to this many bytes
PAGE_PATHS = {page.url_path for page in (HOME, *PAGES)}


class SceneError(ValueError):
    """The scenes file cannot be used; the message names the file and the scene."""


@dataclass(frozen=True)
class Scene:
    title: str
    page: str  # a url_path of ui/navigation.py ("" is Home)
    query: tuple[tuple[str, str], ...]

    def link(self, **extra: str) -> str:
        """The scene's relative link, with ``extra`` query items (``scene="3"``)."""
        query = urlencode([*(item for item in self.query if item[0] not in extra), *extra.items()])
        return f"/{self.page}" + (f"?{query}" if query else "")


def parse_link(link: str, where: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """A scene's link (``/page?query`` or a full URL of the app) as (page url_path, query items)."""
    if not isinstance(link, str) or not link or len(link) > MAX_LINK:
        raise SceneError(f"{where}: link must be text of 1 to {MAX_LINK} characters")
    parts = urlsplit(link)
    page = parts.path.strip("/").rsplit("/", 1)[-1] if parts.path.strip("/") else ""
    if page not in PAGE_PATHS:
        known = ", ".join(f"/{path}" for path in sorted(PAGE_PATHS))
        raise SceneError(f"{where}: no page {parts.path!r} in the app (pages: {known})")
    return page, tuple(parse_qsl(parts.query))


def parse_scenes(text: str, where: str) -> tuple[Scene, ...]:
    """Scenes from the TOML ``text`` of the file ``where``; ``SceneError`` says what is wrong."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise SceneError(f"{where} is not valid TOML: {error}") from None
    entries = data.get("scene")
    if set(data) - {"scene"} or not isinstance(entries, list) or not entries:
        raise SceneError(f'{where}: expected one or more [[scene]] tables (title = "...", link = "/page?...")')
    if len(entries) > MAX_SCENES:
        raise SceneError(f"{where}: at most {MAX_SCENES} scenes (got {len(entries)})")
    scenes = []
    for number, entry in enumerate(entries, start=1):
        place = f"{where}, scene {number}"
        if not isinstance(entry, dict) or set(entry) != {"title", "link"}:
            raise SceneError(f"{place}: a scene has exactly a title and a link")
        title = entry["title"]
        if not isinstance(title, str) or not 0 < len(title.strip()) <= MAX_TITLE:
            raise SceneError(f"{place}: the title must be text of 1 to {MAX_TITLE} characters")
        scenes.append(Scene(title.strip(), *parse_link(entry["link"], place)))
    return tuple(scenes)


def scenes_path() -> Path | None:
    """The scenes file: ``$VISION_SCENES``, else the class configuration's ``[lecture] scenes``, else none."""
    if named := os.environ.get("VISION_SCENES"):
        return Path(named)
    config = Path(os.environ.get("VISION_EXPLORER_CONFIG") or CONFIG_FILE)
    try:
        lecture = tomllib.loads(config.read_text()).get("lecture", {}) if config.is_file() else {}
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        return None  # the policy loader reports a broken class configuration
    named = lecture.get("scenes") if isinstance(lecture, dict) else None
    return config.parent / named if isinstance(named, str) and named else None


@st.cache_data(max_entries=8, show_spinner=False)
def _read_scenes(path: str, modified: float) -> tuple[Scene, ...]:
    """Parsed once per version of the file (an edited file is read again)."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise SceneError(f"cannot read the scenes file {path}: {error}") from None
    return parse_scenes(text, path)


def load_scenes() -> tuple[Scene, ...]:
    path = scenes_path()
    if path is None:
        return ()
    if not path.is_file():
        raise SceneError(f"no scenes file at {path}")
    return _read_scenes(str(path), path.stat().st_mtime)


# --- Uploaded photos named by a link ------------------------------------------------------------------------------
@st.cache_resource
def kept_uploads() -> BoundedCache:
    """Uploaded photos (bytes by SHA-1) a copied link names: it works for others while its photo is among the newest
    kept, up to ``UPLOADS_KEPT_BYTES`` in all."""
    return BoundedCache(UPLOADS_KEPT_BYTES)


# --- The sidebar --------------------------------------------------------------------------------------------------
_COPY = st.components.v2.component(
    "vision_explorer.copy_link",
    html="""<div class="copy-link">
  <button type="button" class="copy">Copy link to this view</button>
  <input class="link" type="text" readonly aria-label="Link to this view" placeholder="(the link appears here)">
</div>""",
    css="""
.copy-link { display: flex; flex-direction: column; gap: 0.4rem; }
.copy, .link { font-family: var(--st-font, sans-serif); font-size: 0.9rem; border-radius: 0.5rem;
  border: 1px solid var(--st-border-color, rgba(49, 51, 63, 0.2)); padding: 0.3rem 0.6rem; }
.copy { cursor: pointer; background: var(--st-background-color, #fff); color: var(--st-text-color, #0e1117); }
.copy:hover { border-color: var(--st-primary-color, #ff4b4b); color: var(--st-primary-color, #ff4b4b); }
.link { width: 100%; box-sizing: border-box; color: var(--st-text-color, #0e1117); }
""",
    js="""
export default function ({ parentElement }) {
  const button = parentElement.querySelector(".copy"), field = parentElement.querySelector(".link");
  if (button.dataset.ready) return;
  button.dataset.ready = "1";
  button.addEventListener("click", async () => {
    field.value = window.location.href;  // the address bar: Streamlit keeps its query in step with the page's state
    field.select();
    try { await navigator.clipboard.writeText(field.value); button.textContent = "Copied: paste it anywhere"; }
    catch (error) { button.textContent = "Select the link below and copy it"; }
  });
}
""",
)


def copy_link() -> None:
    """A button that copies the address of this view (page and state) and shows it."""
    _COPY(key="copy-link", height="content")


def scene_stepper(scenes: tuple[Scene, ...]) -> str:
    """The HTML of "Scene 3 of 7: title" with Previous / Next links (plain links: each scene loads afresh)."""
    current = state.SCENE.get()
    extra = {"projector": "1"} if state.PROJECTOR.get() else {}
    index = current - 1 if current and current <= len(scenes) else None

    def step(number: int, label: str) -> str:
        if not 1 <= number <= len(scenes):
            return f'<span class="scene-step off">{label}</span>'
        href = html.escape(scenes[number - 1].link(scene=str(number), **extra))
        return f'<a class="scene-step" target="_self" href="{href}">{label}</a>'

    where = (
        f"Scene {index + 1} of {len(scenes)}: <b>{html.escape(scenes[index].title)}</b>"
        if index is not None
        else f"{len(scenes)} scenes: Next opens the first."
    )
    previous, following = (index or 0), (index + 2 if index is not None else 1)
    return f"""<style>
.scenes {{ display: flex; flex-direction: column; gap: 0.4rem; }}
.scene-steps {{ display: flex; gap: 0.5rem; }}
.scene-step {{ flex: 1; text-align: center; padding: 0.3rem 0.6rem; border-radius: 0.5rem; text-decoration: none;
  border: 1px solid rgba(49, 51, 63, 0.3); color: #0e1117 !important; }}
.scene-step.off {{ opacity: 0.4; }}
</style><div class="scenes" data-testid="scenes"><div class="scene-where">{where}</div>
<div class="scene-steps">{step(previous, "Previous")}{step(following, "Next")}</div></div>"""


def lecture_controls() -> None:
    """The sidebar's lecture section; in the projector view the same scene steps sit at the top of the page."""
    try:
        scenes = load_scenes()
    except SceneError as error:
        scenes = ()
        st.sidebar.warning(f"Scenes: {error}", icon=":material/slideshow:")
    if state.PROJECTOR.get():  # the sidebar is hidden: a slim bar on the page itself
        bar = st.container(horizontal=True, vertical_alignment="center", gap="medium")
        if scenes:
            bar.html(scene_stepper(scenes))
        # A button, not the sidebar's toggle: it has no state of its own to disagree with the link's flag.
        bar.button(
            "Leave projector view", icon=":material/close_fullscreen:", on_click=state.PROJECTOR.set, args=(False,)
        )
        return
    with st.sidebar.expander("Lecture", icon=":material/slideshow:", expanded=bool(scenes)):
        if scenes:
            st.html(scene_stepper(scenes))
        copy_link()
        st.toggle(
            "Projector view", help="large type, tall charts, no sidebar (or add ?projector=1 to a link)",
            **state.PROJECTOR.widget(),
        )  # fmt: skip
