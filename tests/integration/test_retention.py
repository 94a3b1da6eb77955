"""Retention in real worker processes: old finished runs deleted once, nothing else."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest

from forgeflow import Forgeflow
from tests.support.db import count_rows, wait_for
from tests.support.worker_procs import WorkerProcesses

OLD = 300  # top-level runs eligible for deletion, each with 5 steps, a hook, an event wait
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_PASS = re.compile(r"retention_pass\s.*?deleted=(\d+)")


@pytest.fixture
async def procs(dsn: str, tmp_path: Path) -> AsyncIterator[WorkerProcesses]:
    """Worker processes on the test's database, killed at the end of the test."""
    async with WorkerProcesses(dsn, tmp_path) as started:
        yield started


async def insert_runs(
    pool: asyncpg.Pool,
    prefix: str,
    count: int,
    status: str,
    ended_ago: timedelta | None,
    parent: str | None = None,
) -> None:
    """``count`` runs named ``prefix-N`` with 5 steps, a hook and an event wait each."""
    await pool.execute(
        """
        INSERT INTO forgeflow.workflow_runs
            (id, workflow, version, status, input, timeout_seconds, created_at, completed_at,
             parent_run_id)
        SELECT $1 || '-' || n, 'worker_chain', 1, $3, '{}'::jsonb, 3600,
               now() - interval '3 days',
               CASE WHEN $4::interval IS NULL THEN NULL ELSE now() - $4::interval END, $5
        FROM generate_series(1, $2) n;
        """,
        prefix,
        count,
        status,
        ended_ago,
        parent,
    )
    await pool.execute(
        """
        INSERT INTO forgeflow.workflow_steps (run_id, name, status, result, completed_at)
        SELECT $1 || '-' || n, 's' || k, 'completed', '1'::jsonb, now() - interval '2 days'
        FROM generate_series(1, $2) n, generate_series(1, 5) k;
        INSERT INTO forgeflow.hooks (id, run_id, workflow, name, step, status, on_timeout,
                                     created_at)
        SELECT 'hook-' || $1 || '-' || n, $1 || '-' || n, 'worker_chain', 'h', 'hook:h',
               'expired', 'reject', now() - interval '2 days'
        FROM generate_series(1, $2) n;
        INSERT INTO forgeflow.event_waits (run_id, step, event_type, status, created_at)
        SELECT $1 || '-' || n, 'event:e', 'e', 'expired', now() - interval '2 days'
        FROM generate_series(1, $2) n;
        """.replace("$1", f"'{prefix}'").replace("$2", str(count)),
    )


def logged_deletions(procs: WorkerProcesses) -> list[int]:
    """The ``deleted`` count of every retention pass logged by the workers."""
    found: list[int] = []
    for worker in procs.started:
        found += [int(n) for n in _PASS.findall(_ANSI.sub("", worker.tail(10**7)))]
    return found


async def test_three_workers_delete_every_eligible_run_exactly_once(
    ff: Forgeflow, procs: WorkerProcesses, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Old finished trees go with all their rows; unfinished, recent and kept children stay."""
    pool = ff.pool
    await insert_runs(pool, "old", OLD, "completed", timedelta(hours=2))
    await insert_runs(pool, "oldfail", 20, "failed", timedelta(days=40))
    await insert_runs(pool, "recent", 20, "completed", timedelta(minutes=30))
    await insert_runs(pool, "waiting", 10, "waiting", None)
    # An old finished child of an unfinished parent is kept with its parent.
    await insert_runs(pool, "waiting-1-child", 3, "completed", timedelta(days=3), "waiting-1")
    eligible = OLD + 20
    kept = await count_rows(pool, "forgeflow.workflow_runs") - eligible

    monkeypatch.setenv("FORGEFLOW_RETENTION", "1h")
    for _ in range(3):
        await procs.start("tests.support.wf_chain", concurrency=2)

    async def all_deleted() -> bool:
        return sum(logged_deletions(procs)) >= eligible

    await wait_for(all_deleted, timeout=45, what="retention passes deleting every old run")
    assert sum(logged_deletions(procs)) == eligible
    assert await count_rows(pool, "forgeflow.workflow_runs") == kept
    doomed = "run_id LIKE 'old%'"
    for table in ("workflow_steps", "hooks", "event_waits"):
        assert await count_rows(pool, f"forgeflow.{table}", doomed) == 0, table
    assert await count_rows(pool, "forgeflow.workflow_steps") == kept * 5
    for worker in procs.started:
        log = worker.tail(10**7).lower()
        assert "deadlock" not in log and "retention_failed" not in log, worker.worker_id
