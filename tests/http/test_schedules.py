"""Schedules over HTTP: list, pause, resume and trigger; unknown names are 404."""

from __future__ import annotations

import httpx

from forgeflow import Forgeflow, ScheduleNotFound
from forgeflow.http import classify

from .server import until_status
from .workflows import Workflows


async def test_schedules_are_listed_paused_resumed_and_triggered(
    ff: Forgeflow, workflows: Workflows, http: httpx.AsyncClient
) -> None:
    """GET /schedules lists; POST pause/resume flip paused; trigger answers 202 with a run."""
    await ff.schedule("doubler", workflows.double, cron="0 3 * * *", input=21)
    listed = (await http.get("/schedules")).json()
    assert listed["count"] == 1
    [schedule] = listed["schedules"]
    assert (schedule["name"], schedule["workflow"], schedule["paused"]) == (
        "doubler",
        "double",
        False,
    )
    assert schedule["next_fire_at"].endswith(("03:00:00Z", "03:00:00+00:00"))

    paused = await http.post("/schedules/doubler/pause")
    assert (paused.status_code, paused.json()["paused"]) == (200, True)
    resumed = await http.post("/schedules/doubler/resume")
    assert (resumed.status_code, resumed.json()["paused"]) == (200, False)

    triggered = await http.post("/schedules/doubler/trigger")
    assert triggered.status_code == 202
    run_id = triggered.json()["run_id"]
    record = await until_status(ff, run_id, "completed")
    assert (record.output, record.schedule) == (63, "doubler")  # the latest version, v2
    listed = (await http.get("/schedules")).json()
    assert listed["schedules"][0]["last_run_id"] == run_id
    assert listed["schedules"][0]["last_run_status"] == "completed"


async def test_unknown_schedules_answer_404(http: httpx.AsyncClient) -> None:
    """pause, resume and trigger of a schedule that does not exist answer 404 JSON."""
    for action in ("pause", "resume", "trigger"):
        answer = await http.post(f"/schedules/nope/{action}")
        assert answer.status_code == 404
        assert answer.json()["error"] == "schedule_not_found"


def test_schedule_not_found_answers_404_from_any_route() -> None:
    """The app's error mapping, shared by every route, makes ScheduleNotFound a 404.

    Regression: only the schedule routes caught it; raised anywhere else (a schedule
    deleted while another route used it) it became a 500.
    """
    answer = classify(ScheduleNotFound("no schedule named 'nightly'"))
    assert (answer.status, answer.error) == (404, "schedule_not_found")
    assert answer.detail == "no schedule named 'nightly'"


async def test_the_dashboard_has_a_schedules_page(http: httpx.AsyncClient) -> None:
    """The dashboard links a Schedules page whose buttons call pause, resume and trigger."""
    index = (await http.get("/")).text
    assert 'href="#/schedules"' in index
    script = (await http.get("/_dashboard/app.js")).text
    assert "showSchedules" in script and "schedules/${name}/${action}" in script
