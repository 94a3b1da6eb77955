"""Escalation chain: the manager does not answer in time, the director decides.

    python examples/escalation_chain.py

An expense claim first waits on the manager's resume hook with
`on_timeout="escalate"`. Nobody answers, the hook expires, and the run continues with
`Decision(outcome=ESCALATE, timed_out=True)`: it creates a second hook for the director,
who rejects the claim with a click (simulated by `client.resume_hook`). To finish in
seconds, this demo gives the manager 2 seconds instead of the 48 hours a real deployment
would use; the run is suspended (status `waiting`, no worker held) during that wait
exactly as it would be for 48 hours. Runs on the embedded PostgreSQL under ./.forgeflow/
unless FORGEFLOW_DATABASE_URL is set.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys

import structlog
from pydantic import BaseModel

from forgeflow import (
    Decision,
    Forgeflow,
    HookRecord,
    HookStatus,
    Outcome,
    Registry,
    WorkflowContext,
    workflow,
)

registry = Registry()

MANAGER_TIMEOUT = "2s"  # a real deployment would say "48h"
DIRECTOR_TIMEOUT = "72h"


class ExpenseClaim(BaseModel):
    id: str
    employee: str
    amount_eur: int
    manager: str
    director: str


class ExpenseOutcome(BaseModel):
    claim_id: str
    approved: bool
    decided_by: str
    escalated: bool
    comment: str = ""


# -- the outside world ----------------------------------------------------------------


async def send_request(person: str, claim_id: str, approve: str, reject: str) -> None:
    print(f"  [mail]  to {person}: approve or reject claim {claim_id}")
    print(f"            {approve}")
    print(f"            {reject}")


async def note_escalation(claim: ExpenseClaim, reason: str) -> None:
    print(f"  [audit] manager {reason} on {claim.id}: escalating to {claim.director}")


async def pay(claim: ExpenseClaim) -> None:
    print(f"  [pay]   paid {claim.amount_eur} EUR to {claim.employee}")


async def tell_employee(claim: ExpenseClaim, approved: bool, by: str, comment: str) -> None:
    verdict = "approved" if approved else "rejected"
    print(
        f"  [mail]  to {claim.employee}: your claim was {verdict} by {by}: "
        f"{comment or 'no comment'}"
    )


# -- the workflow ---------------------------------------------------------------------


async def ask(
    ctx: WorkflowContext,
    level: str,
    person: str,
    claim: ExpenseClaim,
    timeout: str,
    on_timeout: str,
) -> Decision:
    """Create a hook, email its links, and wait for the decision (or the timeout)."""
    hook = await ctx.hook(
        level,
        timeout=timeout,
        on_timeout=on_timeout,
        metadata={"claim": claim.id, "amount_eur": claim.amount_eur, "level": level},
    )
    await ctx.step(
        f"ask_{level}",
        send_request,
        person,
        claim.id,
        hook.url_for("approve"),
        hook.url_for("reject"),
    ).run()
    return await hook.wait()


@workflow(version=1, timeout="7d", registry=registry)
async def expense_approval(ctx: WorkflowContext, claim: ExpenseClaim) -> ExpenseOutcome:
    decision = await ask(ctx, "manager", claim.manager, claim, MANAGER_TIMEOUT, "escalate")
    decided_by = claim.manager
    if decision.outcome is Outcome.ESCALATE:
        reason = "timed out" if decision.timed_out else "escalated"
        # Workflow code runs again on every replay; a step's side effect runs once.
        await ctx.step("note_escalation", note_escalation, claim, reason).run()
        decision = await ask(ctx, "director", claim.director, claim, DIRECTOR_TIMEOUT, "reject")
        decided_by = claim.director

    approved = decision.outcome is Outcome.APPROVE
    comment = str(decision.data.get("comment", ""))
    if approved:
        await ctx.step("pay", pay, claim).run()
    await ctx.step("tell_employee", tell_employee, claim, approved, decided_by, comment).run()
    return ExpenseOutcome(
        claim_id=claim.id,
        approved=approved,
        decided_by=decided_by,
        escalated=decided_by == claim.director,
        comment=comment,
    )


# -- running it -----------------------------------------------------------------------


def configure_logging() -> None:
    """Engine events (run_suspended, run_resumed, ...) go to stderr."""
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


async def active_hook(ff: Forgeflow, run_id: str, name: str) -> HookRecord:
    """Follow the run until it waits on the hook called ``name``."""
    async for record in ff.watch(run_id):
        for hook in record.hooks:
            if hook.name == name and hook.status is HookStatus.ACTIVE:
                return hook
    raise SystemExit(f"run {run_id} ended before waiting on {name!r}")


async def main() -> None:
    configure_logging()
    async with (
        Forgeflow.connect(registry=registry, base_url="https://expenses.example.com") as ff,
        ff.worker(concurrency=2, poll_interval="200ms"),
    ):
        claim = ExpenseClaim(
            id="exp_314",
            employee="frank@example.com",
            amount_eur=2400,
            manager="grace@example.com",
            director="heidi@example.com",
        )
        print(f"Claim {claim.id}: {claim.amount_eur} EUR for {claim.employee}")
        print(
            f"(demo timing: the manager's hook expires after {MANAGER_TIMEOUT}; "
            "in production this would be 48h)"
        )
        run_id = await ff.start(expense_approval, claim)

        manager = await active_hook(ff, run_id, "manager")
        print(
            f"The run waits for the manager (on timeout: {manager.on_timeout.value}); "
            "nobody answers..."
        )

        director = await active_hook(ff, run_id, "director")
        print(
            f"The manager's hook is now {(await hook_status(ff, manager.hook_id)).value}; "
            f"the run waits for the director (on timeout: {director.on_timeout.value})."
        )
        print(f"{claim.director} clicks 'reject'")
        await ff.resume_hook(
            director.hook_id, decision="reject", data={"comment": "over the travel budget"}
        )

        outcome = await ff.result(run_id, timeout="30s")
        print(
            f"\nOutcome: approved={outcome.approved} decided_by={outcome.decided_by} "
            f"escalated={outcome.escalated} comment={outcome.comment!r}"
        )
        record = await ff.status(run_id)
        print(f"Run {run_id} status: {record.status.value}")
        for hook in record.hooks:
            print(
                f"  hook {hook.name:<9} {hook.status.value:<9} decision="
                f"{hook.decision.value if hook.decision else None}"
            )


async def hook_status(ff: Forgeflow, hook_id: str) -> HookStatus:
    for hook in await ff.list_hooks(status=None):
        if hook.hook_id == hook_id:
            return HookStatus(hook.status)
    raise SystemExit(f"hook {hook_id} disappeared")


if __name__ == "__main__":
    asyncio.run(main())
