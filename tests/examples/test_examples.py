"""Every script in examples/ runs with one command against a fresh database and exits 0.

Each example is discovered from the directory (a new script is picked up without editing
this file), run as a subprocess with FORGEFLOW_DATABASE_URL pointing at the test's own
database, and its output is checked for the lines that tell its story, in order.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.db import connect_direct

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TERMINAL = ("completed", "compensated", "failed")


@dataclass(frozen=True)
class Expected:
    """What one example must print (regular expressions, found in this order)."""

    lines: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)


EXPECTED: dict[str, Expected] = {
    "onboarding_saga.py": Expected(
        lines=(
            r"created user usr_1001",
            r"created customer cus_2002",
            r"provisioning a database",
            r"UNDO: deleted customer cus_2002",
            r"UNDO: deleted user usr_1001",
            r"status: compensated \(reason: failure\)",
            r"step create_user\s+compensated",
            r"step create_billing_customer\s+compensated",
            r"step provision_database\s+failed\s+attempts=2",
        ),
    ),
    "bank_transfer.py": Expected(
        lines=(
            r"debit\s+alice\s+-25\.00 EUR",
            r"credit\s+bob\s+\+25\.00 EUR",
            r"Transfer 1 done",
            r"debit\s+alice\s+-10\.00 EUR",
            r"UNDO: reversed entry \d+ on alice \(\+10\.00 EUR\)",
            r"Transfer 2 rolled back: .*account 'carol' is closed",
            r"status: compensated",
            r"step debit\s+compensated",
            r"step credit\s+failed",
            r"Balances: alice 75\.00, bob 25\.00, carol 0\.00",
        ),
    ),
    "payment.py": Expected(
        lines=(
            r"call 1: no answer",
            r"call 2: 503 busy",
            r"call 3: charged 49.99 EUR",
            r"SMTP refused",
            r"Payment done: charge ch_3003, receipt sent: False",
            r"status: completed",
            r"step charge_card\s+completed\s+attempts=3",
            r"step send_receipt\s+skipped",
        ),
    ),
    "verification_low_level.py": Expected(
        lines=(
            r"call 1: 429 try later",
            r"attempt 1 recorded as failed",
            r"call 2: 429 try later",
            r"call 3: passport X1234567 is genuine",
            r"UNDO: deleted upl_77",
            r"Outcome: verified=False",
            r"status: completed",
            r"step upload_documents\s+compensated",
            r"step check_identity\s+completed\s+attempts=3",
        ),
    ),
    "document_approval.py": Expected(
        lines=(
            r"Approve: https://approvals\.example\.com/hooks/webhook_\S+\?decision=approve",
            r"Reject:  https://approvals\.example\.com/hooks/webhook_\S+\?decision=reject",
            r"Q3 report\s+expires in 72 h \(is_expired=False\)",
            r"dana@example\.com clicks 'approve'",
            r"erik@example\.com clicks 'reject'",
            r"Q3 report: published at",
            r"Press release: compensated \('Press release': rejected by erik@example\.com\)",
        ),
    ),
    "escalation_chain.py": Expected(
        lines=(
            r"demo timing: the manager's hook expires after 2s",
            r"waits for the manager \(on timeout: escalate\)",
            r"manager timed out on exp_314: escalating to heidi@example\.com",
            r"The manager's hook is now expired",
            r"heidi@example\.com clicks 'reject'",
            r"Outcome: approved=False decided_by=heidi@example\.com escalated=True",
            r"status: completed",
            r"hook manager\s+expired",
            r"hook director\s+consumed\s+decision=reject",
        ),
    ),
    "payment_confirmation_event.py": Expected(
        lines=(
            r"Both orders wait for their payment\.confirmed event",
            r"'pay_ZZZ999'.* -> resumed 0 run\(s\)",
            r"'pay_B200'.* -> resumed 1 run\(s\)",
            r"A100 is still waiting",
            r"'pay_A100'.* -> resumed 1 run\(s\)",
            r"Order A100 shipped \(paid via card\)",
        ),
    ),
    "sub_workflows.py": Expected(
        lines=(
            r"Parent completed: reservation=res_ord_7 payment=pay_ord_7 tracking=TRK-ord_7 "
            r"gift_card=False",
            r"status: completed",
            r"step join:send_gift_card\s+failed",
            r"child reserve_stock\s+completed",
            r"child record_analytics\s+completed \(detached\)",
            r"child send_gift_card\s+failed",
        ),
    ),
    "poll_external_job.py": Expected(
        lines=(
            r"check 1 of job_orders: queued",
            r"check 4 of job_orders: done 100%",
            r"check 3 of job_events_stuck",
            r"cancelled job_events_stuck",
            r"Export ready after 4 checks: https://files\.example\.com/job_orders\.csv",
            r"Stuck job cancelled: True",
            r"status: completed",
        ),
    ),
    "approval_service.py": Expected(
        # Without arguments the script serves the app on a free port, plays the scenario
        # over HTTP and exits, so it runs here like any other example.
        lines=(
            r"serving http://127\.0\.0\.1:\d+/ with a worker",
            r"POST /workflows/approval/start -> 202 .*\"status\":\"created\"",
            r"is waiting for the approver",
            r"GET /hooks/<id>\?decision=approve -> 200: Thank you",
            r"status: completed, outcome: approve, comment: 'looks good'",
        ),
    ),
    "safe_deploy.py": Expected(
        lines=(
            r"two refund requests wait for a reviewer",
            r"diverges: at 'screen', expected 'hook:review'",
            r"Checking the change guarded by ctx.patched",
            r"compatible, compatible",
            r"paid R-1 \(old path: not screened\)",
            r"screened R-3",
            r"paid R-3 \(new path: screened first\)",
        ),
    ),
    "crash_recovery.py": Expected(
        lines=(
            r"worker 1 started",
            r"started: reserve_stock -> charge_card -> pack_parcel",
            r"worker 1 killed with SIGKILL in the middle of 'pack_parcel'",
            r"worker 2 started",
            r"reserve_stock\s+finished\s+worker 1",
            r"pack_parcel\s+finished\s+worker 2",
            r"send_receipt\s+finished\s+worker 2",
            r"every step finished exactly once",
        ),
    ),
    "rate_limited_api.py": Expected(
        lines=(
            r"Started 20 runs on queue 'partner_api' in one round trip",
            r"queue partner_api: executing=\d+ claimable=\d+ limited=\d+ "
            r"\(limits: concurrency=3, rate=5/1s\)",
            r"All 20 runs completed \(software\)",
            r"second 0: [1-5] runs started",
            r"Busiest one-second window: [1-5] starts \(limit 5\)",
        ),
    ),
    "per_customer_serial.py": Expected(
        lines=(
            r"Started 10 orders for 3 customers \(globex #99 with priority 10\)",
            r"10 invoice requests for acme became 1 run\(s\)",
            r"Invoice run: invoice of acme at revision 10",
            r"globex order sequence: #99 #1 #2 #3",
            r"Overlapping orders of one customer: 0",
            r"Most orders running at once: [23] \(one per customer\)",
        ),
    ),
    "repair_runs.py": Expected(
        lines=(
            r"running render v1 \(call 1\)",
            r"failed: .*unsupported currency format",
            r"running render v2 \(call 1\)",
            r"fork output: invoice for cus_42: 42.50 EUR",
            r"fork lineage: forked from \S+ at render",
            r"load_customer ran 1 time\(s\) in all",
            r"running load_customer \(call 2\)",
            r"restart output: invoice for cus_42",
            r"bulk restart dry run: 1 matched, 0 acted",
            r"purged 1 old run\(s\)",
        ),
    ),
    "nightly_report.py": Expected(
        lines=(
            r"nightly_report\s+0 2 \* \* \*\s+Europe/Paris\s+next Fri Mar 29 01:00:00 2024 UTC",
            r"night of Sat 30 Mar 02:00 CET",
            r"night of Sun 31 Mar 03:00 CEST",
            r"digest\] weekly digest for sales, Mon 01 Apr 09:00 CEST",
            r"night of Thu 04 Apr 02:00 CEST",
            r"nightly_report ran 7 times, each night once",
            r"triggered by hand: run completed, scheduled_at 2024-04-04 12:00:00\+00:00",
            r"digest\s+paused",
        ),
    ),
    "scheduled_wait.py": Expected(
        lines=(
            r"Demo timing: scheduling for .* 3 seconds from now",
            r"is waiting until",
            r"No worker is running now",
            r"issue #42 sent at",
            r"status: completed",
            r"step sleep_until\s+sleep\s+completed",
        ),
    ),
}


def example_paths() -> list[Path]:
    """Every example script, including ones this file has no expectations for."""
    return sorted(p for p in EXAMPLES.glob("*.py") if not p.name.startswith("_"))


def assert_in_order(output: str, patterns: tuple[str, ...]) -> None:
    """Each pattern is found in ``output`` after the previous one."""
    position = 0
    for pattern in patterns:
        match = re.compile(pattern).search(output, position)
        assert match is not None, f"{pattern!r} not found (in order) in:\n{output}"
        position = match.end()


async def run_example(path: Path, dsn: str, cwd: Path, expected: Expected) -> tuple[int, str, str]:
    """Run ``path`` as `python examples/X.py` would; exit code, stdout, stderr."""
    env = {**os.environ, **expected.env, "FORGEFLOW_DATABASE_URL": dsn}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(path),
        *expected.args,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=90)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.parametrize("path", example_paths(), ids=lambda p: p.name)
async def test_example_runs_to_the_end_and_tells_its_story(
    path: Path, forgeflow_database: str, tmp_path: Path
) -> None:
    """An example exits 0, prints its key lines in order, and leaves no run unfinished."""
    dsn = forgeflow_database  # a fresh database from forgeflow's own pytest plugin
    expected = EXPECTED.get(path.name, Expected())
    code, out, err = await run_example(path, dsn, tmp_path, expected)
    assert code == 0, f"{path.name} exited {code}\n--- stdout\n{out}\n--- stderr\n{err}"
    assert out.strip(), f"{path.name} printed nothing"
    assert_in_order(out, expected.lines)
    conn = await connect_direct(dsn)
    try:
        unfinished = await conn.fetch(
            "SELECT workflow, status FROM forgeflow.workflow_runs WHERE status <> ALL($1::text[])",
            list(TERMINAL),
        )
    finally:
        await conn.close()
    assert [tuple(r) for r in unfinished] == []


def test_every_pattern_of_the_design_has_an_example() -> None:
    """The examples directory holds one script per documented pattern."""
    names = {p.name for p in example_paths()}
    assert set(EXPECTED) <= names
