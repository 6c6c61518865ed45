"""Load test: a class of students on one app process while a fine-tune run trains (``make loadtest``).

One ``streamlit run app.py`` process; one headless Chromium (Debian's /usr/bin/chromium, never a downloaded browser)
driven by Playwright with one browser context per user:

- a **lecturer** opens the Draw and Photo pages first (so the models are loaded, as before a class; ``--cold`` skips
  this), then trains LeNet from the Fine-tune page (1 epoch of 18,000 images per run, ``--epochs``), keeping that
  page open (its live chart refreshes every second) and starting the next run whenever one finishes, so training
  never pauses; when the students are done it stops the run in progress (or, if none has finished yet, lets it end);
- once the first run trains, **20 students** (``--sessions``) at once each draw a 1 on the Draw page, clear it, draw
  a 7 in two strokes, then switch the Photo explorer to "Upload a photo" and upload a sample photo (EfficientNet-Lite0
  where ResNet-50's weights are missing).

``--no-train`` leaves the lecturer's run out (the Fine-tune page is the part of the test most likely to change).
``--app-cpus 0 --browser-cpus 1`` pins the app to core 0 and Chromium to core 1 (``os.sched_setaffinity``, as
``taskset --cpu-list``), so that 20 browsers do not take the CPU from the server they measure (``make loadtest``).

Every student must get the right answers: every digit model says the digit drawn (the page's "All N models say d",
and each model's answer), and the photo's top-1 is its class as tests/test_photo.py has it (coffee -> espresso,
chelsea -> a cat, rocket -> missile/projectile/space shuttle, motorcycle -> moped/motor scooter), with no exception on
either page. Training must cover the students' whole time, and a run that finishes must reach ``--min-accuracy``.

Figures: p50/p95 of the time from a stroke's mouse-up to the right prediction showing (3 strokes per student; timed
in the page, to the first animation frame that shows it) and from choosing the file to the top-3 showing (polled in
the page every 50 ms); the server time of the script runs (benchmarks/timed_streamlit.py); every student's results; the runs and the
training pace; the machine's load and who used the CPU (the app, Chromium, other processes); the app's peak RSS; how
long the server took to answer /_stcore/health (a stall there holds up every session at once); error lines in the
app's log. Exits 1 on any wrong answer, error or timeout (``--timeout`` per step), or when training did not overlap.

    .venv/bin/python benchmarks/loadtest.py --app-cpus 0 --browser-cpus 1   # 20 students, as make loadtest
    .venv/bin/python benchmarks/loadtest.py --sessions 3     # a quick check
    .venv/bin/python benchmarks/loadtest.py --no-train       # what the training run costs the students
    .venv/bin/python benchmarks/loadtest.py --app-args="--runner.postScriptGC false"   # any `streamlit run` option
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from playwright.async_api import Browser, Page, async_playwright, expect
from playwright.async_api import TimeoutError as PlaywrightTimeoutError

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere, without installing the package

from benchmarks.browser_kit import (
    CHROMIUM,
    CHROMIUM_ARGS,
    EMPTY_HINT,
    parse_cpus,
    percentile,
    running_app,
    shown_answers,
    timed_stroke,
    wait_idle,
)
from vision_core import get_spec, list_models

ROOT = Path(__file__).resolve().parents[1]
VIEWPORT = {"width": 1280, "height": 1000}
SAMPLES = ROOT / "data" / "samples"
CAT_CLASSES = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}  # as tests/test_photo.py
PHOTOS = {  # sample -> acceptable top-1 classes
    "coffee.png": {"espresso"},
    "chelsea.png": CAT_CLASSES,
    "rocket.jpg": {"missile", "projectile", "space shuttle"},
    "motorcycle_left.png": {"moped", "motor scooter"},  # ImageNet-1k has no "motorcycle"
}
# Strokes in the unit square, y down (tests/test_browser.py): a 1, then a 7 as a slanted stem and a top bar.
ONE = [(0.5, 0.15), (0.5, 0.85)]
SEVEN_STEM = [(0.78, 0.18), (0.42, 0.86)]
SEVEN_BAR = [(0.22, 0.18), (0.78, 0.18)]
DIGIT_MODELS = [get_spec(name).title for name in list_models(task="digits")]

TOP3_SHOWN = """() => {
    const bars = [...document.querySelectorAll('[data-testid="stProgress"]')].filter(e => !e.closest('[data-stale="true"]'));
    return bars.length >= 3 ? bars.map(e => e.innerText.trim()) : null;
}"""
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PROGRESS = re.compile(r"Step ([\d,]+) of ([\d,]+)")


@dataclass
class Student:
    index: int
    photo: str
    stroke_s: list[float] = field(default_factory=list)  # mouse-up -> right prediction shown
    upload_s: float | None = None  # file chosen -> top-3 shown
    top3: list[str] = field(default_factory=list)
    started: float = 0.0
    finished: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and len(self.stroke_s) == 3 and self.upload_s is not None


@dataclass
class Run:
    number: str  # the page's "Run #n"
    started: float
    ended: float | None = None
    total_steps: int = 0
    outcome: str = ""  # "test accuracy 97.98%" or "stopped at step ..."


@dataclass
class Training:
    """The lecturer's runs, back to back, and the progress read off the page every 2 s."""

    runs: list[Run] = field(default_factory=list)
    samples: list[tuple[float, int]] = field(default_factory=list)  # (time, steps done over all runs)
    problems: list[str] = field(default_factory=list)


