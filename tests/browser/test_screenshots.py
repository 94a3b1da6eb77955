"""The dashboard as the docs show it: a running step, then a hook waiting for a decision.

The screenshots are written to docs/img/ (linked from docs/http.md), so the pictures in
the documentation are always those of the current dashboard.
"""

from __future__ import annotations

import re
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from forgeflow import Forgeflow, Registry, StepStatus, WorkflowContext, WorkflowStatus, workflow
from tests.http.server import LiveServer, served
from tests.http.workflows import define

from .test_dashboard import browser, page  # noqa: F401  (fixtures)

IMAGES = Path(__file__).resolve().parents[2] / "docs" / "img"
ISO = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}Z$")


@pytest.fixture
def rendering() -> threading.Event:
    """Set to let the slow step finish (it runs in the server's thread pool)."""
    return threading.Event()


@pytest.fixture
async def server(
    dsn: str, registry: Registry, rendering: threading.Event
) -> AsyncIterator[LiveServer]:
    """The HTTP app and a worker, with a report workflow whose second step is slow."""
    define(registry)

    def render(title: str) -> str:
        rendering.wait(60)
        return f"{title}.pdf"

    @workflow(version=1, timeout="7d", registry=registry, name="quarterly_report")
    async def report(ctx: WorkflowContext, title: str) -> str:
        await ctx.step("gather_figures", lambda: {"revenue": 1200}).run()
        pdf = await ctx.step("render_pdf", render, title).run()
        hook = await ctx.hook(
            "sign_off",
            timeout="72h",
            metadata={"document": pdf, "amount": "1,200 EUR", "requested_by": "dana"},
        )
        return (await hook.wait()).outcome.value

    try:
        async with served(dsn, registry) as live:
            yield live
    finally:
        rendering.set()


async def until_step(ff: Forgeflow, run_id: str, name: str, status: StepStatus) -> None:
    async for record in ff.watch(run_id):
        if any(s.name == name and s.status is status for s in record.steps):
            return


async def test_screenshots_of_a_running_step_and_a_waiting_hook(
    ff: Forgeflow,
    server: LiveServer,
    page: Any,  # noqa: F811  (the fixture imported above)
    rendering: threading.Event,
) -> None:
    """The run page shows the running step and its attempt; the list leads with decisions."""
    from playwright.async_api import expect

    IMAGES.mkdir(exist_ok=True)
    run_id = await ff.start("quarterly_report", "Q3-report")
    await until_step(ff, run_id, "render_pdf", StepStatus.RUNNING)
    await page.goto(f"{server.url}/#/runs/{run_id}")
    running = page.locator('tr[data-step="render_pdf"][data-status="running"]')
    await expect(running).to_be_visible()
    await expect(running.get_by_test_id("attempts")).to_have_text("1")
    await expect(page.locator("dd", has_text="render_pdf")).to_be_visible()  # current step
    await page.screenshot(path=str(IMAGES / "dashboard-running-step.png"), full_page=True)

    rendering.set()
    async for record in ff.watch(run_id):
        if record.status is WorkflowStatus.WAITING:
            break
    await page.goto(f"{server.url}/#/")
    hooks = page.get_by_test_id("active-hooks")
    row = hooks.locator("tr", has_text="sign_off")
    await expect(row).to_be_in_viewport()  # seen without scrolling
    await expect(row).to_contain_text("requested_by")
    created = (await row.locator("td").nth(3).inner_text()).strip()
    assert ISO.match(created), created
    await page.screenshot(path=str(IMAGES / "dashboard-waiting-hook.png"))
    for name in ("dashboard-running-step.png", "dashboard-waiting-hook.png"):
        assert (IMAGES / name).stat().st_size > 0
