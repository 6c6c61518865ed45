"""The Draw page for one user, in a real browser: a stroke's mouse-up to every model's updated answer, and the
server time of the rerun that stroke causes.

    python benchmarks/draw_latency.py [--strokes 30]

One ``streamlit run app.py`` (through benchmarks/timed_streamlit.py, which times every script run) and one headless
Chromium. Each round clears the canvas, draws a 1, a 7 or a 0 in one stroke, and waits for "All 3 models say d.".
Prints p50/p90 of mouse-up -> answer (measured in the page: the first animation frame that shows the answer) and
the median and p90 of the server time per stroke (every script run that ended after the mouse-up, summed).
Targets (issue 10): p50 <= 300 ms, p90 <= 500 ms; server time <= 20 ms median.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from playwright.async_api import async_playwright, expect

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere, without installing the package

from benchmarks.browser_kit import (
    ANSWER_LABELS,
    CANVAS,
    CHROMIUM,
    CHROMIUM_ARGS,
    EMPTY_HINT,
    STROKES,
    percentile,
    running_app,
    timed_stroke,
    wait_idle,
)
from vision_core.registry import SHIPPED_DIGIT_MODELS

TIMEOUT_MS = 60_000


def server_ms(timings: Path, since: float) -> tuple[float, float, int]:
    """(wall milliseconds, CPU milliseconds, number) of the script runs that ended after ``since`` (a time.time())."""
    runs = [json.loads(line) for line in timings.read_text().splitlines()]
    after = [run for run in runs if run["end"] >= since]
    return sum(run["ms"] for run in after), sum(run["cpu_ms"] for run in after), len(after)


async def measure(url: str, timings: Path, args: argparse.Namespace) -> list[tuple[float, float, float, int]]:
    """(mouse-up -> answer ms, server wall ms, server CPU ms, script runs) per measured stroke."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = await browser.new_page(viewport={"width": 1400, "height": 1200})
        page.set_default_timeout(TIMEOUT_MS)
        await page.goto(f"{url}/draw")
        await expect(page.get_by_text(EMPTY_HINT)).to_be_visible(timeout=TIMEOUT_MS)
        results = []
        digits = list(STROKES)
        for number in range(args.warmup + args.strokes):
            await wait_idle(page, TIMEOUT_MS)
            if number:
                await page.get_by_role("button", name="Clear").click()
                await expect(page.get_by_text(EMPTY_HINT)).to_be_visible(timeout=TIMEOUT_MS)
                await wait_idle(page, TIMEOUT_MS)
            digit = digits[number % len(digits)]
            since = time.time()
            answer_ms = await timed_stroke(
                page,
                STROKES[digit],
                digit,
                len(SHIPPED_DIGIT_MODELS),
                TIMEOUT_MS,
                canvas=args.canvas,
                labels=args.labels,
            )
            await wait_idle(page, TIMEOUT_MS)
            if number >= args.warmup:
                results.append((answer_ms, *server_ms(timings, since)))
        await browser.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--strokes", type=int, default=30, help="strokes measured (after --warmup)")
    parser.add_argument("--warmup", type=int, default=3)
    # For the page before ui/canvas.py: --canvas canvas.upper-canvas --labels '[data-testid="stMetricValue"]'
    parser.add_argument("--canvas", default=CANVAS, help="CSS selector of the drawing surface")
    parser.add_argument("--labels", default=ANSWER_LABELS, help="CSS selector of each model's answer")
    parser.add_argument("--app-cpus", help="pin the app to these cores (e.g. 0); the browser gets the others")
    args = parser.parse_args()
    if CHROMIUM is None:
        sys.exit("no Chromium at /usr/bin/chromium or on PATH (apt install chromium)")
    folder = Path(tempfile.mkdtemp(prefix="draw-latency-"))
    timings = folder / "runs.jsonl"
    timings.touch()
    if args.app_cpus:  # this process and the Chromium it starts take the other cores
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)) - {int(c) for c in args.app_cpus.split(",")})
    print(f"app log and run times: {folder}")
    with running_app(folder / "streamlit.log", timings=timings, cpus=args.app_cpus) as (_, url):
        results = asyncio.run(measure(url, timings, args))
    answers = [r[0] for r in results]
    servers, cpus = [r[1] for r in results], [r[2] for r in results]
    print(f"{len(results)} strokes, one user; load average {os.getloadavg()[0]:.2f} at the end")
    print(
        f"mouse-up -> all models' answer: p50 {percentile(answers, 50):.0f} ms, p90 {percentile(answers, 90):.0f} ms, "
        f"min {min(answers):.0f} ms, max {max(answers):.0f} ms"
    )
    print(
        f"server time per stroke: median {statistics.median(servers):.1f} ms, p90 {percentile(servers, 90):.1f} ms "
        f"({statistics.mean(r[3] for r in results):.2f} script runs per stroke); its CPU time: median "
        f"{statistics.median(cpus):.1f} ms, p90 {percentile(cpus, 90):.1f} ms"
    )


if __name__ == "__main__":
    main()
