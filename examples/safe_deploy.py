"""Changing workflow code under runs in flight: check the deploy, then patch in place.

    python examples/safe_deploy.py

Two refund requests are waiting for a reviewer on the code in production. A change
inserts a fraud screening step before the review. `ff.check(...)` (what
`forgeflow check MODULE` runs in CI) replays both waiting runs on the new code without
executing anything, and reports that they would diverge: on replay they would run the
screening *after* their review, which never happened in their history. Guarded by
`ctx.patched("fraud-screen")`, the same change passes the check; the waiting runs finish
on the new code by their old path, and new requests are screened. Runs on the embedded
PostgreSQL under ./.forgeflow/ unless FORGEFLOW_DATABASE_URL is set.

From a shell, against the same database: `forgeflow check examples/safe_deploy.py:patched_code`.
"""

from __future__ import annotations

import asyncio
import logging

import structlog

from forgeflow import Forgeflow, Registry, WorkflowContext, WorkflowStatus, workflow

production = Registry()  # the code deployed today
unsafe_code = Registry()  # a step inserted before the review, unguarded
patched_code = Registry()  # the same insertion behind ctx.patched


def log_request(request: str) -> str:
    print(f"  [refunds] logged request {request}")
    return request


def screen_for_fraud(request: str) -> bool:
    print(f"  [fraud]   screened {request}")
    return True


def pay(request: str) -> str:
    print(f"  [bank]    refunded {request}")
    return f"paid {request}"


@workflow(version=1, name="refund", registry=production)
async def refund_v1(ctx: WorkflowContext, request: str) -> str:
    await ctx.step("log_request", log_request, request)
    await ctx.wait_for_hook("review")
    return await ctx.step("pay", pay, request)


@workflow(version=1, name="refund", registry=unsafe_code)
async def refund_unsafe(ctx: WorkflowContext, request: str) -> str:
    await ctx.step("log_request", log_request, request)
    await ctx.step("screen", screen_for_fraud, request)
    await ctx.wait_for_hook("review")
    return await ctx.step("pay", pay, request)


@workflow(version=1, name="refund", registry=patched_code)
async def refund_patched(ctx: WorkflowContext, request: str) -> str:
    await ctx.step("log_request", log_request, request)
    if await ctx.patched("fraud-screen"):
        await ctx.step("screen", screen_for_fraud, request)
    await ctx.wait_for_hook("review")
    return await ctx.step("pay", pay, request)


async def approve_all(ff: Forgeflow, run_ids: list[str]) -> None:
    for run_id in run_ids:
        (hook,) = (await ff.status(run_id)).hooks
        await ff.resume_hook(hook.hook_id, decision="approve")


async def until_waiting(ff: Forgeflow, run_id: str) -> None:
    async for record in ff.watch(run_id, steps=False):
        if record.status is WorkflowStatus.WAITING:
            return


async def main() -> None:
    print("1. Production code: two refund requests wait for a reviewer")
    async with Forgeflow.connect(registry=production) as ff, ff.worker():
        waiting = [await ff.start("refund", f"R-{n}") for n in (1, 2)]
        for run_id in waiting:
            await until_waiting(ff, run_id)

    async with Forgeflow.connect(registry=patched_code) as ff:
        print("2. Checking the unguarded change against the runs in flight")
        report = await ff.check(unsafe_code, workflow="refund")
        for run in report.runs:
            if run.run_id in waiting:
                print(f"   {run.verdict.value}: at {run.step!r}, expected {run.expected!r}")
        print("3. Checking the change guarded by ctx.patched")
        report = await ff.check(patched_code, workflow="refund")
        mine = [r for r in report.runs if r.run_id in waiting]
        print(f"   {', '.join(r.verdict.value for r in mine)}")

        print("4. Deployed: the reviewer approves; a new request arrives")
        async with ff.worker():
            await approve_all(ff, waiting)
            for run_id in waiting:
                print(f"   {await ff.result(run_id)} (old path: not screened)")
            fresh = await ff.start("refund", "R-3")
            await until_waiting(ff, fresh)
            await approve_all(ff, [fresh])
            print(f"   {await ff.result(fresh)} (new path: screened first)")


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    asyncio.run(main())
