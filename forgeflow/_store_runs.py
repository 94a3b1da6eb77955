"""The statements that write and read runs: creating them, their checkpoints, their
state changes and ends (combined across runs when the store batches), and reads of one
run or a list of them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ._batching import CheckpointEntry, FinishEntry
from ._journal import Checkpoint
from ._store_core import Record, StoreCore

__all__ = ["RunStatements"]


class RunStatements(StoreCore):
    """Runs: written, checkpointed, suspended, ended, read."""

    async def insert_run(
        self,
        run_id: str,
        workflow: str,
        version: int,
        queue: str,
        input_json: str,
        idempotency_key: str | None,
        now: datetime,
        timeout_seconds: float,
        runnable_at: datetime | None = None,
        priority: int = 0,
        concurrency_key: str | None = None,
    ) -> tuple[str, str, bool]:
        """Write a new run (and NOTIFY workers); returns (run id, its workflow, created).

        When the idempotency key is taken, nothing is written and the id and workflow
        returned are those of the run holding the key.
        """
        args = (run_id, workflow, version, queue, input_json, idempotency_key, now)
        extra = (runnable_at or now, priority, concurrency_key)
        while True:
            row = await self._fetchrow("insert_run", *args, timeout_seconds, *extra)
            if row is not None:
                return row["id"], workflow, True
            existing = await self._fetchrow("run_by_idempotency_key", idempotency_key)
            # None only if the run holding the key was deleted in between: insert again.
            if existing is not None:
                return existing["id"], existing["workflow"], False

    async def insert_claimed_run(
        self,
        run_id: str,
        workflow: str,
        version: int,
        queue: str,
        input_json: str,
        idempotency_key: str | None,
        now: datetime,
        timeout_seconds: float,
        options: tuple[int, str | None],
        worker: str,
        lease_seconds: float,
    ) -> Record | None:
        """Write a new run already leased to ``worker``, as ``claim_run`` returns it;
        None (nothing written) when the idempotency key is taken.

        ``options`` is (priority, concurrency key).
        """
        args = (run_id, workflow, version, queue, input_json, idempotency_key, now)
        lease = (worker, lease_seconds)
        return await self._fetchrow("insert_claimed_run", *args, timeout_seconds, *options, *lease)

    async def insert_runs(
        self,
        workflow: str,
        version: int,
        queue: str,
        now: datetime,
        timeout_seconds: float,
        runs: Sequence[tuple[str, str, str | None, datetime, int, str | None]],
    ) -> list[tuple[str, bool, str | None]]:
        """Write a batch of runs in one statement: (id, input, idempotency key, runnable
        at, priority, key) each; returns (run id, created, conflicting workflow) in order.

        When any key is used by a run of another workflow, nothing is written and that
        workflow is named on the rows concerned.
        """
        ids, inputs, ikeys, at, priorities, keys = ([run[i] for run in runs] for i in range(6))
        rows = await self._fetch(
            "insert_runs",
            ids,
            workflow,
            version,
            queue,
            inputs,
            ikeys,
            now,
            timeout_seconds,
            at,
            priorities,
            keys,
        )
        return [(r["id"], r["created"], r["conflict"]) for r in rows]

    async def debounce_run(
        self,
        run_id: str,
        workflow: str,
        version: int,
        queue: str,
        input_json: str,
        debounce_key: str,
        now: datetime,
        timeout_seconds: float,
        runnable_at: datetime,
        priority: int,
        concurrency_key: str | None,
        latest: datetime | None,
    ) -> tuple[str, bool]:
        """Create the pending run of a debounce key, or update the one still pending;
        returns (run id, created)."""
        args = (run_id, workflow, version, queue, input_json, debounce_key, now)
        rest = (timeout_seconds, runnable_at, priority, concurrency_key, latest)
        row = await self._fetchrow("debounce_run", *args, *rest)
        assert row is not None  # an upsert always returns its row
        return row["id"], row["created"]

    async def load_steps(self, run_id: str) -> list[Record]:
        """The checkpoints of a run, for replay."""
        return await self._fetch("load_steps", run_id)

    async def checkpoint_step(
        self, run_id: str, worker: str, checkpoint: Checkpoint
    ) -> bool | None:
        """Write a checkpoint if ``worker`` holds the lease: cancel_requested, or None if not.

        Durable when it returns; combined with other runs' checkpoints into one statement
        when this store batches and a write is already in flight.
        """
        entry = CheckpointEntry(run_id, worker, checkpoint)
        if self._batching is None:
            return await self.write_checkpoint(entry)
        return await self._batching.checkpoints.write(entry, self.write_checkpoint)

    async def write_checkpoint(self, entry: CheckpointEntry) -> bool | None:
        """``checkpoint_step`` as a statement of its own, never combined."""
        c = entry.checkpoint
        value: bool | None = await self._fetchval(
            "checkpoint_step",
            entry.run_id,
            entry.worker,
            c.name,
            c.kind,
            c.status.value,
            c.result,
            c.result_type,
            c.error,
            c.attempts,
            c.started_at,
            c.completed_at,
            c.input,
        )
        return value

    async def write_checkpoints(self, entries: Sequence[CheckpointEntry]) -> dict[str, bool]:
        """Write many runs' checkpoints in one statement, each under its own run's lease:
        cancel_requested by run id, for the runs whose lease held."""
        rows = await self._fetch("checkpoint_steps", json.dumps([_row(e) for e in entries]))
        return {r["id"]: r["cancel_requested"] for r in rows}

    async def mark_compensated(
        self, run_id: str, worker: str, step: str, at: datetime, error: str | None
    ) -> bool:
        """Record a compensation's outcome on its step; False if the lease is gone."""
        return await self._fetchval("mark_compensated", run_id, worker, at, error, step) is not None

    async def heartbeat(
        self, worker: str, run_ids: Sequence[str], lease_seconds: float
    ) -> set[str]:
        """Extend the leases of ``run_ids``; returns those still held."""
        rows = await self._fetch("heartbeat", worker, list(run_ids), lease_seconds)
        return {r["id"] for r in rows}

    async def suspend_run(
        self, run_id: str, worker: str, wait_json: str, wake_at: datetime | None, now: datetime
    ) -> bool:
        """Park a run as waiting until ``wake_at`` or a wake-up; False if refused."""
        row = await self._fetchrow("suspend_run", run_id, worker, wait_json, wake_at, now)
        return row is not None

    async def release_run(self, run_id: str, worker: str, now: datetime) -> bool:
        """Give a run back so that another worker continues it at once."""
        return await self._fetchrow("release_run", run_id, worker, now) is not None

    async def park_for_children(
        self, run_id: str, worker: str, wait_json: str, now: datetime
    ) -> bool:
        """Release a cancelled run until its attached children end; False if none is live."""
        return await self._fetchrow("park_for_children", run_id, worker, wait_json, now) is not None

    async def start_compensation(
        self, run_id: str, worker: str, reason: str, error_json: str | None
    ) -> bool:
        """Mark a run as compensating, keeping why; False if the lease is gone."""
        row = await self._fetchrow("start_compensation", run_id, worker, reason, error_json)
        return row is not None

    async def finish_run(
        self,
        run_id: str,
        worker: str,
        status: str,
        output_json: str | None,
        error_json: str | None,
        reason: str | None,
        now: datetime,
        *,
        alone: bool = False,
    ) -> bool:
        """Write a terminal status and wake a waiting parent; False if the lease is gone.

        ``alone``: the run has no parent, so that a lighter statement may end it (it
        refuses a run with open hooks or event waits, which the full one then ends).
        Combined with other runs' ends into one statement when this store batches and
        an end is already being written.
        """
        entry = FinishEntry(run_id, worker, status, output_json, error_json, reason, now, alone)
        if self._batching is None:
            return await self.write_finish(entry) is not None
        return await self._batching.finishes.write(entry, self.write_finish) is not None

    async def write_finish(self, entry: FinishEntry) -> bool | None:
        """``finish_run`` as a statement of its own: True, or None if the lease is gone."""
        args = entry[:7]
        if entry.alone and await self._fetchrow("finish_run_alone", *args) is not None:
            return True
        row = await self._fetchrow("finish_run", *args)
        return None if row is None else True

    async def write_finishes(self, entries: Sequence[FinishEntry]) -> dict[str, bool]:
        """End many runs in one statement, each under its own run's lease: True by run id,
        for the runs whose lease held."""
        given = [[*e[:6], e.at.isoformat()] for e in entries]
        rows = await self._fetch("finish_runs", json.dumps(given))
        return {r["id"]: True for r in rows}

    async def request_cancel(
        self, run_id: str, now: datetime, *, include_run: bool = True
    ) -> list[str]:
        """Flag a run (unless told not to) and its attached descendants; those flagged."""
        rows = await self._fetch("request_cancel", run_id, now, include_run)
        return [r["id"] for r in rows]

    async def watch_run(self, run_id: str, seconds: float) -> bool:
        """Ask checkpoints of ``run_id`` to NOTIFY for the next ``seconds``."""
        return await self._fetchrow("watch_run", run_id, seconds) is not None

    async def wake_run(self, run_id: str, now: datetime) -> bool:
        """Make a non-terminal run claimable now."""
        return await self._fetchrow("wake_run", run_id, now) is not None

    async def fire_timers(self, run_id: str | None, at: datetime) -> list[str]:
        """Make waiting runs' sleep and retry timers due at ``at``; the runs moved."""
        rows = await self._fetch("fire_timers", run_id, at, at.isoformat())
        return [r["id"] for r in rows]

    async def get_run(self, run_id: str) -> Record | None:
        """One run row."""
        return await self._fetchrow("get_run", run_id)

    async def get_run_steps(self, run_id: str) -> list[Record]:
        """A run's steps in completion order."""
        return await self._fetch("get_run_steps", run_id)

    async def get_run_hooks(self, run_id: str) -> list[Record]:
        """A run's hooks."""
        return await self._fetch("get_run_hooks", run_id)

    async def live_children(self, run_id: str) -> list[str]:
        """The attached children of a run that have not ended."""
        return [r["id"] for r in await self._fetch("live_children", run_id)]

    async def get_run_outcome(self, run_id: str) -> Record | None:
        """A run's status, output and error."""
        return await self._fetchrow("get_run_outcome", run_id)

    async def list_runs(
        self,
        status: str | None,
        workflow: str | None,
        before: tuple[datetime, str] | None,
        limit: int,
    ) -> list[Record]:
        """Runs newest first, optionally filtered, keyset-paginated by (created_at, id)."""
        at, rid = before if before else (None, None)
        return await self._fetch("list_runs", status, workflow, at, rid, limit)


def _row(entry: CheckpointEntry) -> list[Any]:
    """One row of checkpoint_steps' JSON parameter (times in ISO form: exact to the µs)."""
    c = entry.checkpoint
    return [
        entry.run_id,
        entry.worker,
        c.name,
        c.kind,
        c.status.value,
        c.result,
        c.result_type,
        c.error,
        c.attempts,
        None if c.started_at is None else c.started_at.isoformat(),
        None if c.completed_at is None else c.completed_at.isoformat(),
        c.input,
    ]
