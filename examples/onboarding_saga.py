"""Onboarding saga: three checkpointed steps, the third fails, the first two are undone.

    python examples/onboarding_saga.py

Creates a user, sets up a billing customer, then tries to provision a database. The
provisioning step fails (after its retries), so forgeflow runs the compensations that the
completed steps registered, newest first: the billing customer is deleted, then the user.
Runs on the embedded PostgreSQL under ./.forgeflow/ unless FORGEFLOW_DATABASE_URL is set.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys

import structlog
from pydantic import BaseModel

from forgeflow import Forgeflow, Registry, WorkflowContext, WorkflowFailed, workflow

registry = Registry()


class OnboardingInput(BaseModel):
    email: str
    plan: str


class User(BaseModel):
    id: str
    email: str


class BillingCustomer(BaseModel):
    id: str
    user_id: str
    plan: str


class OnboardingOutput(BaseModel):
    user_id: str
    customer_id: str
    database_url: str


# -- the outside world (stand-ins for real services) ----------------------------------


async def create_user(email: str) -> User:
    user = User(id="usr_1001", email=email)
    print(f"  [users]     created user {user.id} <{email}>")
    return user


async def delete_user(user: User) -> None:
    print(f"  [users]     UNDO: deleted user {user.id}")


async def create_billing_customer(user: User, plan: str) -> BillingCustomer:
    customer = BillingCustomer(id="cus_2002", user_id=user.id, plan=plan)
    print(f"  [billing]   created customer {customer.id} on plan {plan!r}")
    return customer


async def delete_billing_customer(customer: BillingCustomer) -> None:
    print(f"  [billing]   UNDO: deleted customer {customer.id}")


async def provision_database(user: User) -> str:
    print(f"  [databases] provisioning a database for {user.id} ... no capacity left")
    raise RuntimeError("region eu-west-1 has no database capacity left")


# -- the workflow ---------------------------------------------------------------------


@workflow(version=1, timeout="1h", registry=registry)
async def user_onboarding(ctx: WorkflowContext, input: OnboardingInput) -> OnboardingOutput:
    user = await ctx.step("create_user", create_user, input.email).compensate(delete_user).run()
    customer = await (
        ctx.step("create_billing_customer", create_billing_customer, user, input.plan)
        .compensate(delete_billing_customer)
        .run()
    )
    database_url = await (
        ctx.step("provision_database", provision_database, user)
        .retry(attempts=2, delay="100ms")
        .run()
    )
    return OnboardingOutput(user_id=user.id, customer_id=customer.id, database_url=database_url)


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
        print("Onboarding alice@example.com: create user -> billing customer -> database")
        try:
            await ff.run(user_onboarding, OnboardingInput(email="alice@example.com", plan="pro"))
        except WorkflowFailed as exc:
            print(f"The run was rolled back: {exc.error.get('message')}")
            run_id = exc.run_id
        else:
            raise SystemExit("unexpected: the onboarding should have failed")

        record = await ff.status(run_id)
        print(f"\nRun {record.run_id}")
        print(f"  status: {record.status.value} (reason: {record.end_reason})")
        for step in record.steps:
            print(f"  step {step.name:<24} {step.status.value:<12} attempts={step.attempts}")


if __name__ == "__main__":
    asyncio.run(main())
