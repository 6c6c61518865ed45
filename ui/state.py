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

Only the current page's settings are in its link: app.py calls ``publish(page)`` once per run, which writes the
settings ``PAGE_SETTINGS`` lists for that page (and the ``EVERY_PAGE`` ones, such as the projector flag) and removes
the other pages'. A value equal to its default is left out of the link (opening it gives the default anyway). A
widget whose options change (models with weights here, a model's layers) takes ``widget(options=..., fallback=...)``:
a value from a link that is not among them falls back instead of breaking the widget.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import streamlit as st

from vision_core.augment import SHIPPED_DIGIT_PRESET, PipelineSpec, spec_from_json, spec_to_json
from vision_core.cams import CAM_METHODS
from vision_core.photo import DEFAULT_CLASSIFIER

T = TypeVar("T")
_DECLARED: dict[str, Setting[Any]] = {}
_UNSET = object()
_IN_LINK = "state.in_link"  # session key: the names of the settings the current page's link holds (``publish``)


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

    def widget(
        self, on_change: Callable[[], None] | None = None, *, options: Sequence[Any] | None = None, fallback: Any = None
    ) -> dict[str, Any]:
        """Keyword arguments that bind a widget to this setting: ``st.slider(..., **SETTING.widget())``.

        ``options``: the widget's choices this run; a value outside them (from a link, or from before the choices
        changed) becomes ``fallback`` (default: the first option). A tuple value (a multiselect) keeps the items
        that are options, or ``fallback`` when none is.
        """
        if options is not None:
            self._keep_within(list(options), fallback)
        value = self.get()
        shown = st.session_state.get(self.widget_key, _UNSET)
        # First run, the widget was off screen and forgotten, or the setting changed without it (a link, a set()):
        # the widget shows the setting. (A widget's change reaches the setting in ``store``, before the run.)
        if shown is _UNSET or not _same(shown, value):
            st.session_state[self.widget_key] = value

        def store() -> None:
            value = st.session_state[self.widget_key]
            st.session_state[self.name] = value
            self._to_url(value)
            if on_change is not None:
                on_change()

        return {"key": self.widget_key, "on_change": store}

    def _keep_within(self, options: list[Any], fallback: Any) -> None:
        value = self.get()
        if isinstance(value, tuple | list):  # a multiselect's choice
            kept = tuple(item for item in value if item in options)
            if kept != tuple(value):
                self.set(kept or (fallback if fallback is not None else ()))
        elif value not in options and options:
            self.set(fallback if fallback in options else options[0])

    def _to_url(self, value: T) -> None:
        """Mirror ``value`` in the link, if this setting belongs in the current page's link (``publish``)."""
        if not self.in_url or self.name not in st.session_state.get(_IN_LINK, {self.name}):
            return
        text = None if value == self.default else self.encode(value)  # type: ignore[misc]
        if text is None:
            if self.name in st.query_params:
                del st.query_params[self.name]
        elif st.query_params.get(self.name) != text:
            st.query_params[self.name] = text


def _same(shown: Any, value: Any) -> bool:
    """A multiselect shows a list of what a setting keeps as a tuple."""
    if isinstance(shown, list | tuple) and isinstance(value, list | tuple):
        return tuple(shown) == tuple(value)
    return shown == value


def declared() -> dict[str, Setting[Any]]:
    """Every setting by name (for tests and for issue 12's link builder)."""
    return dict(_DECLARED)


def publish(page: str) -> None:
    """Make the link hold the view of ``page`` (a url_path of ui/navigation.py; "" is Home): its own settings and
    the ``EVERY_PAGE`` ones, each read first from the link on a fresh session; other pages' settings leave it."""
    mine = (*PAGE_SETTINGS.get(page, ()), *EVERY_PAGE)
    st.session_state[_IN_LINK] = {setting.name for setting in mine}
    for setting in (s for settings in PAGE_SETTINGS.values() for s in settings):
        if setting not in mine and setting.name in st.query_params:
            # Read before it leaves the link: a fresh session's first run can land on another page than the link's
            # (a rerun asked before the browser sent its path), and the linked value must survive that run.
            setting.get()
            del st.query_params[setting.name]
    for setting in mine:
        setting._to_url(setting.get())


# --- Codecs for links: a decode checks what it reads (ValueError or KeyError: the default is used) ---------------
_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,80}")


