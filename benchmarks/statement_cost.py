"""Server work per statement of a 3-step run, beside raw asyncpg doing the same.

For each statement this process sends, the CPU that the server backend running it spent,
read from ``/proc/<pid>/schedstat`` just before and just after (so the server must run on
this machine), and with ``--wal`` the WAL it wrote: ``pg_walinspect`` over the statement's
LSN window, keeping the records of this database (needs a superuser, and WAL not yet
recycled when the run ends). Statements are sent one at a time, so windows never overlap.
Four kinds of run, 3 steps each: ``ff.run``; the raw floor of five commits; a run started
with ``ff.start``, executed by an ``ff.worker`` of this process and awaited with
``ff.result``; the same with the raw asyncpg worker and client of ``latency.py``.

    python benchmarks/statement_cost.py [--dsn DSN] [--runs 200] [--wal]
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import re
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import _worker_proc
import asyncpg
from _common import announce, dsn_argument, load_line
from _worker_proc import RawWorker, prepare_raw_schema, quiet_logs, registry, three_steps
from latency import RawClient, raw_in_process

from forgeflow import Forgeflow
from forgeflow._sql import QUERIES

# forgeflow's statements by their names in queries.sql, the baseline's by their constants'.
NAMES = {sql: name for name, sql in QUERIES.items()} | {
    sql: name for name, sql in vars(_worker_proc).items() if name.startswith("RAW_")
}

# (statement, backend CPU in ns, LSN before, LSN after)
Sample = tuple[str, int, int, int]


def backend_cpu(pid: int) -> int:
    """Nanoseconds of CPU the process ``pid`` has run for."""
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0])


class Recorder:
    """Wraps asyncpg's statement methods: one sample per statement, one at a time."""

    def __init__(self, side: asyncpg.Connection) -> None:
        self.side = side  # reads the WAL position; never measured itself
        self.lock = asyncio.Lock()
        self.samples: list[Sample] = []
        self.on = False

    async def lsn(self) -> int:
        return int(await self.side.fetchval("SELECT pg_current_wal_insert_lsn() - '0/0'"))

    @contextmanager
    def installed(self) -> Iterator[None]:
        cls = asyncpg.connection.Connection
        originals = {m: getattr(cls, m) for m in ("fetch", "fetchrow", "fetchval", "execute")}
        for method, original in originals.items():
            setattr(cls, method, self._wrap(original))
        try:
            yield
        finally:
            for method, original in originals.items():
                setattr(cls, method, original)

    def _wrap(self, original: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def measured(conn: Any, query: str, *args: Any, **kw: Any) -> Any:
            if not self.on or conn is self.side:
                return await original(conn, query, *args, **kw)
            async with self.lock:
                pid = conn.get_server_pid()
                before, cpu = await self.lsn(), backend_cpu(pid)
                try:
                    return await original(conn, query, *args, **kw)
                finally:
                    cpu = backend_cpu(pid) - cpu
                    name = NAMES.get(query, " ".join(query.split())[:40])
                    self.samples.append((name, cpu, before, await self.lsn()))

        return measured

    async def measure(self, body: Callable[[], Awaitable[None]]) -> list[Sample]:
        self.samples = []
        self.on = True
        try:
            await body()
        finally:
            async with self.lock:
                self.on = False
        return self.samples


async def wal_by_statement(conn: asyncpg.Connection, samples: list[Sample]) -> dict[str, int]:
    """WAL bytes (full-page images left out) of this database's records, by statement."""
    # pg_walinspect reads flushed WAL only. Each statement's commit was flushed before it
    # returned (synchronous_commit=on); what lies past the flush point is not ours.
    flushed = int(await conn.fetchval("SELECT pg_current_wal_flush_lsn() - '0/0'"))
    start, end = min(s[2] for s in samples), min(max(s[3] for s in samples), flushed)
    dboid = await conn.fetchval("SELECT oid FROM pg_database WHERE datname = current_database()")
    records = await conn.fetch(
        "SELECT start_lsn - '0/0' AS lsn, xid::text::bigint AS xid, resource_manager, "
        "record_length - fpi_length AS bytes, block_ref "
        "FROM pg_get_wal_records_info('0/0'::pg_lsn + $1::numeric, '0/0'::pg_lsn + $2::numeric)",
        start,
        end,
    )
    ours = re.compile(rf"rel \d+/{dboid}/")
    xids = {r["xid"] for r in records if ours.search(r["block_ref"] or "")}
    windows = sorted((s[2], s[3], s[0]) for s in samples)
    starts = [w[0] for w in windows]
    wal: dict[str, int] = defaultdict(int)
    for r in records:
        commit = r["resource_manager"] == "Transaction" and r["xid"] in xids
        if not commit and not ours.search(r["block_ref"] or ""):
            continue
        k = bisect.bisect_right(starts, r["lsn"]) - 1
        if k >= 0 and r["lsn"] < windows[k][1]:
            wal[windows[k][2]] += r["bytes"]
    return wal


def report(title: str, runs: int, samples: list[Sample], wal: dict[str, int] | None) -> None:
    per: dict[str, list[int]] = defaultdict(list)
    for name, cpu, _, _ in samples:
        per[name].append(cpu)
    print(f"\n{title}, {runs} runs: server CPU and WAL per run")
    print(f"{'statement':34}{'per run':>8}{'µs/run':>9}{'µs each':>9}{'WAL B/run':>11}")
    for name, cpus in sorted(per.items(), key=lambda kv: -sum(kv[1])):
        wal_bytes = "" if wal is None else f"{wal.get(name, 0) / runs:11.0f}"
        print(
            f"{name[:34]:34}{len(cpus) / runs:8.2f}{sum(cpus) / runs / 1000:9.1f}"
            f"{sum(cpus) / len(cpus) / 1000:9.1f}{wal_bytes}"
        )
    total = sum(s[1] for s in samples) / runs / 1000
    total_wal = "" if wal is None else f"{sum(wal.values()) / runs:11.0f}"
    print(f"{'all':34}{len(samples) / runs:8.2f}{total:9.1f}{'':9}{total_wal}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    dsn_argument(parser)
    parser.add_argument("--runs", type=int, default=200, help="runs of each kind")
    parser.add_argument("--wal", action="store_true", help="WAL by statement (pg_walinspect)")
    args = parser.parse_args()
    quiet_logs()
    dsn = await announce(args.dsn)
    await prepare_raw_schema(dsn)
    side = await asyncpg.connect(dsn)
    if args.wal:
        await side.execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
    recorder = Recorder(side)
    n = args.runs
    async with (
        Forgeflow.connect(dsn, registry=registry) as ff,
        RawClient.connect(dsn) as raw,
        ff.worker(concurrency=10, queues=["cost_forgeflow"]),
    ):
        conn = await asyncpg.connect(dsn)
        worker = asyncio.create_task(RawWorker(dsn, "cost_raw", 10).run(lambda: None))

        async def in_process() -> None:
            for i in range(n):
                await ff.run(three_steps, i)

        async def floor() -> None:
            for i in range(n):
                await raw_in_process(conn, i)

        async def through_worker() -> None:
            for i in range(n):
                await ff.result(await ff.start(three_steps, i, queue="cost_forgeflow"))

        async def raw_worker() -> None:
            for i in range(n):
                await raw.result(await raw.start("cost_raw", i))

        kinds = {
            "ff.run": in_process,
            "raw asyncpg, five commits": floor,
            "ff.start + ff.worker + ff.result": through_worker,
            "raw asyncpg worker and client": raw_worker,
        }
        try:
            for body in kinds.values():  # warm up: connections, plans, caches
                await body()
            with recorder.installed():
                for title, body in kinds.items():
                    began = time.perf_counter()
                    samples = await recorder.measure(body)
                    wal = None
                    if args.wal:
                        try:
                            wal = await wal_by_statement(side, samples)
                        except asyncpg.PostgresError as exc:  # recycled by a checkpoint
                            print(f"WAL not read: {exc}")
                    report(f"{title} ({time.perf_counter() - began:.1f} s)", n, samples, wal)
        finally:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
            await conn.close()
            await side.close()
    print(load_line())


if __name__ == "__main__":
    asyncio.run(main())
