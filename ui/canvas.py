"""The Draw page's canvas: a small Streamlit components-v2 element (inline HTML, CSS and JS), and the bounded
decoding of what it sends.

Why our own instead of streamlit-drawable-canvas 0.13 (the latest release): its toolbar (undo, redo, clear, edit)
is invisible until hovered but sits over the top right of the drawing area and takes the mouse-down there, so a
stroke started in the top band was lost (a 0 begun at the top, the bar of a 7); nothing removes it but
``disabled=True``, and it lives in a shadow root that page CSS cannot reach. It also duplicated the page's Clear,
quick changes of the stroke width wiped its drawing while the old answer stayed, and the page decoded its image
with an unbounded ``PIL.Image.open`` (an 8000 x 8000 value ran the models for 8.4 s and took 2 GB). What the page
needs is small: white strokes on black from mouse, touch or pen, a stroke width that changes later strokes only, a
Clear, and the drawing sent on pointer-up.

The drawing travels as a PNG data URL of the canvas scaled to ``SEND_SIZE`` (140 x 140). Measured in Chromium for a
7: at 280 x 280, 9,918 characters, 0.9 ms to encode in the browser and 1.5 ms to decode on the server; at 140 x 140,
4,402 characters, 0.5 ms and 0.5 ms, and the same answers and confidences from all three models (the MNIST
preparation shrinks the digit to 20 x 20 anyway). ``decode_drawing`` refuses more than ``MAX_DRAWING_CHARS``
characters and any PNG whose header declares more pixels than ``MAX_DRAWING_SIDE`` squared, before anything is
decoded (``vision_core.load_image`` checks the header).

>>> drawing = digit_canvas(stroke_width=22, key="canvas")   # in a page: None until the first stroke, "" when cleared
>>> image = decode_drawing(drawing) if drawing else None     # an RGB PIL image, or DrawingError
"""

from __future__ import annotations

import base64
import binascii

import streamlit as st
from PIL import Image

from vision_core.images import ImageError, load_image

CANVAS_SIZE = 280  # CSS pixels on screen
SEND_SIZE = 140  # pixels a side of the image sent, whatever the screen's pixel ratio
MAX_DRAWING_SIDE = 2 * CANVAS_SIZE
# A drawing is a few kB as PNG (4.4 kB of data URL for a 7 at 140 x 140); even a 280 x 280 canvas of random noise,
# the worst a PNG can be, is about 320 kB of data URL. Anything longer is not from our canvas.
MAX_DRAWING_CHARS = 400_000
_PREFIX = "data:image/png;base64,"


class DrawingError(ValueError):
    """The canvas value is not a drawing from our canvas (too long, not a PNG data URL, too many pixels)."""


HTML = f"""<div class="pad">
  <canvas class="digit-canvas" width="{CANVAS_SIZE}" height="{CANVAS_SIZE}" role="img"
          aria-label="Drawing area: draw one digit"></canvas>
  <button type="button" class="clear" aria-label="Clear">Clear</button>
</div>"""

CSS = f"""
.pad {{ display: flex; flex-direction: column; align-items: flex-start; gap: 0.5rem; }}
.digit-canvas {{
  width: {CANVAS_SIZE}px; height: {CANVAS_SIZE}px; background: #000; border-radius: 0.5rem;
  touch-action: none; cursor: crosshair; display: block;
}}
.clear {{
  font-family: var(--st-font, sans-serif); font-size: var(--st-base-font-size, 1rem); line-height: 1.6;
  color: var(--st-text-color, #31333f); background: var(--st-background-color, #fff);
  border: 1px solid var(--st-border-color, rgba(49, 51, 63, 0.2)); border-radius: var(--st-button-radius, 0.5rem);
  padding: 0.25rem 0.75rem; min-height: 2.5rem; cursor: pointer;
}}
.clear:hover {{ border-color: var(--st-primary-color, #ff4b4b); color: var(--st-primary-color, #ff4b4b); }}
"""

