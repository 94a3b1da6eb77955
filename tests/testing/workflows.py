"""Workflows the testing-toolkit tests drive, and the journal their steps write to.

The env executes runs in the test's own process, so a step proves it really ran by
appending to ``journal``; a fixture empties it before each test.
"""

from __future__ import annotations

import contextlib
from datetime import datetime

from pydantic import BaseModel

from forgeflow import EventTimeout, Outcome, Registry, WorkflowContext, workflow

registry = Registry()
journal: list[str] = []


# -- document approval: a 72 h hook, a saga rolled back when the answer is no ------------


class Document(BaseModel):
    id: str
    title: str


class DocumentRejected(Exception):
    """The document was not approved."""


async def reserve_slot(doc_id: str) -> str:
    journal.append(f"reserve_slot {doc_id}")
    return f"slot-{doc_id}"


async def release_slot(slot: str) -> None:
    journal.append(f"release_slot {slot}")


async def lock_document(doc_id: str) -> str:
    journal.append(f"lock_document {doc_id}")
    return f"lock-{doc_id}"


async def unlock_document(lock: str) -> None:
    journal.append(f"unlock_document {lock}")


def send_approval_email(title: str, url: str) -> None:
    # A sync step on purpose: it runs in a worker thread, as sync steps do.
    journal.append(f"send_approval_email {title}")


async def publish(doc_id: str, slot: str, by: str) -> str:
    journal.append(f"publish {doc_id}")
    return f"published {doc_id} in {slot} by {by}"


@workflow(version=1, name="testing_document_approval", timeout="7d", registry=registry)
async def document_approval(ctx: WorkflowContext, doc: Document) -> str:
    """Reserve a slot, lock the document, ask for approval (72 h), publish or roll back."""
    slot = await ctx.step("reserve_slot", reserve_slot, doc.id).compensate(release_slot).run()
    await ctx.step("lock_document", lock_document, doc.id).compensate(unlock_document).run()
    hook = await ctx.hook("approval", timeout="72h", on_timeout="reject")
    await ctx.step("send_approval_email", send_approval_email, doc.title, hook.url).run()
    decision = await hook.wait()
    if decision.outcome is not Outcome.APPROVE:
        why = "no answer in time" if decision.timed_out else "rejected"
        raise DocumentRejected(f"{doc.title}: {why}")
    by = str(decision.data.get("by", "nobody"))
    return await ctx.step("publish", publish, doc.id, slot, by).run()


# -- an escalation chain: manager, then director ------------------------------------------


@workflow(version=1, name="testing_expense", timeout="30d", registry=registry)
async def expense_approval(ctx: WorkflowContext, amount: int) -> str:
    """Ask the manager; an escalation (or 48 h of silence) passes it to the director."""
    for level in ("manager", "director"):
        decision = await ctx.wait_for_hook(level, timeout="48h", on_timeout="escalate")
        if decision.outcome is Outcome.APPROVE:
            return f"{amount} approved by {level}"
        if decision.outcome is Outcome.REJECT:
            return f"{amount} rejected by {level}"
    return f"{amount} escalated past the director"


# -- a reminder scheduled a week ahead ----------------------------------------------------


async def remind(when: str) -> str:
    journal.append(f"remind at {when}")
    return when


@workflow(version=1, name="testing_renewal", timeout="30d", registry=registry)
async def renewal_reminder(ctx: WorkflowContext, due: datetime) -> str:
    """Sleep until ``due``, then send the reminder stamped with the workflow time."""
    await ctx.sleep_until(due)
    return await ctx.step("remind", remind, ctx.workflow_time().isoformat()).run()


# -- a payment with retries ---------------------------------------------------------------


async def reserve_funds(amount: int) -> str:
    journal.append(f"reserve_funds {amount}")
    return f"hold-{amount}"


async def release_funds(hold: str) -> None:
    journal.append(f"release_funds {hold}")


async def charge_card(amount: int) -> str:
    journal.append(f"charge_card {amount}")
    return f"charge-{amount}"


