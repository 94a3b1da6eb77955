"""How long a workflow test takes with forgeflow.testing, against its database floor.

Two scenarios, the ones tests/testing runs, each on a fresh database cloned from a
migrated template (what the pytest plugin's fixtures do for every test):

- approval: a document-approval run waits on a 72 h hook; ``env.advance(72h)`` passes
  with no answer, the run takes the reject branch and its two compensations run;
- sleep_until: a run sleeps until a date seven days ahead; ``env.advance(7d)`` wakes it
  and it finishes.

For each, the test body (start, wait, advance, assertions through the env) is timed, and
every statement it sends is counted (an asyncpg query logger on the client's pool). The
floor is that many ``SELECT 1`` round trips on one connection, measured right after on
the same database: no test of that scenario can take less. The per-test fixture cost
(clone the template, connect, close, drop) is reported beside it.

    python benchmarks/testing_speed.py [--dsn DSN] [--rounds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import asyncpg
from _common import describe_server, dsn_argument, load_line, server_dsn
from _worker_proc import quiet_logs
from pydantic import BaseModel

from forgeflow import Outcome, Registry, WorkflowContext, WorkflowStatus, workflow
from forgeflow.testing import WorkflowTestEnv
from forgeflow.testing._db import DatabasePool, create_template, drop_database

registry = Registry()


class Document(BaseModel):
    id: str
    title: str


class DocumentRejected(Exception):
    """The document was not approved."""


async def reserve_slot(doc_id: str) -> str:
    return f"slot-{doc_id}"


async def release_slot(slot: str) -> None:
    return None


async def lock_document(doc_id: str) -> str:
    return f"lock-{doc_id}"


async def unlock_document(lock: str) -> None:
    return None


async def send_approval_email(title: str, url: str) -> None:
    return None


@workflow(version=1, name="bench_document_approval", timeout="7d", registry=registry)
async def document_approval(ctx: WorkflowContext, doc: Document) -> str:
    """The approval test's workflow: two compensated steps, a 72 h hook, an email."""
    slot = await ctx.step("reserve_slot", reserve_slot, doc.id).compensate(release_slot).run()
    await ctx.step("lock_document", lock_document, doc.id).compensate(unlock_document).run()
    hook = await ctx.hook("approval", timeout="72h", on_timeout="reject")
    await ctx.step("send_approval_email", send_approval_email, doc.title, hook.url).run()
    decision = await hook.wait()
    if decision.outcome is not Outcome.APPROVE:
        raise DocumentRejected(f"{doc.title}: rejected")
    return slot


async def remind(when: str) -> str:
    return when


@workflow(version=1, name="bench_renewal", timeout="30d", registry=registry)
async def renewal_reminder(ctx: WorkflowContext, due: datetime) -> str:
    """The sleep_until test's workflow: sleep a week, then one step."""
    await ctx.sleep_until(due)
    return await ctx.step("remind", remind, ctx.workflow_time().isoformat()).run()


async def approval_scenario(env: WorkflowTestEnv) -> None:
    """72 h without an answer: the reject branch and its compensations, newest first."""
    run_id = await env.start(document_approval, Document(id="d1", title="Q3 report"))
    assert (await env.run_until_waiting(run_id)).status is WorkflowStatus.WAITING
    await env.advance(timedelta(hours=72))
    assert (await env.client.status(run_id)).status is WorkflowStatus.COMPENSATED
    assert await env.compensations(run_id) == ["lock_document", "reserve_slot"]


async def sleep_until_scenario(env: WorkflowTestEnv) -> None:
    """A week's sleep_until, passed in one advance."""
    due = env.clock.now() + timedelta(days=7)
    run_id = await env.start(renewal_reminder, due)
    assert (await env.run_until_waiting(run_id)).status is WorkflowStatus.WAITING
    await env.advance(timedelta(days=7))
    assert await env.result(run_id) == due.isoformat()


SCENARIOS: dict[str, Callable[[WorkflowTestEnv], Awaitable[None]]] = {
    "approval 72h -> reject": approval_scenario,
    "sleep_until 7 days": sleep_until_scenario,
}


# -- counting statements ------------------------------------------------------------------

WRITES = re.compile(r"\b(INSERT|UPDATE|DELETE)\b", re.IGNORECASE)
sent = {"reads": 0, "writes": 0}


def _count(record: Any) -> None:
    sent["writes" if WRITES.search(record.query) else "reads"] += 1


