"""What the browser tests share: the app as a real ``streamlit run``, Debian's Chromium (never a downloaded browser)
driven by Playwright, and a page per test. A pytest plugin (tests/conftest.py loads it): the fixtures ``browser``
and ``page`` are everywhere; the test modules import ``expect``, ``serve`` and the ``needs_chromium`` mark."""

from __future__ import annotations  # the annotations name Playwright's types, which may be absent

from collections.abc import Iterator
from pathlib import Path

import pytest

try:
    from playwright import sync_api

    from benchmarks.browser_kit import CHROMIUM, CHROMIUM_ARGS, AppDidNotStart, running_app
except ImportError:  # without Playwright, every test marked needs_chromium is skipped and says why
    sync_api = CHROMIUM = None

# A bound, not a wait: on a quiet 2-core machine the app answers in a second, but a training job or a parallel test
# run can starve the app and the browser for a while.
TIMEOUT_MS = 60_000
expect = sync_api.Expect() if sync_api else None  # the browser tests' own expect(): its timeout is theirs alone
if expect is not None:
    expect.set_options(timeout=TIMEOUT_MS)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Playwright, or Chromium at /usr/bin/chromium or on PATH (apt install chromium), is missing",
)


def serve(script: str, log: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """``streamlit run script`` for the duration of a fixture: yields its URL, fails the test if it does not start."""
    try:
        with running_app(log, script=script, env=env) as (_, url):
            yield url
    except AppDidNotStart as error:
        pytest.fail(str(error))


@pytest.fixture(scope="module")
def browser() -> Iterator[sync_api.Browser]:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: sync_api.Browser) -> Iterator[sync_api.Page]:
    # Wide and tall enough to show a page's results in one screenshot: Streamlit scrolls inside its own container,
    # so a full-page screenshot would show no more than the viewport.
    page = browser.new_page(viewport={"width": 1400, "height": 1600})
    page.set_default_timeout(TIMEOUT_MS)
    try:
        yield page
    finally:
        page.close()
