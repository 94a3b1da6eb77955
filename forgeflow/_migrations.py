"""Applies the numbered ``.sql`` migrations under an advisory lock."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from ._sql import QUERIES

__all__ = ["Migration", "apply_migrations", "load_migrations"]

log = structlog.get_logger("forgeflow.migrations")

# Any constant works; it only has to be the same in every forgeflow process.
_LOCK_ID = 0x466F726765466C6F  # "ForgeFlo"
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    """One numbered schema change."""

    version: int
    name: str
    sql: str


def _directory() -> Path:
    packaged = Path(__file__).parent / "migrations"
    if packaged.is_dir():
        return packaged
    # A source checkout (or editable install): the migrations sit beside the package.
    return Path(__file__).resolve().parent.parent / "migrations"


def load_migrations() -> list[Migration]:
    """Every migration shipped with this version, in order."""
    found = []
    for path in sorted(_directory().glob("*.sql")):
        match = _FILE.match(path.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), path.read_text("utf-8")))
    return found


async def apply_migrations(conn: Any) -> list[int]:
    """Apply the migrations not yet applied; safe to call from many processes at once."""
    await conn.execute(QUERIES["migration_lock"], _LOCK_ID)
    try:
        await conn.execute(QUERIES["create_migrations_table"])
        done = {r["version"] for r in await conn.fetch(QUERIES["applied_migrations"])}
        applied = []
        for migration in load_migrations():
            if migration.version in done:
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(QUERIES["insert_migration"], migration.version, migration.name)
            applied.append(migration.version)
            log.info("migration_applied", version=migration.version, name=migration.name)
        return applied
    finally:
        await conn.execute(QUERIES["migration_unlock"], _LOCK_ID)
