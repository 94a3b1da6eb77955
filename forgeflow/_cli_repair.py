"""The CLI's repair commands: restart, fork, bulk cancel and restart, gc.

``forgeflow.cli`` registers them through :func:`add_repair_commands`, handing over how to
connect and how to report a usage error, so that this module does not import the CLI.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any

from ._client import Forgeflow
from ._dashboard.terminal import dump, out
from ._durations import parse_duration
from ._models import BulkResult, WorkflowStatus
from ._repair import BULK_LIMIT

__all__ = ["add_repair_commands"]

Connect = Callable[[argparse.Namespace], AbstractAsyncContextManager[Forgeflow]]
Handler = Callable[[argparse.Namespace], Awaitable[int]]


def _since(text: str) -> datetime | str:
    """An ISO 8601 time with a zone, or a duration meaning that long ago."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        try:
            parse_duration(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected an ISO time such as 2025-01-31T12:00:00+00:00 or a duration "
                f"such as 6h, got {text!r}"
            ) from None
        return text
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no time zone (add +00:00 or Z)")
    return moment


def _duration(text: str) -> str:
    try:
        parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 1 <= value <= BULK_LIMIT:
        raise argparse.ArgumentTypeError(f"must be between 1 and {BULK_LIMIT}, got {value}")
    return value


def _filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workflow", metavar="NAME", help="only runs of this workflow")
    p.add_argument("--status", choices=[s.value for s in WorkflowStatus], help="only this status")
    p.add_argument("--since", type=_since, metavar="TIME", help="created at or after (or 6h ago)")
    p.add_argument(
        "--limit",
        type=_limit,
        default=1000,
        help=f"act on at most N runs (default 1000, max {BULK_LIMIT})",
    )
    p.add_argument("--dry-run", action="store_true", help="only say how many runs match")
    p.add_argument("--yes", action="store_true", help="confirm a filter that matches every run")


def _report(args: argparse.Namespace, verb: str, result: BulkResult) -> None:
    if args.json:
        dump(result.model_dump(mode="json"))
        return
    if result.dry_run:
        out(f"{result.matched} runs match; would {verb} {len(result.run_ids)} (dry run)")
        return
    out(f"{result.matched} runs matched; {result.acted} {verb}ed")
    for old, new in zip(result.run_ids, result.new_run_ids, strict=False):
        out(f"{old} -> {new}")


def add_repair_commands(
    command: Callable[[str, str], argparse.ArgumentParser],
    connect: Connect,
    usage_error: type[Exception],
    cancel_one: Handler,
) -> None:
    """Register restart, fork, gc and the bulk form of cancel on the CLI's parser."""

    def bulk(args: argparse.Namespace) -> dict[str, Any]:
        unfiltered = args.workflow is None and args.status is None and args.since is None
        if unfiltered and not args.yes and not args.dry_run:
            raise usage_error(
                "no --workflow, --status or --since: that matches every run; "
                "add --yes to mean it (or --dry-run to count them)"
            )
        return {
            "workflow": args.workflow,
            "status": args.status,
            "since": args.since,
            "limit": args.limit,
            "dry_run": args.dry_run,
            "all": unfiltered,
        }

    async def cmd_cancel(args: argparse.Namespace) -> int:
        if args.run is not None:
            return await cancel_one(args)
        async with connect(args) as ff:
            result = await ff.cancel_many(**bulk(args))
        _report(args, "cancel", result)
        return 0

    async def cmd_restart(args: argparse.Namespace) -> int:
        async with connect(args) as ff:
            if args.run is not None:
                new_id = await ff.restart(args.run, version=args.version)
                if args.json:
                    dump({"run_id": new_id, "restarted_from": args.run})
                else:
                    out(new_id)
                return 0
            result = await ff.restart_many(version=args.version, **bulk(args))
        _report(args, "restart", result)
        return 0

    async def cmd_fork(args: argparse.Namespace) -> int:
        async with connect(args) as ff:
            new_id = await ff.fork(args.run, from_step=args.from_step, version=args.version)
        if args.json:
            dump({"run_id": new_id, "forked_from": args.run, "forked_from_step": args.from_step})
        else:
            out(new_id)
        return 0

    async def cmd_gc(args: argparse.Namespace) -> int:
        async with connect(args) as ff:
            options = {"workflow": args.workflow, "status": args.status}
            matched = await ff.purge(args.older_than, dry_run=True, **options)
            deleted = 0 if args.dry_run else await ff.purge(args.older_than, **options)
        if args.json:
            dump({"matched": matched, "deleted": deleted})
        elif args.dry_run:
            out(f"{matched} finished runs ended more than {args.older_than} ago (dry run)")
        else:
            out(f"{deleted} runs deleted ({matched} matched)")
        return 0

    version_help = "run on this version of the workflow (default: the latest)"
    p = command("cancel", "cancel a run, or every run matching filters (bulk)")
    p.add_argument("run", metavar="RUN", nargs="?", help="the run (omit for a bulk cancel)")
    _filters(p)
    p.set_defaults(handler=cmd_cancel)

    p = command("restart", "start a run again with the same input, or every run matching filters")
    p.add_argument("run", metavar="RUN", nargs="?", help="the run (omit for a bulk restart)")
    p.add_argument("--version", type=int, help=version_help)
    _filters(p)
    p.set_defaults(handler=cmd_restart)

    p = command("fork", "start a new run reusing RUN's steps completed before --from-step")
    p.add_argument("run", metavar="RUN")
    p.add_argument("--from-step", required=True, metavar="STEP", help="the step executed anew")
    p.add_argument("--version", type=int, help=version_help)
    p.set_defaults(handler=cmd_fork)

    p = command("gc", "delete finished runs that ended more than --older-than ago")
    p.add_argument("--older-than", required=True, type=_duration, metavar="DURATION")
    p.add_argument("--workflow", metavar="NAME", help="only runs of this workflow")
    finished = ("completed", "compensated", "failed")
    p.add_argument("--status", choices=finished, help="only runs that ended so")
    p.add_argument("--dry-run", action="store_true", help="only count what would be deleted")
    p.set_defaults(handler=cmd_gc)
