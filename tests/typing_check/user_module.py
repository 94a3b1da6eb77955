"""A user's module as mypy --strict sees it: checked by tests/unit/test_typing.py.

Each ``# type: ignore[...]`` marks a line that must be an error of that code (a wrong
input leaves the workflow's input type unsolvable; mypy --strict reports an unused
ignore otherwise); each ``assert_type`` a type that must be inferred.
"""

from __future__ import annotations

from typing import assert_type

from pydantic import BaseModel

from forgeflow import Forgeflow, WorkflowContext, workflow


class Order(BaseModel):
    """The input of the workflows below."""

    id: str
    amount: int


def charge(order: Order) -> int:
    return order.amount


async def lookup(order_id: str) -> str:
    return order_id


@workflow(version=1)
async def checkout(ctx: WorkflowContext, order: Order) -> str:
    """A workflow with an input."""
    amount = await ctx.step("charge", charge, order).run()
    assert_type(amount, int)
    note = await ctx.step("note", lookup, order.id).optional().run()
    assert_type(note, str | None)
    fallback = await ctx.step("fallback", lookup, order.id).optional(default=0).run()
    assert_type(fallback, str | int)
    return f"{order.id}: {amount}"


def is_large(order: Order) -> bool:
    return order.amount > 100


@workflow(version=1)
async def fan_out(ctx: WorkflowContext, order: Order) -> list[str]:
    """Parallel steps keep each result's type in its position."""
    amount, note, large = await ctx.parallel(
        ctx.step("amount", charge, order),
        ctx.step("note", lookup, order.id).optional(),
        ctx.step("large", is_large, order),
    )
    assert_type(amount, int)
    assert_type(note, str | None)
    assert_type(large, bool)
    pair = await ctx.parallel(ctx.step("a", charge, order), ctx.step("b", lookup, order.id))
    assert_type(pair, tuple[int, str])
    six = await ctx.parallel(*(ctx.step(f"s{i}", charge, order) for i in range(6)))
    assert_type(six, tuple[int, ...])
    many = await ctx.parallel(*[ctx.step(f"m{i}", lookup, order.id) for i in range(10)])
    assert_type(many, tuple[str, ...])
    wrong: str = pair[0]  # type: ignore[assignment]
    await ctx.parallel(ctx.step("c", charge, order), charge)  # type: ignore[call-overload]
    return [wrong, note or "", *many]


@workflow
async def nightly(ctx: WorkflowContext) -> int:
    """A workflow without an input."""
    return 1


async def client_code(ff: Forgeflow) -> None:
    """What the client checks against the workflows' types."""
    await ff.start(checkout, Order(id="o1", amount=3))
    await ff.start(checkout, "o1")  # type: ignore[misc]
    await ff.start(nightly)
    await ff.start("checkout", {"id": "o1", "amount": 3})
    run_id = await ff.start(nightly)
    assert_type(await ff.result(run_id, nightly), int)
    assert_type(await ff.result(run_id, checkout, timeout="30s"), str)
    assert_type(await ff.run(checkout, Order(id="o2", amount=1)), str)
    await ff.run(checkout, 42)  # type: ignore[misc]
