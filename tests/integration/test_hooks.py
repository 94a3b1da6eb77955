"""Resume hooks: a run waits for a person's decision, or takes its timeout action."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import anyio
import pytest

from forgeflow import (
    Decision,
    Forgeflow,
    HookAlreadyUsed,
    HookExpired,
    HookNotFound,
    HookStatus,
    Outcome,
    Registry,
    WorkflowContext,
    WorkflowDefinition,
    WorkflowStatus,
    workflow,
)
from tests.support.waits_time import ShiftedClock, advance, clocked_client, until

BASE_URL = "https://flows.example.com/"

Clocked = tuple[Forgeflow, ShiftedClock]


@pytest.fixture
async def clocked(dsn: str, registry: Registry) -> AsyncIterator[Clocked]:
    """A client with a movable engine clock and a public base URL for hook links."""
    async with clocked_client(dsn, registry, base_url=BASE_URL) as pair:
        yield pair


def is_waiting(record: Any) -> bool:
    return bool(record.status is WorkflowStatus.WAITING)


def approval_workflow(
    registry: Registry, on_timeout: str = "reject", hook_id: str | None = None
) -> tuple[WorkflowDefinition[str, dict[str, Any]], list[str]]:
    """A document approval: email the hook's link, wait, then follow the decision."""
    mailbox: list[str] = []

    def send_email(url: str) -> str:
        mailbox.append(url)
        return url

    @workflow(version=1, timeout="30d", registry=registry)
    async def document_approval(ctx: WorkflowContext, document: str) -> dict[str, Any]:
        hook = await ctx.hook(
            "manager",
            timeout="72h",
            on_timeout=on_timeout,
            metadata={"document": document, "amount": 120},
            hook_id=hook_id,
        )
        await ctx.step("email", send_email, hook.url).run()
        decision = await hook.wait()
        branch = await ctx.step(f"on_{decision.outcome.value}", lambda: decision.outcome.value)
        return {"branch": branch, "timed_out": decision.timed_out, "data": decision.data}

    return document_approval, mailbox


def hook_id_of(url: str) -> str:
    return url.rsplit("/hooks/", 1)[1]


async def test_hook_is_pending_with_an_unguessable_id_and_a_url_usable_before_the_wait(
    clocked: Clocked, registry: Registry
) -> None:
    """A hook is stored pending at creation, with a random id and a URL a step can send."""
    ff, _ = clocked
    seen: list[dict[str, Any]] = []
    emailed, release = anyio.Event(), anyio.Event()

    async def send_email(url: str) -> str:
        hook = (await ff.status(run_id)).hooks[0]
        seen.append({"url": url, "status": hook.status, "expires_at": hook.expires_at})
        emailed.set()
        await release.wait()
        return url

    @workflow(version=1, timeout="30d", registry=registry)
    async def approval(ctx: WorkflowContext, _: None) -> str:
        hook = await ctx.hook("manager", timeout="72h")
        await ctx.step("email", send_email, hook.url).run()
        return (await hook.wait()).outcome.value

    run_id = await ff.start(approval)
    async with ff.worker(concurrency=1):
        with anyio.fail_after(30):
            await emailed.wait()
        release.set()
        record = await until(ff, run_id, is_waiting)
        hook = record.hooks[0]
        assert seen[0]["status"] is HookStatus.PENDING
        assert seen[0]["expires_at"] is None
        assert seen[0]["url"] == f"https://flows.example.com/hooks/{hook.hook_id}"
        match = re.fullmatch(rf"webhook_{run_id}_manager_([A-Za-z0-9_-]+)", hook.hook_id)
        assert match is not None
        assert len(match.group(1)) * 6 >= 128  # base64url: six bits per character
        assert hook.status is HookStatus.ACTIVE
        assert hook.activated_at is not None and hook.expires_at is not None
        assert hook.expires_at - hook.activated_at == timedelta(hours=72)
        await ff.resume_hook(hook.hook_id, decision="approve")
        assert await ff.result(run_id, timeout=30) == "approve"


async def test_two_hooks_get_different_random_ids(clocked: Clocked, registry: Registry) -> None:
    """Hook ids differ between runs even for the same hook name."""
    ff, _ = clocked
    flow, mailbox = approval_workflow(registry)
    first, second = await ff.start(flow, "a"), await ff.start(flow, "b")
    async with ff.worker(concurrency=2):
        await until(ff, first, is_waiting)
        await until(ff, second, is_waiting)
    ids = {hook_id_of(url) for url in mailbox}
    assert len(ids) == 2
    suffixes = {i.rsplit("_", 1)[1] for i in ids}
    assert len(suffixes) == 2


