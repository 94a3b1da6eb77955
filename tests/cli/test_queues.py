"""`forgeflow queues`: a table, or JSON with --json."""

from __future__ import annotations

from datetime import timedelta

from forgeflow import Forgeflow, Registry, WorkflowContext, workflow

from .runner import forgeflow


async def test_queues_prints_each_queue_as_a_table_or_json(dsn: str) -> None:
    """Delayed runs are counted in their queue, in the table and in the JSON."""
    registry = Registry()

    @workflow(version=1, queue="mail", registry=registry)
    async def mail(ctx: WorkflowContext, to: str) -> str:
        return to

    async with Forgeflow.connect(dsn, registry=registry) as ff:
        await ff.start_many(mail, ["a", "b"], delay=timedelta(hours=1), key="acme")
    listed = await forgeflow("queues", "--json", "--dsn", dsn)
    assert listed.code == 0, listed.err
    (queue,) = listed.json()["queues"]
    assert (queue["name"], queue["delayed"], queue["claimable"]) == ("mail", 2, 0)
    assert queue["top_keys"] == [{"key": "acme", "executing": 0, "claimable": 0}]
    table = await forgeflow("queues", "--dsn", dsn)
    assert table.code == 0
    assert table.out.splitlines()[0].split()[:5] == [
        "QUEUE",
        "EXECUTING",
        "CLAIMABLE",
        "DELAYED",
        "LIMITED",
    ]
    assert table.out.splitlines()[1].split()[:5] == ["mail", "0", "0", "2", "0"]
