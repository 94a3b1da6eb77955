"""Ctrl-C on a script with an in-process worker: one line, a graceful release, no
traceback; a second Ctrl-C exits at once."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from forgeflow import Forgeflow

ROOT = Path(__file__).resolve().parents[2]


def script(dsn: str, grace: str) -> subprocess.Popen[str]:
    env = {**os.environ, "FORGEFLOW_DATABASE_URL": dsn}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.support.interrupt_script", grace],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # As from a terminal: a process started in the background inherits SIGINT ignored.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def until_step_started(process: subprocess.Popen[str]) -> str:
    # stdout holds the script's lines and structlog's (its default output).
    assert process.stdout is not None
    run_id = ""
    for line in process.stdout:
        if re.fullmatch(r"[0-9a-f-]{36}", line.strip()):
            run_id = line.strip()
        if line.strip() == "step started":
            return run_id
    raise AssertionError("the script ended before its step started")


async def test_ctrl_c_releases_the_run_gracefully_in_one_line(ff: Forgeflow, dsn: str) -> None:
    """One SIGINT: the worker stops as `forgeflow worker` does, exit 130, no traceback."""
    process = script(dsn, "0.2s")
    run_id = until_step_started(process)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "Traceback" not in err
    assert out.count("worker_interrupted") == 1
    assert "worker_stopped" in out
    record = await ff.status(run_id)
    assert record.worker is None  # the lease was released, not left to expire


async def test_a_second_ctrl_c_exits_at_once(dsn: str) -> None:
    """While the worker waits out its grace period, another SIGINT ends the process."""
    process = script(dsn, "1h")
    until_step_started(process)
    process.send_signal(signal.SIGINT)
    assert process.stdout is not None
    for line in process.stdout:
        if "worker_interrupted" in line:
            break
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "Traceback" not in err
