"""Internal control-flow signals; BaseException so user ``except Exception`` lets them by."""

from __future__ import annotations

from datetime import datetime
from typing import Any

__all__ = ["CancelSignal", "EngineFault", "LeaseLost", "ReleaseSignal", "SuspendSignal"]


class SuspendSignal(BaseException):
    """The run waits durably: release it until ``wake_at`` (None: until woken)."""

    def __init__(self, wake_at: datetime | None, wait: dict[str, Any]) -> None:
        super().__init__(wait)
        self.wake_at = wake_at
        self.wait = wait


class CancelSignal(BaseException):
    """A cancel was requested: stop going forward and compensate."""


class ReleaseSignal(BaseException):
    """The worker is shutting down: stop at this step boundary and hand the run back."""


class LeaseLost(BaseException):
    """This worker no longer holds the run; stop without writing anything."""


class EngineFault(BaseException):
    """forgeflow's own machinery failed (a dropped connection, a refused statement).

    Never a failure of the workflow: the attempt is abandoned and the run handed back to
    be continued from its last checkpoint. A BaseException, so that a user's
    ``except Exception`` around a step cannot mistake it for the step's own error.
    """

    def __init__(self, operation: str, cause: BaseException) -> None:
        super().__init__(f"{operation}: {type(cause).__name__}: {cause}")
        self.operation = operation
        self.cause = cause
