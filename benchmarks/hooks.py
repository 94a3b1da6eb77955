"""Engine time of resume hooks beyond the database round trip, beside raw asyncpg.

Three operations, each timed in this process and set beside raw asyncpg round trips
sampled alternately with it on one connection:

- creation: ``await ctx.hook(...)`` inside a running workflow (the pending hook and its
  checkpoint are written) vs one raw single-row INSERT commit;
- resume-id lookup: ``await ff.resume_hook(hook_id, decision="approve")`` on a waiting
  run (the hook found by id, consumed, its run woken) vs one raw UPDATE by primary key;
- suspension: from ``await hook.wait()`` until the run is ``waiting`` (the executor's
  ``run_suspended`` lifecycle event, emitted once the database has accepted the write)
  vs one raw UPDATE by primary key.

Each operation gets three rows: the raw minimal round trip (the floor), forgeflow's own
statements for that operation sent with raw asyncpg on dummy runs (the database's share:
what is left of the API's time is the engine's), and the API itself. Wall time is
``time.perf_counter``; CPU is this process's ``time.process_time`` over the same span,
which the other load on the machine barely disturbs.

Runs are executed one at a time by an ``ff.worker`` in this process. Resumes are timed
with that worker stopped, so that the woken runs' execution does not share the event
loop with the call being timed; the worker then finishes every run and each result is
checked.

    python benchmarks/hooks.py [--dsn DSN] [--samples 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
from _common import describe_server, dsn_argument, load_line, server_dsn, summary_ms
from _worker_proc import quiet_logs

from forgeflow import Forgeflow, LifecycleEvent, Registry, WorkflowContext, workflow
from forgeflow._sql import QUERIES as Q

registry = Registry()
QUEUE = "bench_hooks"


def stamp() -> tuple[float, float]:
    """(wall, CPU) seconds now."""
    return time.perf_counter(), time.process_time()


def span(start: tuple[float, float], end: tuple[float, float]) -> tuple[float, float]:
    """(wall, CPU) seconds from ``start`` to ``end``."""
    return end[0] - start[0], end[1] - start[1]


async def timed(awaitable: Awaitable[Any]) -> tuple[float, float]:
    """(wall, CPU) seconds spent awaiting ``awaitable``."""
    start = stamp()
    await awaitable
    return span(start, stamp())


@dataclass
class Marks:
    """Readings taken inside one run's first execution."""

    hook_id: str = ""
    before_hook: tuple[float, float] = (0.0, 0.0)
    after_hook: tuple[float, float] = (0.0, 0.0)
    before_wait: tuple[float, float] = (0.0, 0.0)
    suspended: tuple[float, float] | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)


MARKS: dict[str, Marks] = {}


@workflow(version=1, name="bench_hook_approval", registry=registry, queue=QUEUE)
async def approval(ctx: WorkflowContext, n: int) -> str:
    """Create a hook, wait for its decision, return the outcome."""
    marks = MARKS.setdefault(ctx.run_id, Marks())
    before = stamp()
    hook = await ctx.hook("approve", timeout="72h", on_timeout="reject", metadata={"amount": n})
    if not marks.hook_id:  # the first execution, not the replay after the decision
        marks.before_hook, marks.after_hook = before, stamp()
        marks.hook_id = hook.id
        marks.before_wait = stamp()
    decision = await hook.wait()
    return decision.outcome.value


def on_event(event: LifecycleEvent) -> None:
    """Note when a run has been suspended (the executor emits this after the write)."""
    if event.name == "run_suspended":
        now = stamp()
        marks = MARKS.get(event.run_id)
        if marks is not None and marks.suspended is None:
            marks.suspended = now
            marks.done.set()


FLOOR_SCHEMA = """
CREATE SCHEMA IF NOT EXISTS forgeflow_bench;
CREATE TABLE IF NOT EXISTS forgeflow_bench.hooks (
    id         text PRIMARY KEY,
    run_id     text NOT NULL,
    name       text NOT NULL,
    status     text NOT NULL DEFAULT 'pending',
    metadata   jsonb NOT NULL DEFAULT '{}',
    decision   text,
    data       jsonb,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
TRUNCATE forgeflow_bench.hooks;
"""
FLOOR_INSERT = (
    "INSERT INTO forgeflow_bench.hooks (id, run_id, name, metadata) VALUES ($1, $2, $3, $4::jsonb)"
)
FLOOR_UPDATE = (
    "UPDATE forgeflow_bench.hooks SET status = $2, decision = $3, data = $4::jsonb WHERE id = $1"
)

