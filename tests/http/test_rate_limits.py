"""Rate limits on the start, event and hook endpoints: per client address and per hook.

Clients are told apart by their address, so the tests connect from several loopback
addresses (127.0.0.1, 127.0.0.2, ...), all routed to the server on 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
from starlette.requests import Request

from forgeflow import Forgeflow
from forgeflow._http_limits import RateLimiter, parse_rate
from forgeflow.http import DEFAULT_RATE_LIMIT, RateLimit, create_app
from tests.support.db import connect_direct

from .conftest import Serve
from .server import LiveServer, until_status
from .workflows import Workflows


@asynccontextmanager
async def client_from(server: LiveServer, address: str) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client whose connections leave from ``address`` (a loopback address)."""
    transport = httpx.AsyncHTTPTransport(local_address=address)
    async with httpx.AsyncClient(base_url=server.url, transport=transport, timeout=30) as http:
        yield http


def assert_limited(response: httpx.Response, scope: str) -> None:
    """A 429 in the API's error shape, with a Retry-After within the one-minute window."""
    assert response.status_code == 429, response.text
    body = response.json()
    assert set(body) == {"error", "detail"}
    assert body["error"] == "rate_limited"
    assert body["detail"]["scope"] == scope
    retry_after = int(response.headers["retry-after"])
    assert 1 <= retry_after <= 60
    assert body["detail"]["retry_after"] == retry_after


async def database_snapshot(dsn: str) -> dict[str, tuple[int, str]]:
    """Each forgeflow table's row count and a digest of its rows (workers' heartbeats aside)."""
    conn = await connect_direct(dsn)
    try:
        tables = await conn.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'forgeflow'"
        )
        snapshot: dict[str, tuple[int, str]] = {}
        for table in tables:
            name = table["table_name"]
            row = await conn.fetchrow(
                f"SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) "
                f'FROM forgeflow."{name}" t'
            )
            assert row is not None
            count, digest = row["count"], row["md5"]
            # A live worker's own row changes with every heartbeat: only its count is stable.
            snapshot[name] = (count, "" if name == "workers" else digest)
        return snapshot
    finally:
        await conn.close()


async def test_a_flood_of_bad_hook_ids_neither_writes_nor_locks_out_other_clients(
    ff: Forgeflow, dsn: str, serve: Serve, workflows: Workflows
) -> None:
    """Hundreds of unknown hook ids from one address write nothing and only that address
    gets 429s: resumes from another address all succeed meanwhile."""
    server = await serve(rate_limit=RateLimit(per_client="20/min", per_hook="5/min"))
    run_ids = [await ff.start(workflows.approval, {"title": f"doc {i}"}) for i in range(8)]
    hooks = [(await until_status(ff, run_id, "waiting")).hooks[0] for run_id in run_ids]
    before = await database_snapshot(dsn)

    flood: list[httpx.Response] = []
    limited = anyio.Event()

    async def noisy(http: httpx.AsyncClient, worker: int) -> None:
        for i in range(40):
            hook_id = f"webhook_{worker}_{i}_guess"
            if i % 2:
                response = await http.post(f"/hooks/{hook_id}", json={"decision": "approve"})
            else:
                response = await http.get(f"/hooks/{hook_id}", params={"decision": "approve"})
            flood.append(response)
            if response.status_code == 429:
                limited.set()

    async with client_from(server, "127.0.0.1") as attacker:
        async with anyio.create_task_group() as tg:
            for worker in range(10):
                tg.start_soon(noisy, attacker, worker)
        after_flood = await database_snapshot(dsn)

        resumes: list[httpx.Response] = []

        async def legitimate(http: httpx.AsyncClient) -> None:
            await limited.wait()  # the flood is being refused by now
            for hook in hooks:
                resumes.append(
                    await http.post(f"/hooks/{hook.hook_id}", json={"decision": "approve"})
                )

        async with client_from(server, "127.0.0.2") as approver, anyio.create_task_group() as tg:
            for worker in range(10, 15):
                tg.start_soon(noisy, attacker, worker)
            tg.start_soon(legitimate, approver)

    assert len(flood) == 600
    statuses = [r.status_code for r in flood]
    assert set(statuses) <= {404, 429}
    assert statuses.count(404) == 20  # the address's budget, then nothing reaches the database
    for response in flood:
        if response.status_code == 429:
            assert_limited(response, "client")
    assert after_flood == before

    assert [r.status_code for r in resumes] == [200] * len(hooks)
    for run_id in run_ids:
        assert (await ff.result(run_id, timeout=30))["outcome"] == "approve"


async def test_start_and_events_share_a_per_client_budget(
    serve: Serve, workflows: Workflows
) -> None:
    """Starts and events count against one budget per address; admin reads are not limited."""
    server = await serve(rate_limit="4/min")
    async with client_from(server, "127.0.0.2") as noisy, client_from(server, "127.0.0.3") as other:
        for _ in range(2):
            assert (await noisy.post("/events/ping", json={})).status_code == 200
            start = await noisy.post("/workflows/double/start", json={"input": 1})
            assert start.status_code == 202
        assert_limited(await noisy.post("/events/ping", json={}), "client")
        assert_limited(await noisy.post("/workflows/double/start", json={"input": 1}), "client")
        assert_limited(await noisy.get("/hooks/webhook_x"), "client")
        for _ in range(10):
            assert (await noisy.get("/runs")).status_code == 200
        assert (await other.post("/workflows/double/start", json={"input": 1})).status_code == 202


