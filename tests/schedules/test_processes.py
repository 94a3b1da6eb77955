"""Several worker processes, some SIGKILLed: still exactly one run per fire time."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from tests.support.db import connect_direct
from tests.support.worker_procs import START_TIMEOUT, WorkerProcess

_ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2024, 6, 3, 8, 0, 0, 500000, tzinfo=UTC)


async def start_worker(dsn: str, clock: Path, name: str, logs: Path) -> WorkerProcess:
    """Start tests.support.proc_schedule_worker and wait for it to be ready."""
    log = logs / f"{name}.log"
    with log.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.support.proc_schedule_worker",
            "--dsn",
            dsn,
            "--clock-file",
            str(clock),
            "--worker-id",
            name,
            cwd=_ROOT,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=err,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    worker = WorkerProcess(proc, name, log)
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), START_TIMEOUT)
    assert line.startswith(b"ready "), worker.tail()
    return worker


def set_clock(path: Path, when: datetime) -> None:
    """Move the shared clock (atomically: a reader never sees half a timestamp)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(when.isoformat())
    tmp.replace(path)


async def wait_until(conn: asyncpg.Connection, query: str, expected: int) -> int:
    """Re-run ``query`` at each run notification until it returns ``expected``."""
    changed = asyncio.Event()

    def notified(*_args: object) -> None:
        changed.set()

    for channel in ("forgeflow_wakeup", "forgeflow_run_changed", "forgeflow_run_ended"):
        await conn.add_listener(channel, notified)
    value = -1
    async with asyncio.timeout(60):
        while True:
            changed.clear()
            value = int(await conn.fetchval(query))
            if value == expected:
                return value
            # Notifications drive this; the short timeout only covers one sent between
            # the query and the wait, never what the assertion checks.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), 1.0)


async def test_three_worker_processes_with_kills_start_exactly_one_run_per_minute(
    dsn: str, tmp_path: Path
) -> None:
    """Ten minutes of a * * * * * schedule on 3 workers, 2 SIGKILLed: one run per minute."""
    clock = tmp_path / "clock"
    set_clock(clock, T0)
    workers = [await start_worker(dsn, clock, f"s{i}", tmp_path) for i in range(3)]
    kills = {4: 0, 7: 1}  # minute → the worker SIGKILLed right after its notification
    conn = await connect_direct(dsn)
    try:
        for minute in range(1, 11):
            set_clock(clock, T0 + timedelta(minutes=minute))
            # Every scheduler wakes on this at the same instant and races for the fire time.
            await conn.execute("SELECT pg_notify('forgeflow_schedules', 'tick')")
            if minute in kills:
                await workers[kills[minute]].kill()  # mid-decision, wherever it is
            await wait_until(
                conn,
                "SELECT count(*) FROM forgeflow.workflow_runs WHERE schedule = 'every_minute'",
                minute,
            )
        await wait_until(
            conn,
            "SELECT count(*) FROM forgeflow.workflow_runs WHERE status = 'completed'",
            10,
        )
        rows = await conn.fetch(
            "SELECT scheduled_at, idempotency_key, output FROM forgeflow.workflow_runs"
            " ORDER BY scheduled_at"
        )
        unique = await conn.fetchval(
            "SELECT count(*) FROM pg_indexes WHERE schemaname = 'forgeflow'"
            " AND tablename = 'workflow_runs' AND indexdef LIKE 'CREATE UNIQUE%idempotency_key%'"
        )
    finally:
        await conn.close()
        for worker in workers:
            await worker.kill()
    minutes = [T0.replace(microsecond=0) + timedelta(minutes=m) for m in range(1, 11)]
    assert [r["scheduled_at"] for r in rows] == minutes
    # The key that makes a second run for a fire time impossible, held by a unique index.
    assert [r["idempotency_key"] for r in rows] == [
        f"schedule:every_minute:{m.isoformat()}" for m in minutes
    ]
    assert unique == 1
    assert [r["output"] for r in rows] == [f'"{m.isoformat()}"' for m in minutes]