def _stat(pid: int) -> tuple[int, float]:
    """(parent pid, CPU seconds used: user + system) of a live process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _system_cpu_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores together."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    return (sum(values) - values[3] - values[4]) / CLOCK_TICKS, sum(values) / CLOCK_TICKS


class Monitor:
    """Twice a second: the load average, the app's RSS, and the CPU seconds of the app, of this script's other
    processes (Chromium, Playwright's driver) and of the whole machine (other users included)."""

    def __init__(self, app_pid: int) -> None:
        self.app_pid = app_pid
        self.load: list[float] = []
        self.rss_mb: list[float] = []
        self._cpu: dict[int, float] = {}  # pid -> CPU seconds when last seen (processes come and go)
        self._start_cpu: dict[int, float] = {}
        self._system0 = _system_cpu_s()
        self._t0 = time.monotonic()
        self.sample()
        self._start_cpu = dict(self._cpu)

    def _descendants(self) -> set[int]:
        parents = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError, IndexError, ValueError):
                    parents[int(entry.name)] = _stat(int(entry.name))[0]
        mine, added = {os.getpid()}, True
        while added:
            new = {pid for pid, parent in parents.items() if parent in mine and pid not in mine}
            mine |= new
            added = bool(new)
        return mine

    def sample(self) -> None:
        self.load.append(os.getloadavg()[0])
        for pid in self._descendants():
            with contextlib.suppress(OSError, IndexError, ValueError):
                self._cpu[pid] = _stat(pid)[1]
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.app_pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    self.rss_mb.append(int(line.split()[1]) / 1024)

    def cores(self) -> dict[str, float]:
        """Average cores used since the start: by the app, by Chromium and Playwright, by the whole machine."""
        elapsed = time.monotonic() - self._t0
        used = {pid: cpu - self._start_cpu.get(pid, 0.0) for pid, cpu in self._cpu.items()}
        app = used.get(self.app_pid, 0.0)
        ours = sum(used.values()) - used.get(os.getpid(), 0.0)
        busy, _ = _system_cpu_s()
        return {"app": app / elapsed, "browser": (ours - app) / elapsed, "machine": (busy - self._system0[0]) / elapsed}

    async def watch(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.sample()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)