# Called again with new ``data`` on every rerun that changes it (the stroke width) and on theme changes, on the same
# DOM: the pad is set up once per mounted element and kept on it, so a new width never touches the pixels.
JS = f"""
const SIZE = {CANVAS_SIZE}, SEND = {SEND_SIZE};

function setUp(root) {{
  const canvas = root.querySelector(".digit-canvas");
  const ratio = Math.max(1, Math.min(3, window.devicePixelRatio || 1));  // crisp strokes on high-density screens
  canvas.width = canvas.height = Math.round(SIZE * ratio);
  const pen = canvas.getContext("2d");
  pen.setTransform(ratio, 0, 0, ratio, 0, 0);
  const pad = {{ width: 22, send: null, drawing: false, last: null, inked: false }};

  const blank = () => {{ pen.fillStyle = "#000"; pen.fillRect(0, 0, SIZE, SIZE); pad.inked = false; }};
  const at = (event) => {{
    const box = canvas.getBoundingClientRect();
    return [(event.clientX - box.left) * SIZE / box.width, (event.clientY - box.top) * SIZE / box.height];
  }};
  const dot = ([x, y]) => {{
    pen.beginPath(); pen.arc(x, y, pad.width / 2, 0, 2 * Math.PI); pen.fillStyle = "#fff"; pen.fill();
  }};
  const line = (from, to) => {{
    pen.strokeStyle = "#fff"; pen.lineWidth = pad.width; pen.lineCap = "round"; pen.lineJoin = "round";
    pen.beginPath(); pen.moveTo(...from); pen.lineTo(...to); pen.stroke();
  }};
  const send = () => {{
    // The drawing at SEND x SEND whatever the pixel ratio: the server's bound and the models' input do not depend
    // on the screen.
    const out = document.createElement("canvas");
    out.width = out.height = SEND;
    out.getContext("2d").drawImage(canvas, 0, 0, SEND, SEND);
    pad.send?.("drawing", out.toDataURL("image/png"));
  }};

  const down = (event) => {{
    if (event.button !== 0 && event.pointerType === "mouse") return;
    event.preventDefault();
    canvas.setPointerCapture(event.pointerId);
    pad.drawing = true; pad.last = at(event); pad.inked = true;
    dot(pad.last);
  }};
  const move = (event) => {{
    if (!pad.drawing) return;
    event.preventDefault();
    const points = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
    for (const point of points.length ? points : [event]) {{
      const next = at(point); line(pad.last, next); pad.last = next;
    }}
  }};
  const up = (event) => {{
    if (!pad.drawing) return;
    pad.drawing = false;
    if (canvas.hasPointerCapture(event.pointerId)) canvas.releasePointerCapture(event.pointerId);
    send();
  }};
  const clear = () => {{ blank(); pad.send?.("drawing", ""); }};  // "": cleared, unlike null: never drawn
  const listeners = [[canvas, "pointerdown", down], [canvas, "pointermove", move], [canvas, "pointerup", up],
                     [canvas, "pointercancel", up], [root.querySelector(".clear"), "click", clear]];
  // Streamlit calls the cleanup when it unmounts the element, but may mount it again on the same DOM (seen after a
  // burst of whole-page reruns): listening is switched off and on, the pixels stay.
  pad.listen = () => {{
    if (!pad.listening) listeners.forEach(([target, type, handler]) => target.addEventListener(type, handler));
    pad.listening = true;
  }};
  pad.dispose = () => {{
    listeners.forEach(([target, type, handler]) => target.removeEventListener(type, handler));
    pad.listening = false;
  }};
  pad.restore = (url) => {{
    const image = new Image();
    image.onload = () => {{ pen.drawImage(image, 0, 0, SIZE, SIZE); pad.inked = true; }};
    image.src = url;
  }};
  blank();
  return pad;
}}

export default function ({{ data, setStateValue, parentElement }}) {{
  const root = parentElement.querySelector(".pad");
  if (!root) return;
  let pad = root.__digitPad;
  if (!pad) {{
    pad = root.__digitPad = setUp(root);
    if (data?.restore) pad.restore(data.restore);  // a drawing kept while the canvas was not on screen
  }}
  pad.listen();
  pad.send = setStateValue;
  pad.width = Number(data?.stroke_width) || 22;  // later strokes only: the pixels stay
  root.querySelector(".digit-canvas").dataset.strokeWidth = pad.width;  // what the next stroke uses, for tests
  return () => pad.dispose();
}}
"""

_component = st.components.v2.component("vision_explorer.digit_canvas", html=HTML, css=CSS, js=JS)


def digit_canvas(stroke_width: int, key: str, restore: str | None = None) -> str | None:
    """Mount the canvas; returns the drawing as a PNG data URL after a stroke, "" after Clear, None before either.

    ``restore``: a data URL this canvas drew earlier, painted when the element is mounted afresh (after the page
    or the input mode changed, Streamlit forgets a widget that was not on screen)."""
    data = {"stroke_width": int(stroke_width), "restore": restore}
    result = _component(
        key=key, data=data, default={"drawing": None}, on_drawing_change=lambda: None, width=CANVAS_SIZE
    )
    return result.drawing


def decode_drawing(value: str) -> Image.Image:
    """A canvas value (PNG data URL) -> an RGB image, within bounds checked before anything is decoded.

    Raises ``DrawingError`` for a value that is too long, not a PNG data URL, or declares more pixels than
    ``MAX_DRAWING_SIDE`` squared (the PNG header says so before any pixel is decoded).
    """
    if not isinstance(value, str) or not value.startswith(_PREFIX):
        raise DrawingError("the canvas sent something that is not a PNG drawing")
    if len(value) > MAX_DRAWING_CHARS:
        raise DrawingError(f"the drawing is {len(value):,} characters long; the canvas never sends more than "
                           f"{MAX_DRAWING_CHARS:,}")  # fmt: skip
    try:
        raw = base64.b64decode(value[len(_PREFIX) :], validate=True)
        return load_image(raw, max_pixels=MAX_DRAWING_SIDE**2, draft_size=None, max_side=None, matte="contrast")
    except (binascii.Error, ImageError) as error:
        raise DrawingError(f"the canvas sent an unusable drawing ({error})") from error
