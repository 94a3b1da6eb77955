"""Starting runs: one (``start``, with its typed overloads and debouncing) or many in one
round trip (``start_many``)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar, overload

import structlog

from ._client_core import ClientCore
from ._definitions import WorkflowDefinition
from ._durations import Duration
from ._start_options import Debounce, StartOptions, start_options
from .errors import IdempotencyConflict

__all__ = ["StartingRuns"]

I = TypeVar("I")  # noqa: E741
log = structlog.get_logger("forgeflow.client")


class StartingRuns(ClientCore):
    """Starting runs."""

    # Typed overloads: a definition's input type checks what is passed with it.
    @overload
    async def start(
        self,
        workflow: WorkflowDefinition[None, Any],
        input: None = None,
        *,
        idempotency_key: str | None = None,
        version: int | None = None,
        queue: str | None = None,
        priority: int = 0,
        key: str | None = None,
        start_at: datetime | None = None,
        delay: Duration | None = None,
        debounce: Debounce | None = None,
    ) -> str: ...
    @overload
    async def start(
        self,
        workflow: WorkflowDefinition[I, Any],
        input: I,
        *,
        idempotency_key: str | None = None,
        version: int | None = None,
        queue: str | None = None,
        priority: int = 0,
        key: str | None = None,
        start_at: datetime | None = None,
        delay: Duration | None = None,
        debounce: Debounce | None = None,
    ) -> str: ...
    @overload
    async def start(
        self,
        workflow: str,
        input: Any = None,
        *,
        idempotency_key: str | None = None,
        version: int | None = None,
        queue: str | None = None,
        priority: int = 0,
        key: str | None = None,
        start_at: datetime | None = None,
        delay: Duration | None = None,
        debounce: Debounce | None = None,
    ) -> str: ...
    async def start(
        self,
        workflow: WorkflowDefinition[Any, Any] | str,
        input: Any = None,
        *,
        idempotency_key: str | None = None,
        version: int | None = None,
        queue: str | None = None,
        priority: int = 0,
        key: str | None = None,
        start_at: datetime | None = None,
        delay: Duration | None = None,
        debounce: Debounce | None = None,
    ) -> str:
        """Write a new run (validated input and options; nothing written if invalid)."""
        new = self._new_run(
            workflow,
            input,
            idempotency_key=idempotency_key,
            version=version,
            queue=queue,
            priority=priority,
            key=key,
            start_at=start_at,
            delay=delay,
            debounce=debounce,
        )
        definition, options = new.definition, new.options
        if options.debounce is not None:
            return await self._debounce(definition, new.value, queue, options, new.now)
        new_id = str(uuid.uuid4())
        # Whoever awaits this run here then reads it once, when its end is announced.
        self._notifications.expect_end(new_id)
        run_id, owner, created = await self._store.insert_run(
            new_id,
            definition.name,
            definition.version,
            new.queue,
            new.input_json,
            idempotency_key,
            new.now,
            definition.timeout.total_seconds(),
            options.runnable_at,
            options.priority,
            options.key,
        )
        if created:
            log.info(
                "run_created", run_id=run_id, workflow=definition.name, version=definition.version
            )
            return run_id
        noted = self._notifications.expected_end(new_id)
        if noted is not None:
            self._notifications.forget(new_id, noted)
        if owner != definition.name:
            raise IdempotencyConflict(
                f"idempotency key {idempotency_key!r} is already used by a run of workflow "
                f"{owner!r}, not {definition.name!r}; use a key per workflow",
                key=idempotency_key or "",
                workflow=owner,
                run_id=run_id,
            )
        return run_id

    async def _debounce(
        self,
        definition: WorkflowDefinition[Any, Any],
        value: Any,
        queue: str | None,
        options: StartOptions,
        now: datetime,
    ) -> str:
        debounce = options.debounce
        assert debounce is not None
        longest = debounce.max_wait_delta
        run_id, created = await self._store.debounce_run(
            str(uuid.uuid4()),
            definition.name,
            definition.version,
            queue or definition.queue,
            definition.dump_input(value),
            debounce.key,
            now,
            definition.timeout.total_seconds(),
            now + debounce.window_delta,
            options.priority,
            options.key,
            None if longest is None else now + longest,
        )
        log.info(
            "run_created" if created else "run_debounced",
            run_id=run_id,
            workflow=definition.name,
            debounce_key=debounce.key,
        )
        return run_id

    async def start_many(
        self,
        workflow: WorkflowDefinition[Any, Any] | str,
        inputs: Sequence[Any],
        *,
        idempotency_keys: Sequence[str | None] | None = None,
        version: int | None = None,
        queue: str | None = None,
        priority: int = 0,
        key: str | None = None,
        start_at: datetime | None = None,
        delay: Duration | None = None,
    ) -> list[str]:
        """Start one run per input in one round trip; all written, or none if any is invalid."""
        definition = self._definition(workflow, version)
        now = self._clock.now()
        options = start_options(now, priority=priority, key=key, start_at=start_at, delay=delay)
        items = list(inputs)
        ikeys = list(idempotency_keys) if idempotency_keys is not None else [None] * len(items)
        if len(ikeys) != len(items):
            raise ValueError("idempotency_keys: needs one entry (or None) per input")
        dumped = [definition.dump_input(definition.validate_input(v)) for v in items]
        if not items:
            return []
        rows = [
            (str(uuid.uuid4()), text, ik, options.runnable_at, options.priority, options.key)
            for text, ik in zip(dumped, ikeys, strict=True)
        ]
        written = await self._store.insert_runs(
            definition.name,
            definition.version,
            queue or definition.queue,
            now,
            definition.timeout.total_seconds(),
            rows,
        )
        for (run_id, _, owner), ikey in zip(written, ikeys, strict=True):
            if owner is not None:
                raise IdempotencyConflict(
                    f"idempotency key {ikey!r} is already used by a run of workflow "
                    f"{owner!r}, not {definition.name!r}; nothing of the batch was written",
                    key=ikey or "",
                    workflow=owner,
                    run_id=run_id,
                )
        log.info(
            "runs_created",
            workflow=definition.name,
            version=definition.version,
            count=sum(created for _, created, _ in written),
        )
        return [run_id for run_id, _, _ in written]