@pytest.mark.parametrize("outcome", ["approve", "reject", "escalate"])
async def test_a_decision_leads_down_its_branch(
    clocked: Clocked, registry: Registry, outcome: str
) -> None:
    """approve, reject and escalate each resume the run on their own branch with the data."""
    ff, _ = clocked
    flow, mailbox = approval_workflow(registry)
    run_id = await ff.start(flow, "contract.pdf")
    async with ff.worker(concurrency=2):
        await until(ff, run_id, is_waiting)
        returned = await ff.resume_hook(
            hook_id_of(mailbox[0]), decision=outcome, data={"by": "ann"}
        )
        assert returned == run_id
        output = await ff.result(run_id, timeout=30)
    assert output == {"branch": outcome, "timed_out": False, "data": {"by": "ann"}}
    record = await ff.status(run_id)
    assert record.hooks[0].status is HookStatus.CONSUMED
    assert record.hooks[0].decision is Outcome(outcome)
    assert [s.name for s in record.steps if s.name.startswith("on_")] == [f"on_{outcome}"]


@pytest.mark.parametrize("on_timeout", ["approve", "reject", "escalate"])
async def test_a_timeout_takes_the_on_timeout_branch(
    clocked: Clocked, registry: Registry, on_timeout: str
) -> None:
    """With no decision by expires_at the hook expires and the run follows on_timeout."""
    ff, clock = clocked
    flow, _ = approval_workflow(registry, on_timeout=on_timeout)
    run_id = await ff.start(flow, "contract.pdf")
    async with ff.worker(concurrency=2):
        await until(ff, run_id, is_waiting)
        await advance(ff, clock, timedelta(hours=72, seconds=1))
        output = await ff.result(run_id, timeout=30)
    assert output == {"branch": on_timeout, "timed_out": True, "data": {}}
    hook = (await ff.status(run_id)).hooks[0]
    assert hook.status is HookStatus.EXPIRED
    assert hook.decision is None


async def test_a_given_id_template_names_the_hook(clocked: Clocked, registry: Registry) -> None:
    """hook_id="order-approval-{run_id}" gives the hook exactly that id and URL."""
    ff, _ = clocked
    flow, mailbox = approval_workflow(registry, hook_id="order-approval-{run_id}")
    run_id = await ff.start(flow, "order")
    async with ff.worker(concurrency=1):
        await until(ff, run_id, is_waiting)
        assert mailbox == [f"https://flows.example.com/hooks/order-approval-{run_id}"]
        await ff.resume_hook(f"order-approval-{run_id}", decision="approve")
        assert (await ff.result(run_id, timeout=30))["branch"] == "approve"


def escalation_workflow(registry: Registry) -> WorkflowDefinition[None, dict[str, Any]]:
    """Manager first (48 h, escalates on timeout), then the director (24 h, rejects)."""

    @workflow(version=1, timeout="30d", registry=registry)
    async def expense(ctx: WorkflowContext, _: None) -> dict[str, Any]:
        trail = []
        decision = await (await ctx.hook("manager", timeout="48h", on_timeout="escalate")).wait()
        trail.append(("manager", decision.outcome.value, decision.timed_out))
        if decision.outcome is Outcome.ESCALATE:
            director = await ctx.hook("director", timeout="24h", on_timeout="reject")
            decision = await director.wait()
            trail.append(("director", decision.outcome.value, decision.timed_out))
        return {"final": decision.outcome.value, "trail": trail}

    return expense


async def test_an_escalation_chain_ends_rejected_when_nobody_answers(
    clocked: Clocked, registry: Registry
) -> None:
    """manager times out → escalate → director hook → director times out → reject."""
    ff, clock = clocked
    run_id = await ff.start(escalation_workflow(registry))
    async with ff.worker(concurrency=1):
        await until(ff, run_id, is_waiting)
        await advance(ff, clock, timedelta(hours=48, seconds=1))
        record = await until(ff, run_id, lambda r: is_waiting(r) and len(r.hooks) == 2)
        manager, director = record.hooks
        assert (manager.name, manager.status) == ("manager", HookStatus.EXPIRED)
        assert (director.name, director.status) == ("director", HookStatus.ACTIVE)
        await advance(ff, clock, timedelta(hours=24, seconds=1))
        output = await ff.result(run_id, timeout=30)
    assert output == {
        "final": "reject",
        "trail": [["manager", "escalate", True], ["director", "reject", True]],
    }


async def test_an_escalated_request_can_be_approved_by_the_director(
    clocked: Clocked, registry: Registry
) -> None:
    """After the manager's hook expires, the director's decision ends the chain."""
    ff, clock = clocked
    run_id = await ff.start(escalation_workflow(registry))
    async with ff.worker(concurrency=1):
        await until(ff, run_id, is_waiting)
        await advance(ff, clock, timedelta(hours=49))
        record = await until(ff, run_id, lambda r: is_waiting(r) and len(r.hooks) == 2)
        await ff.resume_hook(record.hooks[1].hook_id, decision="approve")
        output = await ff.result(run_id, timeout=30)
    assert output["trail"] == [["manager", "escalate", True], ["director", "approve", False]]


