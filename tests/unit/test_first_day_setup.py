"""Where the embedded server's data is found, and logs fit for a pipe."""

from __future__ import annotations

import argparse
import io
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from forgeflow._embedded import find_data_directory
from forgeflow.cli import _configure_logging


def test_the_data_directory_is_found_up_the_tree_like_git_finds_dot_git(tmp_path: Path) -> None:
    """From a subdirectory, the project's .forgeflow/ is used, not a new one."""
    (tmp_path / ".forgeflow").mkdir()
    deep = tmp_path / "src" / "app"
    deep.mkdir(parents=True)
    assert find_data_directory(deep) == tmp_path / ".forgeflow"
    assert find_data_directory(tmp_path) == tmp_path / ".forgeflow"


def test_without_one_up_the_tree_the_data_directory_is_created_here(tmp_path: Path) -> None:
    """No .forgeflow/ above: a new one in the starting directory."""
    if any((p / ".forgeflow").is_dir() for p in tmp_path.parents):
        pytest.skip("a .forgeflow directory exists above the temporary directory")
    assert find_data_directory(tmp_path) == tmp_path / ".forgeflow"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


def test_cli_logs_have_no_colours_when_stderr_is_not_a_terminal(
    monkeypatch: pytest.MonkeyPatch, restore_logging: None
) -> None:
    """Piped or redirected, the CLI's log lines carry no ANSI escape codes."""
    captured = io.StringIO()
    monkeypatch.setattr(sys, "stderr", captured)
    monkeypatch.delenv("FORGEFLOW_LOG_FORMAT", raising=False)
    _configure_logging(argparse.Namespace(command="worker", verbose=False, log_format=None))
    structlog.get_logger("forgeflow.test").warning("worker_started", worker="w1")
    line = captured.getvalue()
    assert "worker_started" in line and "worker=w1" in line
    assert "\x1b[" not in line


def test_other_libraries_log_lines_follow_the_chosen_format_too(
    monkeypatch: pytest.MonkeyPatch, restore_logging: None
) -> None:
    """With FORGEFLOW_LOG_FORMAT=json, structlog's and the standard library's lines
    (uvicorn logs through it) are each one JSON object on stderr."""
    captured = io.StringIO()
    monkeypatch.setattr(sys, "stderr", captured)
    monkeypatch.setenv("FORGEFLOW_LOG_FORMAT", "json")
    _configure_logging(argparse.Namespace(command="serve", verbose=False, log_format=None))
    structlog.get_logger("forgeflow.test").info("worker_started", worker="w1")
    logging.getLogger("uvicorn.error").warning("port %d busy", 8000)
    first, second = (json.loads(line) for line in captured.getvalue().splitlines())
    assert (first["event"], first["worker"], first["level"]) == ("worker_started", "w1", "info")
    assert (second["event"], second["logger"], second["level"]) == (
        "port 8000 busy",
        "uvicorn.error",
        "warning",
    )
    assert {"timestamp"} <= first.keys() & second.keys()
