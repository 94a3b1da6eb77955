"""Signatures on trigger calls, the admin token, and hook links."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from forgeflow import Forgeflow
from forgeflow.http import SIGNATURE_HEADER, sign

from .helpers import TOKEN, signed
from .server import until_status


@pytest.fixture
def ff(shared_ff: Forgeflow) -> Forgeflow:
    """This module's tests only look at their own runs: they share one database."""
    return shared_ff


@pytest.fixture
def http(shared_guarded_http: httpx.AsyncClient) -> httpx.AsyncClient:
    """A client (sending no credentials by itself) of the shared server with both guards."""
    return shared_guarded_http


async def test_a_signed_start_is_accepted(ff: Forgeflow, http: httpx.AsyncClient) -> None:
    """With a secret, a start carrying a valid signature is accepted."""
    response = await http.post("/workflows/double/start", **signed({"input": 4, "version": 1}))
    assert response.status_code == 202
    assert await ff.result(response.json()["run_id"], timeout=30) == 8


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda body: {"json": body}, "signature_required"),
        (lambda body: signed(body, secret="wrong"), "signature_invalid"),
        (lambda body: signed(body, at=time.time() - 301), "signature_expired"),
        (lambda body: signed(body, at=time.time() + 301), "signature_expired"),
        (
            lambda body: {**signed({"input": 999}), "content": json.dumps(body).encode()},
            "signature_invalid",
        ),
        (lambda body: {"json": body, "headers": {SIGNATURE_HEADER: "v1=abc"}}, "signature_invalid"),
        (
            lambda body: {"json": body, "headers": {SIGNATURE_HEADER: "t=now,v1=abc"}},
            "signature_invalid",
        ),
        (
            lambda body: {
                "json": body,
                "headers": {SIGNATURE_HEADER: f"t={int(time.time())},v1=\u00e9".encode("latin-1")},
            },
            "signature_invalid",
        ),
    ],
)
async def test_a_missing_wrong_or_stale_signature_is_401(
    http: httpx.AsyncClient, make: Any, error: str
) -> None:
    """Unsigned, mis-signed, tampered or out-of-window trigger calls are refused with 401."""
    admin = {"Authorization": f"Bearer {TOKEN}"}
    query: dict[str, str | int] = {"workflow": "double", "limit": 500}
    before = (await http.get("/runs", params=query, headers=admin)).json()["runs"]
    response = await http.post("/workflows/double/start", **make({"input": 1}))
    assert response.status_code == 401
    assert response.json()["error"] == error
    after = (await http.get("/runs", params=query, headers=admin)).json()["runs"]
    assert after == before  # nothing was started


async def test_hook_and_event_posts_need_a_signature_but_links_do_not(
    ff: Forgeflow, http: httpx.AsyncClient
) -> None:
    """POST /hooks and POST /events are signed calls; a GET link's hook id is its credential."""
    start = await http.post("/workflows/approval/start", **signed({"input": {"title": "t"}}))
    record = await until_status(ff, start.json()["run_id"], "waiting")
    hook_id = record.hooks[0].hook_id

    unsigned = await http.post(f"/hooks/{hook_id}", json={"decision": "approve"})
    assert unsigned.status_code == 401
    event = await http.post("/events/anything", json={})
    assert event.status_code == 401
    signed_event = await http.post("/events/anything", **signed({}))
    assert signed_event.json() == {"resumed": 0}

    link = await http.get(f"/hooks/{hook_id}", params={"decision": "approve"})
    assert link.status_code == 200
    assert (await ff.result(record.run_id, timeout=30))["outcome"] == "approve"


async def test_a_signed_hook_post_is_accepted(ff: Forgeflow, http: httpx.AsyncClient) -> None:
    """A decision POST with a valid signature resumes the run."""
    start = await http.post("/workflows/approval/start", **signed({"input": {"title": "t"}}))
    record = await until_status(ff, start.json()["run_id"], "waiting")
    response = await http.post(
        f"/hooks/{record.hooks[0].hook_id}", **signed({"decision": "reject"})
    )
    assert response.status_code == 200
    assert (await ff.result(record.run_id, timeout=30))["outcome"] == "reject"


