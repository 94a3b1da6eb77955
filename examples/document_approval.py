"""Document approval: an email with approve/reject links, a 72 h wait, a simulated click.

    python examples/document_approval.py            # a simulated click, done in seconds
    python examples/document_approval.py --serve    # click the link yourself (needs [http])

Each run reserves a publication slot, creates a resume hook that expires in 72 hours,
and emails the approver two links built from `hook.url_for(...)`. Then `hook.wait()`
suspends the run: it is `waiting`, holds no worker and would survive a restart for the
whole 72 hours. A simulated click on a link calls `client.resume_hook(...)` (in a web
app, `forgeflow.http` answers the link itself) and the run continues where it stopped:
the approved document is published, the rejected one has its slot released by the
saga's compensation. Had nobody clicked within 72 hours, the run would have continued
with `on_timeout="reject"`. Runs on the embedded PostgreSQL under ./.forgeflow/ unless
FORGEFLOW_DATABASE_URL is set.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from urllib.parse import parse_qs, urlsplit

import structlog
from pydantic import BaseModel

from forgeflow import (
    Forgeflow,
    Outcome,
    Registry,
    WorkflowContext,
    WorkflowFailed,
    WorkflowStatus,
    workflow,
)

registry = Registry()


class Document(BaseModel):
    id: str
    title: str
    approver: str


class Slot(BaseModel):
    id: str
    document_id: str


class Email(BaseModel):
    to: str
    subject: str
    approve_link: str
    reject_link: str


class Published(BaseModel):
    document_id: str
    url: str
    approved_by: str


class DocumentRejected(Exception):
    """The approver said no."""


# -- the outside world ----------------------------------------------------------------

outbox: list[Email] = []


async def reserve_slot(doc: Document) -> Slot:
    print(f"  [cms]   reserved a publication slot for {doc.title!r}")
    return Slot(id=f"slot_{doc.id}", document_id=doc.id)


async def release_slot(slot: Slot) -> None:
    print(f"  [cms]   UNDO: released {slot.id}")


async def send_approval_email(to: str, title: str, approve: str, reject: str) -> None:
    outbox.append(
        Email(to=to, subject=f"Please review {title!r}", approve_link=approve, reject_link=reject)
    )
    print(f"  [mail]  to {to}: Please review {title!r}")
    print(f"            Approve: {approve}")
    print(f"            Reject:  {reject}")


async def publish(doc: Document, approved_by: str) -> Published:
    url = f"https://docs.example.com/{doc.id}"
    print(f"  [cms]   published {doc.title!r} at {url}")
    return Published(document_id=doc.id, url=url, approved_by=approved_by)


# -- the workflow ---------------------------------------------------------------------


@workflow(version=1, timeout="7d", registry=registry)
async def document_approval(ctx: WorkflowContext, doc: Document) -> Published:
    slot = await ctx.step("reserve_slot", reserve_slot, doc).compensate(release_slot).run()
    hook = await ctx.hook(
        "approval",
        timeout="72h",
        on_timeout="reject",
        metadata={"document": doc.title, "approver": doc.approver, "slot": slot.id},
    )
    await ctx.step(
        "send_approval_email",
        send_approval_email,
        doc.approver,
        doc.title,
        hook.url_for("approve"),
        hook.url_for("reject"),
    ).run()
    decision = await hook.wait()
    who = decision.data.get("by", "nobody")
    if decision.outcome is not Outcome.APPROVE:
        why = "no answer within 72 h" if decision.timed_out else f"rejected by {who}"
        raise DocumentRejected(f"{doc.title!r}: {why}")
    return await ctx.step("publish", publish, doc, who).run()


# -- running it -----------------------------------------------------------------------


def configure_logging() -> None:
    """Engine events (run_started, run_suspended, run_resumed, ...) go to stderr."""
    level = os.environ.get("FORGEFLOW_LOG_LEVEL", "INFO").upper()
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="%H:%M:%S"),
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )


async def wait_for_status(ff: Forgeflow, run_id: str, status: WorkflowStatus) -> None:
    async for record in ff.watch(run_id, steps=False):
        if record.status is status:
            return
    raise SystemExit(f"run {run_id} ended before reaching {status.value}")


async def click(ff: Forgeflow, link: str, person: str) -> None:
    """What the browser would do: the hook id is in the path, the decision in the query."""
    url = urlsplit(link)
    hook_id = url.path.rsplit("/", 1)[-1]
    decision = parse_qs(url.query)["decision"][0]
    print(f"{person} clicks {decision!r}")
    await ff.resume_hook(hook_id, decision=decision, data={"by": person})


async def main() -> None:
    configure_logging()
    async with (
        Forgeflow.connect(registry=registry, base_url="https://approvals.example.com") as ff,
        ff.worker(concurrency=4, poll_interval="200ms"),
    ):
        report = Document(id="doc_q3", title="Q3 report", approver="dana@example.com")
        memo = Document(id="doc_pr", title="Press release", approver="erik@example.com")
        report_run = await ff.start(document_approval, report)
        memo_run = await ff.start(document_approval, memo)
        print("Two documents submitted; each run emails its approver, then waits.")
        await wait_for_status(ff, report_run, WorkflowStatus.WAITING)
        await wait_for_status(ff, memo_run, WorkflowStatus.WAITING)

        print("\nBoth runs are waiting (no worker is busy). Open approval hooks:")
        for hook in await ff.list_hooks(status="active", workflow=document_approval.name):
            hours = (hook.expires_at - hook.created_at).total_seconds() / 3600
            print(
                f"  {hook.metadata['document']:<14} expires in {hours:.0f} h "
                f"(is_expired={hook.is_expired}) id={hook.hook_id[:40]}..."
            )

        print("\nSimulating the approvers' clicks on the links in their emails:")
        report_mail = next(m for m in outbox if m.to == report.approver)
        memo_mail = next(m for m in outbox if m.to == memo.approver)
        await click(ff, report_mail.approve_link, report.approver)
        await click(ff, memo_mail.reject_link, memo.approver)

        published = await ff.result(report_run, timeout="30s")
        print(
            f"\n{report.title}: published at {published.url} (approved by {published.approved_by})"
        )
        try:
            await ff.result(memo_run, timeout="30s")
        except WorkflowFailed as exc:
            print(f"{memo.title}: {exc.status} ({exc.error.get('message')})")

        for run_id in (report_run, memo_run):
            record = await ff.status(run_id)
            steps = ", ".join(f"{s.name}={s.status.value}" for s in record.steps)
            print(f"  run {run_id[:8]} status={record.status.value}: {steps}")


async def serve(port: int) -> None:
    """Serve forgeflow.http with a worker: the links in the email work in a real browser."""
    import uvicorn

    from forgeflow.http import create_app

    configure_logging()
    base = f"http://127.0.0.1:{port}"
    async with (
        Forgeflow.connect(registry=registry, base_url=base) as ff,
        ff.worker(concurrency=4),
    ):
        config = uvicorn.Config(create_app(ff), host="127.0.0.1", port=port, log_level="warning")
        server = uvicorn.Server(config)
        serving = asyncio.create_task(server.serve())
        doc = Document(id="doc_live", title="Live demo", approver="you@example.com")
        run_id = await ff.start(document_approval, doc)
        print(f"Dashboard: {base}/   (the run waits up to 72 h for your click)")
        try:
            published = await ff.result(run_id)
            print(f"published at {published.url}")
        except WorkflowFailed as exc:
            print(f"{exc.status}: {exc.error.get('message')}")
        server.should_exit = True
        await serving


if __name__ == "__main__":
    if "--serve" in sys.argv:
        asyncio.run(serve(int(os.environ.get("PORT", "8000"))))
    else:
        asyncio.run(main())
