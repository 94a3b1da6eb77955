"""Start options against the database: delays, debounce, start_many, bad input, visibility."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import BaseModel

from forgeflow import (
    Debounce,
    Forgeflow,
    IdempotencyConflict,
    InputValidationError,
    Queue,
    Registry,
    WorkflowContext,
    WorkflowStatus,
    workflow,
)
from forgeflow.testing import ManualClock
from tests.support.db import connect_direct, wait_for

EMAILS = Queue("emails", concurrency=2, key_concurrency=1, rate="100/min")


class Mail(BaseModel):
    """An email to send."""

    to: str


@pytest.fixture
def mailer(registry: Registry) -> object:
    """A workflow on the limited ``emails`` queue."""

    @workflow(version=1, queue=EMAILS, registry=registry)
    async def send_mail(ctx: WorkflowContext, mail: Mail) -> str:
        return mail.to

    return send_mail


@pytest.fixture
async def timed(dsn: str, registry: Registry) -> AsyncIterator[tuple[Forgeflow, ManualClock]]:
    """A client whose clock the test moves."""
    clock = ManualClock(datetime(2026, 3, 1, 9, 0, tzinfo=UTC))
    async with Forgeflow.connect(dsn, registry=registry, clock=clock) as client:
        yield client, clock


async def run_count(ff: Forgeflow) -> int:
    """How many runs exist."""
    value: int = await ff.pool.fetchval("SELECT count(*) FROM forgeflow.workflow_runs")
    return value


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"priority": "urgent"}, "priority"),
        ({"key": "x" * 300}, "key"),
        ({"start_at": datetime(2031, 1, 1)}, "start_at"),
        ({"start_at": datetime(2001, 1, 1, tzinfo=UTC)}, "start_at"),
        ({"delay": "whenever"}, "delay"),
        ({"debounce": Debounce("k"), "idempotency_key": "i"}, "debounce"),
    ],
)
async def test_bad_start_options_write_nothing(
    ff: Forgeflow, mailer: object, options: dict[str, object], field: str
) -> None:
    """A bad option raises ValueError naming it, and no run is written."""
    with pytest.raises(ValueError, match=f"^{field}:"):
        await ff.start(mailer, Mail(to="a@example.com"), **options)  # type: ignore[call-overload]
    assert await run_count(ff) == 0


async def test_one_invalid_input_in_start_many_writes_nothing_of_the_batch(
    ff: Forgeflow, mailer: object
) -> None:
    """start_many validates every input first: one bad input, no run written."""
    inputs = [{"to": "a@example.com"}, {"to": "b@example.com"}, {"nope": 1}]
    with pytest.raises(InputValidationError):
        await ff.start_many(mailer, inputs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^priority:"):
        await ff.start_many(mailer, inputs[:2], priority=0.5)  # type: ignore[arg-type]
    assert await run_count(ff) == 0


async def test_start_many_writes_the_batch_in_order_with_its_options(
    ff: Forgeflow, mailer: object
) -> None:
    """start_many returns one id per input, in order, each run carrying the options."""
    inputs = [Mail(to=f"{i}@example.com") for i in range(5)]
    ids = await ff.start_many(mailer, inputs, priority=7, key="acme")  # type: ignore[arg-type]
    assert len(set(ids)) == 5
    for run_id, mail in zip(ids, inputs, strict=True):
        record = await ff.status(run_id)
        assert (record.input, record.priority, record.key) == (mail.model_dump(), 7, "acme")
        assert record.queue == "emails"
    assert await ff.start_many(mailer, []) == []  # type: ignore[arg-type]


async def test_start_many_honours_idempotency_keys_within_and_across_batches(
    ff: Forgeflow, mailer: object
) -> None:
    """A repeated idempotency key, in the batch or from an earlier run, gives that run's id."""
    first = await ff.start(mailer, Mail(to="a@example.com"), idempotency_key="k1")  # type: ignore[call-overload]
    ids = await ff.start_many(
        mailer,  # type: ignore[arg-type]
        [Mail(to="b@example.com"), Mail(to="c@example.com"), Mail(to="d@example.com")],
        idempotency_keys=["k1", "k2", "k2"],
    )
    assert ids[0] == first
    assert ids[1] == ids[2] != first
    assert await run_count(ff) == 2


