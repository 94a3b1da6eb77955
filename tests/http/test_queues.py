"""GET /queues: each queue's limits and what it holds."""

from __future__ import annotations

import httpx

from forgeflow import Forgeflow

from .workflows import Workflows


async def test_queues_lists_each_queue_with_its_counts(
    ff: Forgeflow, http: httpx.AsyncClient, workflows: Workflows
) -> None:
    """A delayed run shows up as delayed in its queue; the answer is JSON with a count."""
    await ff._store.declare_queue("default", 10, None, 100, 60.0)
    await ff.start(workflows.double, 2, delay="1h")
    response = await http.get("/queues")
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == len(body["queues"])
    (default,) = [q for q in body["queues"] if q["name"] == "default"]
    assert default["delayed"] == 1
    assert (default["concurrency"], default["rate"]) == (10, "100/60s")
    assert {"executing", "claimable", "limited", "top_keys"} <= set(default)
