"""The pytest plugin's fixtures and the ManualClock they hand out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from forgeflow import ConfigurationError, Forgeflow, Registry, WorkflowStatus
from forgeflow.testing import ManualClock, WorkflowTestEnv
from tests.support.db import connect_direct

from . import workflows


async def test_each_test_gets_a_fresh_migrated_database(forgeflow_database: str) -> None:
    """forgeflow_database is a DSN to a database with forgeflow's schema and no runs."""
    conn = await connect_direct(forgeflow_database)
    try:
        assert await conn.fetchval("SELECT count(*) FROM forgeflow.workflow_runs") == 0
        assert await conn.fetchval("SELECT count(*) FROM forgeflow.schema_migrations") >= 1
    finally:
        await conn.close()


async def test_the_client_runs_on_the_manual_clock(
    forgeflow_client: Forgeflow, forgeflow_clock: ManualClock, forgeflow_registry: Registry
) -> None:
    """forgeflow_client stamps runs with the manual clock and executes the test's registry."""
    assert forgeflow_client.registry is forgeflow_registry is workflows.registry
    forgeflow_clock.advance("1d")
    run_id = await forgeflow_client.start(workflows.hourly_ticks, 1)
    record = await forgeflow_client.status(run_id)
    assert record.created_at == forgeflow_clock.now()
    assert record.status is WorkflowStatus.CREATED


async def test_the_env_executes_runs_started_on_its_client(
    forgeflow_env: WorkflowTestEnv, forgeflow_client: Forgeflow
) -> None:
    """A run started with the plain client is picked up by the env's worker on its own."""
    run_id = await forgeflow_client.start(workflows.onboarding, "grace@example.com")
    assert await forgeflow_client.result(run_id, timeout=30) == "trial-user-grace@example.com"


def test_the_manual_clock_starts_at_the_real_time_and_moves_only_when_told() -> None:
    """ManualClock() reads the real time once; advance and set move it, never backwards."""
    before = datetime.now(UTC)
    clock = ManualClock()
    assert before <= clock.now() <= datetime.now(UTC)
    first = clock.now()
    assert clock.now() == first
    assert clock.advance("2h") == first + timedelta(hours=2)
    clock.set(first + timedelta(days=1))
    assert clock.now() == first + timedelta(days=1)
    with pytest.raises(ValueError, match="before the clock"):
        clock.set(first)
    with pytest.raises(ValueError, match="timezone-aware"):
        ManualClock(datetime(2030, 1, 1))


async def test_the_env_refuses_a_client_whose_clock_it_cannot_move(forgeflow_database: str) -> None:
    """A client on the real clock, or sleeping in place, cannot back a WorkflowTestEnv."""
    async with Forgeflow.connect(forgeflow_database, registry=Registry(), migrate=False) as client:
        with pytest.raises(ConfigurationError, match="ManualClock"):
            WorkflowTestEnv(client)
    async with Forgeflow.connect(
        forgeflow_database, registry=Registry(), clock=ManualClock(), migrate=False
    ) as client:
        with pytest.raises(ConfigurationError, match="sleep_threshold=0"):
            WorkflowTestEnv(client)