async def test_start_many_with_a_key_of_another_workflow_writes_nothing(
    ff: Forgeflow, registry: Registry, mailer: object
) -> None:
    """A batch holding a key used by another workflow's run raises and writes none of it."""

    @workflow(version=1, registry=registry)
    async def other(ctx: WorkflowContext, _: None) -> None:
        return None

    await ff.start(other, None, idempotency_key="taken")
    with pytest.raises(IdempotencyConflict) as raised:
        await ff.start_many(
            mailer,  # type: ignore[arg-type]
            [Mail(to="a@example.com"), Mail(to="b@example.com")],
            idempotency_keys=["fresh", "taken"],
        )
    assert raised.value.workflow == "other"
    assert await run_count(ff) == 1


async def test_a_delayed_run_is_created_now_and_says_when_it_becomes_claimable(
    timed: tuple[Forgeflow, ManualClock], mailer: object
) -> None:
    """delay= writes a created run whose status explains the wait."""
    ff, clock = timed
    run_id = await ff.start(mailer, Mail(to="a@example.com"), delay="1h")  # type: ignore[call-overload]
    record = await ff.status(run_id)
    assert record.status is WorkflowStatus.CREATED
    assert record.wait is not None
    assert record.wait["kind"] == "delayed"
    assert record.wait["until"] == (clock.now() + timedelta(hours=1)).isoformat()
    states = {q.name: q for q in await ff.queues()}
    assert (states["emails"].delayed, states["emails"].claimable) == (1, 0)


async def test_debounce_moves_the_start_back_but_never_past_max_wait(
    timed: tuple[Forgeflow, ManualClock], mailer: object
) -> None:
    """Each debounced start replaces the input and moves the start to now + window,
    capped at the first start + max_wait; every call returns the same run."""
    ff, clock = timed
    first_at = clock.now()
    debounce = Debounce("digest", window="10s", max_wait="15s")
    run_id = await ff.start(mailer, Mail(to="1@example.com"), debounce=debounce)  # type: ignore[call-overload]

    async def runnable_at() -> datetime:
        value: datetime = await ff.pool.fetchval(
            "SELECT runnable_at FROM forgeflow.workflow_runs WHERE id = $1", run_id
        )
        return value

    assert await runnable_at() == first_at + timedelta(seconds=10)
    clock.advance("3s")
    again = await ff.start(mailer, Mail(to="2@example.com"), debounce=debounce)  # type: ignore[call-overload]
    assert again == run_id
    assert await runnable_at() == first_at + timedelta(seconds=13)
    clock.advance("8s")
    assert await ff.start(mailer, Mail(to="3@example.com"), debounce=debounce) == run_id  # type: ignore[call-overload]
    assert await runnable_at() == first_at + timedelta(seconds=15)  # capped by max_wait
    record = await ff.status(run_id)
    assert record.input == {"to": "3@example.com"}
    assert await run_count(ff) == 1
    # Another key is another run.
    other = await ff.start(mailer, Mail(to="x@example.com"), debounce=Debounce("other"))  # type: ignore[call-overload]
    assert other != run_id


