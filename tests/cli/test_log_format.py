"""The command's own lines follow the log format; its output stays plain on stdout."""

from __future__ import annotations

import json
import re
from pathlib import Path

from forgeflow.testing._db import with_database
from tests.support.db import wait_for_run_status

from .runner import APP, environment, forgeflow, spawn_worker, stop


async def test_a_workers_own_lines_follow_the_json_log_format(dsn: str, tmp_path: Path) -> None:
    """With FORGEFLOW_LOG_FORMAT=json every stderr line of a worker is one JSON object,
    its own start and stop lines included, and nothing goes to stdout."""
    err, out = tmp_path / "worker.err", tmp_path / "worker.out"
    with err.open("wb") as err_sink, out.open("wb") as out_sink:
        env = environment(FORGEFLOW_LOG_FORMAT="json")
        proc = await spawn_worker(dsn, out=out_sink, err=err_sink, env=env)
        started = await forgeflow("start", "greet", "--input", '"json"', "--app", APP, "--dsn", dsn)
        assert started.code == 0, started.err
        await wait_for_run_status(dsn, started.out.strip(), "completed")
        assert await stop(proc) == 0
    assert out.read_text() == ""
    lines = [json.loads(line) for line in err.read_text().splitlines()]
    assert all({"event", "level", "timestamp"} <= line.keys() for line in lines), lines
    events = {line["event"]: line for line in lines}
    ready = events["worker_ready"]
    assert ready["workflows"] == ["booking", "greet", "review"]
    assert ready["worker"] == events["worker_started"]["worker"]
    assert events["worker_stopping"]["signal"] == "SIGTERM"
    assert {"run_finished", "worker_stopped"} <= events.keys()


async def test_a_worker_that_cannot_start_says_why_in_the_log_format(dsn: str) -> None:
    """The error that ends a worker is a log line (logfmt here), without colours."""
    missing = with_database(dsn, "forgeflow_no_such_database")
    result = await forgeflow("worker", APP, "--dsn", missing, "--log-format", "logfmt")
    assert result.code == 1
    [line] = result.err.splitlines()
    assert re.fullmatch(
        r'timestamp=\S+ level=error event=command_failed error=".*does not exist.*"', line
    ), line


async def test_a_one_shot_commands_error_stays_one_plain_line(dsn: str) -> None:
    """`forgeflow status` answers a person: its error is not a log line, whatever the format."""
    env = environment(FORGEFLOW_LOG_FORMAT="json")
    result = await forgeflow("status", "no-such-run", "--dsn", dsn, env=env)
    assert (result.code, result.err) == (1, "forgeflow: error: no run with id 'no-such-run'\n")


async def test_an_unknown_log_format_is_an_error_naming_where_it_came_from() -> None:
    """A bad --log-format is a usage error (2); a bad FORGEFLOW_LOG_FORMAT names the variable."""
    flag = await forgeflow("runs", "--log-format", "xml")
    assert flag.code == 2
    assert "usage: forgeflow runs" in flag.err
    assert "--log-format: expected one of console, logfmt, json, got 'xml'" in flag.err
    variable = await forgeflow("runs", env=environment(FORGEFLOW_LOG_FORMAT="xml"))
    assert variable.code == 1
    assert variable.err == (
        "forgeflow: error: FORGEFLOW_LOG_FORMAT: expected one of console, logfmt, json, got 'xml'\n"
    )
