"""Reading and awaiting runs: a run with its steps and hooks, lists of runs, queues, a
run's result and watching it change."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any, TypeVar, overload

import anyio

from ._client_core import ClientCore
from ._definitions import WorkflowDefinition
from ._durations import Duration, parse_duration
from ._models import StepRecord, WorkflowRecord, WorkflowStatus
from ._queues import QueueState, hold_reason, queue_states
from ._records import hook_record, run_record, step_record
from ._worker import WORKER_SILENCE_SECONDS
from .errors import ResultTimeout, RunNotFound, WorkflowCancelled, WorkflowFailed

__all__ = ["ReadingRuns"]

_CLAIMABLE = (WorkflowStatus.CREATED, WorkflowStatus.RUNNING)

O = TypeVar("O")  # noqa: E741


class ReadingRuns(ClientCore):
    """Reading and awaiting runs."""

    async def status(self, run_id: str) -> WorkflowRecord:
        """The run with its steps and hooks; RunNotFound if there is none."""
        row = await self._store.get_run(run_id)
        if row is None:
            raise RunNotFound(f"no run with id {run_id!r}")
        now = self._clock.now()
        steps = [step_record(s, now) for s in await self._store.get_run_steps(run_id)]
        hooks = [
            hook_record(h, self.settings.base_url, now)
            for h in await self._store.get_run_hooks(run_id)
        ]
        record = run_record(row, steps, hooks)
        if record.worker is None and record.status in _CLAIMABLE and record.wait is None:
            record.wait = await self._queue_wait(row)
        await self._explain_unclaimed([record])
        return record

    async def _explain_unclaimed(self, records: list[WorkflowRecord]) -> None:
        # Say why nothing picks a run up when no live worker can execute it.
        seen: dict[tuple[str, str], bool] = {}
        for record in records:
            if record.worker is not None or record.status not in _CLAIMABLE or record.wait:
                continue
            key = (f"{record.workflow}:{record.version}", record.queue)
            if key not in seen:
                seen[key] = bool(await self._store.live_workers_for(*key, WORKER_SILENCE_SECONDS))
            if not seen[key]:
                record.wait = {
                    "kind": "no_worker",
                    "detail": f"no live worker executes {record.workflow} v{record.version} "
                    f"on queue {record.queue!r}",
                }

    async def _queue_wait(self, row: Any) -> dict[str, str] | None:
        now = self._clock.now()
        if row["status"] == "created" and row["runnable_at"] > now:
            at = row["runnable_at"].isoformat()
            return {"kind": "delayed", "until": at, "detail": f"claimable from {at}"}
        return await hold_reason(self._store, row, now)

    async def queues(self, top_keys: int = 5) -> list[QueueState]:
        """Per queue: executing, claimable, delayed and limited runs, and its busiest keys."""
        return await queue_states(self._store, self._clock.now(), top_keys)

    async def list_runs(
        self,
        status: WorkflowStatus | str | None = None,
        workflow: str | None = None,
        limit: int = 100,
        before: tuple[datetime, str] | None = None,
    ) -> list[WorkflowRecord]:
        """Runs, newest first (without steps)."""
        wanted = None if status is None else WorkflowStatus(status).value
        rows = await self._store.list_runs(wanted, workflow, before, max(1, min(limit, 1000)))
        records = [run_record(r, [], []) for r in rows]
        await self._explain_unclaimed(records)
        return records

    @overload
    async def result(
        self, run_id: str, workflow: WorkflowDefinition[Any, O], *, timeout: Duration | None = None
    ) -> O: ...
    @overload
    async def result(self, run_id: str, timeout: Duration | None = None) -> Any: ...
    # The second positional parameter is the workflow or (as before) the timeout; mypy
    # cannot see that the implementation takes both by position and by keyword.
    async def result(  # type: ignore[misc]
        self, run_id: str, workflow: Any = None, timeout: Any = None
    ) -> Any:
        """Wait for the run to end; its output, or WorkflowFailed / WorkflowCancelled.

        Given the run's workflow (``ff.result(run_id, wf)``), the output is typed as its own.
        """
        if workflow is not None and not isinstance(workflow, WorkflowDefinition):
            timeout = workflow  # ff.result(run_id, "30s"): the timeout, given positionally
        limit = None if timeout is None else parse_duration(timeout).total_seconds()
        with anyio.move_on_after(limit):
            return self._outcome(await self._ended(run_id))
        raise ResultTimeout(f"run {run_id} did not finish within {limit:g}s")

    async def _ended(self, run_id: str) -> WorkflowRecord:
        # Read once, then again only when the run's end is announced: a run started and
        # awaited costs two reads whatever happens to it meanwhile, one when this client
        # started it while listening.
        await self._notifications.start()
        noted = self._notifications.expected_end(run_id)
        if noted is not None:
            # Started here while listening: its end is announced, no need to read before.
            try:
                with anyio.move_on_after(5):
                    await noted.wait()
            finally:
                self._notifications.forget(run_id, noted)
        while True:
            ended = self._notifications.run_ended(run_id)
            try:
                record = await self._brief(run_id)
                if record.is_terminal:
                    return record
                # The fallback timeout covers a notification lost with a dropped connection.
                with anyio.move_on_after(5):
                    await ended.wait()
            finally:
                self._notifications.forget(run_id, ended)

    def _outcome(self, record: WorkflowRecord) -> Any:
        if record.status is WorkflowStatus.COMPLETED:
            definition = self.registry.find(record.workflow, record.version)
            if definition is None:
                return record.output
            return definition.output_adapter.validate_python(record.output)
        error = record.error or {}
        message = f"run {record.run_id} ended {record.status.value}: {error.get('message', '')}"
        kind = WorkflowCancelled if record.end_reason == "cancel" else WorkflowFailed
        raise kind(
            message,
            run_id=record.run_id,
            status=record.status.value,
            reason=record.end_reason,
            error=error,
            error_type=error.get("error_type") or error.get("type"),
        )

    async def watch(self, run_id: str, *, steps: bool = True) -> AsyncIterator[WorkflowRecord]:
        """Yield the run at each change (LISTEN/NOTIFY) until it reaches a terminal status."""
        await self._notifications.start()
        last: Any = None
        renew_at = 0.0
        while True:
            changed = self._notifications.run_changed(run_id)
            try:
                if steps and anyio.current_time() >= renew_at:
                    # Checkpoints NOTIFY only for watched runs; renew before it lapses.
                    await self._store.watch_run(run_id, 60)
                    renew_at = anyio.current_time() + 30
                record = await self.status(run_id) if steps else await self._brief(run_id)
                fingerprint = (record.status, [(s.name, s.status) for s in record.steps])
                if fingerprint != last:
                    last = fingerprint
                    yield record
                if record.is_terminal:
                    return
                # The fallback timeout covers a notification lost with a dropped connection.
                with anyio.move_on_after(5):
                    await changed.wait()
            finally:
                self._notifications.forget(run_id, changed)

    async def steps(self, run_id: str) -> list[StepRecord]:
        """A run's step records in completion order (running and pending ones last)."""
        return [step_record(r) for r in await self._store.get_run_steps(run_id)]