async def test_queues_reports_limits_and_counts(ff: Forgeflow, mailer: object) -> None:
    """ff.queues() lists each queue with its limits, counts and busiest keys."""
    await ff._store.declare_queue("emails", 2, 1, 100, 60.0)
    await ff.start_many(mailer, [Mail(to="a@example.com")] * 3, key="acme")  # type: ignore[arg-type]
    await ff.start(mailer, Mail(to="b@example.com"), key="globex")  # type: ignore[call-overload]
    (emails,) = [q for q in await ff.queues() if q.name == "emails"]
    assert (emails.concurrency, emails.key_concurrency, emails.rate) == (2, 1, "100/60s")
    assert (emails.executing, emails.claimable, emails.delayed, emails.limited) == (0, 4, 0, 0)
    assert emails.top_keys[0] == {"key": "acme", "executing": 0, "claimable": 3}
    assert emails.as_dict()["name"] == "emails"


async def test_two_claims_at_the_same_instant_cannot_both_take_the_last_slot(
    ff: Forgeflow, mailer: object, dsn: str
) -> None:
    """A claim whose snapshot predates another claim's commit waits, then sees it: with
    concurrency=1, two racing claims lease one run, not two, even when each picks a
    different run (the second run is urgent and arrives between the two claims)."""
    await ff._store.declare_queue("emails", 1, None, None, None)
    await ff.start(mailer, Mail(to="a@example.com"))  # type: ignore[call-overload]
    keys = [("send_mail", 1)]
    first = await connect_direct(dsn)
    second = await connect_direct(dsn)
    try:
        first_pid, second_pid = first.get_server_pid(), second.get_server_pid()
        async with first.transaction():
            now = datetime.now(UTC)
            won = await ff._store.bind(first).claim_limited_runs(
                now, ["emails"], keys, 5, "first", 30
            )
            assert len(won) == 1
            await ff.start(mailer, Mail(to="b@example.com"), priority=10)  # type: ignore[call-overload]
            later = datetime.now(UTC)
            racing = asyncio.create_task(
                ff._store.bind(second).claim_limited_runs(later, ["emails"], keys, 5, "second", 30)
            )

            async def second_waits_for_the_first() -> bool:
                blockers = await ff.pool.fetchval("SELECT pg_blocking_pids($1)", second_pid)
                return first_pid in blockers

            await wait_for(second_waits_for_the_first, what="the second claim to wait")
        assert await racing == []
    finally:
        await first.close()
        await second.close()
    leased = await ff.pool.fetchval(
        "SELECT count(*) FROM forgeflow.workflow_runs WHERE lease_owner IS NOT NULL"
    )
    assert leased == 1


async def claim_one_at_a_time(ff: Forgeflow, when: datetime) -> int:
    """Claim runs of ``emails`` one per claim at ``when`` until a claim takes none."""
    taken = 0
    while await ff._store.claim_limited_runs(when, ["emails"], [("send_mail", 1)], 1, "w", 30):
        taken += 1
    return taken


async def ledger(ff: Forgeflow) -> list[tuple[datetime, int]]:
    """The ledger of first claims of ``emails``: (bucket end, starts), oldest first."""
    rows = await ff.pool.fetch(
        "SELECT until, starts FROM forgeflow.queue_starts WHERE queue = 'emails' ORDER BY until"
    )
    return [(r["until"], r["starts"]) for r in rows]


async def test_a_rate_admits_exactly_its_limit_read_from_its_ledger_or_from_the_runs(
    ff: Forgeflow, mailer: object
) -> None:
    """rate=5/h: claims of one run each take exactly 5 (the first ones bounded from the
    ledger of first claims, the last one counted from the runs), the next window 5 more;
    a bucket two periods later takes over the slot of the first one."""
    await ff._store.declare_queue("emails", None, None, 5, 3600.0)
    await ff.start_many(mailer, [Mail(to=f"{i}@example.com") for i in range(12)])  # type: ignore[arg-type]
    first = datetime.now(UTC)
    assert await claim_one_at_a_time(ff, first) == 5
    assert [n for _, n in await ledger(ff)] == [5]
    assert await claim_one_at_a_time(ff, first + timedelta(minutes=59)) == 0
    later = first + timedelta(hours=2)
    assert await claim_one_at_a_time(ff, later) == 5
    ((until, starts),) = await ledger(ff)
    assert (starts, later < until <= later + timedelta(minutes=3)) == (5, True)


