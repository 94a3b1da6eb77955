"""Server-sent event streams, the dashboard's files, and mounting under a prefix."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from forgeflow import Forgeflow

from .server import until_status


@pytest.fixture
def ff(shared_ff: Forgeflow) -> Forgeflow:
    """This module's tests only look at their own runs: they share one database."""
    return shared_ff


@pytest.fixture
def http(shared_http: httpx.AsyncClient) -> httpx.AsyncClient:
    """A client of the shared server."""
    return shared_http


async def sse(response: httpx.Response) -> AsyncIterator[tuple[str, Any]]:
    """(event, data) pairs read from a text/event-stream response."""
    event, data = "message", ""
    async for line in response.aiter_lines():
        if line.startswith("event: "):
            event = line[len("event: ") :]
        elif line.startswith("data: "):
            data = line[len("data: ") :]
        elif line == "" and data:
            yield event, json.loads(data)
            event, data = "message", ""


async def test_a_run_stream_follows_the_run_until_it_ends(
    ff: Forgeflow, http: httpx.AsyncClient
) -> None:
    """GET /runs/{id}/events sends the run at each change, then "end", then closes."""
    start = await http.post("/workflows/approval/start", json={"input": {"title": "live"}})
    run_id = start.json()["run_id"]
    record = await until_status(ff, run_id, "waiting")
    statuses: list[str] = []
    async with http.stream("GET", f"/runs/{run_id}/events") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        async for event, data in sse(response):
            if event == "end":
                assert data == {"run_id": run_id}
                break
            assert event == "run"
            statuses.append(data["status"])
            if data["status"] == "waiting" and len(statuses) == 1:
                assert data["hooks"][0]["status"] == "active"
                await http.post(f"/hooks/{record.hooks[0].hook_id}", json={"decision": "approve"})
    assert statuses[0] == "waiting"
    assert statuses[-1] == "completed"


async def test_the_change_stream_names_runs_as_they_change(
    ff: Forgeflow, http: httpx.AsyncClient
) -> None:
    """GET /runs/changes sends "change" events carrying the ids of runs that moved."""
    async with http.stream("GET", "/runs/changes") as response:
        events = sse(response)
        assert await anext(events) == ("ready", {})
        start = await http.post("/workflows/double/start", json={"input": 3})
        run_id = start.json()["run_id"]
        async for event, data in events:
            assert event == "change"
            if run_id in data["run_ids"]:
                break


async def test_the_dashboard_and_its_files_are_served(http: httpx.AsyncClient) -> None:
    """GET / is the dashboard page; its script and stylesheet are served beside it."""
    page = await http.get("/")
    assert page.headers["content-type"].startswith("text/html")
    assert 'src="_dashboard/app.js"' in page.text
    script = await http.get("/_dashboard/app.js")
    assert script.headers["content-type"].startswith("text/javascript")
    assert "EventSource" in script.text
    style = await http.get("/_dashboard/style.css")
    assert style.headers["content-type"].startswith("text/css")
    assert (await http.get("/_dashboard/secrets.txt")).status_code == 404
