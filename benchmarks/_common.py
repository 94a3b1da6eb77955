"""Helpers shared by the benchmark scripts: the DSN, the server's description, statistics."""

from __future__ import annotations

import argparse
import os
import statistics
from collections.abc import Sequence

import asyncpg

from forgeflow._embedded import resolve_dsn


def dsn_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--dsn``: default FORGEFLOW_DATABASE_URL, else the embedded server."""
    parser.add_argument(
        "--dsn",
        default=os.environ.get("FORGEFLOW_DATABASE_URL"),
        help="PostgreSQL to measure on (default: FORGEFLOW_DATABASE_URL, else the embedded "
        "server under .forgeflow/ in the working directory)",
    )


async def server_dsn(dsn: str | None) -> str:
    """The DSN to use, starting (or joining) the embedded server when none is given."""
    return await resolve_dsn(dsn)


async def describe_server(dsn: str) -> str:
    """One line naming the server and the settings that decide what a commit costs."""
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            "SELECT current_setting('server_version') AS version, "
            "current_setting('fsync') AS fsync, "
            "current_setting('synchronous_commit') AS sync, "
            "current_setting('unix_socket_directories') AS sockets, "
            "inet_server_addr()::text AS addr"
        )
    finally:
        await conn.close()
    assert row is not None
    where = f"TCP {row['addr']}" if row["addr"] else "Unix socket"
    return (
        f"PostgreSQL {row['version']} via {where}, fsync={row['fsync']}, "
        f"synchronous_commit={row['sync']}"
    )


async def announce(dsn: str | None) -> str:
    """The DSN to use (see ``server_dsn``), once the server and the load are printed."""
    resolved = await server_dsn(dsn)
    print(f"server: {await describe_server(resolved)}")
    print(load_line())
    return resolved


def percentile(values: Sequence[float], pct: float) -> float:
    """The ``pct`` percentile (0-100) by linear interpolation between closest ranks."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * pct / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary_ms(seconds: Sequence[float]) -> tuple[float, float, float]:
    """(p50, p95, mean) of durations given in seconds, in milliseconds."""
    ms = [s * 1000 for s in seconds]
    return percentile(ms, 50), percentile(ms, 95), statistics.fmean(ms)


def load_line() -> str:
    """The machine's load averages, to judge how quiet it was while measuring."""
    one, five, fifteen = os.getloadavg()
    return f"machine: {os.cpu_count()} cores, load average {one:.2f} {five:.2f} {fifteen:.2f}"
