"""The ``forgeflow`` command: run workers and the HTTP server, inspect and steer runs.

Exit codes: 0 success, 1 an error (unknown run, hook already used, database down…),
2 a usage error (bad option, invalid JSON), 3 ``forgeflow check`` found runs in flight that
the new code would not replay (diverges or fails), 130 interrupted. Errors go to stderr as one
line; ``--json`` makes every command print JSON on stdout for scripts.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import json
import logging
import os
import signal
import socket
import sys
import traceback
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import anyio
import structlog

from . import __version__
from ._cli_log import configure_logging, default_log_format, log_format
from ._cli_repair import add_repair_commands
from ._cli_schedules import add_schedule_commands
from ._client import Forgeflow
from ._dashboard.terminal import Timeline, brief, dump, out, table, ts, waiting_on
from ._definitions import Registry, default_registry
from ._durations import format_duration, parse_duration
from ._models import HookStatus, Outcome, WorkflowRecord, WorkflowStatus
from ._settings import Settings
from .errors import ForgeflowError

__all__ = ["main"]

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INCOMPATIBLE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

# A long-running command's stderr is a log stream: its own lines (start, stop, the error
# that ended it) are log lines too, in the configured format. A one-shot command answers
# a person or a script: its error stays one plain line.
_LONG_RUNNING = ("worker", "serve")

log = structlog.get_logger("forgeflow.cli")


class CliError(Exception):
    """A failure reported to the user as one line on stderr."""


# -- loading the user's workflows ---------------------------------------------------------


def load_app(spec: str) -> Registry:
    """Import MODULE (a dotted name or a .py file; ``:name`` picks a Registry in it)."""
    return _load(spec)[1]


def _load(spec: str) -> tuple[Any, Registry]:
    target, attr = spec, ""
    if ":" in spec and not Path(spec).exists():
        target, _, attr = spec.rpartition(":")
    try:
        module = _import(target)
    except CliError:
        raise
    except Exception as exc:
        raise CliError(f"cannot import {target}: {type(exc).__name__}: {exc}") from exc
    if not attr:
        registry = default_registry
    else:
        found = getattr(module, attr, None)
        if not isinstance(found, Registry):
            raise CliError(f"{spec}: {attr!r} is not a forgeflow Registry")
        registry = found
    if not len(registry):
        raise CliError(
            _own_registry_hint(module, target)
            or f"{spec} registers no workflows (decorate them with @workflow)"
        )
    return module, registry


def _own_registry_hint(module: Any, target: str, workflow: str | None = None) -> str | None:
    """Say how to name the module's own Registry, when it keeps its workflows there."""
    own = [
        name
        for name, value in vars(module).items()
        if isinstance(value, Registry)
        and value is not default_registry
        and len(value)
        and (workflow is None or workflow in value)
    ]
    if not own:
        return None
    where = " or ".join(f"{target}:{name}" for name in own)
    what = f"workflow {workflow!r}" if workflow else "its workflows"
    return (
        f"{target} registers {what} in its own Registry, not the default one: "
        f"point at it with {where}"
    )


