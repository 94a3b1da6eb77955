"""Start worker processes (``tests.support.proc_worker``), kill them, stop them.

``WorkerProcesses`` is an async context manager owning every process it started: on exit
it SIGKILLs those still alive, so that a failing test leaves nothing behind. Each
worker's log (stderr) goes to a file in the test's temporary directory.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

__all__ = ["WorkerProcess", "WorkerProcesses"]

_ROOT = Path(__file__).resolve().parents[2]
#: How long a worker may take to import, connect and report ready (a hang guard only).
START_TIMEOUT = 60.0


class WorkerProcess:
    """One worker process: its id in leases, its pid, and how to end it."""

    def __init__(self, proc: asyncio.subprocess.Process, worker_id: str, log: Path) -> None:
        self.proc = proc
        self.worker_id = worker_id
        self.log = log

    @property
    def pid(self) -> int:
        """The operating-system process id (what steps record as who ran them)."""
        return self.proc.pid

    @property
    def alive(self) -> bool:
        """True until the process has exited."""
        return self.proc.returncode is None

    async def kill(self) -> int:
        """SIGKILL the process (a crash: nothing is cleaned up) and reap it."""
        if self.alive:
            self.proc.send_signal(signal.SIGKILL)
        return await self.proc.wait()

    async def terminate(self) -> int:
        """Send SIGTERM and wait for ``stopping``; the graceful stop then runs."""
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), START_TIMEOUT)
        assert line.strip() == b"stopping", f"worker said {line!r}; log: {self.tail()}"
        return 0

    async def wait(self) -> int:
        """Wait for the process to exit; its return code."""
        return await self.proc.wait()

    def tail(self, chars: int = 3000) -> str:
        """The end of the worker's log, for failure messages."""
        try:
            return self.log.read_text()[-chars:]
        except OSError:
            return ""


class WorkerProcesses:
    """Starts worker processes against one database and kills the leftovers on exit."""

    def __init__(self, dsn: str, log_dir: Path) -> None:
        self.dsn = dsn
        self.log_dir = log_dir
        self.started: list[WorkerProcess] = []

    async def start(
        self,
        *modules: str,
        concurrency: int = 4,
        lease: float = 5.0,
        worker_id: str | None = None,
        queues: Sequence[str] = (),
        poll_interval: float = 0.2,
        sleep_threshold: float | None = None,
        grace: float | None = None,
        max_pool: int = 10,
    ) -> WorkerProcess:
        """Start a worker importing ``modules`` and wait until it is ready to claim."""
        name = worker_id or f"w{len(self.started) + 1}"
        args = [
            "--dsn",
            self.dsn,
            "--concurrency",
            str(concurrency),
            "--lease",
            str(lease),
            "--worker-id",
            name,
            "--poll-interval",
            str(poll_interval),
            "--max-pool",
            str(max_pool),
        ]
        for module in modules:
            args += ["--module", module]
        for queue in queues:
            args += ["--queue", queue]
        if sleep_threshold is not None:
            args += ["--sleep-threshold", str(sleep_threshold)]
        if grace is not None:
            args += ["--grace", str(grace)]
        log = self.log_dir / f"worker-{name}.log"
        with log.open("wb") as err:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.support.proc_worker",
                *args,
                cwd=_ROOT,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        worker = WorkerProcess(proc, name, log)
        self.started.append(worker)
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), START_TIMEOUT)
        if not line.startswith(b"ready "):
            await worker.kill()
            raise AssertionError(f"worker {name} did not start: {worker.tail()}")
        return worker

    async def __aenter__(self) -> WorkerProcesses:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        for worker in self.started:
            await worker.kill()