# Runs that exist only so that forgeflow's own statements can be sent raw: no worker
# has this workflow, so none of them is ever executed; they are deleted at the end.
DUMMY = "bench_hook_statements"
DUMMY_WORKER = "bench:raw-statements"


class Raw:
    """Raw asyncpg round trips on one connection, beside what the engine does.

    ``insert``/``update`` are the least a database round trip of that kind costs.
    ``own_*`` send forgeflow's own statements (its named queries, with the arguments the
    engine gives them) on dummy runs leased to a pretend worker: the database's share of
    each engine operation.
    """

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.floor_ids: list[str] = []
        self.hooks: list[str] = []
        self.runs: list[str] = []

    async def insert(self) -> tuple[float, float]:
        hook_id = f"floor_{uuid.uuid4().hex}"
        self.floor_ids.append(hook_id)
        return await timed(self.conn.execute(FLOOR_INSERT, hook_id, "run", "approve", "{}"))

    async def update(self, index: int, status: str) -> tuple[float, float]:
        sql = self.conn.execute(FLOOR_UPDATE, self.floor_ids[index], status, "approve", "{}")
        return await timed(sql)

    async def own_create(self) -> tuple[float, float]:
        """A leased dummy run (not timed), then forgeflow's insert_hook statement."""
        run_id, now = str(uuid.uuid4()), datetime.now(UTC)
        await self.conn.fetchrow(
            Q["insert_run"], run_id, DUMMY, 1, DUMMY, "1", None, now, 86400.0, now, 0, None
        )
        await self.conn.fetchrow(Q["claim_run"], run_id, DUMMY_WORKER, 3600.0, now)
        hook_id = f"webhook_{run_id}_approve_{secrets.token_urlsafe(24)}"
        self.runs.append(run_id)
        self.hooks.append(hook_id)
        args = (run_id, DUMMY_WORKER, hook_id, "approve", "hook:approve", "reject", 259200.0)
        return await timed(self.conn.fetchval(Q["insert_hook"], *args, '{"amount": 1}', now))

    async def own_suspend(self, index: int) -> tuple[float, float]:
        """The statements Hook.wait and the executor send to park a run on a new hook."""
        hook_id, run_id = self.hooks[index], self.runs[index]
        start = stamp()
        now = datetime.now(UTC)
        await self.conn.fetchrow(Q["get_hook"], hook_id)
        await self.conn.fetchrow(Q["activate_hook"], hook_id, now)
        hook = await self.conn.fetchrow(Q["get_hook"], hook_id)
        assert hook is not None and hook["status"] == "active"
        wait = json.dumps({"kind": "hook", "step": "approve", "hook_id": hook_id})
        await self.conn.fetchrow(
            Q["suspend_run"], run_id, DUMMY_WORKER, wait, hook["expires_at"], now
        )
        return span(start, stamp())

    async def own_resume(self, index: int) -> tuple[float, float]:
        """forgeflow's resolve_hook statement on a dummy run's hook."""
        args = (self.hooks[index], "approve", "{}", datetime.now(UTC), None)
        return await timed(self.conn.fetchrow(Q["resolve_hook"], *args))

    async def clean(self) -> None:
        await self.conn.execute(
            "DELETE FROM forgeflow.workflow_steps WHERE run_id = ANY($1)", self.runs
        )
        await self.conn.execute("DELETE FROM forgeflow.workflow_runs WHERE id = ANY($1)", self.runs)