@workflow(version=1, name="testing_payment", timeout="1d", registry=registry)
async def payment(ctx: WorkflowContext, amount: int) -> str:
    """Hold the funds, then charge the card with three attempts 10 s, 20 s apart."""
    await ctx.step("reserve_funds", reserve_funds, amount).compensate(release_funds).run()
    return await (
        ctx.step("charge_card", charge_card, amount)
        .retry(attempts=3, delay="10s", backoff=2.0)
        .run()
    )


# -- onboarding: three steps, for crashes -------------------------------------------------


async def create_user(email: str) -> str:
    journal.append(f"create_user {email}")
    return f"user-{email}"


async def send_welcome(email: str) -> None:
    journal.append(f"send_welcome {email}")


async def grant_trial(user: str) -> str:
    journal.append(f"grant_trial {user}")
    return f"trial-{user}"


@workflow(version=1, name="testing_onboarding", registry=registry)
async def onboarding(ctx: WorkflowContext, email: str) -> str:
    """Create the user, welcome them, grant a trial."""
    user = await ctx.step("create_user", create_user, email).run()
    await ctx.step("send_welcome", send_welcome, email).run()
    return await ctx.step("grant_trial", grant_trial, user).run()


# -- every kind of timer, for ordering ----------------------------------------------------


class Timer(BaseModel):
    label: str
    kind: str  # sleep, hook, event or retry
    minutes: int


async def woke(label: str, at: str) -> None:
    journal.append(f"{label} {at}")


async def flaky(label: str) -> None:
    journal.append(f"{label} attempt")


@workflow(version=1, name="testing_timer", timeout="30d", registry=registry)
async def one_timer(ctx: WorkflowContext, timer: Timer) -> None:
    """Wait once, on the kind of timer asked for, then note the workflow time."""
    if timer.kind == "sleep":
        await ctx.sleep(timer.minutes * 60)
    elif timer.kind == "hook":
        await ctx.wait_for_hook("answer", timeout=timer.minutes * 60, on_timeout="reject")
    elif timer.kind == "event":
        with contextlib.suppress(EventTimeout):
            await ctx.wait_for_event("never.sent", timeout=timer.minutes * 60)
    elif timer.kind == "retry":
        await (
            ctx.step("flaky", flaky, timer.label).retry(attempts=2, delay=timer.minutes * 60).run()
        )
    await ctx.step("woke", woke, timer.label, ctx.workflow_time().isoformat()).run()


async def undo_deadline(label: str) -> None:
    journal.append(f"{label} rolled back")


async def label_of(label: str) -> str:
    return label


@workflow(version=1, name="testing_deadline", timeout="4h", registry=registry)
async def short_deadline(ctx: WorkflowContext, label: str) -> None:
    """Wait on a hook with no timeout of its own: only the 4 h deadline ends the wait."""
    await ctx.step("label", label_of, label).compensate(undo_deadline).run()
    await ctx.wait_for_hook("never", timeout=None)


@workflow(version=1, name="testing_ticks", timeout="30d", registry=registry)
async def hourly_ticks(ctx: WorkflowContext, hours: int) -> int:
    """Sleep an hour, note the time, ``hours`` times over."""
    for _ in range(hours):
        await ctx.sleep("1h")
        await ctx.step("tick", woke, "tick", ctx.workflow_time().isoformat()).run()
    return hours


# -- a parent and its child, a payment waiting for an event --------------------------------


async def ship(order: str) -> str:
    journal.append(f"ship {order}")
    return f"shipment-{order}"


async def cancel_shipment(shipment: str) -> None:
    journal.append(f"cancel_shipment {shipment}")


@workflow(version=1, name="testing_packing", timeout="1d", registry=registry)
async def packing(ctx: WorkflowContext, order: str) -> str:
    """A child: packing takes two hours."""
    await ctx.sleep("2h")
    return await ctx.step("ship", ship, order).run()


@workflow(version=1, name="testing_order", timeout="7d", registry=registry)
async def order_flow(ctx: WorkflowContext, order: str) -> str:
    """Ship through a child workflow, then wait for the payment event (a day at most)."""
    shipment = await ctx.run_child(packing, order)
    await ctx.step("book_shipment", label_of, shipment).compensate(cancel_shipment).run()
    payment = await ctx.wait_for_event("payment.received", match={"order": order}, timeout="1d")
    return f"{shipment} paid {payment['amount']}"
