"""Checking a deploy: replay unfinished runs against new code in a sandbox that executes nothing.

Each run is replayed by the workflow function itself, on a WorkflowContext subclass whose
checkpoints are the run's recorded rows. Every name the new code asks for is compared
with the recorded history in completion order; the first step that is not recorded ends
the replay. The sandbox's store refuses every statement, so nothing can be written (and
a wait that would read the database on its replay path ends the replay there instead).

The rules, for one run:

- *reached out of order*: the new code reaches a recorded checkpoint while another one
  that completed strictly earlier is still unreached -> diverges at the reached name,
  expected the earliest unreached one. (Checkpoints of one ``ctx.parallel`` block are
  reached together, in any order; ties in completion time are not ordered.)
- *new work too early*: the new code asks for something with no finished checkpoint
  (a renamed or inserted step) while recorded checkpoints remain unreached -> diverges
  at that name, expected the earliest unreached one.
- *not at the waiting point*: the run waits on a wait (hook, event, child, sleep, retry)
  or was in the middle of a step, and the new code's first new work is something else
  -> diverges at that name, expected the wait.
- *ends early*: the new code returns (or re-raises a recorded failure) before reaching
  every recorded checkpoint or the wait -> diverges with no step, expected the first one
  missed.
- *fails*: an exception the recorded history does not explain (a decoding error, a bug,
  an input the new model refuses) -> fails, with its traceback.
- otherwise the run is *compatible*: the new code reaches its history in order and goes
  on where the run stands. ``ctx.patched`` decisions are served, never ordered.
"""

from __future__ import annotations

import contextlib
import math
import time
import traceback
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any, NoReturn, cast

import anyio
from pydantic import BaseModel

from ._clock import Clock
from ._context import FINISHED, PATCH_KIND, EngineSettings, WorkflowContext, patch_step
from ._definitions import Registry, WorkflowDefinition
from ._events import Emitter
from ._journal import Journal, StepRow
from ._lease import Lease
from ._serde import loads
from ._signals import SuspendSignal
from ._steps import StepRunner
from ._store import Record, Store
from .errors import WorkflowNotFound

__all__ = ["CheckReport", "RunCheck", "Verdict", "check_runs"]

_BATCH = 2000
_JSON_FIELDS = {"run_id", "workflow", "version", "verdict", "step", "expected", "error"}


class Verdict(StrEnum):
    """What replaying a run in flight on new code would do."""

    COMPATIBLE = "compatible"  # the new code reaches the run's history in order
    DIVERGES = "diverges"  # the new code would take another path than the run took
    FAILS = "fails"  # replaying raises an exception the history does not explain


class RunCheck(BaseModel):
    """The verdict on one unfinished run."""

    run_id: str
    workflow: str
    version: int
    status: str
    verdict: Verdict
    #: The new code's step where it diverges (None: it ended without reaching ``expected``).
    step: str | None = None
    #: The recorded checkpoint (or wait) the run's history has at that point.
    expected: str | None = None
    #: For ``fails``: the exception's traceback.
    error: str | None = None
    #: One sentence saying why, for people.
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        """The run as ``forgeflow check --json`` prints it."""
        return self.model_dump(mode="json", include=_JSON_FIELDS)


