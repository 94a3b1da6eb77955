"""A run's journal as one execution sees it: checkpoints, compensations and workflow time.

The context, the step runner and the durable waits all read and extend the journal
through this small API; a checkpoint travels as one ``Checkpoint`` value from the code
that decides it to the statement that stores it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from ._models import StepStatus

__all__ = ["Checkpoint", "Compensation", "Journal", "StepRow"]

_DONE = (StepStatus.COMPLETED, StepStatus.COMPENSATED)


class StepRow(NamedTuple):
    """A recorded checkpoint (same order as the load_steps query)."""

    name: str
    kind: str
    status: str
    result: str | None
    result_type: str | None
    error: str | None
    attempts: int
    completed_at: datetime | None

    @property
    def done(self) -> bool:
        """True if the step completed (its compensation may have run since)."""
        return self.status in _DONE


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """One write to a run's journal: what the checkpoint statement stores for a step."""

    name: str
    kind: str
    status: StepStatus
    result: str | None = None
    result_type: str | None = None
    error: str | None = None
    attempts: int = 1
    started_at: datetime | None = None
    completed_at: datetime | None = None
    input: str | None = None

    def row(self) -> StepRow:
        """The checkpoint as the journal keeps it once written."""
        return StepRow(
            self.name,
            self.kind,
            self.status.value,
            self.result,
            self.result_type,
            self.error,
            self.attempts,
            self.completed_at,
        )


class Compensation(NamedTuple):
    """The undo of a completed step, registered when it completed (or was replayed)."""

    step: str
    fn: Callable[[Any], Any]
    result: Any
    done: bool


class Journal:
    """The recorded checkpoints of a run, its compensation stack and its workflow time."""

    def __init__(self, rows: Mapping[str, StepRow], started_at: datetime) -> None:
        self._rows = dict(rows)
        self._names: dict[str, int] = {}
        self._compensations: list[Compensation] = []
        #: The time of the latest checkpoint reached so far: identical on replay.
        self.time = started_at

    def __contains__(self, name: object) -> bool:
        return name in self._rows

    def __len__(self) -> int:
        return len(self._rows)

    def get(self, name: str) -> StepRow | None:
        """The recorded checkpoint ``name``, if there is one."""
        return self._rows.get(name)

    def record(self, checkpoint: Checkpoint) -> None:
        """Keep what was just written, so the rest of this execution sees it."""
        self._rows[checkpoint.name] = checkpoint.row()

    def next_name(self, base: str) -> str:
        """``base`` the first time, then ``base#2``, ``base#3``... in call order."""
        count = self._names.get(base, 0) + 1
        self._names[base] = count
        return base if count == 1 else f"{base}#{count}"

    def rows(self) -> list[StepRow]:
        """Every checkpoint known to this execution (recorded, or written since)."""
        return list(self._rows.values())

    def names_given(self) -> set[str]:
        """Every checkpoint name ``next_name`` has handed out so far."""
        return {
            base if n == 1 else f"{base}#{n}"
            for base, count in self._names.items()
            for n in range(1, count + 1)
        }

    def reached(self, when: datetime | None) -> None:
        """The workflow has reached a checkpoint made at ``when``."""
        if when is not None:
            self.time = when

    # -- compensations ----------------------------------------------------------------

    def push_compensation(
        self, step: str, fn: Callable[[Any], Any], result: Any, done: bool = False
    ) -> None:
        """Register ``fn(result)`` as the undo of ``step`` (``done``: it already ran)."""
        self._compensations.append(Compensation(step, fn, result, done))

    def pop_compensation(self) -> Compensation | None:
        """The newest registered compensation, removed from the stack; None when empty."""
        return self._compensations.pop() if self._compensations else None

    @property
    def has_compensations(self) -> bool:
        """True if any compensation has been registered in this execution."""
        return bool(self._compensations)

    @property
    def compensation_mark(self) -> int:
        """A position in the stack, to reorder what is registered after it."""
        return len(self._compensations)

    def order_compensations_since(self, mark: int, key: Callable[[Compensation], Any]) -> None:
        """Sort the compensations registered since ``mark`` by ``key`` (oldest first)."""
        self._compensations[mark:] = sorted(self._compensations[mark:], key=key)
