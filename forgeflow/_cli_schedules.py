"""``forgeflow schedules list|pause|resume|delete|trigger``: the schedule commands."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from ._client import Forgeflow
from ._dashboard.terminal import dump, out, table, ts

__all__ = ["add_schedule_commands"]

Connect = Callable[[argparse.Namespace], AbstractAsyncContextManager[Forgeflow]]


def add_schedule_commands(
    command: Callable[[str, str], argparse.ArgumentParser],
    connect: Connect,
    common: Callable[..., None],
) -> None:
    """Add ``schedules`` and its actions to the ``forgeflow`` parser."""

    async def cmd_list(args: argparse.Namespace) -> int:
        async with connect(args) as ff:
            schedules = await ff.list_schedules()
        if args.json:
            dump(
                {
                    "schedules": [s.model_dump(mode="json") for s in schedules],
                    "count": len(schedules),
                }
            )
        elif not schedules:
            out("no schedules", sys.stderr)
        else:
            rows = [
                [
                    s.name,
                    s.workflow,
                    s.cron,
                    s.timezone,
                    "paused" if s.paused else "active",
                    "-" if s.paused else ts(s.next_fire_at),
                    s.last_run_id or "-",
                    s.last_run_status.value if s.last_run_status else "-",
                ]
                for s in schedules
            ]
            headers = ["NAME", "WORKFLOW", "CRON", "TIMEZONE", "STATE", "NEXT", "LAST RUN", ""]
            table(headers, rows)
        return 0

    def change(action: str, verb: str) -> Callable[[argparse.Namespace], Any]:
        async def handler(args: argparse.Namespace) -> int:
            async with connect(args) as ff:
                record = await getattr(ff, f"{action}_schedule")(args.name)
            if args.json:
                dump(record.model_dump(mode="json"))
            else:
                nxt = "" if record.paused else f"; next fire {ts(record.next_fire_at)}"
                out(f"schedule {args.name} {verb}{nxt}")
            return 0

        return handler

    async def cmd_delete(args: argparse.Namespace) -> int:
        async with connect(args) as ff:
            await ff.delete_schedule(args.name)
        if args.json:
            dump({"name": args.name, "deleted": True})
        else:
            out(f"schedule {args.name} deleted (its runs stay)")
        return 0

    async def cmd_trigger(args: argparse.Namespace) -> int:
        async with connect(args) as ff:
            run_id = await ff.trigger_schedule(args.name)
        if args.json:
            dump({"name": args.name, "run_id": run_id})
        else:
            out(run_id)
        return 0

    parent = command("schedules", "list, pause, resume, delete or trigger schedules")
    sub = parent.add_subparsers(dest="schedules_command", required=True, metavar="ACTION")
    p = sub.add_parser("list", help="list schedules with their next fire time and last run")
    common(p, top=False)
    p.set_defaults(handler=cmd_list)
    actions: list[tuple[str, str, Callable[[argparse.Namespace], Any]]] = [
        ("pause", "stop a schedule firing", change("pause", "paused")),
        ("resume", "fire again from the next future time", change("resume", "resumed")),
        ("delete", "delete a schedule (its runs stay)", cmd_delete),
        ("trigger", "start one run now; prints its id", cmd_trigger),
    ]
    for name, help, handler in actions:
        p = sub.add_parser(name, help=help, description=help)
        common(p, top=False)
        p.add_argument("name", metavar="NAME")
        p.set_defaults(handler=handler)