async def test_one_hook_id_has_its_own_limit_across_clients(
    serve: Serve, workflows: Workflows
) -> None:
    """Requests for one hook id are capped whoever sends them; other hook ids are not."""
    server = await serve(rate_limit=RateLimit(per_client="100/min", per_hook="3/min"))
    addresses = [f"127.0.0.{n}" for n in range(2, 6)]
    statuses = []
    for address in addresses:
        async with client_from(server, address) as http:
            statuses.append(await http.post("/hooks/webhook_one", json={"decision": "approve"}))
    assert [r.status_code for r in statuses] == [404, 404, 404, 429]
    assert_limited(statuses[-1], "hook")
    async with client_from(server, addresses[-1]) as http:
        assert (await http.get("/hooks/webhook_two")).status_code == 404


async def test_forwarded_addresses_count_only_behind_trusted_proxies(
    serve: Serve, workflows: Workflows
) -> None:
    """X-Forwarded-For is ignored by default; behind one trusted proxy its last entry counts."""
    ignoring = await serve(rate_limit=RateLimit(per_client="2/min"))
    trusting = await serve(rate_limit=RateLimit(per_client="2/min", trusted_proxies=1))
    for server, expected in ((ignoring, [200, 200, 429]), (trusting, [200, 200, 200])):
        async with client_from(server, "127.0.0.2") as http:
            statuses = []
            for forwarded in ("10.0.0.1", "10.0.0.2", "spoofed, 10.0.0.3"):
                response = await http.post(
                    "/events/ping", json={}, headers={"X-Forwarded-For": forwarded}
                )
                statuses.append(response.status_code)
        assert statuses == expected


async def test_the_default_app_is_rate_limited_and_none_or_false_switch_it_off(
    shared_ff: Forgeflow,
) -> None:
    """create_app limits by default; rate_limit=None or False gives no limiter."""
    default = create_app(shared_ff).state.forgeflow.limiter
    assert default is not None and default.config == DEFAULT_RATE_LIMIT == RateLimit()
    assert create_app(shared_ff, rate_limit=None).state.forgeflow.limiter is None
    assert create_app(shared_ff, rate_limit=False).state.forgeflow.limiter is None
    custom = create_app(shared_ff, rate_limit="10/s").state.forgeflow.limiter
    assert custom.config == RateLimit(per_client="10/s")
    with pytest.raises(ValueError, match="rate_limit"):
        create_app(shared_ff, rate_limit="often")
    with pytest.raises(ValueError, match="rate_limit"):
        create_app(shared_ff, rate_limit=60)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("rate", "amount", "seconds"),
    [
        ("60/min", 60, 60),
        ("60/minute", 60, 60),
        ("10/s", 10, 1),
        ("10 / second", 10, 1),
        ("5/2s", 5, 2),
        ("1000/hour", 1000, 3600),
        ("3/hours", 3, 3600),
        ("100/1h30m", 100, 5400),
        ("7/day", 7, 86400),
    ],
)
def test_rates_read_like_queue_rates(rate: str, amount: int, seconds: int) -> None:
    """Rates are "N/period" with a period word or a forgeflow duration."""
    item = parse_rate(rate)
    assert (item.amount, item.get_expiry()) == (amount, seconds)


@pytest.mark.parametrize("rate", ["", "often", "0/min", "10/0s", "10/0.5s", "-1/s", "5/fortnight"])
def test_a_bad_rate_names_the_field(rate: str) -> None:
    """A rate that cannot be read is a ValueError naming the RateLimit field."""
    with pytest.raises(ValueError, match=r"rate_limit\.per_hook"):
        RateLimit(per_hook=rate)


def test_a_negative_proxy_count_is_refused() -> None:
    """trusted_proxies is a count of proxies."""
    with pytest.raises(ValueError, match="trusted_proxies"):
        RateLimit(trusted_proxies=-1)


def request_from(host: str | None, forwarded: str | None = None) -> Request:
    """A bare request as the app sees it, from ``host`` with an optional X-Forwarded-For."""
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
    scope: dict[str, Any] = {"type": "http", "headers": headers}
    scope["client"] = (host, 50000) if host is not None else None
    return Request(scope)


@pytest.mark.parametrize(
    ("config", "host", "forwarded", "key"),
    [
        (RateLimit(), "192.0.2.7", "198.51.100.1", "192.0.2.7"),
        (RateLimit(), "2001:db8:1:2:aaaa::1", None, "2001:db8:1:2::/64"),
        (RateLimit(), "::ffff:192.0.2.7", None, "192.0.2.7"),
        (RateLimit(), None, None, "unknown"),
        (RateLimit(trusted_proxies=1), "10.0.0.1", "203.0.113.5, 198.51.100.1", "198.51.100.1"),
        (RateLimit(trusted_proxies=2), "10.0.0.1", "203.0.113.5, 198.51.100.1", "203.0.113.5"),
        (RateLimit(trusted_proxies=2), "10.0.0.1", "198.51.100.1", "10.0.0.1"),
        (RateLimit(trusted_proxies=1), "10.0.0.1", "not-an-address", "10.0.0.1"),
    ],
)
def test_clients_are_counted_by_address(
    config: RateLimit, host: str | None, forwarded: str | None, key: str
) -> None:
    """The counted address: the peer, an IPv6 /64, or an address a trusted proxy forwarded."""
    assert RateLimiter(config).client_address(request_from(host, forwarded)) == key
