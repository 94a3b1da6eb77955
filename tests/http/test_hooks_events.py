"""Resume hooks (links and POSTs), the hooks list and external events over HTTP."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx

from forgeflow import Forgeflow

from .server import ShiftedClock, until_status
from .workflows import Workflows


async def waiting_hook(ff: Forgeflow, http: httpx.AsyncClient, title: str = "doc") -> Any:
    """Start an approval run, wait until it waits, and return its hook as listed."""
    response = await http.post("/workflows/approval/start", json={"input": {"title": title}})
    run_id = response.json()["run_id"]
    record = await until_status(ff, run_id, "waiting")
    return record.hooks[0]


async def test_a_posted_decision_resumes_the_run(
    ff: Forgeflow, http: httpx.AsyncClient, workflows: Workflows
) -> None:
    """POST /hooks/{id} answers 200 {"run_id", "hook_id", "decision"} and the run goes on."""
    hook = await waiting_hook(ff, http)
    response = await http.post(
        f"/hooks/{hook.hook_id}", json={"decision": "escalate", "data": {"to": "director"}}
    )
    assert response.status_code == 200
    assert response.json() == {
        "run_id": hook.run_id,
        "hook_id": hook.hook_id,
        "decision": "escalate",
    }
    output = await ff.result(hook.run_id, timeout=30)
    assert output == {
        "title": "doc",
        "outcome": "escalate",
        "data": {"to": "director"},
        "timed_out": False,
    }


async def test_hook_errors_are_404_409_and_410(
    ff: Forgeflow, serve: Any, workflows: Workflows
) -> None:
    """An unknown hook is 404, a used one 409, an expired one 410."""
    clock = ShiftedClock()
    server = await serve(clock=clock)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        unknown = await http.post("/hooks/webhook_nope", json={"decision": "approve"})
        assert (unknown.status_code, unknown.json()["error"]) == (404, "hook_not_found")

        used = await waiting_hook(ff, http, "used")
        first = await http.post(f"/hooks/{used.hook_id}", json={"decision": "approve"})
        assert first.status_code == 200
        second = await http.post(f"/hooks/{used.hook_id}", json={"decision": "reject"})
        assert (second.status_code, second.json()["error"]) == (409, "hook_already_used")

        late = await waiting_hook(ff, http, "late")
        clock.offset = timedelta(hours=2)  # the hook's one hour is over
        expired = await http.post(f"/hooks/{late.hook_id}", json={"decision": "approve"})
        assert (expired.status_code, expired.json()["error"]) == (410, "hook_expired")


async def test_a_bad_decision_body_is_422(
    ff: Forgeflow, http: httpx.AsyncClient, workflows: Workflows
) -> None:
    """A decision outside approve/reject/escalate, or data that is not an object, is 422."""
    hook = await waiting_hook(ff, http)
    for body in ({"decision": "maybe"}, {"decision": "approve", "data": [1]}, {}, [1]):
        response = await http.post(f"/hooks/{hook.hook_id}", json=body)
        assert response.status_code == 422, body
    record = await ff.status(hook.run_id)
    assert record.hooks[0].status == "active"  # nothing was consumed


async def test_a_link_takes_the_decision_with_the_other_query_parameters_as_data(
    ff: Forgeflow, http: httpx.AsyncClient, workflows: Workflows
) -> None:
    """GET /hooks/{id}?decision=reject&reason=late answers an HTML page and resumes the run."""
    hook = await waiting_hook(ff, http)
    response = await http.get(
        f"/hooks/{hook.hook_id}",
        params=[("decision", "reject"), ("reason", "late"), ("tag", "a"), ("tag", "b")],
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "reject" in response.text and "recorded" in response.text
    output = await ff.result(hook.run_id, timeout=30)
    assert output["outcome"] == "reject"
    assert output["data"] == {"reason": "late", "tag": ["a", "b"]}

    again = await http.get(f"/hooks/{hook.hook_id}", params={"decision": "approve"})
    assert again.status_code == 409
    assert "already" in again.text.lower()
    unknown = await http.get("/hooks/webhook_nope", params={"decision": "approve"})
    assert unknown.status_code == 404


async def test_a_link_without_a_decision_offers_the_choices(
    ff: Forgeflow, http: httpx.AsyncClient, workflows: Workflows
) -> None:
    """A bare hook link (or a HEAD request) shows the choices and takes no decision."""
    hook = await waiting_hook(ff, http, "<script>alert(1)</script>")
    response = await http.get(f"/hooks/{hook.hook_id}")
    assert response.status_code == 200
    for decision in ("approve", "reject", "escalate"):
        assert f'href="?decision={decision}"' in response.text
    assert response.headers["referrer-policy"] == "no-referrer"
    scanned = await http.head(f"/hooks/{hook.hook_id}", params={"decision": "approve"})
    assert scanned.status_code == 200  # a link checker's HEAD takes no decision
    odd = await http.get(f"/hooks/{hook.hook_id}", params={"decision": "perhaps"})
    assert odd.status_code == 422
    assert (await ff.status(hook.run_id)).hooks[0].status == "active"


async def test_fifty_concurrent_decisions_on_one_hook_have_exactly_one_winner(
    ff: Forgeflow, http: httpx.AsyncClient, workflows: Workflows
) -> None:
    """Of 50 simultaneous POSTs to one hook, exactly one gets 200, the others 409."""
    hook = await waiting_hook(ff, http)
    async with httpx.AsyncClient(
        base_url=str(http.base_url), timeout=60, limits=httpx.Limits(max_connections=50)
    ) as many:
        responses = await asyncio.gather(
            *(
                many.post(f"/hooks/{hook.hook_id}", json={"decision": "approve", "data": {"n": n}})
                for n in range(50)
            )
        )
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] + [409] * 49
    winner = next(r for r in responses if r.status_code == 200)
    assert winner.json()["run_id"] == hook.run_id
    output = await ff.result(hook.run_id, timeout=30)
    assert output["outcome"] == "approve"


async def test_active_hooks_are_listed_with_their_urls(
    ff: Forgeflow, http: httpx.AsyncClient, workflows: Workflows
) -> None:
    """GET /hooks lists active hooks with the contract's fields; filters narrow it."""
    first = await waiting_hook(ff, http, "one")
    second = await waiting_hook(ff, http, "two")
    listed = (await http.get("/hooks", params={"status": "active"})).json()
    assert listed["count"] == 2
    assert [h["hook_id"] for h in listed["hooks"]] == [first.hook_id, second.hook_id]
    entry = listed["hooks"][0]
    for field in (
        "hook_id",
        "run_id",
        "workflow",
        "name",
        "status",
        "created_at",
        "expires_at",
        "is_expired",
        "metadata",
        "url",
    ):
        assert field in entry
    assert entry["metadata"] == {"title": "one"}
    assert entry["url"].endswith(f"/hooks/{first.hook_id}")
    assert entry["is_expired"] is False

    await http.post(f"/hooks/{first.hook_id}", json={"decision": "approve"})
    assert (await http.get("/hooks")).json()["count"] == 1
    assert (await http.get("/hooks", params={"status": "all"})).json()["count"] == 2
    assert (await http.get("/hooks", params={"workflow": "other"})).json()["count"] == 0
    bad = await http.get("/hooks", params={"status": "done"})
    assert bad.status_code == 422


async def test_an_event_resumes_the_runs_whose_filter_it_matches(
    ff: Forgeflow, http: httpx.AsyncClient, workflows: Workflows
) -> None:
    """POST /events/{type} delivers the payload and answers how many runs it resumed."""
    response = await http.post("/workflows/payment/start", json={"input": "A-1"})
    run_id = response.json()["run_id"]
    await until_status(ff, run_id, "waiting")
    other = await http.post("/events/payment.confirmed", json={"order": "B-2"})
    assert other.json() == {"resumed": 0}
    matching = await http.post("/events/payment.confirmed", json={"order": "A-1", "amount": 5})
    assert matching.status_code == 200
    assert matching.json() == {"resumed": 1}
    assert await ff.result(run_id, timeout=30) == {"order": "A-1", "amount": 5}
    not_an_object = await http.post("/events/payment.confirmed", json=[1])
    assert not_an_object.status_code == 422
