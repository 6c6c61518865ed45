"""Projector view: large type, tall charts, no sidebar, for a lecture hall (``?projector=1`` or the sidebar toggle).

Why: at the back of a room a 17 px caption and a 240 px chart cannot be read, and the sidebar takes a fifth of the
screen for controls the audience does not need. The sizes below are the minimums tests/test_browser_scenes.py
measures in Chromium (README, "Lecture mode"):

- body text at least ``MIN_TEXT_PX`` (computed font-size of paragraphs and captions),
- every altair chart at least ``MIN_CHART_PX`` tall (``chart``), with axis labels at ``CHART_LABEL_PX``,
- the sidebar, the header and download buttons hidden.

Streamlit's sizes are in rem, so one root font size scales the whole page (headings, widgets, captions) at once.
"""

from __future__ import annotations

import altair as alt
import streamlit as st

from ui import state
from vision_core.visuals import JET, VIRIDIS, Colormap

MIN_TEXT_PX = 24
ROOT_FONT_PX = 26  # the theme's base is 17 px: about 1.5x everything
MIN_CHART_PX = 400
PROJECTOR_CHART_PX = 560  # the whole chart: Streamlit fits axes and titles into it, the plot keeps ~440 px
CHART_LABEL_PX, CHART_TITLE_PX = 20, 24

CSS = f"""<style>
html {{ font-size: {ROOT_FONT_PX}px !important; }}
.stApp p, .stApp li, .stApp label, .stApp [data-testid="stCaptionContainer"] {{ font-size: 1rem !important; }}
.stApp [data-testid="stCaptionContainer"] {{ opacity: 1 !important; color: #0e1117 !important; }}
[data-testid="stSidebar"], [data-testid="stSidebarCollapsedControl"], [data-testid="stExpandSidebarButton"],
header[data-testid="stHeader"], [data-testid="stDownloadButton"], [data-testid="stToolbar"] {{ display: none !important; }}
.block-container, [data-testid="stMainBlockContainer"] {{ padding-top: 1rem !important; max-width: 100% !important; }}
</style>"""


def on() -> bool:
    return bool(state.PROJECTOR.get())


def apply_style() -> None:
    """Inject the projector's CSS into this run's page (nothing when the view is off)."""
    if on():
        st.html(CSS)


def sized(chart: alt.TopLevelMixin, projector: bool) -> alt.TopLevelMixin:
    """``chart`` as the projector shows it: ``PROJECTOR_CHART_PX`` tall (a taller chart keeps its height), thicker
    lines and large axis type. Off: ``chart`` unchanged."""
    if not projector:
        return chart
    height, width = getattr(chart, "height", None), getattr(chart, "width", None)  # numbers where builders set them
    tall = max(height, PROJECTOR_CHART_PX) if isinstance(height, int | float) else PROJECTOR_CHART_PX
    square = isinstance(width, int | float) and width == height  # a confusion matrix stays square
    return (
        chart.properties(height=tall, **({"width": tall} if square else {}))
        .configure_axis(labelFontSize=CHART_LABEL_PX, titleFontSize=CHART_TITLE_PX)
        .configure_legend(labelFontSize=CHART_LABEL_PX, titleFontSize=CHART_LABEL_PX, symbolSize=200)
        .configure_title(fontSize=CHART_TITLE_PX)
        .configure_line(strokeWidth=4)
        .configure_point(size=120)
    )


def chart(chart: alt.TopLevelMixin) -> alt.TopLevelMixin:
    """``sized`` for this session: ``st.altair_chart(projector.chart(step_loss_chart(events)), ...)``."""
    return sized(chart, on())


def colormap() -> Colormap:
    """Heat maps (class activation maps) in viridis on the projector, whose lightness rises steadily so the map
    still reads on a washed-out screen; jet, the usual CAM colours, otherwise."""
    return VIRIDIS if on() else JET