async def test_admin_endpoints_need_the_bearer_token(
    ff: Forgeflow, http: httpx.AsyncClient
) -> None:
    """Listing, reading, cancelling and streaming runs need Authorization: Bearer <token>."""
    start = await http.post("/workflows/approval/start", **signed({"input": {"title": "t"}}))
    run_id = start.json()["run_id"]
    await until_status(ff, run_id, "waiting")
    calls = [
        ("GET", "/runs"),
        ("GET", f"/runs/{run_id}"),
        ("GET", "/hooks"),
        ("GET", f"/runs/{run_id}/events"),
        ("GET", "/runs/changes"),
        ("POST", f"/runs/{run_id}/cancel"),
    ]
    for method, path in calls:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
            response = await http.request(method, path, headers=headers)
            assert response.status_code == 401, (method, path, headers)
            assert response.json()["error"] == "unauthorized"
            assert response.headers["www-authenticate"] == "Bearer"
    good = {"Authorization": f"Bearer {TOKEN}"}
    assert (await http.get("/runs", headers=good)).status_code == 200
    assert (await http.get(f"/runs/{run_id}", headers=good)).json()["status"] == "waiting"
    hooks = (await http.get("/hooks", headers=good)).json()["hooks"]
    assert run_id in {h["run_id"] for h in hooks}
    query = await http.get("/runs", params={"access_token": TOKEN})
    assert query.status_code == 401  # a token in the URL is only for event streams
    cancel = await http.post(f"/runs/{run_id}/cancel", headers=good)
    assert cancel.status_code == 202


async def test_event_streams_accept_the_token_as_a_query_parameter(
    ff: Forgeflow, http: httpx.AsyncClient
) -> None:
    """Browsers cannot set headers on EventSource: ?access_token= opens the streams."""
    start = await http.post("/workflows/double/start", **signed({"input": 1}))
    run_id = start.json()["run_id"]
    await ff.result(run_id, timeout=30)
    async with http.stream(
        "GET", f"/runs/{run_id}/events", params={"access_token": TOKEN}
    ) as response:
        assert response.status_code == 200
        text = "".join([chunk async for chunk in response.aiter_text()])
    assert "event: end" in text


async def test_the_admin_token_stands_in_for_a_signature(
    ff: Forgeflow, http: httpx.AsyncClient
) -> None:
    """An operator with the admin token (the dashboard) may start runs and decide hooks."""
    good = {"Authorization": f"Bearer {TOKEN}"}
    start = await http.post(
        "/workflows/approval/start", json={"input": {"title": "t"}}, headers=good
    )
    assert start.status_code == 202
    record = await until_status(ff, start.json()["run_id"], "waiting")
    decided = await http.post(
        f"/hooks/{record.hooks[0].hook_id}", json={"decision": "approve"}, headers=good
    )
    assert decided.status_code == 200


async def test_the_dashboard_page_itself_is_public(http: httpx.AsyncClient) -> None:
    """GET / serves the page (its data needs the token), with a strict CSP."""
    page = await http.get("/")
    assert page.status_code == 200
    assert "default-src 'self'" in page.headers["content-security-policy"]


def test_sign_is_an_hmac_of_the_timestamp_and_the_body() -> None:
    """sign() gives t=<time>,v1=<hex HMAC-SHA256 of "<t>.<body>">, as documented."""
    import hashlib
    import hmac

    expected = hmac.new(b"k", b"1700000000.{}", hashlib.sha256).hexdigest()
    assert sign("k", b"{}", 1700000000) == f"t=1700000000,v1={expected}"


@pytest.mark.parametrize("timestamp", ["9" * 400, "9" * 5000, "-" + "9" * 400, "1e9", " 17"])
async def test_a_signature_timestamp_out_of_range_is_401_on_every_signed_post(
    ff: Forgeflow, http: httpx.AsyncClient, timestamp: str
) -> None:
    """A signature whose t= no clock can hold is an invalid signature (401), never a 500."""
    start = await http.post("/workflows/approval/start", **signed({"input": {"title": "t"}}))
    record = await until_status(ff, start.json()["run_id"], "waiting")
    header = {SIGNATURE_HEADER: f"t={timestamp},v1=00"}
    for path, body in [
        ("/workflows/double/start", {"input": 1}),
        (f"/hooks/{record.hooks[0].hook_id}", {"decision": "approve"}),
        ("/events/anything", {}),
    ]:
        response = await http.post(path, json=body, headers=header)
        assert response.status_code == 401, (path, response.text)
        assert response.json()["error"] == "signature_invalid"
    assert (await ff.status(record.run_id)).hooks[0].status == "active"
