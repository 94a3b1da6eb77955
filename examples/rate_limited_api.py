"""Rate-limited API: at most 5 calls a second to a partner API, 3 at a time, fleet-wide.

    python examples/rate_limited_api.py

Twenty enrichment runs are started in one round trip (`start_many`) on the queue
`partner_api`, declared with `rate="5/s"` and `concurrency=3`. A worker with room for 10
runs executes them, but PostgreSQL hands out at most 3 at once and at most 5 new ones in
any one-second window, however many workers there are. While the queue drains, the script
prints what `ff.queues()` reports and why a waiting run has not started; at the end, the
calls per second the partner API saw. Runs on the embedded PostgreSQL under
./.forgeflow/ unless FORGEFLOW_DATABASE_URL is set.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections import Counter
from datetime import datetime

import structlog
from pydantic import BaseModel

from forgeflow import Forgeflow, Queue, Registry, WorkflowContext, WorkflowStatus, workflow

registry = Registry()
partner_api = Queue("partner_api", concurrency=3, rate="5/s")


class Company(BaseModel):
    domain: str


# -- the outside world ----------------------------------------------------------------


async def lookup_company(domain: str) -> dict[str, str]:
    """The partner API: it bans clients that call more than 5 times a second."""
    await asyncio.sleep(0.1)
    return {"domain": domain, "industry": "software"}


# -- the workflow ---------------------------------------------------------------------


@workflow(version=1, timeout="10m", queue=partner_api, registry=registry)
async def enrich(ctx: WorkflowContext, company: Company) -> str:
    info = await ctx.step("lookup", lookup_company, company.domain).retry(attempts=3).run()
    return info["industry"]


# -- running it -----------------------------------------------------------------------


def busiest_second(times: list[datetime]) -> int:
    """The most runs started in any one-second window (starting at any start)."""
    return max(sum(1 for t in times if 0 <= (t - start).total_seconds() < 1) for start in times)


def configure_logging() -> None:
    """Engine events (run_started, step_completed, ...) go to stderr."""
    level = os.environ.get("FORGEFLOW_LOG_LEVEL", "INFO").upper()
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="%H:%M:%S"),
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )


async def main() -> None:
    configure_logging()
    async with Forgeflow.connect(registry=registry) as ff:
        domains = [Company(domain=f"company{i:02}.example") for i in range(20)]
        run_ids = await ff.start_many(enrich, domains)
        print(f"Started {len(run_ids)} runs on queue {partner_api.name!r} in one round trip")
        async with ff.worker(concurrency=10):
            await asyncio.sleep(0.5)
            for state in await ff.queues():
                if state.name == partner_api.name:
                    print(
                        f"queue {state.name}: executing={state.executing} "
                        f"claimable={state.claimable} limited={state.limited} "
                        f"(limits: concurrency={state.concurrency}, rate={state.rate})"
                    )
            for run_id in reversed(run_ids):
                record = await ff.status(run_id)
                if record.status is WorkflowStatus.CREATED and record.wait:
                    print(f"run {run_id[:8]} has not started: {record.wait['detail']}")
                    break
            results = [await ff.result(run_id, timeout=60) for run_id in run_ids]
        print(f"All {len(results)} runs completed ({Counter(results).most_common(1)[0][0]})")
        # started_at is the first claim: what the rate limit counts.
        starts = [(await ff.status(run_id)).started_at for run_id in run_ids]
        times = sorted(t for t in starts if t is not None)
        per_second = Counter(int((t - times[0]).total_seconds()) for t in times)
        for second in sorted(per_second):
            print(f"  second {second}: {per_second[second]} runs started")
        print(f"Busiest one-second window: {busiest_second(times)} starts (limit 5)")


if __name__ == "__main__":
    asyncio.run(main())
