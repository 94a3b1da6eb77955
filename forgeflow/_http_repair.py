"""The HTTP API's repair endpoints: restart, fork, bulk cancel and restart, gc.

All are admin calls. A refused fork (``ForkError``) answers 409 ``fork_refused`` with the
step it names: the request is well formed, the run's history does not allow it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Protocol

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictBool, StrictInt
from pydantic import ValidationError as PydanticValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ._client import Forgeflow
from ._durations import format_duration
from ._http_requests import ApiError, check_text, invalid
from ._models import WorkflowStatus
from ._repair import BULK_LIMIT

__all__ = ["repair_routes"]

Handler = Callable[[Request], Awaitable[Response]]
_Text = Field(min_length=1, max_length=1000)


class _Api(Protocol):
    client: Forgeflow

    def require_admin(self, request: Request, *, query: bool = False) -> None: ...

    async def _object_body(self, request: Request, what: str) -> dict[str, Any]: ...


class RestartBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: StrictInt | None = Field(default=None, ge=1, le=2**31 - 1)


class ForkBody(RestartBody):
    from_step: str = _Text


class BulkBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workflow: str | None = Field(default=None, min_length=1, max_length=1000)
    status: WorkflowStatus | None = None
    since: AwareDatetime | None = None
    limit: StrictInt = Field(default=1000, ge=1, le=BULK_LIMIT)
    dry_run: StrictBool = False
    all: StrictBool = False
    version: StrictInt | None = Field(default=None, ge=1, le=2**31 - 1)


class GcBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    older_than: str = Field(min_length=1, max_length=100)
    workflow: str | None = Field(default=None, min_length=1, max_length=1000)
    status: WorkflowStatus | None = None
    dry_run: StrictBool = False


def _parse(model: type[BaseModel], body: dict[str, Any]) -> Any:
    try:
        parsed = model.model_validate(body)
    except PydanticValidationError as exc:
        raise invalid(exc) from None
    for value in parsed.model_dump().values():
        if isinstance(value, str):
            check_text(value, "body")
    return parsed


def _refused(exc: ValueError) -> ApiError:
    return ApiError(422, "invalid_request", str(exc))


def repair_routes(api: _Api, endpoint: Callable[[Handler], Handler]) -> list[Route]:
    """The routes, each wrapped by ``endpoint``; mount them before ``/runs/{run_id}/…``."""
    client = api.client

    async def restart(request: Request) -> Response:
        api.require_admin(request)
        run_id = check_text(str(request.path_params["run_id"]), "run_id")
        body = _parse(RestartBody, await api._object_body(request, '{"version": null}'))
        new_id = await client.restart(run_id, version=body.version)
        return JSONResponse({"run_id": new_id, "restarted_from": run_id}, status_code=202)

    async def fork(request: Request) -> Response:
        api.require_admin(request)
        run_id = check_text(str(request.path_params["run_id"]), "run_id")
        raw = await api._object_body(request, '{"from_step": "...", "version": null}')
        body = _parse(ForkBody, raw)
        new_id = await client.fork(run_id, from_step=body.from_step, version=body.version)
        answer = {"run_id": new_id, "forked_from": run_id, "forked_from_step": body.from_step}
        return JSONResponse(answer, status_code=202)

    async def bulk(request: Request, action: str) -> Response:
        api.require_admin(request)
        body = _parse(BulkBody, await api._object_body(request, "the filters"))
        since: datetime | None = body.since
        options: dict[str, Any] = {
            "workflow": body.workflow,
            "status": body.status,
            "since": since,
            "limit": body.limit,
            "dry_run": body.dry_run,
            "all": body.all,
        }
        try:
            if action == "cancel":
                if body.version is not None:
                    raise ValueError("version: only a restart takes a version")
                result = await client.cancel_many(**options)
            else:
                result = await client.restart_many(version=body.version, **options)
        except ValueError as exc:
            raise _refused(exc) from None
        return JSONResponse(result.model_dump(mode="json"))

    async def cancel_many(request: Request) -> Response:
        return await bulk(request, "cancel")

    async def restart_many(request: Request) -> Response:
        return await bulk(request, "restart")

    async def gc(request: Request) -> Response:
        api.require_admin(request)
        body = _parse(GcBody, await api._object_body(request, '{"older_than": "30d"}'))
        options: dict[str, Any] = {"workflow": body.workflow, "status": body.status}
        try:
            matched = await client.purge(body.older_than, dry_run=True, **options)
            deleted = 0 if body.dry_run else await client.purge(body.older_than, **options)
        except ValueError as exc:
            raise _refused(exc) from None
        return JSONResponse({"matched": matched, "deleted": deleted})

    async def retention(request: Request) -> Response:
        api.require_admin(request)
        value = client.settings.retention
        return JSONResponse({"retention": None if value is None else format_duration(value)})

    e = endpoint
    return [
        Route("/retention", e(retention), methods=["GET"]),
        Route("/runs/bulk/cancel", e(cancel_many), methods=["POST"]),
        Route("/runs/bulk/restart", e(restart_many), methods=["POST"]),
        Route("/runs/{run_id}/restart", e(restart), methods=["POST"]),
        Route("/runs/{run_id}/fork", e(fork), methods=["POST"]),
        Route("/gc", e(gc), methods=["POST"]),
    ]