class Samples:
    """(wall, CPU) samples of one operation: floor, own statements sent raw, API."""

    def __init__(self, title: str, target_ms: float) -> None:
        self.title = title
        self.target_ms = target_ms
        self.floor: list[tuple[float, float]] = []
        self.own: list[tuple[float, float]] = []
        self.api: list[tuple[float, float]] = []

    def print(self, skip: int) -> None:
        print(f"\n{self.title}")
        rows = {
            "raw minimal round trip (floor)": self.floor[skip:],
            "forgeflow's statements, sent raw": self.own[skip:],
            "forgeflow API": self.api[skip:],
        }
        wall = {name: summary_ms([w for w, _ in values]) for name, values in rows.items()}
        cpu = {name: summary_ms([c for _, c in values]) for name, values in rows.items()}
        for name in rows:
            p50, p95, mean = wall[name]
            print(f"  {name:38}{p50:9.3f}{p95:9.3f}{mean:9.3f}{cpu[name][0]:11.3f}")
        api, floor = wall["forgeflow API"], wall["raw minimal round trip (floor)"]
        own = wall["forgeflow's statements, sent raw"]
        api_cpu, own_cpu = cpu["forgeflow API"][0], cpu["forgeflow's statements, sent raw"][0]
        print(
            f"  {'API minus floor':38}{api[0] - floor[0]:9.3f}{api[1] - floor[1]:9.3f}"
            f"{api[2] - floor[2]:9.3f}{'':11}  target < {self.target_ms:g} ms"
        )
        print(
            f"  {'API minus its own statements':38}{api[0] - own[0]:9.3f}{api[1] - own[1]:9.3f}"
            f"{api[2] - own[2]:9.3f}{api_cpu - own_cpu:11.3f}"
        )


async def suspend_one(ff: Forgeflow, n: int) -> tuple[str, Marks]:
    """Start a run; its id and marks once the worker has suspended it on its hook."""
    run_id = await ff.start(approval, n)
    marks = MARKS.setdefault(run_id, Marks())
    await asyncio.wait_for(marks.done.wait(), 30)
    # Let the worker finish its claim-loop pass after the suspension, so that the raw
    # round trips timed next do not share the server and the event loop with it.
    await asyncio.sleep(0.02)
    return run_id, marks


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    dsn_argument(parser)
    parser.add_argument("--samples", type=int, default=300)
    args = parser.parse_args()
    quiet_logs()
    dsn = await server_dsn(args.dsn)
    print(f"server: {await describe_server(dsn)}")
    print(load_line())
    create = Samples("hook creation: await ctx.hook(...) vs an INSERT", 1)
    resume = Samples("resume-id lookup: await ff.resume_hook(...) vs an UPDATE", 1)
    suspend = Samples("suspension: await hook.wait() -> run waiting vs an UPDATE", 5)
    warm = 20
    conn = await asyncpg.connect(dsn)
    await conn.execute(FLOOR_SCHEMA)
    raw = Raw(conn)
    run_ids: list[str] = []
    try:
        async with Forgeflow.connect(dsn, registry=registry, listeners=[on_event]) as ff:
            async with ff.worker(concurrency=10, queues=[QUEUE]):
                for i in range(warm + args.samples):
                    create.floor.append(await raw.insert())
                    create.own.append(await raw.own_create())
                    run_id, marks = await suspend_one(ff, i)
                    run_ids.append(run_id)
                    assert marks.suspended is not None
                    create.api.append(span(marks.before_hook, marks.after_hook))
                    suspend.api.append(span(marks.before_wait, marks.suspended))
                    suspend.floor.append(await raw.update(i, "active"))
                    suspend.own.append(await raw.own_suspend(i))
            # The worker is stopped: the woken runs wait until every resume is timed.
            for i, run_id in enumerate(run_ids):
                resume.floor.append(await raw.update(i, "consumed"))
                resume.own.append(await raw.own_resume(i))
                hook_id = MARKS[run_id].hook_id
                resume.api.append(await timed(ff.resume_hook(hook_id, decision="approve")))
            async with ff.worker(concurrency=10, queues=[QUEUE]):
                for run_id in run_ids:
                    assert await ff.result(run_id, timeout=60) == "approve"
    finally:
        await raw.clean()
        await conn.close()

    print(
        f"\nResume hooks: {args.samples} runs, one at a time, in-process worker, "
        f"after {warm} warm-up runs; milliseconds"
    )
    print(f"  {'':38}{'p50':>9}{'p95':>9}{'mean':>9}{'CPU p50':>11}")
    for samples in (create, resume, suspend):
        samples.print(warm)
    print("\n(differences: p50 minus p50, p95 minus p95, mean minus mean of the rows above)")
    print(load_line())


if __name__ == "__main__":
    asyncio.run(main())