async def test_fifty_concurrent_decisions_have_exactly_one_winner(
    clocked: Clocked, registry: Registry
) -> None:
    """Of 50 simultaneous resume_hook calls one succeeds, 49 get HookAlreadyUsed, one resume."""
    ff, _ = clocked
    after_wait: list[Decision] = []

    @workflow(version=1, timeout="30d", registry=registry)
    async def contested(ctx: WorkflowContext, _: None) -> int:
        decision = await (await ctx.hook("h", hook_id="contested-{run_id}")).wait()
        await ctx.step("after", after_wait.append, decision)
        return int(decision.data["caller"])

    run_id = await ff.start(contested)
    hook_id = f"contested-{run_id}"
    winners: list[int] = []
    losers: list[int] = []

    async def call(i: int) -> None:
        try:
            await ff.resume_hook(hook_id, decision="approve", data={"caller": i})
        except HookAlreadyUsed:
            losers.append(i)
        else:
            winners.append(i)

    async with ff.worker(concurrency=2):
        await until(ff, run_id, is_waiting)
        async with anyio.create_task_group() as group:
            for i in range(50):
                group.start_soon(call, i)
        assert await ff.result(run_id, timeout=30) == winners[0]
    assert len(winners) == 1 and len(losers) == 49
    assert len(after_wait) == 1
    record = await ff.status(run_id)
    assert record.executions == 2  # the first execution up to the wait, then one resume


async def test_a_decision_given_before_the_wait_is_returned_at_once(
    clocked: Clocked, registry: Registry
) -> None:
    """Resuming a pending hook keeps the decision; wait() returns it without suspending."""
    ff, _ = clocked
    emailed, decided = anyio.Event(), anyio.Event()
    urls: list[str] = []

    async def send_email(url: str) -> None:
        urls.append(url)
        emailed.set()
        await decided.wait()

    @workflow(version=1, timeout="30d", registry=registry)
    async def quick(ctx: WorkflowContext, _: None) -> dict[str, Any]:
        hook = await ctx.hook("manager")
        await ctx.step("email", send_email, hook.url)
        decision = await hook.wait()
        return {"outcome": decision.outcome.value, "data": decision.data}

    run_id = await ff.start(quick)
    async with ff.worker(concurrency=1):
        with anyio.fail_after(30):
            await emailed.wait()
        hook_id = hook_id_of(urls[0])
        assert (await ff.status(run_id)).hooks[0].status is HookStatus.PENDING
        await ff.resume_hook(hook_id, decision="reject", data={"reason": "early"})
        decided.set()
        output = await ff.result(run_id, timeout=30)
    assert output == {"outcome": "reject", "data": {"reason": "early"}}
    record = await ff.status(run_id)
    assert record.executions == 1  # never suspended
    assert record.hooks[0].activated_at is None


async def test_a_decision_after_expiry_is_refused_with_hook_expired(
    clocked: Clocked, registry: Registry
) -> None:
    """Past expires_at resume_hook raises HookExpired, before and after the run moved on."""
    ff, clock = clocked
    flow, mailbox = approval_workflow(registry, on_timeout="reject")
    run_id = await ff.start(flow, "late")
    async with ff.worker(concurrency=1):
        await until(ff, run_id, is_waiting)
    hook_id = hook_id_of(mailbox[0])
    clock.offset += timedelta(hours=73)  # no worker is running: the run cannot wake yet
    listed = await ff.list_hooks(status="active")
    assert [(h.hook_id, h.is_expired) for h in listed] == [(hook_id, True)]
    with pytest.raises(HookExpired):
        await ff.resume_hook(hook_id, decision="approve")
    async with ff.worker(concurrency=1):
        assert (await ff.result(run_id, timeout=30))["branch"] == "reject"
    with pytest.raises(HookExpired):
        await ff.resume_hook(hook_id, decision="approve")


async def test_an_unknown_hook_id_raises_hook_not_found(clocked: Clocked) -> None:
    """resume_hook on an id that was never issued raises HookNotFound."""
    ff, _ = clocked
    with pytest.raises(HookNotFound):
        await ff.resume_hook("webhook_nope_manager_xyz", decision="approve")


