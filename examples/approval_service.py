"""Document approval served over HTTP: the approve link in the email can be clicked.

    forgeflow serve examples/approval_service.py

starts the HTTP API, the dashboard (http://127.0.0.1:8000/) and a worker in one process.
Then, from another shell (docs/http.md walks through it)::

    curl -X POST http://127.0.0.1:8000/workflows/approval/start \\
         -H 'Content-Type: application/json' \\
         -d '{"input": {"document": "q3-report.pdf", "approver": "ann@example.com"}}'
    # -> {"run_id": "…", "status": "created"}; the run sends its "email" (see the
    #    server's log) and waits: `forgeflow status <run_id>` says waiting
    curl 'http://127.0.0.1:8000/hooks/<hook_id>?decision=approve&comment=fine'
    forgeflow status <run_id>          # completed

The email is only logged here; the hook waits 72 hours before taking "reject" on its
own. The run survives a restart of the server while it waits.

    python examples/approval_service.py

plays the same scenario by itself: it serves the app on a free port, starts a run over
HTTP, follows the approve link from the hook list, and prints the outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import sys
import urllib.request
from collections.abc import AsyncGenerator
from typing import Any, cast

import structlog
from pydantic import BaseModel

from forgeflow import Forgeflow, Outcome, WorkflowContext, WorkflowStatus, workflow

log = structlog.get_logger("examples.approval_service")


class ApprovalRequest(BaseModel):
    """A document someone must approve."""

    document: str
    approver: str


class ApprovalResult(BaseModel):
    """What became of the request."""

    document: str
    outcome: Outcome
    comment: str | None = None
    timed_out: bool = False


def send_email(to: str, document: str, approve: str, reject: str) -> str:
    """Stand-in for a mail service: log the message with its two links."""
    log.info("approval_email", to=to, document=document, approve=approve, reject=reject)
    return f"sent to {to}"


def publish(document: str) -> str:
    """Stand-in for publishing the approved document."""
    log.info("document_published", document=document)
    return f"https://docs.example.com/{document}"


@workflow(version=1, timeout="7d", name="approval")
async def approval(ctx: WorkflowContext, request: ApprovalRequest) -> ApprovalResult:
    """Email the approver two links, wait up to 72 h for a click, publish if approved."""
    hook = await ctx.hook(
        "approval",
        timeout="72h",
        on_timeout="reject",
        metadata={"document": request.document, "approver": request.approver},
    )
    await ctx.step(
        "send_email",
        send_email,
        request.approver,
        request.document,
        hook.url_for("approve"),
        hook.url_for("reject"),
    ).run()
    decision = await hook.wait()
    if decision.approved:
        await ctx.step("publish", publish, request.document).run()
    comment = decision.data.get("comment")
    return ApprovalResult(
        document=request.document,
        outcome=decision.outcome,
        comment=comment if isinstance(comment, str) else None,
        timed_out=decision.timed_out,
    )


# -- the scenario, played by itself ---------------------------------------------------------


def _request(method: str, url: str, body: Any = None) -> tuple[int, str]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, response.read().decode()


async def _until(ff: Forgeflow, run_id: str, status: WorkflowStatus) -> None:
    watch = cast(AsyncGenerator[Any, None], ff.watch(run_id))
    async with contextlib.aclosing(watch) as records:
        async for record in records:
            if record.status is status:
                return


async def main() -> None:
    """Serve the app on a free port and walk through start, wait, click, completed."""
    import uvicorn

    from forgeflow.http import create_app

    # Only the story on stdout; forgeflow's own log (and the "email") at warning level.
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    async with Forgeflow.connect(base_url=base) as ff, ff.worker(concurrency=4):
        server = uvicorn.Server(uvicorn.Config(create_app(ff), lifespan="off", log_level="warning"))
        # Listening now queues the first requests until the server accepts them.
        sock.listen(16)
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        print(f"serving {base}/ with a worker")

        request = {"input": {"document": "q3-report.pdf", "approver": "ann@example.com"}}
        code, text = await asyncio.to_thread(
            _request, "POST", f"{base}/workflows/approval/start", request
        )
        run_id = json.loads(text)["run_id"]
        print(f"POST /workflows/approval/start -> {code} {text}")
        await _until(ff, run_id, WorkflowStatus.WAITING)
        print(f"run {run_id} is waiting for the approver")

        _, text = await asyncio.to_thread(_request, "GET", f"{base}/hooks?status=active")
        hook = next(h for h in json.loads(text)["hooks"] if h["run_id"] == run_id)
        code, page = await asyncio.to_thread(
            _request, "GET", f"{hook['url']}?decision=approve&comment=looks+good"
        )
        print(
            f"GET /hooks/<id>?decision=approve -> {code}: "
            f"{'Thank you' if 'Thank you' in page else page}"
        )

        result = await ff.result(run_id, timeout=30)
        record = await ff.status(run_id)
        print(
            f"status: {record.status.value}, outcome: {result.outcome.value}, "
            f"comment: {result.comment!r}"
        )
        server.should_exit = True
        await serving


if __name__ == "__main__":
    asyncio.run(main())
