"""Repairing runs: restart and fork a run, purge old ones, act on many runs at once.

A restart is a new run of the same workflow with the same input, executed from the start.
A fork is a new run that starts with copies of the checkpoints its source completed
before a given step, so that replaying it returns those results without calling the
steps again and executes anew from that step, possibly on a newer version of the code.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog

from ._clock import Clock
from ._definitions import Registry
from ._durations import Duration, parse_duration
from ._models import BulkResult, WorkflowStatus
from ._store import TERMINAL, Record, Store
from .errors import ForkError, RunNotFound, WorkflowNotFound

__all__ = ["BULK_LIMIT", "PURGE_BATCH", "Repairs", "fork_plan"]

log = structlog.get_logger("forgeflow.repair")

#: The most runs one bulk call acts on; a larger `limit` is refused.
BULK_LIMIT = 10_000
#: Top-level runs deleted per statement: small, so no lock is held for long.
PURGE_BATCH = 200
# Checkpoints a fork copies: those that ended (an optional step's recorded failure too).
_ENDED_STEPS = ("completed", "failed", "skipped")
# Wait checkpoints whose resource (a hook, a child run) belongs to the source run: one is
# copied only together with the checkpoint of the wait's end, else the fork creates its
# own hook or child when it reaches that point.
_PAIRED = {"hook:": "", "child:": "join:"}


def fork_plan(run_id: str, steps: Sequence[Any], from_step: str) -> list[str]:
    """The checkpoints a fork from ``from_step`` copies; ForkError when it cannot be made.

    ``steps`` are the source's checkpoints in completion order (``fork_source_steps``).
    """
    names = [s["name"] for s in steps]
    if from_step not in names:
        raise ForkError(
            f"from_step: run {run_id} never recorded a step named {from_step!r}",
            run_id=run_id,
            step=from_step,
        )
    before = steps[: names.index(from_step)]
    for step in before:
        if step["status"] == "compensated" or step["compensated_at"] is not None:
            raise ForkError(
                f"from_step: step {step['name']!r} of run {run_id} was compensated, so its "
                f"effect is gone and its result cannot be reused; fork from "
                f"{step['name']!r} or earlier, or restart the run",
                run_id=run_id,
                step=str(step["name"]),
            )
    copied = [s for s in before if s["status"] in _ENDED_STEPS and s["completed_at"] is not None]
    kept = {s["name"] for s in copied}
    result = []
    for name in (s["name"] for s in copied):
        partner = next(
            (name.replace(p, q, 1) for p, q in _PAIRED.items() if name.startswith(p)), None
        )
        if partner is not None and partner not in kept:
            continue
        result.append(name)
    return result


@dataclass(frozen=True)
class _Target:
    workflow: str
    version: int
    queue: str
    timeout_seconds: float


class Repairs:
    """Restart, fork, purge and bulk operations on the runs of one store."""

    def __init__(
        self, store: Store, registry: Registry, clock: Clock, live_within: float = 35.0
    ) -> None:
        self._store = store
        # How recently a worker must have been seen for its workflow versions to count.
        self._live_within = live_within
        self._registry = registry
        self._clock = clock

    @property
    def store(self) -> Store:
        """The store the operations run on."""
        return self._store

    async def _source(self, run_id: str) -> Record:
        row = await self._store.run_source(run_id)
        if row is None:
            raise RunNotFound(f"no run with id {run_id!r}")
        return row

    async def _target(self, source: Record, version: int | None) -> _Target:
        """The workflow version a restart or fork runs on: the latest unless given."""
        name = source["workflow"]
        if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
            raise ValueError(f"version: expected a whole number, got {version!r}")
        if name in self._registry:
            definition = (
                self._registry.get(name)
                if version is None
                else self._registry.get_version(name, version)
            )
            return _Target(
                name, definition.version, definition.queue, definition.timeout.total_seconds()
            )
        # A client without the workflow's code (the CLI, the HTTP app): the versions that
        # live workers execute tell what exists; the source's own version always does.
        known = set(await self._store.live_worker_versions(name, self._live_within))
        known.add(int(source["version"]))
        chosen = max(known) if version is None else version
        if chosen not in known:
            raise WorkflowNotFound(
                f"version: workflow {name!r} has no version {chosen} "
                f"(known: {', '.join(map(str, sorted(known)))})"
            )
        return _Target(name, chosen, source["queue"], float(source["timeout_seconds"]))

    async def restart(self, run_id: str, version: int | None = None) -> str:
        """A new run of the same workflow and input, linked by ``restarted_from``."""
        source = await self._source(run_id)
        target = await self._target(source, version)
        new_id = str(uuid.uuid4())
        await self._store.insert_linked_run(
            new_id,
            target.workflow,
            target.version,
            target.queue,
            source["input"],
            self._clock.now(),
            target.timeout_seconds,
            restarted_from=run_id,
        )
        log.info("run_restarted", run_id=new_id, source=run_id, version=target.version)
        return new_id

    async def fork(self, run_id: str, from_step: str, version: int | None = None) -> str:
        """A new run reusing the checkpoints completed before ``from_step``."""
        if not isinstance(from_step, str) or not from_step:
            raise ValueError("from_step: expected a step name")
        source = await self._source(run_id)
        if source["status"] not in TERMINAL:
            raise ForkError(
                f"run {run_id} is still {source['status']}: cancel it or let it end "
                f"before forking it from {from_step!r}",
                run_id=run_id,
                step=from_step,
            )
        target = await self._target(source, version)
        copy = fork_plan(run_id, await self._store.fork_source_steps(run_id), from_step)
        new_id = str(uuid.uuid4())
        copied = await self._store.insert_linked_run(
            new_id,
            target.workflow,
            target.version,
            target.queue,
            source["input"],
            self._clock.now(),
            target.timeout_seconds,
            forked_from=run_id,
            forked_from_step=from_step,
            copy_steps=copy,
        )
        log.info(
            "run_forked",
            run_id=new_id,
            source=run_id,
            step=from_step,
            version=target.version,
            copied=copied,
        )
        return new_id

    # -- purging -------------------------------------------------------------------------

    async def purge(
        self,
        older_than: Duration,
        workflow: str | None = None,
        status: WorkflowStatus | str | None = None,
        dry_run: bool = False,
        *,
        store: Store | None = None,
        minimum: timedelta | None = None,
    ) -> int:
        """Delete finished runs that ended more than ``older_than`` ago; how many."""
        age = parse_duration(older_than, field="older_than")
        if age <= timedelta(0):
            raise ValueError("older_than: must be positive")
        if minimum is not None and age < minimum:
            raise ValueError(f"older_than: must be at least {minimum}")
        wanted = None if status is None else WorkflowStatus(status).value
        if wanted is not None and wanted not in TERMINAL:
            raise ValueError(f"status: only finished runs are purged, not {wanted!r} ones")
        cutoff = self._clock.now() - age
        db = store or self._store
        total, after = 0, None
        while True:
            row = await db.purge_batch(cutoff, workflow, wanted, PURGE_BATCH, after, dry_run)
            total += int(row["matched"] if dry_run else row["deleted"])
            if int(row["scanned"]) < PURGE_BATCH:
                return total
            after = (row["last_at"], row["last_id"])

    # -- bulk ----------------------------------------------------------------------------

    async def _select(
        self,
        workflow: str | None,
        status: WorkflowStatus | str | None,
        since: datetime | Duration | None,
        until: datetime | None,
        limit: int,
        everything: bool,
    ) -> tuple[int, list[str]]:
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= BULK_LIMIT:
            raise ValueError(f"limit: must be between 1 and {BULK_LIMIT}, got {limit!r}")
        wanted = None if status is None else WorkflowStatus(status).value
        unfiltered = workflow is None and wanted is None and since is None and until is None
        if unfiltered and not everything:
            raise ValueError(
                "filters: none given, so every run would match; pass workflow=, "
                "status= or since=, or all=True to mean it"
            )
        start: datetime | None
        if since is None or isinstance(since, datetime):
            start = since
        else:
            start = self._clock.now() - parse_duration(since, field="since")
        if start is not None and start.tzinfo is None:
            raise ValueError("since: needs a time zone")
        return await self._store.bulk_select_runs(workflow, wanted, start, until, limit)

    async def cancel_many(
        self,
        *,
        workflow: str | None = None,
        status: WorkflowStatus | str | None = None,
        since: datetime | Duration | None = None,
        until: datetime | None = None,
        limit: int = 1000,
        dry_run: bool = False,
        everything: bool = False,
    ) -> BulkResult:
        """Cancel the oldest ``limit`` matching runs that have not ended."""
        matched, ids = await self._select(workflow, status, since, until, limit, everything)
        if dry_run:
            return BulkResult(matched=matched, acted=0, run_ids=ids, dry_run=True)
        acted = []
        now = self._clock.now()
        for run_id in ids:
            flagged = await self._store.request_cancel(run_id, now)
            if run_id in flagged:
                acted.append(run_id)
        log.info("runs_cancelled", matched=matched, acted=len(acted))
        return BulkResult(matched=matched, acted=len(acted), run_ids=acted)

    async def restart_many(
        self,
        *,
        workflow: str | None = None,
        status: WorkflowStatus | str | None = None,
        since: datetime | Duration | None = None,
        until: datetime | None = None,
        version: int | None = None,
        limit: int = 1000,
        dry_run: bool = False,
        everything: bool = False,
    ) -> BulkResult:
        """Restart the oldest ``limit`` matching runs; each new run links to its source."""
        matched, ids = await self._select(workflow, status, since, until, limit, everything)
        if dry_run:
            return BulkResult(matched=matched, acted=0, run_ids=ids, dry_run=True)
        new_ids = [await self.restart(run_id, version) for run_id in ids]
        log.info("runs_restarted", matched=matched, acted=len(new_ids))
        return BulkResult(matched=matched, acted=len(new_ids), run_ids=ids, new_run_ids=new_ids)
