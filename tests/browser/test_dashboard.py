"""The dashboard in a real browser: headless Chromium driven by Playwright.

Chromium comes from the system (Debian's ``chromium`` package), never from
``playwright install``. Without it these tests are skipped, unless
``FORGEFLOW_BROWSER_TESTS=1`` requires them (see chromium.py and conftest.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from forgeflow import Forgeflow, Registry
from tests.http.server import LiveServer, served, until_status
from tests.http.workflows import define

from .chromium import ARGS, CHROMIUM


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Any]:
    """Headless system Chromium, started once for this module's tests."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
async def page(browser: Any) -> AsyncIterator[Any]:
    """A fresh page in a fresh browser context (no cookies or storage from other tests)."""
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        yield await context.new_page()
    finally:
        await context.close()


@pytest.fixture
async def server(dsn: str, registry: Registry) -> AsyncIterator[LiveServer]:
    """The HTTP app and a worker, serving the test workflows."""
    define(registry)
    async with served(dsn, registry) as live:
        yield live


async def waiting_run(ff: Forgeflow, title: str) -> str:
    """Start an approval run and return its id once it waits for a decision."""
    run_id = await ff.start("approval", {"title": title})
    await until_status(ff, run_id, "waiting")
    return run_id


async def test_approving_from_the_run_page_completes_the_run_live(
    ff: Forgeflow, server: LiveServer, page: Any, tmp_path: Path
) -> None:
    """On a waiting run's page, clicking Approve shows it completed without a reload."""
    from playwright.async_api import expect

    run_id = await waiting_run(ff, "Q3 report")
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(f"{server.url}/")
    row = page.locator(f'tr[data-run-id="{run_id}"]')
    await expect(row.get_by_test_id("run-status")).to_have_text("waiting")
    await page.evaluate("window.__sameDocument = true")

    await row.get_by_test_id("run-link").click()
    status = page.get_by_test_id("run-status")
    await expect(status).to_have_text("waiting")
    await expect(page.get_by_test_id("waiting-row")).to_be_visible()
    await expect(page.locator("#live")).to_have_text("live")
    await page.get_by_test_id("run-hooks").get_by_test_id("hook-approve").click()

    await expect(status).to_have_text("completed", timeout=30_000)
    await expect(page.locator('tr[data-step="review"]')).to_be_visible()
    assert await page.evaluate("window.__sameDocument") is True  # never reloaded
    assert page.url.endswith(f"#/runs/{run_id}")
    shot = tmp_path / "run-completed.png"
    await page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 0
    assert errors == []
    assert (await ff.result(run_id, timeout=10))["outcome"] == "approve"


async def test_the_runs_list_updates_live_after_an_approval(
    ff: Forgeflow, server: LiveServer, page: Any, tmp_path: Path
) -> None:
    """Approving from the list's hooks table turns the run's row completed, no reload."""
    from playwright.async_api import expect

    run_id = await waiting_run(ff, "Budget")
    other = await waiting_run(ff, "Holiday plan")
    await page.goto(f"{server.url}/")
    await page.evaluate("window.__sameDocument = true")
    row = page.locator(f'tr[data-run-id="{run_id}"]')
    await expect(row.get_by_test_id("run-status")).to_have_text("waiting")
    hooks = page.get_by_test_id("active-hooks")
    await expect(hooks.locator("tbody tr")).to_have_count(2)

    record = await ff.status(run_id)
    hook_row = hooks.locator(f'tr[data-hook-id="{record.hooks[0].hook_id}"]')
    await hook_row.get_by_test_id("hook-approve").click()

    await expect(row.get_by_test_id("run-status")).to_have_text("completed", timeout=30_000)
    await expect(hooks.locator("tbody tr")).to_have_count(1)
    other_row = page.locator(f'tr[data-run-id="{other}"]')
    await expect(other_row.get_by_test_id("run-status")).to_have_text("waiting")
    assert await page.evaluate("window.__sameDocument") is True
    await page.screenshot(path=str(tmp_path / "runs-list.png"), full_page=True)
    assert (tmp_path / "runs-list.png").stat().st_size > 0


async def test_cancelling_from_the_run_page_shows_the_compensation(
    ff: Forgeflow, server: LiveServer, page: Any, tmp_path: Path
) -> None:
    """The cancel button (clicked twice to confirm) rolls the run back, shown live."""
    from playwright.async_api import expect

    run_id = await ff.start("saga", "seat 3C")
    await until_status(ff, run_id, "waiting")
    await page.goto(f"{server.url}/#/runs/{run_id}")
    status = page.get_by_test_id("run-status")
    await expect(status).to_have_text("waiting")
    cancel = page.get_by_test_id("cancel")
    await cancel.click()
    await expect(cancel).to_have_text("Confirm cancel")
    await cancel.click()
    await expect(status).to_have_text("compensated", timeout=30_000)
    await expect(page.locator('tr[data-compensation="reserve"]')).to_be_visible()
    await page.screenshot(path=str(tmp_path / "run-compensated.png"), full_page=True)


async def test_with_an_admin_token_the_dashboard_asks_for_it_then_goes_live(
    ff: Forgeflow, dsn: str, registry: Registry, page: Any
) -> None:
    """Behind an admin token the page asks for it once, then lists runs and streams changes."""
    from playwright.async_api import expect

    define(registry)
    async with served(dsn, registry, admin_token="let-me-in") as server:
        run_id = await waiting_run(ff, "Secret plan")
        await page.goto(f"{server.url}/")
        login = page.locator("#login")
        await expect(login).to_be_visible()
        await page.fill("#token", "let-me-in")
        await page.click("#login button")
        await expect(login).to_be_hidden()
        row = page.locator(f'tr[data-run-id="{run_id}"]')
        await expect(row.get_by_test_id("run-status")).to_have_text("waiting")
        await expect(page.locator("#live")).to_have_text("live")
        await page.get_by_test_id("active-hooks").get_by_test_id("hook-reject").click()
        await expect(row.get_by_test_id("run-status")).to_have_text("completed", timeout=30_000)


async def test_the_queues_page_shows_a_limit_and_the_run_it_holds_back(
    dsn: str, registry: Registry, page: Any
) -> None:
    """A queue at its concurrency limit: the Queues page counts it, the held run says why."""
    import threading

    from playwright.async_api import expect

    from forgeflow import Queue, WorkflowContext, workflow

    release = threading.Event()

    def blocked() -> str:
        # A sync step runs in a worker thread: it holds the queue's only slot until told.
        release.wait(60)
        return "done"

    @workflow(version=1, registry=registry, queue=Queue("serial", concurrency=1))
    async def one_at_a_time(ctx: WorkflowContext, n: int) -> str:
        return await ctx.step("blocked", blocked).run()

    define(registry)
    try:
        async with served(dsn, registry) as server, Forgeflow.connect(dsn, registry=registry) as ff:
            first = await ff.start(one_at_a_time, 1)
            await until_status(ff, first, "running")
            second = await ff.start(one_at_a_time, 2)
            await page.goto(f"{server.url}/#/queues")
            row = page.locator('tr[data-queue="serial"]')
            await expect(row.get_by_test_id("queue-executing")).to_have_text("1/1")
            await expect(row.get_by_test_id("queue-limited")).to_have_text("1")
            await page.goto(f"{server.url}/#/runs/{second}")
            await expect(page.get_by_text("held by queue serial")).to_be_visible()
            release.set()
            await until_status(ff, second, "completed")
    finally:
        release.set()
