"""Migrations: applied to an empty database, concurrently, twice, and matching the code."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from forgeflow import Forgeflow, Registry
from forgeflow._migrations import apply_migrations, load_migrations
from forgeflow._sql import QUERIES
from tests.support.db import create_database, drop_database
from tests.support.proc_core_driver import spawn

REQUIRED_TABLES = {"workflow_runs", "workflow_steps", "hooks", "schema_migrations"}


@pytest.fixture
async def empty_dsn(pg_server: str) -> AsyncIterator[str]:
    """A new database without forgeflow's schema."""
    dsn = await create_database(pg_server)
    try:
        yield dsn
    finally:
        await drop_database(pg_server, dsn)


async def schema_snapshot(conn: asyncpg.Connection) -> dict[str, Any]:
    """Tables, columns, indexes and constraints of the forgeflow schema."""
    columns = await conn.fetch(
        "SELECT table_name, column_name, data_type, is_nullable, column_default"
        " FROM information_schema.columns WHERE table_schema = 'forgeflow'"
        " ORDER BY table_name, ordinal_position"
    )
    indexes = await conn.fetch(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'forgeflow'"
        " ORDER BY indexname"
    )
    constraints = await conn.fetch(
        "SELECT conrelid::regclass::text AS tbl, conname, pg_get_constraintdef(oid) AS def"
        " FROM pg_constraint WHERE connamespace = 'forgeflow'::regnamespace"
        " ORDER BY 1, 2"
    )
    return {
        "columns": [tuple(r) for r in columns],
        "indexes": [tuple(r) for r in indexes],
        "constraints": [tuple(r) for r in constraints],
    }


async def test_migrating_an_empty_database_creates_the_expected_tables(empty_dsn: str) -> None:
    """All shipped migrations apply to an empty database and create forgeflow's tables."""
    conn = await asyncpg.connect(empty_dsn)
    try:
        applied = await apply_migrations(conn)
        tables = {
            r["table_name"]
            for r in await conn.fetch(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'forgeflow'"
            )
        }
        recorded = await conn.fetch(
            "SELECT version, name FROM forgeflow.schema_migrations ORDER BY version"
        )
    finally:
        await conn.close()
    shipped = load_migrations()
    assert applied == [m.version for m in shipped]
    assert [(r["version"], r["name"]) for r in recorded] == [(m.version, m.name) for m in shipped]
    assert shipped[0].version == 1
    assert tables >= REQUIRED_TABLES


async def test_every_named_query_matches_the_migrated_schema(empty_dsn: str) -> None:
    """Each single-statement query in queries.sql prepares against the migrated schema."""
    conn = await asyncpg.connect(empty_dsn)
    try:
        await apply_migrations(conn)
        prepared = []
        for name, sql in QUERIES.items():
            code = re.sub(r"--[^\n]*", "", sql)  # a ';' in a comment does not count
            if ";" in code:  # a multi-statement script (schema bootstrap), not preparable
                continue
            await conn.prepare(sql)
            prepared.append(name)
    finally:
        await conn.close()
    assert {"insert_run", "claim_run", "checkpoint_step", "finish_run"} <= set(prepared)


async def test_applying_migrations_twice_is_a_no_op(empty_dsn: str) -> None:
    """A second application applies nothing and leaves the schema exactly as it was."""
    conn = await asyncpg.connect(empty_dsn)
    try:
        first = await apply_migrations(conn)
        before = await schema_snapshot(conn)
        second = await apply_migrations(conn)
        after = await schema_snapshot(conn)
        rows = await conn.fetchval("SELECT count(*) FROM forgeflow.schema_migrations")
    finally:
        await conn.close()
    assert first and second == []
    assert after == before
    assert rows == len(first)


async def test_concurrent_connections_migrating_one_database_all_succeed(
    empty_dsn: str,
) -> None:
    """Several connections migrating an empty database at once all succeed, once in total."""
    conns = [await asyncpg.connect(empty_dsn) for _ in range(6)]
    try:
        results = await asyncio.gather(*(apply_migrations(c) for c in conns))
        rows = await conns[0].fetchval("SELECT count(*) FROM forgeflow.schema_migrations")
    finally:
        for conn in conns:
            await conn.close()
    shipped = [m.version for m in load_migrations()]
    assert sorted(results, key=len) == [[]] * 5 + [shipped]
    assert rows == len(shipped)


async def test_concurrent_processes_connecting_to_an_empty_database_all_succeed(
    empty_dsn: str,
) -> None:
    """Processes starting at once each connect (migrating on connect) without an error."""
    procs = [await spawn("connect", empty_dsn) for _ in range(3)]
    outcomes = await asyncio.gather(*(p.communicate() for p in procs))
    codes = [p.returncode for p in procs]
    assert codes == [0, 0, 0], [err.decode()[-2000:] for _, err in outcomes]
    conn = await asyncpg.connect(empty_dsn)
    try:
        rows = await conn.fetchval("SELECT count(*) FROM forgeflow.schema_migrations")
    finally:
        await conn.close()
    assert rows == len(load_migrations())


async def test_connect_migrates_and_migrate_false_leaves_the_database_alone(
    empty_dsn: str,
) -> None:
    """Forgeflow.connect applies migrations by default; migrate=False does not touch the schema."""
    async with (
        Forgeflow.connect(empty_dsn, registry=Registry(), migrate=False) as ff,
        ff.pool.acquire() as conn,
    ):
        exists = await conn.fetchval("SELECT to_regclass('forgeflow.workflow_runs')")
    assert exists is None
    async with (
        Forgeflow.connect(empty_dsn, registry=Registry()) as ff,
        ff.pool.acquire() as conn,
    ):
        exists = await conn.fetchval("SELECT to_regclass('forgeflow.workflow_runs')::text")
    assert exists == "forgeflow.workflow_runs"