class CountingConnection(asyncpg.Connection):
    """A pool connection that counts every statement it sends, reads and writes apart."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.add_query_logger(_count)


_create_pool = asyncpg.create_pool


def counting_pool(*args: Any, **kwargs: Any) -> Any:
    kwargs.setdefault("connection_class", CountingConnection)
    return _create_pool(*args, **kwargs)


asyncpg.create_pool = counting_pool  # forgeflow's store opens its pool through this


# -- measuring ----------------------------------------------------------------------------


class Sample(NamedTuple):
    clone: float  # taking a fresh database (cloned ahead in the background)
    setup: float  # connecting the client and the env, then closing them
    body: float  # the test body
    warm: float  # the test body again, on the same (now warm) client
    reads: int
    writes: int
    floor: float  # reads + writes round trips of SELECT 1
    commit_floor: float  # reads SELECT 1 + writes single-row INSERT commits


async def one_test(
    databases: DatabasePool, scenario: Callable[[WorkflowTestEnv], Awaitable[None]]
) -> Sample:
    """One run of a scenario on a fresh database, and its floors on that database."""
    t0 = time.perf_counter()
    dsn = await asyncio.to_thread(databases.take)
    t1 = time.perf_counter()
    async with WorkflowTestEnv.connect(dsn, registry=registry, migrate=False) as env:
        t2 = time.perf_counter()
        before = dict(sent)
        await scenario(env)
        t3 = time.perf_counter()
        await asyncio.sleep(0)  # let the query loggers (scheduled with call_soon) run
        reads, writes = sent["reads"] - before["reads"], sent["writes"] - before["writes"]
        t4 = time.perf_counter()
        # The same scenario again on this client: its connections have now prepared every
        # statement and loaded every type, which a fresh client's first use must do.
        await scenario(env)
        warm = time.perf_counter() - t4
    t5 = time.perf_counter()
    floor, commit_floor = await floors(dsn, reads, writes)
    databases.give_back(dsn)
    setup = (t2 - t1) + (t5 - t4 - warm)
    return Sample(t1 - t0, setup, t3 - t2, warm, reads, writes, floor, commit_floor)


async def floors(dsn: str, reads: int, writes: int) -> tuple[float, float]:
    """Seconds for reads + writes ``SELECT 1`` round trips, and for ``reads`` of them plus
    ``writes`` single-row INSERT commits, on one connection."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CREATE TABLE public.commit_floor (id bigserial PRIMARY KEY, v text)")
        select = await conn.prepare("SELECT 1")
        insert = await conn.prepare("INSERT INTO public.commit_floor (v) VALUES ($1)")
        await select.fetchval()
        await insert.fetch("warm")
        start = time.perf_counter()
        for _ in range(reads + writes):
            await select.fetchval()
        middle = time.perf_counter()
        for _ in range(reads):
            await select.fetchval()
        for i in range(writes):
            await insert.fetch(str(i))
        return middle - start, time.perf_counter() - middle
    finally:
        await conn.close()


def ms(values: list[float]) -> str:
    """Best / median, in milliseconds."""
    return f"{min(values) * 1000:.1f} / {statistics.median(values) * 1000:.1f}"


ROWS: list[tuple[str, Callable[[list[Sample]], str]]] = [
    (
        "statements (reads + writes)",
        lambda rows: " or ".join(
            f"{r} + {w}" for r, w in sorted({(s.reads, s.writes) for s in rows})
        ),
    ),
    ("test body, fresh client", lambda rows: ms([s.body for s in rows])),
    ("test body, warm client", lambda rows: ms([s.warm for s in rows])),
    ("floor: as many SELECT 1", lambda rows: ms([s.floor for s in rows])),
    ("floor: SELECT 1 + INSERT commits", lambda rows: ms([s.commit_floor for s in rows])),
    ("whole test", lambda rows: ms([s.clone + s.setup + s.body for s in rows])),
    ("  of which fresh database", lambda rows: ms([s.clone for s in rows])),
    ("  of which connect + close", lambda rows: ms([s.setup for s in rows])),
]


def report(results: dict[str, list[Sample]], rounds: int) -> None:
    """One column per scenario, one row per figure (ms as best / median)."""
    print(f"\n{rounds} rounds per scenario, each on a fresh database; ms as best / median")
    names = list(results)
    print(f"{'':34}" + "".join(f"{name:>26}" for name in names))
    for label, cell in ROWS:
        print(f"{label:34}" + "".join(f"{cell(results[name]):>26}" for name in names))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    dsn_argument(parser)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    quiet_logs()
    dsn = await server_dsn(args.dsn)
    print(f"server: {await describe_server(dsn)}")
    print(load_line())
    template = await asyncio.to_thread(create_template, dsn)
    databases = DatabasePool(dsn, template)
    try:
        await one_test(databases, approval_scenario)  # warm up imports and the server
        results: dict[str, list[Sample]] = {name: [] for name in SCENARIOS}
        for _ in range(args.rounds):
            for name, scenario in SCENARIOS.items():
                results[name].append(await one_test(databases, scenario))
    finally:
        await asyncio.to_thread(databases.close)
        await asyncio.to_thread(drop_database, dsn, template)
    report(results, args.rounds)
    print(load_line())


if __name__ == "__main__":
    asyncio.run(main())
