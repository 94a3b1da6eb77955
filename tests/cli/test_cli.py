"""The `forgeflow` command, run for real in subprocesses against the test's database."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import re
from pathlib import Path

import httpx

from forgeflow._migrations import load_migrations
from tests.support.db import create_database, drop_database, wait_for_run_status

from .runner import APP, ROOT, environment, executable, forgeflow, spawn_worker, stop


async def start(dsn: str, name: str, input: str) -> str:
    """`forgeflow start NAME --input JSON`; the run id it prints."""
    result = await forgeflow("start", name, "--input", input, "--app", APP, "--dsn", dsn)
    assert result.code == 0, result.err
    return result.out.strip()


async def test_migrate_applies_the_schema_once(pg_server: str) -> None:
    """`forgeflow migrate` applies the migrations to an empty database, then has nothing to do."""
    dsn = await create_database(pg_server)
    try:
        first = await forgeflow("migrate", "--dsn", dsn)
        every = ", ".join(f"{m.version:04d}" for m in load_migrations())
        assert (first.code, first.out.strip()) == (0, f"applied migrations: {every}")
        again = await forgeflow("migrate", "--dsn", dsn, "--json")
        assert again.code == 0
        assert again.json() == {"applied": []}
    finally:
        await drop_database(pg_server, dsn)


async def test_a_started_run_is_executed_by_the_worker_and_watched_to_the_end(
    dsn: str, worker: asyncio.subprocess.Process
) -> None:
    """`start` prints the run id; `status --watch` follows it live and exits 0 on completion."""
    run_id = await start(dsn, "greet", '"ann"')
    assert re.fullmatch(r"[0-9a-f-]{36}", run_id)
    watched = await forgeflow("status", run_id, "--watch", "--dsn", dsn)
    assert watched.code == 0, watched.err
    assert "step greet completed" in watched.out
    assert watched.out.rstrip().endswith('completed, output "hello ann"')
    shown = await forgeflow("status", run_id, "--dsn", dsn)
    assert re.search(r"^status\s+completed$", shown.out, re.M)
    assert re.search(r"^greet\s+step\s+completed\s", shown.out, re.M)
    record = (await forgeflow("status", run_id, "--json", "--dsn", dsn)).json()
    assert (record["status"], record["output"]) == ("completed", "hello ann")


async def test_runs_are_listed_with_filters_in_tables_or_json(dsn: str) -> None:
    """`runs` lists runs newest first; --status and --workflow filter; --json is parseable."""
    first = await start(dsn, "greet", '"a"')
    second = await start(dsn, "review", '{"title": "t"}')
    listed = await forgeflow("runs", "--json", "--dsn", dsn)
    assert [r["run_id"] for r in listed.json()] == [second, first]
    assert {r["status"] for r in listed.json()} == {"created"}
    only = await forgeflow("--dsn", dsn, "runs", "--workflow", "greet", "--json")
    assert [r["run_id"] for r in only.json()] == [first]
    none = await forgeflow("runs", "--status", "completed", "--dsn", dsn)
    assert (none.code, none.out) == (0, "")
    table = await forgeflow("runs", "--dsn", dsn)
    assert table.out.splitlines()[0].split() == [
        "RUN",
        "WORKFLOW",
        "STATUS",
        "CREATED",
        "WAITING",
        "ON",
    ]
    assert first in table.out and second in table.out


async def test_a_hook_is_listed_and_resumed_from_the_command_line(
    dsn: str, worker: asyncio.subprocess.Process
) -> None:
    """`hooks list` shows the waiting hook; `hooks resume` decides it once, then refuses."""
    run_id = await start(dsn, "review", '{"title": "Q3"}')
    await wait_for_run_status(dsn, run_id, "waiting")
    listed = (await forgeflow("hooks", "list", "--json", "--dsn", dsn)).json()
    assert listed["count"] == 1
    hook = listed["hooks"][0]
    assert (hook["run_id"], hook["name"], hook["metadata"]) == (run_id, "review", {"title": "Q3"})
    table = await forgeflow("hooks", "list", "--dsn", dsn)
    assert hook["hook_id"] in table.out

    resumed = await forgeflow(
        "hooks",
        "resume",
        hook["hook_id"],
        "--decision",
        "approve",
        "--data",
        '{"by": "cli"}',
        "--dsn",
        dsn,
    )
    assert resumed.code == 0, resumed.err
    assert run_id in resumed.out
    again = await forgeflow(
        "hooks", "resume", hook["hook_id"], "--decision", "reject", "--dsn", dsn
    )
    assert again.code == 1
    assert "already received 'approve'" in again.err
    watched = await forgeflow("status", run_id, "--watch", "--json", "--dsn", dsn)
    assert watched.code == 0
    last = json.loads(watched.out.strip().splitlines()[-1])
    assert (last["status"], last["output"]) == ("completed", "Q3: approve {'by': 'cli'}")


async def test_cancel_rolls_the_run_back_and_watch_reports_it(
    dsn: str, worker: asyncio.subprocess.Process
) -> None:
    """`cancel` compensates a waiting run; `status --watch` shows it and exits 1."""
    run_id = await start(dsn, "booking", '"12A"')
    await wait_for_run_status(dsn, run_id, "waiting")
    cancelled = await forgeflow("cancel", run_id, "--dsn", dsn)
    assert cancelled.code == 0
    assert "cancel requested" in cancelled.out
    watched = await forgeflow("status", run_id, "--watch", "--dsn", dsn)
    assert watched.code == 1
    assert "compensation of reserve ran" in watched.out
    assert f"run {run_id} ended compensated" in watched.err

    done = await start(dsn, "greet", '"b"')
    await wait_for_run_status(dsn, done, "completed")
    late = await forgeflow("cancel", done, "--dsn", dsn)
    assert (late.code, late.err.strip()) == (
        1,
        f"forgeflow: error: run {done} already ended completed",
    )


async def test_errors_exit_1_with_one_line_and_no_traceback(dsn: str) -> None:
    """Unknown runs and hooks, bad input, a missing module or database: exit 1, one line
    (a log line for a worker, whose stderr is a log stream)."""
    cases = [
        (["status", "nope", "--dsn", dsn], "no run with id 'nope'"),
        (["cancel", "nope", "--dsn", dsn], "no run with id 'nope'"),
        (["hooks", "resume", "nope", "--decision", "approve", "--dsn", dsn], "no resume hook"),
        (["start", "nope", "--app", APP, "--dsn", dsn], "not registered here"),
        (["start", "review", "--input", '{"pages": 2}', "--app", APP, "--dsn", dsn], "title"),
        (["start", "greet", "--dsn", dsn], "not registered here"),
        (["worker", "no_such_module_here", "--dsn", dsn], "cannot import no_such_module_here"),
        (["worker", "missing/file.py", "--dsn", dsn], "no such file"),
        (["runs", "--dsn", "postgresql://postgres@127.0.0.1:1/none"], "cannot connect"),
    ]
    results = await asyncio.gather(*(forgeflow(*args) for args, _ in cases))
    for (args, message), result in zip(cases, results, strict=True):
        assert result.code == 1, (args, result.err)
        assert message in result.err, (args, result.err)
        if args[0] == "worker":  # a long-running command's stderr is a log stream
            assert re.match(r"\S+ \S+ \[error\s*\] command_failed +error=", result.err)
        else:
            assert result.err.startswith("forgeflow: error: ")
        assert result.err.count("\n") == 1
        assert "Traceback" not in result.err
        assert result.out == ""


async def test_usage_errors_exit_2(dsn: str) -> None:
    """A missing command, an unknown option value or invalid JSON is a usage error: exit 2."""
    cases = [
        [],
        ["start", "greet", "--input", "{bad json"],
        ["hooks", "resume", "h", "--decision", "maybe"],
        ["hooks", "resume", "h", "--decision", "approve", "--data", "[1]"],
        ["runs", "--status", "sleeping"],
        ["worker", APP, "--concurrency", "0"],
        ["status"],
    ]
    results = await asyncio.gather(*(forgeflow(*args, "--dsn", dsn) for args in cases))
    for args, result in zip(cases, results, strict=True):
        assert result.code == 2, (args, result.err)
        assert "usage: forgeflow" in result.err


async def test_the_database_and_app_can_come_from_the_environment(dsn: str) -> None:
    """FORGEFLOW_DATABASE_URL replaces --dsn and FORGEFLOW_APP replaces --app."""
    env = environment(FORGEFLOW_DATABASE_URL=dsn, FORGEFLOW_APP=APP)
    started = await forgeflow("start", "greet", "--input", '"env"', "--json", env=env)
    assert started.code == 0, started.err
    run_id = started.json()["run_id"]
    listed = await forgeflow("runs", "--json", env=env)
    assert [r["run_id"] for r in listed.json()] == [run_id]


async def test_the_worker_stops_gracefully_on_sigterm(dsn: str, tmp_path: Path) -> None:
    """`forgeflow worker` runs until SIGTERM, then stops cleanly with exit code 0."""
    log = tmp_path / "worker.log"
    with log.open("wb") as sink:
        proc = await spawn_worker(dsn, out=sink, err=sink)
        run_id = await start(dsn, "greet", '"sigterm"')
        await wait_for_run_status(dsn, run_id, "completed")
        assert await stop(proc) == 0
    text = log.read_text()
    assert re.search(r"worker_stopping .*signal=SIGTERM", text), text
    assert "worker_stopped" in text
    assert "Traceback" not in text
    assert "\x1b[" not in text  # no colours: stderr is a file, not a terminal


async def test_serve_plays_the_shell_approval_scenario(dsn: str) -> None:
    """`forgeflow serve examples/approval_service.py`: curl start, click the link, completed."""
    proc = await asyncio.create_subprocess_exec(
        executable(),
        "serve",
        "examples/approval_service.py",
        "--port",
        "0",
        "--dsn",
        dsn,
        cwd=ROOT,
        env=environment(),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    try:
        url = None
        while url is None:
            line = (await asyncio.wait_for(proc.stderr.readline(), 60)).decode()
            assert line, "forgeflow serve exited before serving"
            match = re.search(r"serving .*url=(http://\S+)/", line)
            url = match.group(1) if match else None
        drain = asyncio.create_task(proc.stderr.read())
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            started = await http.post(
                "/workflows/approval/start",
                json={"input": {"document": "q3.pdf", "approver": "ann@example.com"}},
            )
            assert started.status_code == 202
            run_id = started.json()["run_id"]
            await wait_for_run_status(dsn, run_id, "waiting")
            suspended = await forgeflow("status", run_id, "--dsn", dsn)
            assert re.search(r"^status\s+waiting$", suspended.out, re.M)
            hooks = (await http.get("/hooks")).json()["hooks"]
            [hook] = [h for h in hooks if h["run_id"] == run_id]
            assert hook["url"] == f"{url}/hooks/{hook['hook_id']}"
            clicked = await http.get(hook["url"], params={"decision": "approve"})
            assert clicked.status_code == 200
            assert "Thank you" in clicked.text
        final = await forgeflow("status", run_id, "--watch", "--dsn", dsn)
        assert final.code == 0
        shown = await forgeflow("status", run_id, "--dsn", dsn)
        assert re.search(r"^status\s+completed$", shown.out, re.M)
        assert re.search(r"^publish\s+step\s+completed", shown.out, re.M)
    finally:
        code = await stop(proc)
    log = (await drain).decode()
    assert code == 0, log
    assert re.search(r"server_stopping .*signal=SIGTERM", log), log


async def test_the_worker_runs_on_uvloop_when_it_is_installed(dsn: str, tmp_path: Path) -> None:
    """With the uvloop extra installed, `forgeflow worker` executes runs on uvloop's loop."""
    expected = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    log = (tmp_path / "worker.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        executable(),
        "worker",
        "tests/cli/loop_app.py",
        "--dsn",
        dsn,
        cwd=ROOT,
        env=environment(),
        stdout=log,
        stderr=log,
    )
    try:
        run_id = await start_app(dsn, "tests/cli/loop_app.py", "event_loop")
        await wait_for_run_status(dsn, run_id, "completed")
        record = (await forgeflow("status", run_id, "--json", "--dsn", dsn)).json()
        assert record["output"] == expected
    finally:
        await stop(proc)
        log.close()


async def start_app(dsn: str, app: str, name: str) -> str:
    """`forgeflow start NAME --app APP`; the run id it prints."""
    result = await forgeflow("start", name, "--app", app, "--dsn", dsn)
    assert result.code == 0, result.err
    return result.out.strip()
