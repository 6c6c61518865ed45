"""What the browser benchmarks share: the app as a subprocess, Debian's Chromium, strokes on the Draw page's canvas,
and the in-page stopwatch from a stroke's mouse-up to the answer showing.

Never a downloaded browser: /usr/bin/chromium (or ``chromium`` on PATH), driven by Playwright.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

from playwright.async_api import Page, expect

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = next((p for p in ("/usr/bin/chromium", shutil.which("chromium")) if p and Path(p).exists()), None)
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # The network is closed: background services would only flood the log with refused connections.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# A bound, not a wait: a training job or a parallel test run can starve the app for a while (and the first page load
# reads every model's weights).
STARTUP_S = 120
CANVAS = "canvas.digit-canvas"  # ui/canvas.py's drawing surface, inside the component's shadow root
ANSWER_LABELS = '[data-testid="stMetricValue"]'  # each model's digit on the Draw page (ui/digits.py)
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
EMPTY_HINT = "Draw a digit on the black canvas"

# Strokes in the unit square, y down: one stroke each, so every answer follows one mouse-up.
ONE = [(0.5, 0.15), (0.5, 0.85)]
SEVEN = [(0.22, 0.22), (0.78, 0.22), (0.42, 0.88)]
# Started on the left, away from the top band where streamlit-drawable-canvas lost strokes (so the benchmark measures
# the old canvas too); tests/test_browser.py draws the strokes that start at the very top.
ZERO = [(0.22, 0.5), (0.29, 0.8), (0.5, 0.9), (0.71, 0.8), (0.78, 0.5), (0.71, 0.2), (0.5, 0.1), (0.29, 0.2), (0.22, 0.48)]  # fmt: skip
STROKES = {1: ONE, 7: SEVEN, 0: ZERO}

# Installed before a stroke: resolves with the milliseconds from the next pointerup anywhere in the page (the canvas
# sits in a shadow root; pointer events are composed and reach the document) to the first animation frame that shows
# a current (not stale) "All N models say d." and every model's answer d. Frames, not polling: the figure is the
# page's own time to show.
ARM_STOPWATCH = """([text, digit, models, labels]) => {
    const current = selector => [...document.querySelectorAll(selector)].filter(e => !e.closest('[data-stale="true"]'));
    const shown = () => current('[data-testid="stAlertContentSuccess"]').some(e => e.textContent.includes(text))
        && current(labels).filter(e => e.textContent.trim() === digit).length === models;
    window.__answerMs = new Promise(resolve => {
        document.addEventListener('pointerup', () => {
            const released = performance.now();
            const frame = () => shown() ? resolve(performance.now() - released) : requestAnimationFrame(frame);
            requestAnimationFrame(frame);
        }, {capture: true, once: true});
    });
}"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


class AppDidNotStart(RuntimeError):
    """``streamlit run`` exited, or did not answer /_stcore/health within ``STARTUP_S``; the message ends with its log."""


