"""`forgeflow check`: runs in flight replayed on new code, for people and for CI."""

from __future__ import annotations

from forgeflow import Forgeflow, WorkflowStatus
from tests.support import deploy_old
from tests.support.db import connect_direct
from tests.support.waits_time import until

from .runner import forgeflow

NEW = "tests.support.deploy_new:registry"


async def start_in_flight(dsn: str) -> dict[str, str]:
    """One run of each production workflow, waiting on its hook."""
    conn = await connect_direct(dsn)
    await conn.execute("CREATE TABLE effects (name text NOT NULL)")
    await conn.close()
    async with Forgeflow.connect(dsn, registry=deploy_old.registry) as ff, ff.worker():
        runs = {name: await ff.start(name, name) for name in ("renamed", "inserted", "guarded")}
        for run_id in runs.values():
            await until(ff, run_id, lambda r: r.status is WorkflowStatus.WAITING)
    return runs


async def test_check_prints_json_verdicts_and_exits_3_when_runs_diverge(dsn: str) -> None:
    """--json prints exactly the contract's fields per run; divergence fails the command."""
    runs = await start_in_flight(dsn)
    result = await forgeflow("check", NEW, "--dsn", dsn, "--json")
    assert result.code == 3, result.err
    body = result.json()
    assert body.keys() == {"runs"}
    by_workflow = {r["workflow"]: r for r in body["runs"]}
    assert by_workflow["renamed"] == {
        "run_id": runs["renamed"],
        "workflow": "renamed",
        "version": 1,
        "verdict": "diverges",
        "step": "reserve_stock",
        "expected": "reserve",
        "error": None,
    }
    assert (by_workflow["inserted"]["step"], by_workflow["inserted"]["expected"]) == (
        "notify",
        "hook:approval",
    )
    assert by_workflow["guarded"]["verdict"] == "compatible"

    people = await forgeflow("check", NEW, "--dsn", dsn)
    assert people.code == 3
    assert "reserve_stock" in people.out and "hook:approval" in people.out
    assert "3 unfinished run(s) checked" in people.out

    narrowed = await forgeflow("check", NEW, "--dsn", dsn, "--workflow", "guarded", "--json")
    assert narrowed.code == 0, narrowed.err
    assert [r["verdict"] for r in narrowed.json()["runs"]] == ["compatible"]


async def test_check_refuses_bad_input_with_one_line(dsn: str) -> None:
    """An unknown module or workflow exits 1 with one line; a missing MODULE is a usage error."""
    unknown = await forgeflow("check", "no_such_module_here", "--dsn", dsn)
    assert unknown.code == 1
    assert unknown.err.startswith("forgeflow: error: cannot import no_such_module_here")
    workflow = await forgeflow("check", NEW, "--dsn", dsn, "--workflow", "nope")
    assert workflow.code == 1
    assert workflow.err.strip() == "forgeflow: error: no workflow named 'nope' is registered"
    missing = await forgeflow("check", "--dsn", dsn)
    assert missing.code == 2