async def test_repeating_a_decision_with_its_idempotency_key_succeeds_again(
    clocked: Clocked, registry: Registry
) -> None:
    """The same call with the same idempotency_key is accepted again; other calls get 409."""
    ff, _ = clocked
    flow, mailbox = approval_workflow(registry)
    run_id = await ff.start(flow, "doc")
    async with ff.worker(concurrency=1):
        await until(ff, run_id, is_waiting)
        hook_id = hook_id_of(mailbox[0])
        assert (
            await ff.resume_hook(hook_id, decision="approve", idempotency_key="click-1") == run_id
        )
        assert (
            await ff.resume_hook(hook_id, decision="approve", idempotency_key="click-1") == run_id
        )
        with pytest.raises(HookAlreadyUsed):
            await ff.resume_hook(hook_id, decision="approve", idempotency_key="click-2")
        with pytest.raises(HookAlreadyUsed):
            await ff.resume_hook(hook_id, decision="reject", idempotency_key="click-1")
        with pytest.raises(HookAlreadyUsed):
            await ff.resume_hook(hook_id, decision="approve")
        assert (await ff.result(run_id, timeout=30))["branch"] == "approve"
    assert await ff.resume_hook(hook_id, decision="approve", idempotency_key="click-1") == run_id


async def test_list_hooks_shows_the_suspensions_with_filters_and_metadata(
    clocked: Clocked, registry: Registry
) -> None:
    """list_hooks filters by status and workflow and carries run, step, expiry and metadata."""
    ff, clock = clocked
    flow, _ = approval_workflow(registry)

    @workflow(version=1, timeout="30d", registry=registry)
    async def other(ctx: WorkflowContext, _: None) -> str:
        return (await (await ctx.hook("legal", timeout=None)).wait()).outcome.value

    first, second = await ff.start(flow, "a.pdf"), await ff.start(flow, "b.pdf")
    third = await ff.start(other)
    async with ff.worker(concurrency=3):
        for run_id in (first, second, third):
            await until(ff, run_id, is_waiting)
        await ff.resume_hook((await ff.status(first)).hooks[0].hook_id)
        await ff.result(first, timeout=30)

    active = await ff.list_hooks()
    assert {h.run_id for h in active} == {second, third}
    assert all(h.status is HookStatus.ACTIVE and not h.is_expired for h in active)
    approvals = await ff.list_hooks(status="active", workflow="document_approval")
    assert len(approvals) == 1
    hook = approvals[0]
    assert (hook.run_id, hook.workflow, hook.name, hook.step) == (
        second,
        "document_approval",
        "manager",
        "hook:manager",
    )
    assert hook.metadata == {"document": "b.pdf", "amount": 120}
    assert hook.url == f"https://flows.example.com/hooks/{hook.hook_id}"
    assert hook.expires_at is not None and hook.created_at <= hook.expires_at
    consumed = await ff.list_hooks(status="consumed")
    assert [h.run_id for h in consumed] == [first]
    assert {h.run_id for h in await ff.list_hooks(status=None)} == {first, second, third}

    clock.offset += timedelta(hours=73)
    by_run = {h.run_id: h for h in await ff.list_hooks()}
    assert by_run[second].is_expired
    assert not by_run[third].is_expired  # no timeout: never expires


async def test_a_hook_of_a_cancelled_run_can_no_longer_be_used(
    clocked: Clocked, registry: Registry
) -> None:
    """Cancelling a run waiting on a hook expires the hook: a late click gets HookExpired."""
    ff, _ = clocked
    flow, mailbox = approval_workflow(registry)
    run_id = await ff.start(flow, "withdrawn.pdf")
    async with ff.worker(concurrency=1):
        await until(ff, run_id, is_waiting)
        await ff.cancel(run_id)
        record = await until(ff, run_id, lambda r: r.is_terminal)
    assert record.status is WorkflowStatus.COMPENSATED
    assert record.hooks[0].status is HookStatus.EXPIRED
    assert await ff.list_hooks(status="active") == []
    with pytest.raises(HookExpired):
        await ff.resume_hook(hook_id_of(mailbox[0]), decision="approve")


async def test_a_hook_never_waited_on_expires_when_its_run_ends(
    clocked: Clocked, registry: Registry
) -> None:
    """A pending hook of a run that finished without waiting on it cannot be resumed."""
    ff, _ = clocked

    @workflow(version=1, timeout="30d", registry=registry)
    async def maybe_ask(ctx: WorkflowContext, ask: bool) -> str:
        hook = await ctx.hook("optional_review")
        if ask:
            return (await hook.wait()).outcome.value
        return hook.id

    run_id = await ff.start(maybe_ask, False)
    async with ff.worker(concurrency=1):
        hook_id = await ff.result(run_id, timeout=30)
    assert (await ff.status(run_id)).hooks[0].status is HookStatus.EXPIRED
    with pytest.raises(HookExpired):
        await ff.resume_hook(hook_id, decision="approve")
