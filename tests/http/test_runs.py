"""Starting, listing, inspecting and cancelling runs over HTTP."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from forgeflow import Forgeflow, WorkflowCancelled

from .helpers import cursor_of, start
from .server import LiveServer, until_status


@pytest.fixture
def ff(shared_ff: Forgeflow) -> Forgeflow:
    """This module's tests only look at their own runs: they share one database."""
    return shared_ff


@pytest.fixture
def http(shared_http: httpx.AsyncClient) -> httpx.AsyncClient:
    """A client of the shared server."""
    return shared_http


async def test_start_answers_202_with_the_run_id_and_a_worker_completes_it(
    ff: Forgeflow, http: httpx.AsyncClient
) -> None:
    """POST /workflows/{name}/start writes a run and answers 202 {"run_id", "status"}."""
    response = await http.post("/workflows/double/start", json={"input": 21, "version": 1})
    assert response.status_code == 202
    body = response.json()
    assert body == {"run_id": body["run_id"], "status": "created"}
    assert await ff.result(body["run_id"], timeout=30) == 42


async def test_start_uses_the_latest_version_unless_one_is_given(
    ff: Forgeflow, http: httpx.AsyncClient
) -> None:
    """Without "version" the latest version runs; "version": 1 pins the older one."""
    latest = await start(http, "double", 5)
    pinned = (await http.post("/workflows/double/start", json={"input": 5, "version": 1})).json()
    assert await ff.result(latest, timeout=30) == 15
    assert await ff.result(pinned["run_id"], timeout=30) == 10


async def test_the_same_idempotency_key_returns_the_same_run(http: httpx.AsyncClient) -> None:
    """Two starts with one Idempotency-Key header give one run id."""
    headers = {"Idempotency-Key": "order-17"}
    first = await start(http, "double", 1, headers=headers)
    second = await start(http, "double", 1, headers=headers)
    other = await start(http, "double", 1, headers={"Idempotency-Key": "order-18"})
    assert first == second != other


async def test_an_idempotency_key_used_by_another_workflow_is_409(
    http: httpx.AsyncClient,
) -> None:
    """Reusing a run's Idempotency-Key to start another workflow answers 409, not 202."""
    headers = {"Idempotency-Key": "invoice-99"}
    first = await start(http, "double", 1, headers=headers)
    response = await http.post(
        "/workflows/payment/start", json={"input": "order-99"}, headers=headers
    )
    assert response.status_code == 409, response.text
    assert response.json()["error"] == "idempotency_conflict"
    assert "invoice-99" in response.json()["detail"]
    assert await start(http, "double", 1, headers=headers) == first


async def test_an_unknown_workflow_is_422(http: httpx.AsyncClient) -> None:
    """Starting a workflow nobody registered answers 422 workflow_not_found."""
    response = await http.post("/workflows/nope/start", json={"input": 1})
    assert response.status_code == 422
    assert response.json()["error"] == "workflow_not_found"
    unknown_version = await http.post("/workflows/double/start", json={"input": 1, "version": 9})
    assert unknown_version.status_code == 422


async def test_invalid_input_is_422_naming_each_field(http: httpx.AsyncClient) -> None:
    """An input that does not match the workflow's type is 422 listing the bad fields."""
    response = await http.post("/workflows/approval/start", json={"input": {"pages": "many"}})
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "invalid_input"
    fields = {e["field"] for e in body["detail"]["errors"]}
    assert fields == {"input.title", "input.pages"}


async def test_malformed_json_is_400(http: httpx.AsyncClient) -> None:
    """A body that is not JSON answers 400 malformed_json."""
    response = await http.post(
        "/workflows/double/start",
        content=b'{"input": 1',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"] == "malformed_json"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([1, 2], None),
        ({"input": 1, "version": "one"}, "version"),
        ({"input": 1, "version": True}, "version"),
        ({"input": 1, "version": 0}, "version"),
        ({"inputs": 1}, "inputs"),
    ],
)
async def test_wrong_body_types_are_422(
    http: httpx.AsyncClient, body: Any, field: str | None
) -> None:
    """A body of the wrong shape answers 422, naming the offending field."""
    response = await http.post("/workflows/double/start", json=body)
    assert response.status_code == 422
    if field is not None:
        assert field in {e["field"] for e in response.json()["detail"]["errors"]}


@pytest.mark.parametrize(
    "raw",
    [
        b'{"input": {"title": "a\\u0000b"}}',
        b'{"input": {"title": "\\ud800"}}',
        b'{"input": {"title": "x", "pages": NaN}}',
        b'{"input": {"title": "x", "pages": 1e400}}',
        b'{"input": {"title": "x", "extra": ' + b"[" * 150 + b"]" * 150 + b"}}",
        b'{"input": {"title": "x", "extra": ' + b"[" * 5000 + b"]" * 5000 + b"}}",
        b'{"input": 1' + b"0" * 5000 + b"}",
        b"\xff\xfe\x00",
    ],
)
async def test_input_the_database_cannot_store_is_refused_never_500(
    http: httpx.AsyncClient, raw: bytes
) -> None:
    """NUL characters, lone surrogates, non-finite numbers and deep nesting are 4xx."""
    response = await http.post("/workflows/approval/start", content=raw)
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["error"] in {"malformed_json", "invalid_request", "invalid_input"}


