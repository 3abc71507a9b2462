"""The web view in a real Chromium (the system's, driven by Playwright): the pages render under
the Content-Security-Policy without complaint, filters work, the data of an event comes on
demand, the task timeline is drawn, an event appended by another process appears without a
reload, and hostile markup from the log executes nothing. Each page is saved as a 1280x800
screenshot in tests/web/screenshots/ (git-ignored) for a person to look at.

Chromium comes from the system's packages (`.ci/run` installs it); if it cannot be started,
these tests are skipped and say why."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.web.conftest import (
    FAILED_TASK,
    HOSTILE_TASK,
    IMG,
    REASON,
    SCRIPT,
    Running,
    append_from_another_process,
)

CHROMIUM = os.environ.get("SWARMLOG_CHROMIUM", "/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parent / "screenshots"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-extensions"]


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as e:
        pytest.skip(f"playwright is not installed ({e}): pip install -e '.[dev]'")
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium (or set $SWARMLOG_CHROMIUM)")
    with sync_playwright() as p:
        try:
            launched = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        except Exception as e:
            pytest.skip(f"Chromium at {CHROMIUM} could not be started: {e}")
        SHOTS.mkdir(exist_ok=True)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def served(template_log: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    path = tmp_path_factory.mktemp("browser") / "swarm.db"
    shutil.copy(template_log, path)
    running = Running(path)
    yield running
    running.stop()


class Tab:
    """A page of the browser that records what should never happen: console errors (a CSP
    violation is one), uncaught exceptions, dialogs."""

    def __init__(self, browser: Any, base: str) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 800})
        self.page = self.context.new_page()
        self.base = base
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("dialog", self._dialog)

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def open(self, path: str) -> Any:
        response = self.page.goto(self.base + path, wait_until="load")
        assert response is not None and response.status == 200, path
        return self.page

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(SHOTS / f"{name}.png"))

    def pwned(self) -> Any:
        return self.page.evaluate("() => window.__pwned")

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def tab(browser: Any, served: Running) -> Iterator[Tab]:
    opened = Tab(browser, served.url)
    yield opened
    assert opened.errors == [], opened.errors
    assert opened.dialogs == [] and opened.pwned() is None
    opened.close()


def test_the_overview_renders_its_figures_chart_and_live_state(tab: Tab) -> None:
    page = tab.open("/")
    assert int(page.inner_text('[data-figure="total"]')) > 300
    assert page.locator("#per-minute rect.c-task").count() > 0
    assert "a-fixer" in page.inner_text("#failing-agents")
    page.wait_for_selector('#live[data-state="on"]', timeout=5000)
    tab.shot("overview")


def test_filters_narrow_the_events_table(tab: Tab) -> None:
    page = tab.open("/events")
    assert page.locator("#event-rows tr").count() == 50
    tab.shot("events")
    with page.expect_navigation():
        page.check('input[name="type"][value="task.failed"]')  # a type chip submits the form
    assert "type=task.failed" in page.url
    badges = page.locator("#event-rows .badge").all_inner_texts()
    assert badges and set(badges) == {"task.failed"}
    page.fill('input[name="agent"]', "a-fixer")
    with page.expect_navigation():
        page.click("#filters button[type=submit]")
    assert "agent=a-fixer" in page.url and "task=" not in page.url  # empty fields left out
    assert page.locator("#event-rows tr").count() == 1
    assert FAILED_TASK in page.inner_text("#event-rows")
    tab.shot("events-filtered")
    with page.expect_navigation():
        page.click("text=agent a-fixer ✕")
    assert "agent=" not in page.url and "type=task.failed" in page.url


def test_the_full_data_of_an_event_comes_on_demand(tab: Tab) -> None:
    page = tab.open(f"/events?task={FAILED_TASK}&type=task.failed")
    page.click("#event-rows button.more")
    shown = page.wait_for_selector("tr.detail pre.json", timeout=5000)
    assert shown is not None and REASON in shown.inner_text()


def test_the_task_page_draws_its_timeline_and_says_why_it_failed(tab: Tab) -> None:
    page = tab.open(f"/tasks/{FAILED_TASK}")
    assert REASON in page.inner_text("#why")
    timeline = page.locator("svg#timeline")
    assert timeline.is_visible()
    box = timeline.bounding_box()
    assert box is not None and box["width"] > 1000 and box["height"] > 80
    for kind in ("phase-bidding", "phase-assigned", "phase-running", "tool", "tool-failed"):
        assert page.locator(f"svg#timeline g.span.{kind} rect").count() >= 1, kind
    assert page.locator("svg#timeline .mark.end-failed").count() == 1
    tab.shot("task")


def test_the_agents_and_integrity_pages_render(tab: Tab) -> None:
    page = tab.open("/agents")
    assert page.locator("#roster tbody tr").count() >= 7
    with page.expect_navigation():
        page.click("#roster a:text('a-fixer')")
    assert "agent=a-fixer" in page.url
    tab.open("/agents")
    tab.shot("agents")
    page = tab.open("/integrity")
    # It reloads itself until verify is done.
    page.wait_for_selector("#verify:not(.running)", state="attached", timeout=30000)
    verdict = page.inner_text("#verify")
    assert "All good" in verdict, verdict
    tab.shot("integrity")


def test_an_event_appended_by_another_process_appears_without_a_reload(tab: Tab,
                                                                       served: Running) -> None:
    page = tab.open("/events")
    page.wait_for_selector('#live[data-state="on"]', timeout=5000)
    page.evaluate("() => { window.__sameDocument = true; }")
    append_from_another_process(served.location, "system.warning", "another-process",
                                {"message": "the queue is backing up"})
    appended = time.monotonic()
    row = page.wait_for_selector("#event-rows tr:first-child:has-text('another-process')",
                                 timeout=3000)
    took = time.monotonic() - appended
    assert row is not None and "the queue is backing up" in row.inner_text()
    assert page.evaluate("() => window.__sameDocument") is True  # no reload happened
    assert took < 2.0, f"appeared {took:.2f} s after the append"
    overview = tab.open("/")
    overview.wait_for_selector('#live[data-state="on"]', timeout=5000)
    total = int(overview.inner_text('[data-figure="total"]'))
    append_from_another_process(served.location, "task.failed", "another-process",
                                {"reason": "it fell over"}, task_id="t-live")
    overview.wait_for_selector("#feed li:first-child:has-text('it fell over')", timeout=3000)
    overview.wait_for_function(f"() => document.querySelector('[data-figure=\"total\"]')"
                               f".textContent === '{total + 1}'", timeout=3000)


def test_hostile_markup_in_the_log_executes_nothing(tab: Tab, served: Running) -> None:
    hostile = [f"/tasks/{quote(HOSTILE_TASK, safe='')}", "/events?type=system.error", "/agents", "/"]
    for path in hostile:
        page = tab.open(path)
        page.wait_for_timeout(100)
        assert tab.pwned() is None, path
        assert page.locator("img").count() == 0, path  # markup shown as text, never made
    page = tab.open("/events")
    page.wait_for_selector('#live[data-state="on"]', timeout=5000)
    append_from_another_process(served.location, "system.error", SCRIPT,
                                {"message": IMG, "detail": SCRIPT}, task_id=HOSTILE_TASK)
    row = page.wait_for_selector("#event-rows tr:first-child:has-text('onerror')", timeout=3000)
    assert row is not None and SCRIPT in row.inner_text()  # shown as text
    page.click("#event-rows tr:first-child button.more")
    page.wait_for_selector("tr.detail pre.json", timeout=5000)
    page.wait_for_timeout(200)
    assert tab.pwned() is None and page.locator("img").count() == 0
    tab.open(f"/tasks/{quote(HOSTILE_TASK, safe='')}")
    tab.shot("task-hostile")
