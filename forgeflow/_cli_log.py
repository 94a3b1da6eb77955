"""How the ``forgeflow`` command logs: one structlog configuration for every log line.

``--log-format`` (or ``FORGEFLOW_LOG_FORMAT``) picks the rendering: ``console`` (the
default: aligned for a person, colours only when stderr is a terminal), ``logfmt``
(``key=value`` pairs) or ``json`` (one object per line). forgeflow's logs, the command's
own lines (a worker's start and stop) and the standard library's loggers (uvicorn's)
all go through it, to stderr; stdout stays for the command's output.
"""

from __future__ import annotations

import argparse
import logging
import os
from typing import TextIO

import structlog
from structlog.typing import Processor

__all__ = ["ENV_VAR", "LOG_FORMATS", "configure_logging", "default_log_format", "log_format"]

LOG_FORMATS = ("console", "logfmt", "json")
ENV_VAR = "FORGEFLOW_LOG_FORMAT"


def log_format(value: str) -> str:
    """``value`` as a log format (an argparse type: a bad one is a usage error)."""
    normalized = value.strip().lower()
    if normalized not in LOG_FORMATS:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(LOG_FORMATS)}, got {value!r}")
    return normalized


def default_log_format() -> str:
    """The format ``FORGEFLOW_LOG_FORMAT`` names, else ``console``."""
    value = os.environ.get(ENV_VAR, "").strip()
    if not value:
        return "console"
    try:
        return log_format(value)
    except argparse.ArgumentTypeError as exc:
        raise ValueError(f"{ENV_VAR}: {exc}") from None


def configure_logging(format: str, level: int, stream: TextIO) -> None:
    """Render structlog's and the standard library's log lines as ``format`` on ``stream``."""
    renderer: Processor
    if format == "console":
        stamp = structlog.processors.TimeStamper(fmt="%Y-%m-%d %H:%M:%S", utc=False)
        # Colours only for a person at a terminal, never in a pipe or a log file.
        renderer = structlog.dev.ConsoleRenderer(colors=stream.isatty())
        exceptions: Processor = structlog.dev.set_exc_info
    else:
        stamp = structlog.processors.TimeStamper(fmt="iso", utc=True)
        renderer = (
            structlog.processors.JSONRenderer()
            if format == "json"
            else structlog.processors.LogfmtRenderer(
                key_order=["timestamp", "level", "event"], drop_missing=True
            )
        )
        exceptions = structlog.processors.format_exc_info
    shared: list[Processor] = [structlog.processors.add_log_level, stamp]
    structlog.configure(
        processors=[*shared, structlog.processors.StackInfoRenderer(), exceptions, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(stream),
    )
    # Lines of other libraries' loggers (uvicorn, asyncio) are rendered the same way.
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
