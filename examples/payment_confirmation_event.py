"""Payment confirmation by an external event.

    python examples/payment_confirmation_event.py

Each order run creates a payment intent, then waits with
`ctx.wait_for_event("payment.confirmed", match={"payment_id": ...}, timeout="1h")`. The
run is suspended meanwhile (status `waiting`, no worker held). The payment provider's
webhook handler (here: the script itself) calls `client.send_event(type, payload)`, which
wakes exactly the runs whose `match` is contained in the payload and says how many.
Runs on the embedded PostgreSQL under ./.forgeflow/ unless FORGEFLOW_DATABASE_URL is set.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from typing import Any

import structlog
from pydantic import BaseModel

from forgeflow import Forgeflow, Registry, WorkflowContext, WorkflowStatus, workflow

registry = Registry()


class Order(BaseModel):
    id: str
    amount_cents: int


class Intent(BaseModel):
    payment_id: str
    amount_cents: int


class PaymentConfirmed(BaseModel):
    """The payload of a payment.confirmed event (extra fields are ignored)."""

    payment_id: str
    method: str


class Fulfilment(BaseModel):
    order_id: str
    payment_id: str
    paid_via: str


# -- the outside world ----------------------------------------------------------------


async def create_payment_intent(order: Order) -> Intent:
    intent = Intent(payment_id=f"pay_{order.id}", amount_cents=order.amount_cents)
    print(f"  [psp]   payment intent {intent.payment_id} for {order.amount_cents / 100:.2f} EUR")
    return intent


async def ship(order: Order, payment: PaymentConfirmed) -> Fulfilment:
    print(f"  [wms]   shipping {order.id} (paid via {payment.method})")
    return Fulfilment(order_id=order.id, payment_id=payment.payment_id, paid_via=payment.method)


# -- the workflow ---------------------------------------------------------------------


@workflow(version=1, timeout="2h", registry=registry)
async def order_checkout(ctx: WorkflowContext, order: Order) -> Fulfilment:
    intent = await ctx.step("create_payment_intent", create_payment_intent, order).run()
    payload = await ctx.wait_for_event(
        "payment.confirmed", match={"payment_id": intent.payment_id}, timeout="1h"
    )
    payment = PaymentConfirmed.model_validate(payload)
    return await ctx.step("ship", ship, order, payment).run()


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


async def wait_for_status(ff: Forgeflow, run_id: str, status: WorkflowStatus) -> None:
    async for record in ff.watch(run_id, steps=False):
        if record.status is status:
            return
    raise SystemExit(f"run {run_id} ended before reaching {status.value}")


async def main() -> None:
    configure_logging()
    async with (
        Forgeflow.connect(registry=registry) as ff,
        ff.worker(concurrency=4, poll_interval="200ms"),
    ):
        orders = [Order(id="A100", amount_cents=1999), Order(id="B200", amount_cents=5450)]
        print("Two orders placed; each creates a payment intent, then waits for the provider.")
        runs = {order.id: await ff.start(order_checkout, order) for order in orders}
        for run_id in runs.values():
            await wait_for_status(ff, run_id, WorkflowStatus.WAITING)
        print("Both orders wait for their payment.confirmed event.\n")

        async def deliver(payload: dict[str, Any]) -> None:
            resumed = await ff.send_event("payment.confirmed", payload)
            print(f"send_event payment.confirmed {payload} -> resumed {resumed} run(s)")

        await deliver({"payment_id": "pay_ZZZ999", "method": "card"})  # matches no order
        await deliver({"payment_id": "pay_B200", "method": "sepa"})
        done = await ff.result(runs["B200"], timeout="30s")
        print(
            f"Order B200 shipped (paid via {done.paid_via}); "
            f"A100 is still {(await ff.status(runs['A100'])).status.value}\n"
        )

        await deliver({"payment_id": "pay_A100", "method": "card", "captured": True})
        done = await ff.result(runs["A100"], timeout="30s")
        print(f"Order A100 shipped (paid via {done.paid_via})")

        for order_id, run_id in runs.items():
            record = await ff.status(run_id)
            steps = ", ".join(f"{s.name}={s.status.value}" for s in record.steps)
            print(f"  {order_id}: {record.status.value}: {steps}")


if __name__ == "__main__":
    asyncio.run(main())