def _import(target: str) -> Any:
    path = Path(target)
    if target.endswith(".py") or os.sep in target:
        if not path.is_file():
            raise CliError(f"no such file: {target}")
        path = path.resolve()
        # Like `python file.py`: the file's directory is importable (its sibling modules).
        sys.path.insert(0, str(path.parent))
        spec = importlib.util.spec_from_file_location(path.stem, path)
        if spec is None or spec.loader is None:
            raise CliError(f"cannot import {target}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module
        spec.loader.exec_module(module)
        return module
    # A console script does not put the working directory on sys.path; users expect it.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    return importlib.import_module(target)


# -- commands -----------------------------------------------------------------------------

# The most connections a worker's pool opens unless FORGEFLOW_MAX_POOL says otherwise.
_WORKER_POOL = 20


def _settings(args: argparse.Namespace, **defaults: Any) -> Settings:
    """The settings of this command: its flags, then FORGEFLOW_* variables, then defaults."""
    defaults.setdefault("min_pool", 1)
    defaults.setdefault("max_pool", 4)
    return Settings.load(
        defaults=defaults,
        database_url=args.dsn,
        base_url=getattr(args, "base_url", None),
        lease=getattr(args, "lease", None),
    )


@contextlib.asynccontextmanager
async def _connect(
    args: argparse.Namespace,
    registry: Registry | None = None,
    settings: Settings | None = None,
    *,
    migrate: bool = True,
) -> AsyncIterator[Forgeflow]:
    chosen = settings if settings is not None else _settings(args)
    async with Forgeflow.connect(settings=chosen, registry=registry, migrate=migrate) as client:
        yield client


async def _until_signalled() -> int:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            return int(signum)
    return 0


def _queues(args: argparse.Namespace) -> list[str] | None:
    # None: the worker serves the queues its registry's workflows name.
    return list(args.queue) if args.queue else None


async def cmd_worker(args: argparse.Namespace) -> int:
    registry = load_app(args.module)
    # The pool is bounded whatever the concurrency: executing runs share it statement by
    # statement, and a pool per run slot would outgrow PostgreSQL's max_connections.
    settings = _settings(args, max_pool=min(args.concurrency + 4, _WORKER_POOL))
    async with (
        _connect(args, registry, settings) as ff,
        ff.worker(concurrency=args.concurrency, queues=_queues(args), grace=args.grace) as worker,
    ):
        log.info(
            "worker_ready",
            worker=worker.worker_id,
            workflows=registry.names(),
            queues=list(worker.queues),
            concurrency=args.concurrency,
            lease_s=worker.lease_seconds,
            base_url=settings.base_url,
            stop_with="SIGTERM or Ctrl-C (graceful)",
        )
        signum = await _until_signalled()
        log.info(
            "worker_stopping",
            signal=signal.Signals(signum).name,
            grace=args.grace,
        )
    return EXIT_OK


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise CliError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


async def cmd_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from .http import create_app
    except ImportError:
        raise CliError("serve needs the http extra: pip install 'forgeflow[http]'") from None
    registry = load_app(args.module)
    sock = _listen(args.host, args.port)
    port = sock.getsockname()[1]
    shown = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else args.host
    pool = min(args.concurrency + 10, _WORKER_POOL)
    settings = _settings(args, base_url=f"http://{shown}:{port}", max_pool=pool)
    base_url = settings.base_url

    class Server(uvicorn.Server):
        # Signals are ours: the worker must stop after the server, gracefully.
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

        def install_signal_handlers(self) -> None:  # the name in uvicorn before 0.30
            pass

    async with _connect(args, registry, settings) as ff:
        app = create_app(ff, secret=settings.secret, admin_token=settings.admin_token)
        config = uvicorn.Config(
            app,
            lifespan="off",
            log_level="info" if args.verbose else "warning",
            timeout_graceful_shutdown=10,
        )
        server = Server(config)
        worker = (
            None
            if args.no_worker
            else ff.worker(concurrency=args.concurrency, queues=_queues(args), grace=args.grace)
        )
        async with worker or contextlib.nullcontext(), anyio.create_task_group() as group:

            async def stop_on_signal() -> None:
                signum = await _until_signalled()
                log.info("server_stopping", signal=signal.Signals(signum).name)
                app.state.forgeflow.close_streams()
                server.should_exit = True

            group.start_soon(stop_on_signal)
            log.info(
                "serving",
                url=f"{base_url}/",
                workflows=registry.names(),
                worker=worker is not None,
                concurrency=None if worker is None else args.concurrency,
            )
            await server.serve(sockets=[sock])
            group.cancel_scope.cancel()
    return EXIT_OK


async def cmd_start(args: argparse.Namespace) -> int:
    module, registry = _load(args.app) if args.app else (None, default_registry)
    if args.name not in registry:
        hint = None if module is None else _own_registry_hint(module, args.app, args.name)
        raise CliError(
            hint
            or f"workflow {args.name!r} is not registered here: pass --app MODULE "
            "(the module that defines it) or set FORGEFLOW_APP"
        )
    async with _connect(args, registry) as ff:
        run_id = await ff.start(
            args.name, args.input, idempotency_key=args.idempotency_key, version=args.version
        )
    if args.json:
        dump({"run_id": run_id, "status": "created"})
    else:
        out(run_id)
    return EXIT_OK


async def cmd_status(args: argparse.Namespace) -> int:
    async with _connect(args) as ff:
        if not args.watch:
            record = await ff.status(args.run)
            if args.json:
                dump(record.model_dump(mode="json"))
            else:
                timeline = Timeline()
                timeline.header(record)
                timeline.table(record)
            return EXIT_OK
        last: WorkflowRecord | None = None
        watcher = Timeline()
        async for record in ff.watch(args.run):
            last = record
            if args.json:
                dump(record.model_dump(mode="json"))
            else:
                watcher.update(record)
    if last is None or last.status is WorkflowStatus.COMPLETED:
        return EXIT_OK
    out(f"forgeflow: run {last.run_id} ended {last.status.value}", sys.stderr)
    return EXIT_ERROR


async def cmd_runs(args: argparse.Namespace) -> int:
    async with _connect(args) as ff:
        records = await ff.list_runs(status=args.status, workflow=args.workflow, limit=args.limit)
    if args.json:
        dump([brief(r) for r in records])
    elif not records:
        out("no runs", sys.stderr)
    else:
        rows = [
            [
                r.run_id,
                f"{r.workflow} v{r.version}",
                r.status.value,
                ts(r.created_at),
                waiting_on(r),
            ]
            for r in records
        ]
        table(["RUN", "WORKFLOW", "STATUS", "CREATED", "WAITING ON"], rows)
    return EXIT_OK


async def cmd_cancel(args: argparse.Namespace) -> int:
    async with _connect(args) as ff:
        record = await ff.cancel(args.run)
    if record.is_terminal and not record.cancel_requested:
        raise CliError(f"run {record.run_id} already ended {record.status.value}")
    if args.json:
        dump({"run_id": record.run_id, "status": record.status.value})
    else:
        out(
            f"cancel requested for {record.run_id} (now {record.status.value}); "
            "its compensations run in reverse"
        )
    return EXIT_OK


async def cmd_hooks_list(args: argparse.Namespace) -> int:
    status = None if args.status == "all" else args.status
    async with _connect(args) as ff:
        hooks = await ff.list_hooks(status=status, workflow=args.workflow)
    if args.json:
        dump({"hooks": [h.model_dump(mode="json") for h in hooks], "count": len(hooks)})
    elif not hooks:
        out(f"no {args.status} hooks" if status else "no hooks", sys.stderr)
    else:
        rows = [
            [
                h.hook_id,
                h.run_id,
                h.workflow,
                h.name,
                "expired" if h.is_expired and h.status is HookStatus.ACTIVE else h.status.value,
                ts(h.expires_at),
            ]
            for h in hooks
        ]
        table(["HOOK", "RUN", "WORKFLOW", "NAME", "STATUS", "EXPIRES"], rows)
    return EXIT_OK


async def cmd_hooks_resume(args: argparse.Namespace) -> int:
    async with _connect(args) as ff:
        run_id = await ff.resume_hook(args.hook, args.decision, args.data)
    if args.json:
        dump({"run_id": run_id, "hook_id": args.hook, "decision": args.decision})
    else:
        out(f"{args.decision} recorded for hook {args.hook}; run {run_id} resumes")
    return EXIT_OK


async def cmd_migrate(args: argparse.Namespace) -> int:
    async with _connect(args, migrate=False) as ff:
        applied = await ff.migrate()
    if args.json:
        dump({"applied": applied})
    elif applied:
        out(f"applied migrations: {', '.join(f'{v:04d}' for v in applied)}")
    else:
        out("the database is up to date")
    return EXIT_OK


async def cmd_workflows(args: argparse.Namespace) -> int:
    registry = load_app(args.module)
    definitions = sorted(registry.definitions(), key=lambda d: (d.name, d.version))
    if args.json:
        dump(
            [
                {
                    "name": d.name,
                    "version": d.version,
                    "queue": d.queue,
                    "timeout_seconds": d.timeout.total_seconds(),
                    "deprecated": d.deprecated,
                }
                for d in definitions
            ]
        )
        return EXIT_OK
    rows = [
        [
            d.name,
            str(d.version),
            d.queue,
            format_duration(d.timeout),
            "yes" if d.deprecated else "no",
        ]
        for d in definitions
    ]
    table(["WORKFLOW", "VERSION", "QUEUE", "TIMEOUT", "DEPRECATED"], rows)
    return EXIT_OK


async def cmd_queues(args: argparse.Namespace) -> int:
    async with _connect(args) as ff:
        states = await ff.queues()
    if args.json:
        dump({"queues": [q.as_dict() for q in states]})
    elif not states:
        out("no queues", sys.stderr)
    else:
        rows = [
            [
                q.name,
                str(q.executing),
                str(q.claimable),
                str(q.delayed),
                str(q.limited),
                ", ".join(
                    f"{name}={value}"
                    for name, value in (
                        ("concurrency", q.concurrency),
                        ("key_concurrency", q.key_concurrency),
                        ("rate", q.rate),
                    )
                    if value is not None
                )
                or "-",
                ", ".join(f"{k['key']} ({k['executing']}+{k['claimable']})" for k in q.top_keys),
            ]
            for q in states
        ]
        headers = ["QUEUE", "EXECUTING", "CLAIMABLE", "DELAYED", "LIMITED", "LIMITS", "TOP KEYS"]
        table(headers, rows)
    return EXIT_OK


async def cmd_check(args: argparse.Namespace) -> int:
    registry = load_app(args.module)
    # No migration: the check only reads, and may point at a read-only replica.
    async with _connect(args, registry, migrate=False) as ff:
        report = await ff.check(registry, workflow=args.workflow)
    if args.json:
        dump(report.to_json())
        return EXIT_OK if report.ok else EXIT_INCOMPATIBLE
    problems = report.problems
    if problems:
        rows = [
            [
                r.run_id,
                f"{r.workflow} v{r.version}",
                r.verdict.value,
                r.step or "-",
                r.expected or "-",
            ]
            for r in problems
        ]
        table(["RUN", "WORKFLOW", "VERDICT", "STEP", "EXPECTED"], rows)
        for r in problems:
            out(f"\n{r.run_id}: {r.reason}")
            if r.error and r.error != r.reason:
                out(r.error)
        out()
    out(
        f"{len(report.runs)} unfinished run(s) checked in {report.seconds:.2f}s: "
        f"{len(report.runs) - len(problems)} compatible, {len(problems)} would not replay"
    )
    return EXIT_OK if report.ok else EXIT_INCOMPATIBLE


# -- parsing ------------------------------------------------------------------------------


def _json_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc})") from None


