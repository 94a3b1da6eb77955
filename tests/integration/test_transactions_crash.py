"""A SIGKILL campaign against transactional steps: the ledger and the checkpoints agree.

Real worker processes execute a three-step saga of transactional steps (see
``tests.support.wf_ledger``) while the test kills one of them at random moments and
starts a replacement. Each step lingers between its writes and its COMMIT, so many kills
land there. Afterwards the application's ledger and forgeflow's checkpoints must agree
exactly: every completed step's row exists once, no row exists without its checkpoint,
no checkpoint without its row, and the same for the compensations of rolled-back runs.

``FORGEFLOW_TX_CAMPAIGN_RUNS`` sets the number of runs (120 by default; the acceptance
figure is 300 or more).
"""

from __future__ import annotations

import os
import random
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import asyncpg
import pytest

from forgeflow import Forgeflow
from tests.support.db import wait_for
from tests.support.wf_ledger import LEDGER, STEPS, LedgerSpec, ledger_saga
from tests.support.worker_procs import WorkerProcess, WorkerProcesses

MODULE = "tests.support.wf_ledger"
RUNS = int(os.environ.get("FORGEFLOW_TX_CAMPAIGN_RUNS", "120"))
WORKERS = 4
ENDED = ("completed", "compensated", "failed")
# The pid of a worker between a step's writes and its COMMIT, if any is right now.
IN_FLIGHT = """
SELECT w.pid FROM app.wrote w
WHERE w.pid = ANY($1) AND NOT EXISTS (SELECT 1 FROM app.ledger l WHERE l.attempt = w.attempt)
ORDER BY random() LIMIT 1
"""


@pytest.fixture
async def procs(dsn: str, tmp_path: Path) -> AsyncIterator[WorkerProcesses]:
    """Worker processes on the test's database, killed at the end of the test."""
    async with WorkerProcesses(dsn, tmp_path) as started:
        yield started


async def start_worker(procs: WorkerProcesses) -> WorkerProcess:
    return await procs.start(MODULE, concurrency=4, lease=1.0, poll_interval=0.1, max_pool=20)


async def unfinished(pool: asyncpg.Pool, ids: list[str]) -> int:
    value: int = await pool.fetchval(
        "SELECT count(*) FROM forgeflow.workflow_runs WHERE id = ANY($1) "
        "AND status <> ALL($2::text[])",
        ids,
        list(ENDED),
    )
    return value


async def test_sigkill_campaign_the_ledger_and_the_checkpoints_agree(
    ff: Forgeflow, procs: WorkerProcesses
) -> None:
    """Hundreds of runs, workers killed at random: each step's writes exist exactly once
    with its checkpoint, each compensation's likewise, and nothing else survives."""
    pool: asyncpg.Pool = ff.pool
    await pool.execute(LEDGER)
    rng = random.Random(os.environ.get("FORGEFLOW_TX_CAMPAIGN_SEED", "ledger"))
    workers = [await start_worker(procs) for _ in range(WORKERS)]
    specs = [LedgerSpec(fail=index % 3 == 0, linger=0.05) for index in range(RUNS)]
    ids = await ff.start_many(ledger_saga, specs)

    kills = 0

    async def replace() -> None:
        workers.append(await start_worker(procs))

    async with anyio.create_task_group() as group:
        while await unfinished(pool, ids):
            # Random moments, not synchronisation: where each kill lands is the experiment.
            await anyio.sleep(rng.uniform(0.02, 0.2))
            if len(workers) < WORKERS - 1:
                continue  # replacements are still starting
            victim = workers[rng.randrange(len(workers))]
            if kills % 2 == 0:
                # Every other kill aims at a worker holding a transaction whose writes
                # are made and not committed yet, when there is one right now.
                pids = {w.pid: w for w in workers}
                holder = await pool.fetchval(IN_FLIGHT, list(pids))
                victim = pids.get(holder, victim)
            workers.remove(victim)
            await victim.kill()
            kills += 1
            group.start_soon(replace)
    await wait_for(lambda: _all_ended(pool, ids), timeout=60, what="every run to end")

    statuses = Counter(
        r["status"]
        for r in await pool.fetch(
            "SELECT status FROM forgeflow.workflow_runs WHERE id = ANY($1)", ids
        )
    )
    assert set(statuses) <= {"completed", "compensated"}, statuses
    assert statuses["compensated"] == len([s for s in specs if s.fail])

    # Per (run, step): the rows written and the checkpoint, side by side.
    rows = await pool.fetch(
        """
        SELECT s.run_id, s.name, s.status,
               (SELECT count(*) FROM app.ledger l
                WHERE l.run_id = s.run_id AND l.step = s.name AND l.kind = 'do') AS done,
               (SELECT count(*) FROM app.ledger l
                WHERE l.run_id = s.run_id AND l.step = s.name AND l.kind = 'undo') AS undone
        FROM forgeflow.workflow_steps s
        WHERE s.run_id = ANY($1) AND s.name = ANY($2)
        """,
        ids,
        list(STEPS),
    )
    assert len(rows) == RUNS * len(STEPS)
    fail = {run_id: spec.fail for run_id, spec in zip(ids, specs, strict=True)}
    for row in rows:
        expected_status = "compensated" if fail[row["run_id"]] else "completed"
        assert (row["status"], row["done"], row["undone"]) == (
            expected_status,
            1,
            1 if fail[row["run_id"]] else 0,
        ), dict(row)
    # No row of any other step or run: nothing written outside a checkpointed transaction.
    stray = await pool.fetchval(
        "SELECT count(*) FROM app.ledger l WHERE NOT EXISTS (SELECT 1 FROM "
        "forgeflow.workflow_steps s WHERE s.run_id = l.run_id AND s.name = l.step)"
    )
    assert stray == 0
    # The campaign did hit the window between writes and COMMIT: writes that were made
    # (noted elsewhere) and rolled back with their uncommitted checkpoint.
    lost = await pool.fetchval(
        "SELECT count(*) FROM app.wrote w WHERE NOT EXISTS "
        "(SELECT 1 FROM app.ledger l WHERE l.attempt = w.attempt)"
    )
    assert kills > 0
    assert lost > 0, f"{kills} kills and not one between a step's writes and its COMMIT"
    print(f"campaign: {RUNS} runs, {kills} kills, {lost} transactions cut before COMMIT")


async def _all_ended(pool: asyncpg.Pool, ids: list[str]) -> bool:
    return await unfinished(pool, ids) == 0
