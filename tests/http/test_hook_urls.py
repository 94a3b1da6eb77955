"""Hook links for any hook name: valid URLs that reach their hook, over TCP and in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from forgeflow import (
    Forgeflow,
    Registry,
    WorkflowContext,
    WorkflowDefinition,
    WorkflowFailed,
    workflow,
)
from forgeflow.http import create_app

from .conftest import Serve
from .server import until_status

# Names that must survive a trip through a URL: every URL delimiter, dot segments,
# percent signs that look like escapes, spaces and text beyond ASCII.
AWKWARD_NAMES = [
    "manager/director",
    "why?decision=reject",
    "step#2",
    "needs review",
    "..",
    "../../runs",
    "100% sure",
    "a%2Fb",
    "zürich/東京",
    "",
]


def named_hook_workflow(
    registry: Registry, hook_id: str | None = None, flow_name: str = "named_hook"
) -> WorkflowDefinition[Any, Any]:
    """A workflow waiting on a hook with the name it is given; it records its links first."""

    @workflow(version=1, registry=registry, name=flow_name)
    async def named_hook(ctx: WorkflowContext, name: str) -> dict[str, Any]:
        hook = await ctx.hook(name, timeout="1h", hook_id=hook_id)
        links = await ctx.step("links", lambda: [hook.url, hook.url_for("approve")]).run()
        decision = await hook.wait()
        return {"outcome": decision.outcome.value, "data": decision.data, "links": links}

    return named_hook


async def waiting_links(ff: Forgeflow, run_id: str) -> tuple[str, str, str]:
    """(hook id, hook.url, the approve link) of a run once it waits on its hook."""
    record = await until_status(ff, run_id, "waiting")
    links = next(s.result for s in record.steps if s.name == "links")
    return record.hooks[0].hook_id, links[0], links[1]


def assert_valid_link(url: str, base: str, hook_id: str) -> None:
    """``url`` is one well-formed URL whose decoded path names exactly this hook."""
    parsed = httpx.URL(url)
    assert str(parsed) == url
    assert not any(c.isspace() or c in "#?" for c in url), url
    assert url.startswith(f"{base}/hooks/")
    assert "/" not in url[len(f"{base}/hooks/") :], url  # one path segment: no dot segments
    assert urlsplit(url).query == "" and urlsplit(url).fragment == ""


async def decide_through_links(
    ff: Forgeflow, http: httpx.AsyncClient, base: str, run_ids: list[str]
) -> None:
    """Odd runs are approved by their email link, even runs rejected by a POST to hook.url."""
    for index, run_id in enumerate(run_ids):
        hook_id, url, approve = await waiting_links(ff, run_id)
        assert_valid_link(url, base, hook_id)
        assert approve == f"{url}?decision=approve"
        page = await http.get(url)
        assert page.status_code == 200, (hook_id, page.text)
        if index % 2:
            response = await http.get(f"{approve}&note=ok")
            assert response.status_code == 200, (hook_id, response.text)
            expected = {"outcome": "approve", "data": {"note": "ok"}}
        else:
            response = await http.post(url, json={"decision": "reject"})
            assert response.status_code == 200, (hook_id, response.text)
            assert response.json()["hook_id"] == hook_id
            expected = {"outcome": "reject", "data": {}}
        output = await ff.result(run_id, timeout=30)
        assert {k: output[k] for k in ("outcome", "data")} == expected, hook_id
        record = (await http.get(f"{base}/runs/{run_id}")).json()
        assert record["hooks"][0]["url"] == url  # the record's url is the same link


async def test_hook_links_reach_their_hook_on_a_live_server_whatever_the_name(
    ff: Forgeflow, registry: Registry, serve: Serve
) -> None:
    """With uvicorn serving, hook.url and its links decide the hook for any hook name."""
    flow = named_hook_workflow(registry)
    server = await serve()
    run_ids = [await ff.start(flow, name) for name in AWKWARD_NAMES for _ in range(2)]
    async with httpx.AsyncClient(timeout=30) as http:
        await decide_through_links(ff, http, server.url, run_ids)
        listed = (await http.get(f"{server.url}/hooks", params={"status": "all"})).json()
    assert len({h["hook_id"] for h in listed["hooks"]}) == len(run_ids)


@pytest.fixture
async def mounted(dsn: str, registry: Registry) -> AsyncIterator[tuple[Forgeflow, str]]:
    """A client whose hook links point at its app mounted under /forgeflow in-process."""
    base = "http://testserver/forgeflow"
    async with Forgeflow.connect(dsn, registry=registry, base_url=base) as client:
        yield client, base


async def test_hook_links_reach_their_hook_through_the_asgi_app_mounted_under_a_prefix(
    mounted: tuple[Forgeflow, str], registry: Registry
) -> None:
    """Through httpx's ASGI transport and a Mount, the same links resolve to their hooks."""
    ff, base = mounted
    flow = named_hook_workflow(registry)
    templated = named_hook_workflow(registry, "review/{name}?#{random}", "templated_hook")
    app = Starlette(routes=[Mount("/forgeflow", app=create_app(ff))])
    transport = httpx.ASGITransport(app=app)
    run_ids = [await ff.start(wf, name) for wf in (flow, templated) for name in AWKWARD_NAMES * 2]
    async with (
        httpx.AsyncClient(transport=transport, timeout=30) as http,
        ff.worker(concurrency=4),
    ):
        with anyio.fail_after(60):
            await decide_through_links(ff, http, base, run_ids)


@pytest.mark.parametrize("name", ["..", "."])
async def test_a_hook_id_template_that_gives_a_dot_segment_fails_the_run(
    ff: Forgeflow, registry: Registry, name: str
) -> None:
    """An id no URL can name ("." or "..", which clients rewrite) is refused, naming hook_id."""
    flow = named_hook_workflow(registry, hook_id="{name}")
    with anyio.fail_after(30), pytest.raises(WorkflowFailed) as caught:
        await ff.run(flow, name)
    assert "hook_id" in caught.value.error["message"]