async def test_a_bug_in_user_code_answers_a_json_500(http: httpx.AsyncClient) -> None:
    """A genuine internal error is a JSON 500 without a traceback, not a crash."""
    response = await http.post("/workflows/fragile/start", json={"input": {"value": 1}})
    assert response.status_code == 500
    assert response.json() == {
        "error": "internal_error",
        "detail": "an unexpected error occurred; see the server log",
    }


async def test_get_run_returns_the_record_with_steps_and_hooks(
    ff: Forgeflow, shared_server: LiveServer, http: httpx.AsyncClient
) -> None:
    """GET /runs/{id} has every field of the contract, the steps and the hooks."""
    run_id = await start(http, "approval", {"title": "Q3 report"})
    await until_status(ff, run_id, "waiting")
    response = await http.get(f"/runs/{run_id}")
    assert response.status_code == 200
    run = response.json()
    for field in (
        "run_id",
        "workflow",
        "version",
        "status",
        "current_step",
        "input",
        "output",
        "error",
        "created_at",
        "started_at",
        "completed_at",
        "steps",
        "hooks",
    ):
        assert field in run
    assert (run["run_id"], run["workflow"], run["version"]) == (run_id, "approval", 1)
    assert run["status"] == "waiting"
    assert run["input"] == {"title": "Q3 report", "pages": 1}
    assert [s["name"] for s in run["steps"]] == ["hook:review"]
    [hook] = run["hooks"]
    assert hook["status"] == "active"
    assert hook["url"] == f"{shared_server.url}/hooks/{hook['hook_id']}"
    assert run["wait"]["kind"] == "hook"


async def test_an_unknown_run_is_404_everywhere(http: httpx.AsyncClient) -> None:
    """Reading, cancelling or streaming a run that does not exist answers 404."""
    for method, path in [
        ("GET", "/runs/missing"),
        ("POST", "/runs/missing/cancel"),
        ("GET", "/runs/missing/events"),
    ]:
        response = await http.request(method, path)
        assert response.status_code == 404, path
        assert response.json()["error"] == "run_not_found"


@pytest.mark.parametrize(
    ("params", "status", "error"),
    [
        ({"status": "sleeping"}, 422, "invalid_request"),
        ({"limit": "0"}, 422, "invalid_request"),
        ({"limit": "ten"}, 422, "invalid_request"),
        ({"cursor": "not-a-cursor"}, 400, "invalid_cursor"),
        ({"cursor": "WyJ4IiwgMV0"}, 400, "invalid_cursor"),
        # A timestamp Python parses but PostgreSQL cannot hold once moved to UTC.
        ({"cursor": cursor_of(["0001-01-01T00:00:00+14:00", "run"])}, 400, "invalid_cursor"),
        ({"cursor": cursor_of(["9999-12-31T23:59:59-14:00", "run"])}, 400, "invalid_cursor"),
        # Nesting deep enough to exhaust the JSON parser's recursion (the URL stays under 64 KiB).
        ({"cursor": cursor_of(None, raw=b"[" * 40_000)}, 400, "invalid_cursor"),
        ({"cursor": "A" * 60_000}, 400, "invalid_cursor"),
    ],
)
async def test_bad_list_parameters_are_client_errors(
    http: httpx.AsyncClient, params: dict[str, str], status: int, error: str
) -> None:
    """An unknown status, a bad limit or a forged cursor is a 4xx naming the problem, never 5xx."""
    response = await http.get("/runs", params=params)
    assert response.status_code == status
    assert response.json()["error"] == error


async def test_cancel_compensates_a_waiting_run(ff: Forgeflow, http: httpx.AsyncClient) -> None:
    """POST /runs/{id}/cancel answers 202 and the run is compensated in reverse."""
    run_id = await start(http, "saga", "seat 12A")
    await until_status(ff, run_id, "waiting")
    response = await http.post(f"/runs/{run_id}/cancel")
    assert response.status_code == 202
    assert response.json()["run_id"] == run_id
    with pytest.raises(WorkflowCancelled):
        await ff.result(run_id, timeout=30)
    run = (await http.get(f"/runs/{run_id}")).json()
    assert (run["status"], run["end_reason"]) == ("compensated", "cancel")
    reserve = next(s for s in run["steps"] if s["name"] == "reserve")
    assert reserve["status"] == "compensated"
    again = await http.post(f"/runs/{run_id}/cancel")
    assert again.status_code == 202  # cancelling a cancelled run is harmless


async def test_cancelling_a_completed_run_is_409(ff: Forgeflow, http: httpx.AsyncClient) -> None:
    """A run that already completed cannot be cancelled: 409 run_finished."""
    run_id = await start(http, "double", 2)
    await ff.result(run_id, timeout=30)
    response = await http.post(f"/runs/{run_id}/cancel")
    assert response.status_code == 409
    assert response.json()["error"] == "run_finished"


async def test_unknown_paths_and_methods_answer_json(http: httpx.AsyncClient) -> None:
    """Routing errors are JSON like every other error."""
    missing = await http.get("/nowhere")
    assert (missing.status_code, missing.json()["error"]) == (404, "not_found")
    wrong = await http.delete("/runs")
    assert (wrong.status_code, wrong.json()["error"]) == (405, "method_not_allowed")