class HealthProbe(threading.Thread):
    """Asks the app's /_stcore/health every 0.25 s: its answer time shows when the server (its event loop, or the
    GIL) is held up for everyone at once, as opposed to one session's script being slow."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = f"{url}/_stcore/health"
        self.seconds: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.25):
            start = time.perf_counter()
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(self.url, timeout=60) as response:
                    response.read()
                self.seconds.append(time.perf_counter() - start)


async def expect_digit(
    page: Page, stroke: list[tuple[float, float]], digit: int, shift: float, timeout_ms: float
) -> float:
    """Draw ``stroke`` and wait for every model to say ``digit``; returns the seconds from the mouse-up to the
    page saying so (measured in the page: the first animation frame that shows it)."""
    milliseconds = await timed_stroke(page, stroke, digit, len(DIGIT_MODELS), timeout_ms, shift=shift)
    await wait_idle(page, timeout_ms)
    shown = await shown_answers(page)
    if shown != dict.fromkeys(DIGIT_MODELS, str(digit)):
        raise AssertionError(f"every model should say {digit}; the page shows {shown}")
    return milliseconds / 1000


async def no_exception(page: Page, where: str) -> None:
    count = await page.get_by_test_id("stException").count()
    if count:
        raise AssertionError(f"{where}: {count} exception(s) on the page")


async def student(browser: Browser, url: str, me: Student, timeout_ms: float) -> None:
    context = await browser.new_context(viewport=VIEWPORT)
    page = await context.new_page()
    page.set_default_timeout(timeout_ms)
    shift = (me.index % 5 - 2) * 0.03  # each student draws a little to the left or right
    me.started = time.perf_counter()
    try:
        await page.goto(f"{url}/draw")
        await expect(page.get_by_text(EMPTY_HINT)).to_be_visible(timeout=timeout_ms)
        await expect(page.get_by_test_id("stAlertContentError")).to_have_count(0)
        me.stroke_s.append(await expect_digit(page, ONE, 1, shift, timeout_ms))
        await page.get_by_role("button", name="Clear").click()
        await expect(page.get_by_text(EMPTY_HINT)).to_be_visible(timeout=timeout_ms)
        await wait_idle(page, timeout_ms)
        me.stroke_s.append(await expect_digit(page, SEVEN_STEM, 1, shift, timeout_ms))
        me.stroke_s.append(await expect_digit(page, SEVEN_BAR, 7, shift, timeout_ms))
        await no_exception(page, "Draw page")

        await page.goto(f"{url}/photo")
        radio = page.get_by_test_id("stRadio").locator("label").filter(has_text="Upload a photo")
        await radio.click()
        await expect(page.get_by_text("Upload a photo to explore it")).to_be_visible(timeout=timeout_ms)
        await wait_idle(page, timeout_ms)
        chosen = time.perf_counter()
        await page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(SAMPLES / me.photo)
        try:
            handle = await page.wait_for_function(TOP3_SHOWN, polling=50, timeout=timeout_ms)
        except Exception as error:
            raise AssertionError(f"no top-3 for {me.photo} within {timeout_ms / 1000:.0f} s") from error
        me.upload_s = time.perf_counter() - chosen
        me.top3 = [text.rsplit(":", 1)[0] for text in await handle.json_value()][:3]
        if me.top3[0] not in PHOTOS[me.photo]:
            me.problems.append(f"{me.photo}: top-1 is {me.top3[0]!r}, expected one of {sorted(PHOTOS[me.photo])}")
        await wait_idle(page, timeout_ms)  # the rest of the page (feature maps, Grad-CAM) is load too
        await no_exception(page, "Photo page")
    except Exception as error:
        me.problems.append(f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")
    finally:
        me.finished = time.perf_counter()
        await context.close()


async def warm_up(browser: Browser, url: str, timeout_ms: float) -> None:
    """What a lecturer does before class: open the Draw and Photo pages once, so every model is loaded."""
    context = await browser.new_context(viewport=VIEWPORT)
    page = await context.new_page()
    await page.goto(f"{url}/draw")
    await expect(page.get_by_text(EMPTY_HINT)).to_be_visible(timeout=timeout_ms)
    await page.goto(f"{url}/photo")
    await expect(page.get_by_test_id("stProgress")).to_have_count(3, timeout=timeout_ms)
    await wait_idle(page, timeout_ms)
    await context.close()


async def open_finetune(browser: Browser, url: str, epochs: int, timeout_ms: float) -> Page:
    """The lecturer's Fine-tune page, set up for a LeNet run from scratch: the page's defaults but ``epochs``."""
    context = await browser.new_context(viewport=VIEWPORT)
    page = await context.new_page()
    page.set_default_timeout(timeout_ms)
    await page.goto(f"{url}/finetune")
    await expect(page.get_by_role("button", name="Start run")).to_be_visible(timeout=timeout_ms)
    await page.get_by_label("Epochs", exact=True).fill(str(epochs))
    await page.get_by_label("Epochs", exact=True).press("Enter")
    await wait_idle(page, timeout_ms)
    return page


# Read from the page's live elements only: while a rerun is under way, the last run's heading, bar and results stay on
# the page, marked stale, until the run that replaces them is over.
NEW_RUN = """(previous) => {
    const live = e => !e.closest('[data-stale="true"]');
    const headings = [...document.querySelectorAll('h1, h2, h3')].filter(live).map(e => e.innerText.match(/^Run #\\d+/));
    const heading = headings.find(m => m !== null);
    return heading && !previous.includes(heading[0]) ? heading[0] : null;
}"""
# The bar only while its run trains (stale or not: under load the live fragment is often mid-rerun, hence stale).
LIVE_PROGRESS = """() => [...document.querySelectorAll('[data-testid="stProgress"]')]
    .map(e => e.innerText).find(t => /Step [\\d,]+ of/.test(t)) || ''"""
TEST_ACCURACY = """() => {
    const metric = [...document.querySelectorAll('[data-testid="stMetric"]')]
        .find(e => !e.closest('[data-stale="true"]') && e.innerText.includes('Test accuracy'));
    return metric ? metric.querySelector('[data-testid="stMetricValue"]').innerText.trim() : null;
}"""

ENDED = (
    """() => {
    const live = e => !e.closest('[data-stale="true"]');
    const stopped = [...document.querySelectorAll('[data-testid="stAlertContentWarning"], [data-testid="stAlertContentInfo"]')].filter(live)
        .find(e => e.innerText.includes('Stopped') || e.innerText.includes('cancelled'));
    return stopped ? stopped.innerText : ("""
    + TEST_ACCURACY
    + """)();
}"""
)


async def start_run(page: Page, training: Training, timeout_ms: float) -> Run:
    """Click Start run and wait until the page shows the new run (a run number not seen before): it may be starting,
    training, or, on an idle core, done already (LeNet's 141 steps take about 7 s)."""
    previous = [run.number for run in training.runs]
    for attempt in range(3):  # a click on a button that a rerun is replacing can be lost: click again
        await wait_idle(page, timeout_ms)
        await page.get_by_role("button", name="Start run").click()
        try:
            number = await page.wait_for_function(NEW_RUN, arg=previous, polling=100, timeout=timeout_ms / 3)
            break
        except PlaywrightTimeoutError:
            await page.screenshot(path=f"{tempfile.gettempdir()}/loadtest-start-run-{len(previous) + 1}-{attempt}.png")
            if attempt == 2:
                raise
    run = Run(number=await number.json_value(), started=time.perf_counter())
    training.runs.append(run)
    return run


async def keep_training(
    page: Page,
    training: Training,
    students_done: asyncio.Event,
    min_accuracy: float,
    after_s: float,
    timeout_ms: float,
) -> None:
    """Keep one run training until the students are done: start the next when one finishes (checking its test
    accuracy), then stop the last one (a run finished during the load is enough) or let it finish."""
    try:
        await _keep_training(page, training, students_done, min_accuracy, after_s, timeout_ms)
    except Exception as error:
        lines = str(error).splitlines() or [""]
        waiting = next((line.strip() for line in lines if "waiting for" in line), "")  # which step, for Playwright's
        training.problems.append(f"the lecturer's page: {type(error).__name__}: {lines[0]} {waiting}".strip())


async def _keep_training(
    page: Page,
    training: Training,
    students_done: asyncio.Event,
    min_accuracy: float,
    after_s: float,
    timeout_ms: float,
) -> None:
    done_before = 0  # steps of the runs that have ended
    deadline = None  # for the run in progress when the students are done, if none has finished yet
    run = await start_run(page, training, timeout_ms)
    while True:
        text = await page.evaluate(LIVE_PROGRESS)  # not a locator: the bar may be gone by the time it is read
        if match := PROGRESS.search(text):
            step, run.total_steps = (int(g.replace(",", "")) for g in match.groups())
            training.samples.append((time.perf_counter(), done_before + step))
        failed = page.get_by_test_id("stAlertContentError")
        if await failed.count():
            training.problems.append(f"{run.number} failed: {await failed.first.inner_text()}")
            return
        if value := await page.evaluate(TEST_ACCURACY):
            run.ended = time.perf_counter()
            run.outcome = f"test accuracy {value}"
            if float(value.rstrip("%")) < min_accuracy:
                training.problems.append(f"{run.number}: test accuracy {value}, below {min_accuracy}%")
            done_before += run.total_steps
            training.samples.append((run.ended, done_before))
            if students_done.is_set():
                return
            run = await start_run(page, training, timeout_ms)
            continue
        if students_done.is_set() and deadline is None:
            deadline = time.perf_counter() + after_s
        if deadline is not None and (any(r.ended for r in training.runs) or time.perf_counter() > deadline):
            stop = page.get_by_role("button", name=re.compile(r"^(Stop|Cancel)$"))
            if not await stop.count():  # between two reruns, or the run is over: look again
                await asyncio.sleep(2)
                continue
            await stop.first.click()
            # The run may finish on its own while Stop is on its way: then its results show instead.
            ending = await page.wait_for_function(ENDED, polling=200, timeout=timeout_ms)
            run.ended = time.perf_counter()
            text = await ending.json_value()
            where = re.search(r"at step [\d,]+ of [\d,]+ after [\d.]+ s", text)
            run.outcome = (
                f"stopped {where.group() if where else ''} when the students were done"
                if text.startswith(("Stopped", "This run was cancelled"))
                else f"test accuracy {text} (it finished before Stop arrived)"
            )
            return
        await asyncio.sleep(2)


def report(
    students: list[Student],
    training: Training,
    monitor: Monitor,
    probe: HealthProbe,
    baseline_load: float,
    wall_s: float,
    log: Path,
    train: bool,
) -> bool:
    strokes = [s for student in students for s in student.stroke_s]
    uploads = [student.upload_s for student in students if student.upload_s is not None]
    print(
        f"\n{'student':>7}  {'photo':<20} {'strokes: mouse-up -> prediction (s)':<36} {'upload -> top-3':>15}  result"
    )
    for me in students:
        stroke_text = " ".join(f"{s:6.2f}" for s in me.stroke_s)
        upload = f"{me.upload_s:13.2f} s" if me.upload_s is not None else f"{'-':>15}"
        verdict = f"ok, top-3 {me.top3}" if me.ok else "FAILED: " + "; ".join(me.problems)
        print(f"{me.index:>7}  {me.photo:<20} {stroke_text:<36} {upload}  {verdict}")
    print()
    for name, values in (("mouse-up -> prediction", strokes), ("upload -> top-3", uploads)):
        if values:
            print(
                f"{name:<24} n={len(values):<3} p50 {percentile(values, 50):6.2f} s   p95 {percentile(values, 95):6.2f} s"
                f"   min {min(values):6.2f} s   max {max(values):6.2f} s"
            )
    first, last = min(s.started for s in students), max(s.finished for s in students)
    print(f"students: {last - first:.1f} s from the first page load to the last result; whole test {wall_s:.1f} s")
    for run in training.runs:
        took = f"{run.ended - run.started:.1f} s" if run.ended else "still running"
        print(f"fine-tune {run.number} (LeNet, {run.total_steps:,} steps): seen training for {took}, {run.outcome}")
    during = [(t, steps) for t, steps in training.samples if first <= t <= last]
    if len(during) > 1:
        pace = (during[-1][1] - during[0][1]) / (during[-1][0] - during[0][0])
        print(f"training pace while the students worked: {pace:.2f} steps/s (batch 128)")
    cores = monitor.cores()
    print(
        f"machine: {os.cpu_count()} cores; load average (1 min) {baseline_load:.1f} before the test, up to "
        f"{max(monitor.load):.1f} during it; cores busy on average: {cores['machine']:.2f} in all, the app "
        f"{cores['app']:.2f}, Chromium + Playwright {cores['browser']:.2f}, others "
        f"{max(0.0, cores['machine'] - cores['app'] - cores['browser']):.2f}; app peak RSS {max(monitor.rss_mb):,.0f} MB"
    )
    if probe.seconds:
        stalls = sum(seconds > 1 for seconds in probe.seconds)
        print(
            f"server /_stcore/health, {len(probe.seconds)} probes: p50 {percentile(probe.seconds, 50) * 1000:.0f} ms, "
            f"p99 {percentile(probe.seconds, 99) * 1000:.0f} ms, max {max(probe.seconds):.2f} s; {stalls} over 1 s"
        )
    errors = [
        line for line in log.read_text(errors="replace").splitlines() if re.search(r"Traceback|Error|Exception", line)
    ]
    print(f"app log: {len(errors)} error line(s)" + "".join(f"\n    {line}" for line in errors[:20]))

    problems = [f"student {me.index}: {'; '.join(me.problems) or 'incomplete'}" for me in students if not me.ok]
    problems += training.problems
    if train and not any(run.outcome.startswith("test accuracy") for run in training.runs):
        problems.append("no fine-tune run finished with a test accuracy")
    gaps = [b.started - a.ended for a, b in itertools.pairwise(training.runs) if a.ended]
    if gaps and max(gaps) > 30:
        problems.append(f"training paused for {max(gaps):.0f} s between two runs")
    if train and (not training.runs or training.runs[0].started > first or (training.runs[-1].ended or last) < last):
        problems.append("training did not cover the whole time the students worked")
    problems += [f"app log: {line}" for line in errors[:5]]
    during = "while a fine-tune run trained" if train else "(no training)"
    print("\n" + (f"PASS: every student got the right answers {during}" if not problems else "FAIL"))
    for problem in problems:
        print(f"  - {problem}")
    return not problems


def server_runs(timings: Path) -> str:
    """The server time of the script runs during the test (benchmarks/timed_streamlit.py), fragment runs apart."""
    runs = [json.loads(line) for line in timings.read_text().splitlines()]
    lines = []
    for name, chosen in (("fragment runs (strokes)", [r["ms"] for r in runs if r["fragment"]]),
                         ("whole-page runs", [r["ms"] for r in runs if not r["fragment"]])):  # fmt: skip
        if chosen:
            lines.append(f"server time, {name}: n={len(chosen)}, p50 {percentile(chosen, 50):.0f} ms, "
                         f"p95 {percentile(chosen, 95):.0f} ms")  # fmt: skip
    return "\n".join(lines)


async def run_class(
    browser: Browser, url: str, args: argparse.Namespace, students: list[Student], training: Training
) -> None:
    """The lecturer's warm-up and training run (unless turned off) and every student at once."""
    timeout_ms = args.timeout * 1000
    if not args.cold:
        t = time.perf_counter()
        await warm_up(browser, url, timeout_ms)
        print(f"warm-up (Draw and Photo pages, models loaded): {time.perf_counter() - t:.1f} s")
    students_done = asyncio.Event()
    trainer = None
    if args.train:
        lecturer = await open_finetune(browser, url, args.epochs, timeout_ms)
        trainer = asyncio.create_task(
            keep_training(lecturer, training, students_done, args.min_accuracy, args.train_timeout, timeout_ms)
        )
        while not training.samples and not trainer.done():
            await asyncio.sleep(0.5)
        print(f"fine-tune {training.runs[0].number} started" if training.runs else "no fine-tune run")
    await asyncio.gather(*(student(browser, url, me, timeout_ms) for me in students))
    students_done.set()
    if trainer is not None:
        print("students done; stopping the fine-tune run (or letting the first one finish)")
        await trainer


async def main(args: argparse.Namespace) -> int:
    if CHROMIUM is None:
        sys.exit("no Chromium at /usr/bin/chromium or on PATH (apt install chromium)")
    begin = time.perf_counter()
    baseline_load = os.getloadavg()[0]  # other work on this machine
    folder = Path(tempfile.mkdtemp(prefix="loadtest-"))
    log, timings = folder / "streamlit.log", folder / "runs.jsonl"
    timings.touch()
    if args.browser_cpus:  # this process, and the Chromium it starts, on these cores
        os.sched_setaffinity(0, parse_cpus(args.browser_cpus))
    photos = list(PHOTOS)
    students = [Student(index=i + 1, photo=photos[i % len(photos)]) for i in range(args.sessions)]
    training = Training()
    with running_app(log, args.app_args.split(), timings=timings, cpus=args.app_cpus) as (app, url):
        pinned = f"app on cores {args.app_cpus or 'any'}, browsers on cores {args.browser_cpus or 'any'}"
        print(f"app on {url} (pid {app.pid}{', ' + args.app_args if args.app_args else ''}), log {log}; {pinned}; "
              f"{args.sessions} students, {len(DIGIT_MODELS)} digit models")  # fmt: skip
        monitor = Monitor(app.pid)
        probe = HealthProbe(url)
        probe.start()
        stop_monitor = asyncio.Event()
        watcher = asyncio.create_task(monitor.watch(stop_monitor))
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            await run_class(browser, url, args, students, training)
            await browser.close()
        stop_monitor.set()
        probe.stop.set()
        await watcher
    print(server_runs(timings))
    passed = report(students, training, monitor, probe, baseline_load, time.perf_counter() - begin, log, args.train)
    if passed:
        shutil.rmtree(folder)  # kept when something failed
    return 0 if passed else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=20, help="students at once (default 20)")
    parser.add_argument("--app-cpus", help='pin the app to these cores, e.g. "0" (as taskset --cpu-list)')
    parser.add_argument("--browser-cpus", help='pin Chromium (and this script) to these cores, e.g. "1"')
    parser.add_argument("--epochs", type=int, default=1, help="epochs of each LeNet run (18,000 images each)")
    parser.add_argument("--min-accuracy", type=float, default=90, help="a finished run's test accuracy at least (%%)")
    parser.add_argument("--timeout", type=float, default=180, help="seconds any one step may take (default 180)")
    parser.add_argument("--train-timeout", type=float, default=300, help="seconds a run may take after the students")
    parser.add_argument(
        "--cold", action="store_true", help="no warm-up: the students' first page loads load the models"
    )
    parser.add_argument(
        "--app-args", default="", help='more `streamlit run` options, e.g. "--runner.postScriptGC false"'
    )
    parser.add_argument(
        "--no-train",
        dest="train",
        action="store_false",
        help="no lecturer's fine-tune run (to see what training costs, or while the Fine-tune page changes)",
    )
    sys.exit(asyncio.run(main(parser.parse_args())))