def _json_object(text: str) -> dict[str, Any]:
    value = _json_value(text)
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _grace(text: str) -> str:
    try:
        parse_duration(text, field="grace")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("grace: ")) from None
    return text


def _lease(text: str) -> str:
    try:
        Settings(lease=parse_duration(text, field="lease"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("lease: ")) from None
    return text


def _base_url(text: str) -> str:
    try:
        return Settings.load(environ={}, base_url=text).base_url
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("base_url: ")) from None


def _common(parser: argparse.ArgumentParser, *, top: bool) -> None:
    # On subcommands the defaults are suppressed so `forgeflow --dsn X status RUN` and
    # `forgeflow status RUN --dsn X` both work.
    default: Any = None if top else argparse.SUPPRESS
    flag: Any = False if top else argparse.SUPPRESS
    parser.add_argument(
        "--dsn",
        default=default,
        metavar="URL",
        help="PostgreSQL URL (default: $FORGEFLOW_DATABASE_URL, else the "
        "embedded server under ./.forgeflow)",
    )
    parser.add_argument(
        "--json", action="store_true", default=flag, help="print JSON on stdout, for scripts"
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", default=flag, help="show forgeflow's logs on stderr"
    )
    parser.add_argument(
        "--log-format",
        type=log_format,
        default=default,
        metavar="FORMAT",
        help="how log lines look on stderr: console, logfmt (key=value) or json "
        "(default: $FORGEFLOW_LOG_FORMAT, else console)",
    )


