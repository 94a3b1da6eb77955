"""Identity verification written with the low-level checkpoint API.

    python examples/verification_low_level.py

The fluent `ctx.step(...)` builder covers most workflows. When the retry logic has to be
your own (here: retry only on "try later" answers, and pause between attempts with a
durable sleep), the same checkpoints are available one call at a time:

    ctx.is_step_completed(name)          a completed checkpoint exists
    ctx.get_step_result(name, type=...)  its result, typed
    await ctx.record_step_start(name)    an attempt begins; returns the attempt number
    await ctx.record_step_complete(name, result)
    await ctx.record_step_failure(name, error)
    ctx.add_compensation(name, fn, result) / await ctx.run_compensation()

The identity check succeeds on its third attempt; the sanctions screening then flags the
applicant, and the workflow rolls back by hand with `run_compensation()` (the document
upload is deleted) and returns a rejection instead of failing. Runs on the embedded
PostgreSQL under ./.forgeflow/ unless FORGEFLOW_DATABASE_URL is set.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys

import structlog
from pydantic import BaseModel

from forgeflow import Forgeflow, Registry, WorkflowContext, workflow

registry = Registry()


class Applicant(BaseModel):
    name: str
    passport: str


class Upload(BaseModel):
    id: str


class Verification(BaseModel):
    reference: str
    score: float


class Screening(BaseModel):
    flagged: bool
    reason: str = ""


class VerificationOutcome(BaseModel):
    verified: bool
    reference: str | None
    reason: str


class TryLater(Exception):
    """The identity provider is overloaded."""


# -- the outside world ----------------------------------------------------------------

provider_calls = 0


async def upload_documents(applicant: Applicant) -> Upload:
    print(f"  [storage]  stored the passport scan of {applicant.name} as upl_77")
    return Upload(id="upl_77")


async def delete_upload(upload: Upload) -> None:
    print(f"  [storage]  UNDO: deleted {upload.id}")


async def check_identity(applicant: Applicant) -> Verification:
    global provider_calls
    provider_calls += 1
    if provider_calls < 3:
        print(f"  [identity] call {provider_calls}: 429 try later")
        raise TryLater("identity provider is rate limiting")
    print(f"  [identity] call {provider_calls}: passport {applicant.passport} is genuine")
    return Verification(reference="idv_5150", score=0.97)


async def screen_sanctions(applicant: Applicant) -> Screening:
    print(f"  [sanctions] {applicant.name}: name matches a watch-list entry")
    return Screening(flagged=True, reason="possible watch-list match")


# -- the workflow ---------------------------------------------------------------------

MAX_ATTEMPTS = 5


async def verify_identity(ctx: WorkflowContext, applicant: Applicant) -> Verification:
    """A step with a hand-written retry loop, checkpointed attempt by attempt."""
    name = "check_identity"
    if ctx.is_step_completed(name):  # on replay: the checkpoint, not a new call
        result: Verification = ctx.get_step_result(name, type=Verification)
        return result
    while True:
        attempt = await ctx.record_step_start(name, input={"passport": applicant.passport})
        try:
            result = await check_identity(applicant)
        except TryLater as exc:
            await ctx.record_step_failure(name, exc)
            if attempt >= MAX_ATTEMPTS:
                raise
            print(f"             attempt {attempt} recorded as failed; pausing before the next")
            await ctx.sleep(0.2 * attempt)  # a checkpointed sleep: replay does not repeat it
            continue
        await ctx.record_step_complete(name, result)
        return result


@workflow(version=1, timeout="1h", registry=registry)
async def verify_applicant(ctx: WorkflowContext, applicant: Applicant) -> VerificationOutcome:
    upload = await ctx.step("upload_documents", upload_documents, applicant).run()
    ctx.add_compensation("upload_documents", delete_upload, upload)

    verification = await verify_identity(ctx, applicant)

    screening = await ctx.step("screen_sanctions", screen_sanctions, applicant).run()
    if screening.flagged:
        print("  [workflow] screening flagged the applicant: rolling back by hand")
        failures = await ctx.run_compensation()
        if failures:
            raise failures[0]  # the run then fails, with this error recorded
        return VerificationOutcome(verified=False, reference=None, reason=screening.reason)
    return VerificationOutcome(verified=True, reference=verification.reference, reason="ok")


# -- running it -----------------------------------------------------------------------


def configure_logging() -> None:
    """Engine events (run_started, step_failed, run_finished, ...) go to stderr."""
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
        applicant = Applicant(name="Carol Jones", passport="X1234567")
        print(f"Verifying {applicant.name} with the low-level checkpoint API")
        outcome = await ff.run(verify_applicant, applicant)
        print(f"Outcome: verified={outcome.verified} reason={outcome.reason!r}")

        [latest] = await ff.list_runs(workflow=verify_applicant.name, limit=1)
        record = await ff.status(latest.run_id)
        print(f"\nRun {record.run_id}")
        print(f"  status: {record.status.value}")
        for step in record.steps:
            print(f"  step {step.name:<18} {step.status.value:<12} attempts={step.attempts}")


if __name__ == "__main__":
    asyncio.run(main())
