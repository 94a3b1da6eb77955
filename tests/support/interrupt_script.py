"""A user's script with an in-process worker, interrupted by the tests with SIGINT.

python -m tests.support.interrupt_script GRACE
"""

from __future__ import annotations

import asyncio
import os
import sys

from forgeflow import Forgeflow, Registry, WorkflowContext, workflow

registry = Registry()


async def slow() -> str:
    print("step started", flush=True)
    await asyncio.sleep(3600)
    return "done"


@workflow(version=1, registry=registry)
async def long_running(ctx: WorkflowContext) -> str:
    """One step that runs until the worker is stopped."""
    return await ctx.step("slow", slow).run()


async def main(grace: str) -> None:
    async with Forgeflow.connect(os.environ["FORGEFLOW_DATABASE_URL"], registry=registry) as ff:
        run_id = await ff.start(long_running)
        print(run_id, flush=True)
        async with ff.worker(grace=grace):
            await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
