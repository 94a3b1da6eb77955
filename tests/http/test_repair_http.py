"""Restart, fork, bulk operations and gc over HTTP."""

from __future__ import annotations

import httpx

from forgeflow import Forgeflow

from .helpers import start


async def test_restart_and_fork_answer_202_with_linked_runs(
    shared_ff: Forgeflow, shared_http: httpx.AsyncClient
) -> None:
    """POST /runs/{id}/restart and /fork create runs whose JSON shows their lineage."""
    run_id = await start(shared_http, "double", 4)
    assert await shared_ff.result(run_id, timeout=30) == 12
    restarted = await shared_http.post(f"/runs/{run_id}/restart", json={"version": 1})
    assert restarted.status_code == 202, restarted.text
    new_id = restarted.json()["run_id"]
    assert await shared_ff.result(new_id, timeout=30) == 8
    assert (await shared_http.get(f"/runs/{new_id}")).json()["restarted_from"] == run_id
    forked = await shared_http.post(f"/runs/{run_id}/fork", json={"from_step": "triple"})
    assert forked.status_code == 202, forked.text
    record = (await shared_http.get(f"/runs/{forked.json()['run_id']}")).json()
    assert (record["forked_from"], record["forked_from_step"]) == (run_id, "triple")


async def test_bad_repairs_answer_4xx(shared_http: httpx.AsyncClient) -> None:
    """Unknown run 404, unrecorded step 409 naming it, bad bodies and versions 422."""
    run_id = await start(shared_http, "double", 1)
    missing = await shared_http.post("/runs/nope/restart", json={})
    assert missing.status_code == 404
    step = await shared_http.post(f"/runs/{run_id}/fork", json={"from_step": "nope"})
    assert step.status_code in (409,), step.text
    assert step.json()["error"] == "fork_refused"
    assert (await shared_http.post(f"/runs/{run_id}/fork", json={})).status_code == 422
    version = await shared_http.post(f"/runs/{run_id}/restart", json={"version": 9})
    assert version.status_code == 422
    everything = await shared_http.post("/runs/bulk/cancel", json={})
    assert everything.status_code == 422 and "filters" in everything.text
    dry = await shared_http.post(
        "/runs/bulk/restart", json={"workflow": "double", "dry_run": True, "limit": 1}
    )
    assert dry.status_code == 200 and dry.json()["acted"] == 0
    gc = await shared_http.post("/gc", json={"older_than": "30d", "dry_run": True})
    assert gc.json() == {"matched": 0, "deleted": 0}