async def test_runs_started_by_ff_run_and_drive_count_in_the_rate_window(
    ff: Forgeflow, mailer: object
) -> None:
    """rate=3/h: a run executed by ff.run and one driven by ff.drive leave one start to
    the workers' claims."""
    await ff._store.declare_queue("emails", None, None, 3, 3600.0)
    assert await ff.run(mailer, Mail(to="run@example.com")) == "run@example.com"  # type: ignore[call-overload]
    driven = await ff.start(mailer, Mail(to="drive@example.com"))  # type: ignore[call-overload]
    await ff.drive(driven)
    assert sum(n for _, n in await ledger(ff)) == 2
    await ff.start_many(mailer, [Mail(to=f"{i}@example.com") for i in range(3)])  # type: ignore[arg-type]
    assert await claim_one_at_a_time(ff, datetime.now(UTC)) == 1


async def test_a_rate_declared_on_a_busy_queue_counts_the_runs_started_before(
    ff: Forgeflow, mailer: object
) -> None:
    """Runs first claimed before the queue had a rate (so before its ledger) count in its
    window: rate=4/h after 3 starts leaves one."""
    await ff._store.declare_queue("emails", None, None, None, None)
    await ff.start_many(mailer, [Mail(to=f"{i}@example.com") for i in range(6)])  # type: ignore[arg-type]
    claimed = await ff._store.claim_runs(
        datetime.now(UTC), ["emails"], [("send_mail", 1)], 3, "w", 30
    )
    assert len(claimed) == 3
    await ff._store.declare_queue("emails", None, None, 4, 3600.0)
    assert await ledger(ff) == []
    assert await claim_one_at_a_time(ff, datetime.now(UTC)) == 1


async def wake_ups_of_an_end(ff: Forgeflow, dsn: str, owner: str) -> list[str]:
    """The forgeflow_wakeup payloads sent when ``owner`` completes a run of ``emails`` it
    claimed (every notification committed before a sentinel sent after the end)."""
    now = datetime.now(UTC)
    (run,) = await ff._store.claim_limited_runs(now, ["emails"], [("send_mail", 1)], 1, owner, 30)
    heard: list[str] = []
    sentinel = asyncio.Event()

    def on_wakeup(_conn: object, _pid: int, _channel: str, payload: str) -> None:
        if payload == "sentinel":
            sentinel.set()
        else:
            heard.append(payload)

    listener = await connect_direct(dsn)
    try:
        await listener.add_listener("forgeflow_wakeup", on_wakeup)
        assert await ff._store.finish_run(run["id"], owner, "completed", '"a"', None, None, now)
        await ff.pool.execute("SELECT pg_notify('forgeflow_wakeup', 'sentinel')")
        await asyncio.wait_for(sentinel.wait(), 30)
    finally:
        await listener.close()
    return heard


async def test_a_freed_slot_wakes_the_other_workers_of_the_queue_not_the_one_freeing_it(
    ff: Forgeflow, mailer: object, dsn: str
) -> None:
    """A run of a limited queue ended by the only worker serving the queue wakes nobody
    (that worker claims again by itself); with a second worker, the queue's workers are
    woken."""
    await ff._store.declare_queue("emails", 2, None, None, None)
    await ff.start_many(mailer, [Mail(to="a@example.com"), Mail(to="b@example.com")])  # type: ignore[arg-type]
    await ff._store.register_worker("w1", ["emails"], ["send_mail:1"], 4)
    assert await wake_ups_of_an_end(ff, dsn, "w1") == []
    await ff._store.register_worker("w2", ["default", "emails"], ["send_mail:1"], 4)
    assert await wake_ups_of_an_end(ff, dsn, "w1") == ["emails"]
