"""Resume hooks (links and POSTs), the hooks list and external events over HTTP."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from forgeflow import Forgeflow

from .helpers import waiting_hook
from .server import until_status


@pytest.fixture
def ff(shared_ff: Forgeflow) -> Forgeflow:
    """This module's tests only look at their own runs: they share one database."""
    return shared_ff


@pytest.fixture
def http(shared_http: httpx.AsyncClient) -> httpx.AsyncClient:
    """A client of the shared server."""
    return shared_http


async def test_a_posted_decision_resumes_the_run(ff: Forgeflow, http: httpx.AsyncClient) -> None:
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


async def test_a_bad_decision_body_is_422(ff: Forgeflow, http: httpx.AsyncClient) -> None:
    """A decision outside approve/reject/escalate, or data that is not an object, is 422."""
    hook = await waiting_hook(ff, http)
    for body in ({"decision": "maybe"}, {"decision": "approve", "data": [1]}, {}, [1]):
        response = await http.post(f"/hooks/{hook.hook_id}", json=body)
        assert response.status_code == 422, body
    record = await ff.status(hook.run_id)
    assert record.hooks[0].status == "active"  # nothing was consumed


async def test_a_link_takes_the_decision_with_the_other_query_parameters_as_data(
    ff: Forgeflow, http: httpx.AsyncClient
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
    ff: Forgeflow, http: httpx.AsyncClient
) -> None:
    """A bare hook link (or a HEAD request) shows the choices and takes no decision."""
    hook = await waiting_hook(ff, http, "<script>alert(1)</script>")
    response = await http.get(f"/hooks/{hook.hook_id}")
    assert response.status_code == 200
    for decision in ("approve", "reject", "escalate"):
        assert f'href="?decision={decision}"' in response.text
    # What is being approved: the hook's metadata, escaped like everything else.
    assert "<dt>title</dt><dd>&lt;script&gt;alert(1)&lt;/script&gt;</dd>" in response.text
    assert "<script>" not in response.text
    assert "<dt>Expires</dt>" in response.text
    assert response.headers["referrer-policy"] == "no-referrer"
    scanned = await http.head(f"/hooks/{hook.hook_id}", params={"decision": "approve"})
    assert scanned.status_code == 200  # a link checker's HEAD takes no decision
    odd = await http.get(f"/hooks/{hook.hook_id}", params={"decision": "perhaps"})
    assert odd.status_code == 422
    assert (await ff.status(hook.run_id)).hooks[0].status == "active"


async def test_fifty_concurrent_decisions_on_one_hook_have_exactly_one_winner(
    ff: Forgeflow, http: httpx.AsyncClient
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


async def test_an_event_resumes_the_runs_whose_filter_it_matches(
    ff: Forgeflow, http: httpx.AsyncClient
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
