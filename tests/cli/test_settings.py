"""The `forgeflow` command honours the settings: flags, then FORGEFLOW_* variables."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.support.db import fetch_steps, wait_for_run_status

from .runner import ROOT, environment, executable, forgeflow, stop

SETTINGS_APP = "tests/cli/settings_app.py"

Spawn = Callable[..., AbstractAsyncContextManager[asyncio.subprocess.Process]]


@pytest.fixture
def spawn_worker(dsn: str, tmp_path: Path) -> Spawn:
    """Run `forgeflow worker tests/cli/settings_app.py ARGS…` with extra environment."""

    @asynccontextmanager
    async def spawn(*args: str, **env: str) -> AsyncIterator[asyncio.subprocess.Process]:
        log = (tmp_path / "worker.log").open("wb")
        proc = await asyncio.create_subprocess_exec(
            executable(),
            "worker",
            SETTINGS_APP,
            "--dsn",
            dsn,
            *args,
            cwd=ROOT,
            env=environment(**env),
            stdout=log,
            stderr=log,
        )
        try:
            yield proc
        finally:
            code = await stop(proc)
            log.close()
            assert code == 0, (tmp_path / "worker.log").read_text()

    return spawn


async def run_until_waiting(dsn: str) -> tuple[str, dict[str, Any]]:
    """Start a `notify` run; once it waits, its id and the results of its steps."""
    started = await forgeflow(
        "start", "notify", "--input", '"ann"', "--app", SETTINGS_APP, "--dsn", dsn
    )
    assert started.code == 0, started.err
    run_id = started.out.strip()
    await wait_for_run_status(dsn, run_id, "waiting")
    steps = await fetch_steps(dsn, run_id)
    return run_id, {name: json.loads(row["result"]) for name, row in steps.items()}


async def test_the_worker_builds_hook_links_on_the_base_url_and_lease_of_the_environment(
    dsn: str, spawn_worker: Spawn
) -> None:
    """FORGEFLOW_BASE_URL and FORGEFLOW_LEASE reach the links and leases a worker makes."""
    base = "https://flows.example.com/approvals"
    async with spawn_worker(FORGEFLOW_BASE_URL=base, FORGEFLOW_LEASE="5s"):
        run_id, results = await run_until_waiting(dsn)
    hook_id = results["hook:approval"]
    assert results["email"] == f"ann: {base}/hooks/{hook_id}"
    assert 0 < results["lease"] <= 5
    shown = await forgeflow(
        "status", run_id, "--json", "--dsn", dsn, env=environment(FORGEFLOW_BASE_URL=base)
    )
    assert shown.json()["hooks"][0]["url"] == f"{base}/hooks/{hook_id}"


async def test_worker_flags_override_the_environment(dsn: str, spawn_worker: Spawn) -> None:
    """`forgeflow worker --base-url URL --lease 4s` wins over the FORGEFLOW_* variables."""
    async with spawn_worker(
        "--base-url",
        "https://cli.example.com",
        "--lease",
        "4s",
        FORGEFLOW_BASE_URL="https://env.example.com",
        FORGEFLOW_LEASE="10m",
    ):
        _, results = await run_until_waiting(dsn)
    assert results["email"].startswith("ann: https://cli.example.com/hooks/")
    assert 0 < results["lease"] <= 4


async def test_a_bad_environment_variable_is_named_in_the_error(dsn: str) -> None:
    """A FORGEFLOW_* variable that does not parse stops the command with its name: exit 1."""
    cases = [
        ({"FORGEFLOW_LEASE": "soon"}, ["worker", SETTINGS_APP], "FORGEFLOW_LEASE"),
        ({"FORGEFLOW_BASE_URL": "flows.example.com"}, ["runs"], "FORGEFLOW_BASE_URL"),
        ({"FORGEFLOW_MAX_POOL": "many"}, ["runs"], "FORGEFLOW_MAX_POOL"),
        ({"FORGEFLOW_RETENTION": "10m"}, ["runs"], "FORGEFLOW_RETENTION"),
    ]
    results = await asyncio.gather(
        *(forgeflow(*args, "--dsn", dsn, env=environment(**env)) for env, args, _ in cases)
    )
    for (env, args, name), result in zip(cases, results, strict=True):
        assert result.code == 1, (env, result.err)
        # A worker's stderr is a log stream: its error is a log line, naming the variable.
        start = (
            f'command_failed +error="{name}: '
            if args[0] == "worker"
            else f"forgeflow: error: {name}: "
        )
        assert re.search(start, result.err), (env, result.err)
        assert "Traceback" not in result.err