class CheckReport(BaseModel):
    """Every unfinished run checked against new code, in run id order."""

    runs: list[RunCheck]
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when no run diverges or fails."""
        return all(r.verdict is Verdict.COMPATIBLE for r in self.runs)

    @property
    def problems(self) -> list[RunCheck]:
        """The runs that diverge or fail."""
        return [r for r in self.runs if r.verdict is not Verdict.COMPATIBLE]

    def to_json(self) -> dict[str, Any]:
        """``{"runs": [...]}`` as ``forgeflow check --json`` prints it."""
        return {"runs": [r.to_json() for r in self.runs]}


class _Stop(BaseException):
    """The sandbox reached its verdict: stop replaying (a BaseException, like forgeflow's own)."""


class _History:
    """One run's recorded checkpoints, and how far the new code has reached into them."""

    def __init__(self, rows: Iterable[StepRow], frontier: set[str], compensating: bool) -> None:
        ordered = sorted(
            (r for r in rows if r.status in FINISHED and r.kind != PATCH_KIND),
            key=lambda r: (r.completed_at or datetime.min, r.name),
        )
        #: Finished checkpoints not reached yet, in completion order.
        self.unreached: dict[str, datetime | None] = {r.name: r.completed_at for r in ordered}
        self.frontier = frontier
        self.compensating = compensating
        self.last_miss: str | None = None
        self.verdict: tuple[Verdict, str | None, str | None, str] | None = None

    def asked(self, name: str, row: StepRow | None) -> None:
        """The new code looked ``name`` up."""
        if row is None or row.status not in FINISHED:
            self.last_miss = name
        elif name in self.unreached:
            self.reach([name])

    def reach(self, names: Sequence[str]) -> None:
        """The new code reaches these recorded checkpoints (together, in any order)."""
        hit = [n for n in names if n in self.unreached]
        if not hit:
            return
        times = {n: self.unreached[n] for n in hit}
        latest_name = max(hit, key=lambda n: _key(times[n]))
        latest = _key(times[latest_name])
        for name, done in self.unreached.items():
            if name not in times and _key(done) < latest:
                self.decide(
                    Verdict.DIVERGES,
                    latest_name,
                    name,
                    f"the new code reaches {latest_name!r} before {name!r}, "
                    "which the run completed first",
                )
        for name in hit:
            del self.unreached[name]
            self.frontier.discard(name)  # a sleep the run waits on is a finished checkpoint

    def new_work(self, step: str | None) -> NoReturn:
        """The new code would do something for the first time at ``step``: judge and stop."""
        label = step or "?"
        first = next(iter(self.unreached), None)
        if first is not None:
            self.decide(
                Verdict.DIVERGES,
                step,
                first,
                f"the new code would run {label!r} where the run's history has {first!r} next",
            )
        waiting = sorted(self.frontier)
        if waiting and step not in self.frontier:
            self.decide(
                Verdict.DIVERGES,
                step,
                waiting[0],
                f"the run stands at {waiting[0]!r}; the new code would run {label!r} first",
            )
        self.decide(Verdict.COMPATIBLE, None, None, "")

    def ended(self, how: str) -> NoReturn:
        """The new code returned (or re-raised the run's recorded failure)."""
        missed = next(iter(self.unreached), None) or next(iter(sorted(self.frontier)), None)
        if missed is not None:
            self.decide(
                Verdict.DIVERGES, None, missed, f"the new code {how} without reaching {missed!r}"
            )
        self.decide(Verdict.COMPATIBLE, None, None, "")

    def decide(
        self, verdict: Verdict, step: str | None, expected: str | None, reason: str
    ) -> NoReturn:
        """Keep the first verdict reached (code in a ``finally`` may ask for more) and stop."""
        if self.verdict is None:
            self.verdict = (verdict, step, expected, reason)
        raise _Stop()


def _key(at: datetime | None) -> datetime:
    return at or datetime.min


class _ServedJournal(Journal):
    """The recorded checkpoints, telling the history which names the new code asks for."""

    def __init__(self, rows: dict[str, StepRow], started_at: datetime, history: _History) -> None:
        super().__init__(rows, started_at)
        self._history = history

    def get(self, name: str) -> StepRow | None:
        """The recorded checkpoint ``name``; the history notes that it was asked for."""
        row = super().get(name)
        self._history.asked(name, row)
        return row

    def peek(self, name: str) -> StepRow | None:
        """The recorded checkpoint ``name``, without counting it as reached."""
        return super().get(name)


class _Refused:
    """Stands for the database in the sandbox: any use of it ends the replay."""

    def __init__(self, history: _History) -> None:
        self._history = history

    def __getattr__(self, name: str) -> NoReturn:
        history = self._history
        if history.last_miss is None:
            history.decide(
                Verdict.FAILS,
                None,
                None,
                "the workflow code uses the database outside a step",
            )
        # A wait about to read its state (a hook's decision, an event, a child's outcome)
        # is the first thing this replay would not find among the recorded rows.
        history.new_work(history.last_miss)


class _SandboxContext(WorkflowContext):
    """A replay-only context: serves recorded checkpoints, stops before anything new."""

    _history: _History
    journal: _ServedJournal

    def before_new_work(self, step: str | None = None) -> None:
        self._history.new_work(step)

    async def parallel(self, *runners: StepRunner[Any]) -> Any:
        """Reach the block's recorded steps together, then replay it as the engine would."""
        self._history.reach([r.name for r in runners])
        return await super().parallel(*runners)

    def deprecate_patch(self, patch_id: str) -> None:
        """Report a run whose recorded decision took the branch this code removed."""
        name = patch_step(patch_id)
        row = self.journal.peek(name)
        if row is not None and row.kind == PATCH_KIND and loads(row.result) is False:
            self._history.decide(
                Verdict.DIVERGES,
                name,
                name,
                f"the run took the old branch of patch {patch_id!r}, which this code removed",
            )
        super().deprecate_patch(patch_id)


async def check_runs(
    store: Store,
    registry: Registry,
    clock: Clock,
    settings: EngineSettings,
    *,
    workflow: str | None = None,
    replay_timeout: float = 10.0,
) -> CheckReport:
    """Replay every unfinished run of ``registry``'s workflow versions; a verdict per run."""
    began = time.perf_counter()
    keys = sorted(
        f"{d.name}:{d.version}"
        for d in registry.definitions()
        if workflow is None or d.name == workflow
    )
    if not keys:
        raise WorkflowNotFound(
            f"no workflow named {workflow!r} is registered"
            if workflow is not None
            else "the registry defines no workflows"
        )
    checks: list[RunCheck] = []
    after = ""
    emitter = Emitter()
    while True:
        runs, steps = await store.check_batch(keys, after, _BATCH)
        rows: dict[str, dict[str, StepRow]] = defaultdict(dict)
        for step in steps:
            rows[step["run_id"]][step["name"]] = StepRow(*tuple(step)[1:])
        for run in runs:
            definition = registry.find(run["workflow"], run["version"])
            assert definition is not None  # selected by its workflow:version key
            checks.append(
                await _check_run(
                    run, definition, rows.get(run["id"], {}), registry, clock, settings,
                    emitter, replay_timeout,
                )
            )  # fmt: skip
        if len(runs) < _BATCH:
            break
        after = runs[-1]["id"]
    return CheckReport(runs=checks, seconds=time.perf_counter() - began)


def _frontier(run: Record, rows: dict[str, StepRow]) -> set[str]:
    """Where the run stands: the wait it is suspended on, or the step it was executing."""
    names = {r.name for r in rows.values() if r.kind == "step" and r.status == "running"}
    wait = loads(run["wait"]) if run["status"] == "waiting" and run["wait"] else None
    if isinstance(wait, dict) and wait.get("step"):
        names.add(str(wait["step"]))
    return names


async def _check_run(
    run: Record,
    definition: WorkflowDefinition[Any, Any],
    rows: dict[str, StepRow],
    registry: Registry,
    clock: Clock,
    settings: EngineSettings,
    emitter: Emitter,
    replay_timeout: float,
) -> RunCheck:
    status = str(run["status"])
    history = _History(rows.values(), _frontier(run, rows), status == "compensating")
    refused = cast(Any, _Refused(history))
    started_at = run["started_at"] or run["created_at"]
    ctx = _SandboxContext(
        run_id=run["id"],
        definition=definition,
        started_at=started_at,
        steps={},
        store=Store(refused, "", refused, engine=True),
        registry=registry,
        clock=clock,
        emitter=emitter,
        settings=settings,
        lease=Lease(run["id"], "forgeflow-check", math.inf, 0.0),
        replay_only=True,
    )
    ctx._history = history
    ctx.journal = _ServedJournal(rows, started_at, history)
    error: str | None = None
    with anyio.move_on_after(replay_timeout) as scope:
        try:
            await definition(ctx, definition.load_input(run["input"]))
            history.ended("returns")
        except _Stop:
            pass
        except SuspendSignal as signal:
            with contextlib.suppress(_Stop):
                history.new_work(signal.wait.get("step"))
        except Exception as exc:
            if history.verdict is None and history.compensating:
                # A run being rolled back replays to the failure that ended it.
                with contextlib.suppress(_Stop):
                    history.ended("fails")
            if history.verdict is None:
                error = "".join(traceback.format_exception(exc)).rstrip()
                history.verdict = (
                    Verdict.FAILS,
                    history.last_miss,
                    None,
                    f"replay raised {type(exc).__name__}: {exc}",
                )
    if scope.cancelled_caught and history.verdict is None:
        history.verdict = (
            Verdict.FAILS,
            history.last_miss,
            None,
            f"replay reached no step within {replay_timeout:g}s: the workflow awaits "
            "something outside forgeflow",
        )
    assert history.verdict is not None
    verdict, step, expected, reason = history.verdict
    return RunCheck(
        run_id=run["id"],
        workflow=definition.name,
        version=definition.version,
        status=status,
        verdict=verdict,
        step=step,
        expected=expected,
        error=(error or reason) if verdict is Verdict.FAILS else None,
        reason=reason,
    )