def _worker_options(parser: argparse.ArgumentParser, *, serving: bool = False) -> None:
    parser.add_argument(
        "--concurrency",
        type=_positive,
        default=10,
        metavar="N",
        help="runs executed at once (default 10)",
    )
    parser.add_argument(
        "--queue",
        action="append",
        metavar="Q",
        help="queue to take runs from; repeat for several (default: those its workflows name)",
    )
    parser.add_argument(
        "--grace",
        type=_grace,
        default="30s",
        metavar="DURATION",
        help="how long running steps may finish on shutdown (default 30s)",
    )
    parser.add_argument(
        "--lease",
        type=_lease,
        metavar="DURATION",
        help="how long a claimed run stays with this worker without a heartbeat "
        "(default: $FORGEFLOW_LEASE, else 30s)",
    )
    parser.add_argument(
        "--base-url",
        type=_base_url,
        metavar="URL",
        help="public URL of the HTTP app, used in hook links (default: $FORGEFLOW_BASE_URL, "
        + ("else http://HOST:PORT)" if serving else "else http://localhost:8000)"),
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``forgeflow`` command."""
    parser = argparse.ArgumentParser(prog="forgeflow", description="Durable sagas on PostgreSQL.")
    _common(parser, top=True)
    parser.add_argument("--version", action="version", version=f"forgeflow {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        _common(p, top=False)
        return p

    p = command("worker", "execute runs of the workflows MODULE registers, until stopped")
    p.add_argument("module", metavar="MODULE", help="dotted module or path to a .py file")
    _worker_options(p)
    p.set_defaults(handler=cmd_worker)

    p = command("serve", "serve the HTTP API and dashboard, with a worker in the same process")
    p.add_argument("module", metavar="MODULE", help="dotted module or path to a .py file")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--no-worker", action="store_true", help="serve only; run workers elsewhere")
    _worker_options(p, serving=True)
    p.set_defaults(handler=cmd_serve)

    p = command("workflows", "list the workflows MODULE registers, with their versions")
    p.add_argument("module", metavar="MODULE", help="dotted module or path to a .py file")
    p.set_defaults(handler=cmd_workflows)

    p = command(
        "check",
        "replay every unfinished run on MODULE's code without executing anything; "
        "exit 3 if any would diverge or fail",
    )
    p.add_argument("module", metavar="MODULE", help="dotted module or path to a .py file")
    p.add_argument("--workflow", metavar="NAME", help="check the runs of this workflow only")
    p.set_defaults(handler=cmd_check)

    p = command("start", "start a run of workflow NAME; prints its id")
    p.add_argument("name", metavar="NAME")
    p.add_argument(
        "--input", type=_json_value, default=None, metavar="JSON", help="the workflow input as JSON"
    )
    p.add_argument(
        "--idempotency-key",
        metavar="KEY",
        help="the same key returns the same run instead of starting another",
    )
    p.add_argument("--version", type=_positive, help="start this version (default: latest)")
    p.add_argument(
        "--app",
        default=os.environ.get("FORGEFLOW_APP"),
        metavar="MODULE",
        help="module defining the workflow (default: $FORGEFLOW_APP)",
    )
    p.set_defaults(handler=cmd_start)

    p = command("status", "show a run and its step timeline")
    p.add_argument("run", metavar="RUN")
    p.add_argument(
        "--watch",
        action="store_true",
        help="follow the run live until it ends (exit 1 unless it completed)",
    )
    p.set_defaults(handler=cmd_status)

    p = command("runs", "list runs, newest first")
    p.add_argument("--status", choices=[s.value for s in WorkflowStatus])
    p.add_argument("--workflow", metavar="NAME")
    p.add_argument("--limit", type=_positive, default=50, help="at most N runs (default 50)")
    p.set_defaults(handler=cmd_runs)

    add_repair_commands(command, _connect, CliError, cmd_cancel)

    p = command("queues", "show each queue's limits and executing, claimable, delayed runs")
    p.set_defaults(handler=cmd_queues)

    hooks = command("hooks", "list resume hooks or give one a decision")
    hooks_sub = hooks.add_subparsers(dest="hooks_command", required=True, metavar="ACTION")
    p = hooks_sub.add_parser("list", help="list hooks (default: active ones)")
    _common(p, top=False)
    p.add_argument("--status", default="active", choices=[*(s.value for s in HookStatus), "all"])
    p.add_argument("--workflow", metavar="NAME")
    p.set_defaults(handler=cmd_hooks_list)
    p = hooks_sub.add_parser("resume", help="give hook HOOK a decision; its run resumes")
    _common(p, top=False)
    p.add_argument("hook", metavar="HOOK")
    p.add_argument("--decision", required=True, choices=[o.value for o in Outcome])
    p.add_argument(
        "--data",
        type=_json_object,
        default=None,
        metavar="JSON",
        help="a JSON object handed to the run with the decision",
    )
    p.set_defaults(handler=cmd_hooks_resume)

    p = command("migrate", "apply pending database migrations")
    p.set_defaults(handler=cmd_migrate)
    add_schedule_commands(command, _connect, _common)
    return parser


def _configure_logging(args: argparse.Namespace) -> None:
    # Logs never go to stdout, which belongs to the command's output (and --json).
    long_running = args.command in _LONG_RUNNING
    level = logging.INFO if args.verbose or long_running else logging.WARNING
    configure_logging(args.log_format or default_log_format(), level, sys.stderr)


def _report(args: argparse.Namespace, event: str, line: str, **fields: Any) -> None:
    """Tell what ended the command: a log line (worker, serve), else ``line``, plain."""
    if args.command in _LONG_RUNNING:
        log.error(event, **fields)
    else:
        out(f"forgeflow: {line}", sys.stderr)


def _first_error(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _loop_options(args: argparse.Namespace) -> dict[str, Any]:
    """anyio's options for the event loop: uvloop's for a worker, when it is installed.

    A busy worker spends about a quarter of its CPU per step in the event loop itself
    (handles, futures, timers); uvloop's loop does that work in C. Other commands are
    short and gain nothing from it.
    """
    if args.handler is cmd_worker and importlib.util.find_spec("uvloop") is not None:
        return {"use_uvloop": True}
    return {}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``forgeflow`` command; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        _configure_logging(args)
    except ValueError as exc:  # FORGEFLOW_LOG_FORMAT names no format
        out(f"forgeflow: error: {exc}", sys.stderr)
        return EXIT_ERROR
    try:
        code: int = anyio.run(args.handler, args, backend_options=_loop_options(args))
        return code
    except BaseException as raised:
        problem = _first_error(raised)
        if isinstance(problem, KeyboardInterrupt):
            _report(args, "interrupted", "interrupted")
            return EXIT_INTERRUPTED
        if isinstance(problem, SystemExit):
            return int(problem.code) if isinstance(problem.code, int) else EXIT_ERROR
        if isinstance(problem, CliError | ForgeflowError):
            _report(args, "command_failed", f"error: {problem}", error=str(problem))
            return EXIT_ERROR
        if not isinstance(problem, Exception):
            raise
        if args.verbose and args.command not in _LONG_RUNNING:
            traceback.print_exception(problem, file=sys.stderr)
        _report(
            args,
            "command_crashed",
            f"unexpected error: {type(problem).__name__}: {problem} (-v shows where)",
            error_type=type(problem).__name__,
            error=str(problem),
            exc_info=problem if args.verbose else None,
        )
        return EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
