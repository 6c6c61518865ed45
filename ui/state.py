"""Session state the pages share, declared once with a type and a default: ``Setting``.

Why: Streamlit forgets a widget's value as soon as a run does not draw that widget (switching the Draw page to
"Upload", or going to another page and back, reset the stroke width), and bare string keys spread over pages
("last_drawing" written on one page, read on two others) break silently when one of them is renamed. A
``Setting`` keeps its value in its own session-state entry, which no widget owns, so it survives any run; a widget
bound to it is seeded from it whenever the widget comes back, and writes to it when the user changes it.

Declare every key the pages share here, at module level (a name is refused twice)::

    STROKE_WIDTH = Setting("stroke_width", 22, encode=str, decode=int)

Use it in a page, with a widget (no ``value=``/``index=``: the setting is the widget's value)::

    from ui import state
    width = st.slider("Stroke width", 6, 40, **state.STROKE_WIDTH.widget())   # remembered across pages
    state.LAST_DRAWING.set(report.steps.centered)                              # without a widget
    digit = state.LAST_DRAWING.get()                                           # another page: None until drawn

``widget(on_change=...)`` chains a callback of the page's own. ``set`` from a callback or from a page where the
bound widget is not drawn yet in this run (Streamlit refuses to change a widget's value after it is drawn).

Scenes in the URL (issue 12) build on the same declarations: a setting with ``in_url=True`` (and an ``encode`` /
``decode`` pair) starts from ``st.query_params[name]`` when the session has no value yet, and writes its encoded
value back to the URL whenever it changes, so a copied link reproduces the view (tests/test_state.py). A page that
wants its scene in the link turns ``in_url`` on for its own settings; a ``decode`` of text from a link must check
what it reads (a range, a known name), since anyone can edit a link.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import streamlit as st

T = TypeVar("T")
_DECLARED: dict[str, Setting[Any]] = {}


@dataclass(frozen=True, eq=False)
class Setting(Generic[T]):
    """One value of a user's session: a name (its session-state key), a default, and how it goes into a URL.

    ``default`` is returned, never stored or mutated: give immutable defaults (a tuple, not a list).
    ``widget_key`` overrides the key of the widget bound to it (default ``name + ".widget"``).
    """

    name: str
    default: T
    encode: Callable[[T], str] | None = None  # value -> URL text
    decode: Callable[[str], T] | None = None  # URL text -> value; ValueError or KeyError for text it cannot read
    in_url: bool = False
    widget_key: str = ""

    def __post_init__(self) -> None:
        if self.name in _DECLARED:
            raise ValueError(f"session setting {self.name!r} is declared twice")
        if self.in_url and (self.encode is None or self.decode is None):
            raise ValueError(f"session setting {self.name!r}: in_url needs encode and decode")
        if not self.widget_key:
            object.__setattr__(self, "widget_key", f"{self.name}.widget")
        _DECLARED[self.name] = self

    def get(self) -> T:
        """The session's value; else the URL's (``in_url``); else the default."""
        if self.name in st.session_state:
            return st.session_state[self.name]
        if self.in_url and self.name in st.query_params:
            try:
                value = self.decode(st.query_params[self.name])  # type: ignore[misc]
            except (ValueError, KeyError):
                return self.default  # a hand-edited link with a bad value: the default, not an error page
            st.session_state[self.name] = value
            return value
        return self.default

    def set(self, value: T) -> None:
        st.session_state[self.name] = value
        if self.widget_key in st.session_state and st.session_state[self.widget_key] != value:
            del st.session_state[self.widget_key]  # re-seeded from the new value where the widget is drawn next
        self._to_url(value)

    def reset(self) -> None:
        """Back to the default (and out of the URL)."""
        st.session_state.pop(self.name, None)
        st.session_state.pop(self.widget_key, None)
        if self.in_url and self.name in st.query_params:
            del st.query_params[self.name]

    def widget(self, on_change: Callable[[], None] | None = None) -> dict[str, Any]:
        """Keyword arguments that bind a widget to this setting: ``st.slider(..., **SETTING.widget())``."""
        if self.widget_key not in st.session_state:  # first run, or the widget was off screen and forgotten
            st.session_state[self.widget_key] = self.get()

        def store() -> None:
            value = st.session_state[self.widget_key]
            st.session_state[self.name] = value
            self._to_url(value)
            if on_change is not None:
                on_change()

        return {"key": self.widget_key, "on_change": store}

    def _to_url(self, value: T) -> None:
        if self.in_url:
            st.query_params[self.name] = self.encode(value)  # type: ignore[misc]


def declared() -> dict[str, Setting[Any]]:
    """Every setting by name (for tests and for issue 12's link builder)."""
    return dict(_DECLARED)


# --- The declarations ---------------------------------------------------------------------------------------------
# Draw page
DRAW, UPLOAD = "Draw on the canvas", "Upload a photo of a handwritten digit"  # the Draw page's two sources
DRAW_SOURCE = Setting(
    "draw_source", DRAW, encode=lambda source: "upload" if source == UPLOAD else "draw",
    decode=lambda text: {"draw": DRAW, "upload": UPLOAD}[text],
)  # fmt: skip
STROKE_WIDTH = Setting("stroke_width", 22, encode=str, decode=int)
DRAWING = Setting[str | None]("drawing", None)  # the canvas's PNG data URL, repainted when the canvas comes back
MNIST_INDEX = Setting[int | None]("mnist_index", None, encode=str, decode=int)  # the test digit shown for comparison
# Written by the Draw page, read by the Augmentation lab and Compare: the last drawing as the models saw it, a
# (1, 28, 28) tensor in [0, 1] (None before the first drawing).
LAST_DRAWING = Setting[Any]("last_drawing", None)
# Saved runs asked beside the shipped models on the Draw page; set from Fine-tune and Compare when a run is saved or
# imported (ui.resources.show_on_draw_page). The widget key is the one the Draw page's picker always had.
RUNS_ON_DRAW = Setting[tuple[str, ...]]("runs_on_draw", (), widget_key="draw_runs")
