"""The schedule endpoints of the HTTP app: ``GET /schedules`` and pause/resume/trigger."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ._http_requests import check_text

if TYPE_CHECKING:
    from ._client import Forgeflow

__all__ = ["schedule_routes"]

Handler = Callable[[Request], Awaitable[Response]]


def schedule_routes(
    client: Forgeflow,
    require_admin: Callable[[Request], None],
    endpoint: Callable[[Handler], Handler],
) -> list[Route]:
    """The routes; each needs the admin token when one is configured."""

    async def list_schedules(request: Request) -> Response:
        require_admin(request)
        schedules = await client.list_schedules()
        return JSONResponse(
            {"schedules": [s.model_dump(mode="json") for s in schedules], "count": len(schedules)}
        )

    def action(name: str) -> Handler:
        async def handler(request: Request) -> Response:
            require_admin(request)
            schedule = check_text(str(request.path_params["name"]), "name")
            # An unknown name raises ScheduleNotFound: 404 (``http.classify``).
            if name == "trigger":
                run_id = await client.trigger_schedule(schedule)
                body: dict[str, Any] = {"name": schedule, "run_id": run_id}
                return JSONResponse(body, status_code=202)
            record = await getattr(client, f"{name}_schedule")(schedule)
            return JSONResponse(record.model_dump(mode="json"))

        return handler

    return [
        Route("/schedules", endpoint(list_schedules), methods=["GET"]),
        *(
            Route(f"/schedules/{{name}}/{name}", endpoint(action(name)), methods=["POST"])
            for name in ("pause", "resume", "trigger")
        ),
    ]
