"""Settings reach every part of a client: the lease a worker holds runs with, hook links."""

from __future__ import annotations

from datetime import timedelta

import anyio
import pytest

from forgeflow import (
    Forgeflow,
    Registry,
    WorkflowContext,
    WorkflowDefinition,
    WorkflowStatus,
    workflow,
)
from forgeflow.errors import DatabaseError
from tests.support.db import connection

LEASE_LEFT = """
SELECT extract(epoch FROM lease_expires_at - now())::float8
FROM forgeflow.workflow_runs WHERE id = $1
"""


class Holding:
    """A workflow whose single step holds its run until the test lets it go."""

    def __init__(self, registry: Registry) -> None:
        self.started = anyio.Event()
        self.release = anyio.Event()

        @workflow(version=1, registry=registry, name="hold")
        async def hold(ctx: WorkflowContext) -> str:
            async def block() -> str:
                self.started.set()
                await self.release.wait()
                return "done"

            return await ctx.step("block", block)

        self.workflow: WorkflowDefinition[None, str] = hold


async def lease_left_while_held(ff: Forgeflow, holding: Holding, **worker: str) -> float:
    """Run the holding workflow on a worker of ``ff``; seconds of lease left once claimed."""
    async with ff.worker(concurrency=1, poll_interval="50ms", **worker):
        run_id = await ff.start(holding.workflow)
        await holding.started.wait()
        async with connection(ff.pool) as conn:
            left: float = await conn.fetchval(LEASE_LEFT, run_id)
        holding.release.set()
        assert await ff.result(run_id, timeout=30) == "done"
    return left


@pytest.fixture
def holding(registry: Registry) -> Holding:
    """The holding workflow, registered in this test's registry."""
    return Holding(registry)


async def test_a_worker_inherits_the_lease_its_client_was_connected_with(
    dsn: str, registry: Registry, holding: Holding
) -> None:
    """connect(lease="5s") makes ff.worker() claim runs for 5 s, not its own default."""
    async with Forgeflow.connect(dsn, registry=registry, lease="5s") as ff:
        assert ff.worker().lease_seconds == 5
        left = await lease_left_while_held(ff, holding)
    assert 0 < left <= 5


async def test_a_lease_given_to_the_worker_wins_over_the_clients(
    dsn: str, registry: Registry, holding: Holding
) -> None:
    """ff.worker(lease=...) still overrides the client's lease for that worker."""
    async with Forgeflow.connect(dsn, registry=registry, lease="5s") as ff:
        left = await lease_left_while_held(ff, holding, lease="3s")
    assert 0 < left <= 3


async def test_the_environment_sets_what_arguments_leave_unset(
    dsn: str, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FORGEFLOW_LEASE / _BASE_URL / _DATABASE_URL apply when connect() is not given them."""
    monkeypatch.setenv("FORGEFLOW_DATABASE_URL", dsn)
    monkeypatch.setenv("FORGEFLOW_LEASE", "7s")
    monkeypatch.setenv("FORGEFLOW_BASE_URL", "https://env.example.com/")
    async with Forgeflow.connect(registry=registry) as ff:
        assert ff.dsn == dsn
        assert ff.settings.lease == timedelta(seconds=7)
        assert ff.settings.base_url == "https://env.example.com"
        assert ff.worker().lease_seconds == 7
    async with Forgeflow.connect(registry=registry, base_url="https://arg.example.com") as ff:
        assert ff.settings.base_url == "https://arg.example.com"


async def test_a_bad_environment_variable_fails_connect_naming_it(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A FORGEFLOW_LEASE that is not a duration stops connect() before any connection."""
    from forgeflow import ConfigurationError

    monkeypatch.setenv("FORGEFLOW_LEASE", "a while")
    with pytest.raises(ConfigurationError, match=r"^FORGEFLOW_LEASE: "):
        async with Forgeflow.connect("postgresql://postgres@127.0.0.1:1/none", registry=registry):
            pass


async def test_what_needs_a_session_goes_to_listen_url(dsn: str, registry: Registry) -> None:
    """With pgbouncer on, runs and their statements use database_url while LISTEN,
    migrations and the retention lock connect to listen_url: one nobody answers fails
    each of those with an error naming it, and nothing else."""

    @workflow(version=1, registry=registry, name="noop")
    async def noop(ctx: WorkflowContext) -> str:
        return "done"

    nowhere = "postgresql://postgres@127.0.0.1:1/none"
    names_it = r"listen_url \(FORGEFLOW_LISTEN_URL\)"
    async with Forgeflow.connect(
        dsn, registry=registry, pgbouncer=True, listen_url=nowhere, migrate=False
    ) as ff:
        assert ff.settings.pgbouncer
        run_id = await ff.start(noop)
        assert (await ff.status(run_id)).status == WorkflowStatus.CREATED
        with pytest.raises(DatabaseError, match=names_it):
            await ff.migrate()
        with pytest.raises(DatabaseError, match=names_it):
            async with ff._store.exclusive(1):
                pass
        with pytest.raises(DatabaseError, match=names_it):
            async with ff.worker():
                pass