def _wait_healthy(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AppDidNotStart(f"streamlit exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.read().decode().strip() == "ok":
                    return
        except OSError:
            pass  # not listening yet
        time.sleep(0.25)
    raise AppDidNotStart(
        f"streamlit did not answer {url}/_stcore/health within {STARTUP_S} s:\n{log.read_text()[-3000:]}"
    )


@contextlib.contextmanager
def running_app(
    log: Path,
    app_args: Sequence[str] = (),
    timings: Path | None = None,
    cpus: str | None = None,
    script: str = "app.py",
    env: dict[str, str] | None = None,
) -> Iterator[tuple[subprocess.Popen, str]]:
    """``streamlit run script`` on a free port with the server profile (.streamlit/config.toml: it listens on
    localhost only): (process, url on 127.0.0.1), stopped at the end whatever happens; ``AppDidNotStart`` if it
    does not come up.

    ``env``: variables set for the app on top of this process's (``VISION_EXPLORER_RUNS_DIR``, ...).
    ``timings``: record every script run's server time there (benchmarks/timed_streamlit.py). ``cpus``: pin the app
    to these cores ("0", "0-1"; Linux ``sched_setaffinity``), so browsers pinned elsewhere do not compete with it.
    """
    port = free_port()
    launcher = [sys.executable, str(ROOT / "benchmarks" / "timed_streamlit.py"), str(timings)] if timings else None
    command = [*(launcher or [sys.executable, "-m", "streamlit"]), "run", script, "--server.headless", "true"]
    command += ["--server.port", str(port), "--browser.gatherUsageStats", "false", *app_args]
    pin = (lambda: os.sched_setaffinity(0, parse_cpus(cpus))) if cpus else None
    with log.open("w") as log_file:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            preexec_fn=pin,
            env={**os.environ, **(env or {})},
        )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(url, process, log)
        yield process, url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def parse_cpus(text: str) -> set[int]:
    """ "0", "0,2", "1-3" -> a set of core numbers, as taskset's --cpu-list."""
    cores: set[int] = set()
    for part in text.split(","):
        low, _, high = part.partition("-")
        cores.update(range(int(low), int(high or low) + 1))
    return cores


async def wait_idle(page: Page, timeout_ms: float) -> None:
    """The script run is over and nothing is left over from an earlier run (Streamlit marks those stale)."""
    await expect(page.locator(IDLE)).to_have_count(1, timeout=timeout_ms)
    await expect(page.locator('[data-stale="true"]')).to_have_count(0, timeout=timeout_ms)


async def draw(page: Page, stroke: Sequence[tuple[float, float]], shift: float = 0.0, canvas: str = CANVAS) -> float:
    """Draw one stroke (points in the unit square, moved right by ``shift``) on the canvas; returns the
    ``time.perf_counter()`` of the mouse-up."""
    surface = page.locator(canvas)
    await surface.scroll_into_view_if_needed()
    box = await surface.bounding_box()
    assert box is not None and round(box["width"]) == round(box["height"]) == 280, box
    points = [(box["x"] + (x + shift) * box["width"], box["y"] + y * box["height"]) for x, y in stroke]
    await page.mouse.move(*points[0])
    await page.mouse.down()
    for point in points[1:]:
        await page.mouse.move(*point, steps=25)  # many small moves, as a hand makes
    released = time.perf_counter()
    await page.mouse.up()
    return released


def verdict(digit: int, models: int) -> str:
    """What the Draw page says when every model reads ``digit``."""
    return f"All {models} models say {digit}." if models > 1 else f"The model says {digit}."


async def timed_stroke(
    page: Page,
    stroke: Sequence[tuple[float, float]],
    digit: int,
    models: int,
    timeout_ms: float,
    shift: float = 0.0,
    canvas: str = CANVAS,
    labels: str = ANSWER_LABELS,
) -> float:
    """Draw ``stroke`` and return the milliseconds from its mouse-up to every one of ``models`` answering ``digit``
    (and the page saying they agree), as the page measured."""
    answer = verdict(digit, models)
    await page.evaluate(ARM_STOPWATCH, [answer, str(digit), models, labels])
    await draw(page, stroke, shift, canvas)
    try:
        return await asyncio.wait_for(page.evaluate("window.__answerMs"), timeout_ms / 1000)
    except TimeoutError as error:
        shown = await shown_answers(page)
        raise AssertionError(f"no {answer!r} within {timeout_ms / 1000:.0f} s; the page shows {shown}") from error


async def shown_answers(page: Page) -> dict[str, str]:
    """Model title -> the digit the Draw page shows for it (each model's st.metric)."""
    return await page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('[data-testid="stMetric"]')]
            .filter(e => !e.closest('[data-stale="true"]'))
            .map(e => [e.querySelector('[data-testid="stMetricLabel"]').innerText.trim(),
                       e.querySelector('[data-testid="stMetricValue"]').innerText.trim()]))"""
    )
