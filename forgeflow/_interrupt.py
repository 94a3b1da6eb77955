"""Ctrl-C for a script's in-process worker: stop as `forgeflow worker` stops on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
from typing import Any

__all__ = ["Interrupts"]


def _default_handling(handler: Any) -> bool:
    # Python's own KeyboardInterrupt, or asyncio.run's handler that turns it into a
    # cancellation of the main task: never an application's handler of its own.
    if handler is signal.default_int_handler:
        return True
    method = getattr(handler, "func", handler)  # asyncio.run installs a functools.partial
    return isinstance(getattr(method, "__self__", None), asyncio.Runner)


class Interrupts:
    """While installed, the first SIGINT cancels the task that started the worker (which
    then stops it gracefully and exits with status 130, without a traceback), and a
    second one ends the process at once."""

    def __init__(self, log: Any, grace: float) -> None:
        self._log = log
        self._grace = grace
        self._task: asyncio.Task[Any] | None = None
        self._previous: Any = None
        self.interrupted = False

    def install(self) -> None:
        """Take over SIGINT if this is the main thread and nothing else handles it."""
        if threading.current_thread() is not threading.main_thread():
            return
        previous = signal.getsignal(signal.SIGINT)
        if not _default_handling(previous):
            return
        self._task = asyncio.current_task()
        asyncio.get_running_loop().add_signal_handler(signal.SIGINT, self._on_interrupt)
        self._previous = previous

    def remove(self) -> None:
        """Give SIGINT back to whoever had it."""
        if self._previous is None:
            return
        asyncio.get_running_loop().remove_signal_handler(signal.SIGINT)
        signal.signal(signal.SIGINT, self._previous)
        self._previous = None

    def absorb(self) -> None:
        """In the interrupted task: take back the cancel, so the graceful stop can run."""
        task = asyncio.current_task()
        if self.interrupted and task is not None and task.cancelling():
            task.uncancel()

    def _on_interrupt(self) -> None:
        if self.interrupted:
            sys.stderr.write("forgeflow: interrupted again; exiting now\n")
            sys.stderr.flush()
            os._exit(130)
        self.interrupted = True
        self._log.warning(
            "worker_interrupted",
            detail=f"stopping: in-flight steps get {self._grace:g}s, then leases are "
            "released; press Ctrl-C again to exit at once",
        )
        if self._task is not None:
            self._task.cancel()
