"""HTTP tests that need a database (or server options) of their own.

Listing everything, moving the server's clock, a small body limit, a mount prefix and
switched-off hook links each get a fresh database and a server started for the test.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import httpx

from forgeflow import Forgeflow

from .conftest import Serve
from .helpers import SECRET, signed, start, waiting_hook
from .server import ShiftedClock, until_status
from .workflows import Workflows


async def test_runs_are_listed_newest_first_with_filters_and_cursor_pages(
    ff: Forgeflow, http: httpx.AsyncClient, workflows: Workflows
) -> None:
    """GET /runs filters by status and workflow and pages with an opaque next_cursor."""
    waiting = [await start(http, "approval", {"title": f"doc {i}"}) for i in range(3)]
    done = [await start(http, "double", i) for i in range(2)]
    for run_id in waiting:
        await until_status(ff, run_id, "waiting")
    for run_id in done:
        await until_status(ff, run_id, "completed")

    everything = (await http.get("/runs")).json()
    assert [r["run_id"] for r in everything["runs"]] == [*reversed(done), *reversed(waiting)]
    assert everything["next_cursor"] is None
    by_status = (await http.get("/runs", params={"status": "waiting"})).json()["runs"]
    assert {r["run_id"] for r in by_status} == set(waiting)
    by_name = (await http.get("/runs", params={"workflow": "double"})).json()["runs"]
    assert {r["run_id"] for r in by_name} == set(done)

    seen: list[str] = []
    cursor = None
    while True:
        page = (
            await http.get("/runs", params={"limit": 2, **({"cursor": cursor} if cursor else {})})
        ).json()
        assert len(page["runs"]) <= 2
        seen += [r["run_id"] for r in page["runs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [r["run_id"] for r in everything["runs"]]


async def test_the_body_limit_answers_413(serve: Any, workflows: Workflows) -> None:
    """A body over max_body is refused with 413, declared or streamed."""
    server = await serve(max_body=1024)
    big = json.dumps({"input": {"title": "x" * 2000}}).encode()

    async def chunks() -> Any:
        for i in range(0, len(big), 256):
            yield big[i : i + 256]

    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        declared = await http.post("/workflows/approval/start", content=big)
        assert declared.status_code == 413
        assert declared.json() == {"error": "body_too_large", "detail": {"limit": 1024}}
        streamed = await http.post("/workflows/approval/start", content=chunks())
        assert streamed.status_code == 413
        small = await http.post("/workflows/approval/start", json={"input": {"title": "ok"}})
        assert small.status_code == 202


async def test_hook_errors_are_404_409_and_410(
    ff: Forgeflow, serve: Any, workflows: Workflows
) -> None:
    """An unknown hook is 404, a used one 409, an expired one 410."""
    clock = ShiftedClock()
    server = await serve(clock=clock)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        unknown = await http.post("/hooks/webhook_nope", json={"decision": "approve"})
        assert (unknown.status_code, unknown.json()["error"]) == (404, "hook_not_found")

        used = await waiting_hook(ff, http, "used")
        first = await http.post(f"/hooks/{used.hook_id}", json={"decision": "approve"})
        assert first.status_code == 200
        second = await http.post(f"/hooks/{used.hook_id}", json={"decision": "reject"})
        assert (second.status_code, second.json()["error"]) == (409, "hook_already_used")

        late = await waiting_hook(ff, http, "late")
        clock.offset = timedelta(hours=2)  # the hook's one hour is over
        expired = await http.post(f"/hooks/{late.hook_id}", json={"decision": "approve"})
        assert (expired.status_code, expired.json()["error"]) == (410, "hook_expired")


async def test_active_hooks_are_listed_with_their_urls(
    ff: Forgeflow, http: httpx.AsyncClient, workflows: Workflows
) -> None:
    """GET /hooks lists active hooks with the contract's fields; filters narrow it."""
    first = await waiting_hook(ff, http, "one")
    second = await waiting_hook(ff, http, "two")
    listed = (await http.get("/hooks", params={"status": "active"})).json()
    assert listed["count"] == 2
    assert [h["hook_id"] for h in listed["hooks"]] == [first.hook_id, second.hook_id]
    entry = listed["hooks"][0]
    for field in (
        "hook_id",
        "run_id",
        "workflow",
        "name",
        "status",
        "created_at",
        "expires_at",
        "is_expired",
        "metadata",
        "url",
    ):
        assert field in entry
    assert entry["metadata"] == {"title": "one"}
    assert entry["url"].endswith(f"/hooks/{first.hook_id}")
    assert entry["is_expired"] is False

    await http.post(f"/hooks/{first.hook_id}", json={"decision": "approve"})
    assert (await http.get("/hooks")).json()["count"] == 1
    assert (await http.get("/hooks", params={"status": "all"})).json()["count"] == 2
    assert (await http.get("/hooks", params={"workflow": "other"})).json()["count"] == 0
    bad = await http.get("/hooks", params={"status": "done"})
    assert bad.status_code == 422


async def test_hook_links_can_be_switched_off(
    ff: Forgeflow, serve: Serve, workflows: Workflows
) -> None:
    """With hook_links=False a GET link takes no decision: only signed POSTs do."""
    server = await serve(secret=SECRET, hook_links=False)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        start = await http.post("/workflows/approval/start", **signed({"input": {"title": "t"}}))
        record = await until_status(ff, start.json()["run_id"], "waiting")
        link = await http.get(f"/hooks/{record.hooks[0].hook_id}", params={"decision": "approve"})
        assert link.status_code == 403
        assert (await ff.status(record.run_id)).hooks[0].status == "active"


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
