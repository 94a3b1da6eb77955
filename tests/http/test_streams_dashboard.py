"""Server-sent event streams, the dashboard's files, and mounting under a prefix."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from forgeflow import Forgeflow

from .conftest import Serve
from .server import until_status
from .workflows import Workflows


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
    ff: Forgeflow, http: httpx.AsyncClient, workflows: Workflows
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
    ff: Forgeflow, http: httpx.AsyncClient, workflows: Workflows
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


async def test_the_dashboard_and_its_files_are_served(shared_http: httpx.AsyncClient) -> None:
    """GET / is the dashboard page; its script and stylesheet are served beside it."""
    page = await shared_http.get("/")
    assert page.headers["content-type"].startswith("text/html")
    assert 'src="_dashboard/app.js"' in page.text
    script = await shared_http.get("/_dashboard/app.js")
    assert script.headers["content-type"].startswith("text/javascript")
    assert "EventSource" in script.text
    style = await shared_http.get("/_dashboard/style.css")
    assert style.headers["content-type"].startswith("text/css")
    assert (await shared_http.get("/_dashboard/secrets.txt")).status_code == 404


async def test_the_app_works_mounted_under_a_prefix(
    ff: Forgeflow, serve: Serve, workflows: Workflows
) -> None:
    """Mounted at /ops inside another Starlette app, every route and hook URL has the prefix."""
    server = await serve(mount="/ops")
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        assert server.url.endswith("/ops")
        start = await http.post("/workflows/approval/start", json={"input": {"title": "mounted"}})
        assert start.status_code == 202
        record = await until_status(ff, start.json()["run_id"], "waiting")
        hooks = (await http.get("/hooks")).json()["hooks"]
        assert hooks[0]["url"] == f"{server.url}/hooks/{record.hooks[0].hook_id}"
        link = await http.get(hooks[0]["url"], params={"decision": "approve"})
        assert link.status_code == 200
        assert (await http.get("/")).status_code == 200
