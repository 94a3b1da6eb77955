"""`forgeflow schedules list|pause|resume|delete|trigger`, run for real."""

from __future__ import annotations

from forgeflow import Forgeflow, Registry, WorkflowContext, workflow

from .runner import forgeflow


async def test_schedules_are_listed_paused_resumed_triggered_and_deleted(dsn: str) -> None:
    """Each action works on a stored schedule with --json, from a process without its code."""
    registry = Registry()

    @workflow(version=1, registry=registry)
    async def nightly(ctx: WorkflowContext, input: str = "all") -> str:
        return input

    async with Forgeflow.connect(dsn, registry=registry) as ff:
        await ff.schedule("nightly-report", nightly, cron="0 2 * * *", timezone="Europe/Paris")

    listed = await forgeflow("schedules", "list", "--json", "--dsn", dsn)
    assert listed.code == 0, listed.err
    [schedule] = listed.json()["schedules"]
    assert (schedule["name"], schedule["cron"], schedule["timezone"]) == (
        "nightly-report",
        "0 2 * * *",
        "Europe/Paris",
    )
    table = await forgeflow("schedules", "list", "--dsn", dsn)
    assert "nightly-report" in table.out and "active" in table.out

    paused = await forgeflow("schedules", "pause", "nightly-report", "--json", "--dsn", dsn)
    assert (paused.code, paused.json()["paused"]) == (0, True)
    resumed = await forgeflow("schedules", "resume", "nightly-report", "--dsn", dsn)
    assert resumed.code == 0 and "resumed" in resumed.out

    triggered = await forgeflow("schedules", "trigger", "nightly-report", "--json", "--dsn", dsn)
    assert triggered.code == 0, triggered.err
    run_id = triggered.json()["run_id"]
    status = (await forgeflow("status", run_id, "--json", "--dsn", dsn)).json()
    assert (status["workflow"], status["input"], status["schedule"]) == (
        "nightly",
        "all",
        "nightly-report",
    )

    deleted = await forgeflow("schedules", "delete", "nightly-report", "--json", "--dsn", dsn)
    assert deleted.json() == {"name": "nightly-report", "deleted": True}
    missing = await forgeflow("schedules", "trigger", "nightly-report", "--dsn", dsn)
    assert missing.code == 1
    assert "no schedule named 'nightly-report'" in missing.err
