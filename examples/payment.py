"""Payment: a step with a timeout and retries with backoff, and an optional step.

    python examples/payment.py

The card gateway hangs on the first call (the 1 s step timeout cuts it off), answers
"503 busy" on the second, and charges the card on the third; the retry waits 0.2 s, then
0.4 s (backoff 2.0). Every attempt is counted durably, so a crash in between would not
reset the count. The receipt email is optional: its failure is recorded as `skipped` and
the payment still completes. Runs on the embedded PostgreSQL under ./.forgeflow/ unless
FORGEFLOW_DATABASE_URL is set.
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


class PaymentInput(BaseModel):
    order_id: str
    card_token: str
    amount_cents: int
    email: str


class Charge(BaseModel):
    id: str
    amount_cents: int


class PaymentOutput(BaseModel):
    charge_id: str
    receipt_sent: bool


class GatewayBusy(Exception):
    """The card gateway asked us to come back later."""


# -- the outside world ----------------------------------------------------------------


class FlakyGateway:
    """A card gateway that hangs once, is busy once, then works."""

    def __init__(self) -> None:
        self.calls = 0

    async def charge(self, card_token: str, amount_cents: int, key: str) -> Charge:
        self.calls += 1
        if self.calls == 1:
            print(f"  [gateway] call {self.calls}: no answer (hangs)")
            await asyncio.sleep(30)
        if self.calls == 2:
            print(f"  [gateway] call {self.calls}: 503 busy")
            raise GatewayBusy("gateway answered 503, try again later")
        print(
            f"  [gateway] call {self.calls}: charged {amount_cents / 100:.2f} EUR "
            f"(idempotency key {key})"
        )
        return Charge(id="ch_3003", amount_cents=amount_cents)

    async def refund(self, charge: Charge) -> None:
        print(f"  [gateway] UNDO: refunded {charge.id}")


gateway = FlakyGateway()


async def send_receipt(email: str, charge: Charge) -> bool:
    print(f"  [mail]    sending the receipt for {charge.id} to {email} ... SMTP refused")
    raise ConnectionError("SMTP server refused the connection")


# -- the workflow ---------------------------------------------------------------------


@workflow(version=1, timeout="10m", registry=registry)
async def take_payment(ctx: WorkflowContext, input: PaymentInput) -> PaymentOutput:
    charge = await (
        ctx.step(
            "charge_card",
            gateway.charge,
            input.card_token,
            input.amount_cents,
            ctx.idempotency_key("charge_card"),
        )
        .timeout("1s")
        .retry(attempts=4, delay="200ms", backoff=2.0, max_delay="5s")
        .compensate(gateway.refund)
        .run()
    )
    sent = await ctx.step("send_receipt", send_receipt, input.email, charge).optional(default=False)
    return PaymentOutput(charge_id=charge.id, receipt_sent=sent)


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
        order = PaymentInput(
            order_id="ord_42", card_token="tok_visa", amount_cents=4999, email="bob@example.com"
        )
        print(f"Taking payment for {order.order_id} (step timeout 1s, up to 4 attempts)")
        output = await ff.run(take_payment, order)
        print(f"Payment done: charge {output.charge_id}, receipt sent: {output.receipt_sent}")

        [latest] = await ff.list_runs(workflow=take_payment.name, limit=1)
        record = await ff.status(latest.run_id)
        print(f"\nRun {record.run_id}")
        print(f"  status: {record.status.value}")
        for step in record.steps:
            error = step.error.get("message") if isinstance(step.error, dict) else None
            note = f"  last error: {error}" if error else ""
            print(f"  step {step.name:<14} {step.status.value:<10} attempts={step.attempts}{note}")


if __name__ == "__main__":
    asyncio.run(main())