def whole_number(low: int, high: int) -> Callable[[str], int]:
    """Decode a whole number in [low, high]."""

    def decode(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise ValueError(f"{value} is outside {low}..{high}")
        return value

    return decode


def a_name(text: str) -> str:
    """Decode a name (a model, a file, a layer): letters, digits and ``_.-`` only; the page checks it is offered."""
    if not _NAME.fullmatch(text):
        raise ValueError(f"not a name: {text[:40]!r}")
    return text


def encode_names(names: Iterable[str]) -> str:
    return ",".join(names)


def decode_names(text: str) -> tuple[str, ...]:
    return tuple(a_name(name) for name in text.split(",")) if text else ()


def encode_flag(on: bool) -> str:
    return "1" if on else "0"


def decode_flag(text: str) -> bool:
    return {"1": True, "0": False, "true": True, "false": False}[text.lower()]


def short_text(text: str) -> str:
    """Decode a label (a tab, a dataset's title): at most 80 characters; the page checks it is offered."""
    if len(text) > 80:
        raise ValueError("a label of over 80 characters")
    return text


def encode_texts(texts: Iterable[str]) -> str:
    return json.dumps(list(texts), separators=(",", ":"), ensure_ascii=False)


def decode_texts(text: str) -> tuple[str, ...]:
    """Decode a JSON list of at most 50 labels of at most 200 characters each."""
    if len(text) > 12_000:
        raise ValueError("a list too long for a link")
    values = json.loads(text)
    if not isinstance(values, list) or len(values) > 50:
        raise ValueError("not a list of at most 50 labels")
    if not all(isinstance(value, str) and len(value) <= 200 for value in values):
        raise ValueError("a label is not text or is over 200 characters")
    return tuple(values)


def sha1_hex(text: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{40}", text):
        raise ValueError("not a SHA-1 in hex")
    return text


def compact_pipeline(spec: PipelineSpec) -> str:
    """An augmentation pipeline as the shortest JSON ``spec_from_json`` reads back (for links)."""
    return json.dumps(json.loads(spec_to_json(spec)), separators=(",", ":"))


# --- The declarations ---------------------------------------------------------------------------------------------
# Every page
PROJECTOR = Setting("projector", False, encode=encode_flag, decode=decode_flag, in_url=True)  # ui/projector.py
SCENE = Setting[int | None]("scene", None, encode=str, decode=whole_number(1, 999), in_url=True)  # ui/scenes.py

# Draw page
DRAW, UPLOAD = "Draw on the canvas", "Upload a photo of a handwritten digit"  # the Draw page's two sources
DRAW_SOURCE = Setting(
    "draw_source", DRAW, encode=lambda source: "upload" if source == UPLOAD else "draw",
    decode=lambda text: {"draw": DRAW, "upload": UPLOAD}[text], in_url=True,
)  # fmt: skip
STROKE_WIDTH = Setting("stroke_width", 22, encode=str, decode=whole_number(6, 40), in_url=True)
DRAWING = Setting[str | None]("drawing", None)  # the canvas's PNG data URL, repainted when the canvas comes back
# The test digit shown for comparison
MNIST_INDEX = Setting[int | None]("mnist_index", None, encode=str, decode=whole_number(0, 9_999), in_url=True)
# Written by the Draw page, read by the Augmentation lab and Compare: the last drawing as the models saw it, a
# (1, 28, 28) tensor in [0, 1] (None before the first drawing).
LAST_DRAWING = Setting[Any]("last_drawing", None)
# Saved runs asked beside the shipped models on the Draw page; set from Fine-tune and Compare when a run is saved or
# imported (ui.resources.show_on_draw_page). The widget key is the one the Draw page's picker always had.
RUNS_ON_DRAW = Setting[tuple[str, ...]](
    "runs_on_draw", (), widget_key="draw_runs", encode=encode_names, decode=decode_names, in_url=True
)

# Augmentation lab
AUG_SOURCES = ("MNIST test digit", "My drawing", "Sample photo", "Upload a photo")
_AUG_CODES = dict(zip(AUG_SOURCES, ("mnist", "drawing", "sample", "upload"), strict=True))
AUG_SOURCE = Setting(
    "aug_source", AUG_SOURCES[0], encode=_AUG_CODES.__getitem__,
    decode=lambda text: {code: label for label, code in _AUG_CODES.items()}[text], in_url=True,
)  # fmt: skip
AUG_DIGIT = Setting[int | None]("aug_digit", None, encode=str, decode=whole_number(0, 9_999), in_url=True)
AUG_PHOTO = Setting[str | None]("aug_photo", None, encode=str, decode=a_name, in_url=True)  # a sample's file name
# The pipeline as compact JSON (vision_core.augment's format), checked by spec_from_json on the way in.
AUG_PIPELINE = Setting(
    "aug_pipeline", compact_pipeline(SHIPPED_DIGIT_PRESET), encode=str,
    decode=lambda text: compact_pipeline(spec_from_json(text)), in_url=True,
)  # fmt: skip
AUG_SEED = Setting("aug_seed", 0, encode=str, decode=whole_number(0, 2**31 - 1), in_url=True)
AUG_GRID = Setting("aug_grid", 3, encode=str, decode=whole_number(1, 6), in_url=True)

# Photo explorer
PHOTO_SOURCES = ("Sample photo", "Upload a photo")
PHOTO_SOURCE = Setting(
    "photo_source", PHOTO_SOURCES[0], encode=lambda source: "upload" if source == PHOTO_SOURCES[1] else "sample",
    decode=lambda text: {"sample": PHOTO_SOURCES[0], "upload": PHOTO_SOURCES[1]}[text], in_url=True,
)  # fmt: skip
PHOTO_SAMPLE = Setting("photo_sample", "chelsea.png", encode=str, decode=a_name, in_url=True)
# An uploaded photo's SHA-1: a link to it works while the server still keeps the photo (ui/scenes.py)
PHOTO_UPLOAD = Setting[str | None]("photo_upload", None, encode=str, decode=sha1_hex, in_url=True)
PHOTO_MODEL = Setting("photo_model", DEFAULT_CLASSIFIER, encode=str, decode=a_name, in_url=True)
PHOTO_LAYERS = Setting[tuple[str, ...]]("photo_layers", (), encode=encode_names, decode=decode_names, in_url=True)
# None: the page's default (the transformers, beside a CNN); () is "none".
PHOTO_COMPARE = Setting[tuple[str, ...] | None](
    "photo_compare", None, encode=encode_names, decode=decode_names, in_url=True
)
PHOTO_CHANNELS = Setting("photo_channels", 16, encode=str, decode=whole_number(4, 64), in_url=True)
PHOTO_CAM = Setting("photo_cam", next(iter(CAM_METHODS)), encode=str, decode=a_name, in_url=True, widget_key="photo_cam_method")  # fmt: skip
# The class a CAM explains: an ImageNet class index, or -1 for each model's own top-1
PHOTO_CLASS = Setting(
    "photo_class", -1, encode=str, decode=whole_number(-1, 999), in_url=True, widget_key="photo_cam_class"
)

# Fine-tune
FT_DATASET = Setting("ft_data", "mnist", encode=str, decode=a_name, in_url=True, widget_key="ft_dataset")
FT_MODEL = Setting[str | None]("ft_model", None, encode=str, decode=a_name, in_url=True)  # widget: ft_model_<dataset>
FT_RUN = Setting[int | None]("ft_job", None, encode=str, decode=whole_number(1, 10**9), in_url=True)  # the run shown

# Compare
CMP_TAB = Setting[str | None]("cmp_tab", None, encode=str, decode=short_text, in_url=True, widget_key="cmp_tab.widget")
CMP_CURVES = Setting[str | None](
    "cmp_curves", None, encode=str, decode=short_text, in_url=True, widget_key="cmp_curve_dataset"
)
CMP_RUNS = Setting[tuple[str, ...]]("cmp_runs", (), encode=encode_texts, decode=decode_texts, in_url=True)
CMP_MODEL = Setting[str | None]("cmp_inspect", None, encode=str, decode=a_name, in_url=True, widget_key="cmp_model")

# What each page's link holds (keys: url_path in ui/navigation.py; Home and My classes: the page alone).
PAGE_SETTINGS: dict[str, tuple[Setting[Any], ...]] = {
    "draw": (DRAW_SOURCE, STROKE_WIDTH, MNIST_INDEX, RUNS_ON_DRAW),
    "augment": (AUG_SOURCE, AUG_DIGIT, AUG_PHOTO, AUG_PIPELINE, AUG_SEED, AUG_GRID),
    "photo": (
        PHOTO_SOURCE,
        PHOTO_SAMPLE,
        PHOTO_UPLOAD,
        PHOTO_MODEL,
        PHOTO_COMPARE,
        PHOTO_LAYERS,
        PHOTO_CHANNELS,
        PHOTO_CAM,
        PHOTO_CLASS,
    ),
    "finetune": (FT_DATASET, FT_MODEL, FT_RUN),
    "compare": (CMP_TAB, CMP_CURVES, CMP_RUNS, CMP_MODEL),
}
EVERY_PAGE = (PROJECTOR, SCENE)
