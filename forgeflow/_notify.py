"""One LISTEN connection per client, fanning notifications out to whoever waits."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import anyio
import asyncpg
import structlog

from ._store import Store

__all__ = ["CHANNELS", "Notifications"]

log = structlog.get_logger("forgeflow.notify")

# How many runs started here may have their end noted at once (see expect_end).
_EXPECTED = 1000

CHANNELS = (
    "forgeflow_wakeup",
    "forgeflow_cancel",
    "forgeflow_run_changed",
    # A run reached a terminal status (payload: its id); a change of the run as well.
    "forgeflow_run_ended",
    "forgeflow_step",
    # A schedule was created, changed, paused, resumed or deleted (payload: its name).
    "forgeflow_schedules",
)


class Notifications:
    """Subscribes once to forgeflow's channels; callbacks and events per run id."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._conn: asyncpg.Connection | None = None
        self._lock = anyio.Lock()
        self.on_wakeup: list[Callable[[str], None]] = []
        self.on_cancel: list[Callable[[str], None]] = []
        # Called with (channel, payload) for every notification (live views of all runs).
        self.on_any: list[Callable[[str, str], None]] = []
        self._run_waiters: dict[str, set[anyio.Event]] = defaultdict(set)
        self._end_waiters: dict[str, set[anyio.Event]] = defaultdict(set)
        # The ends noted for runs started here (see expect_end), oldest first.
        self._expected: dict[str, anyio.Event] = {}

    async def start(self) -> None:
        """Open the LISTEN connection if it is not open yet."""
        async with self._lock:
            if self._conn is not None and not self._conn.is_closed():
                return
            self._conn = await self._store.listen(CHANNELS, self._dispatch)
            self._conn.add_termination_listener(self._lost)

    async def close(self) -> None:
        """Close the LISTEN connection."""
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            # A close we asked for is not a lost connection: do not warn about it.
            conn.remove_termination_listener(self._lost)
            with anyio.move_on_after(5, shield=True):
                await conn.close()

    def _lost(self, _conn: object) -> None:
        # Workers fall back to polling until the next start() reconnects.
        log.warning("listen_connection_lost")
        self._conn = None
        self._wake_all()

    def _dispatch(self, channel: str, payload: str) -> None:
        for hook in self.on_any:
            hook(channel, payload)
        if channel == "forgeflow_wakeup":
            for fn in self.on_wakeup:
                fn(payload)
        elif channel == "forgeflow_schedules":
            return  # schedulers watch it through on_any; it names no run
        elif channel == "forgeflow_cancel":
            for fn in self.on_cancel:
                fn(payload)
            self._wake_run(payload)
        elif channel == "forgeflow_run_ended":
            self._wake_run(payload)
            _wake(self._end_waiters.pop(payload, None))
        else:
            self._wake_run(payload)

    def _wake_run(self, run_id: str) -> None:
        _wake(self._run_waiters.pop(run_id, None))

    def _wake_all(self) -> None:
        for table in (self._run_waiters, self._end_waiters):
            for waiters in table.values():
                _wake(waiters)
            table.clear()
        self._expected.clear()

    def run_changed(self, run_id: str) -> anyio.Event:
        """An event set at the next change of ``run_id`` (status or a step)."""
        event = anyio.Event()
        self._run_waiters[run_id].add(event)
        return event

    def run_ended(self, run_id: str) -> anyio.Event:
        """An event set when ``run_id`` reaches a terminal status (not at other changes)."""
        event = anyio.Event()
        self._end_waiters[run_id].add(event)
        return event

    def expect_end(self, run_id: str) -> None:
        """Note the end of a run about to be written, so that awaiting it needs no read
        before its end is announced (only while this connection already listens)."""
        if not self.connected:
            return
        if len(self._expected) >= _EXPECTED:
            oldest = next(iter(self._expected))
            self.forget(oldest, self._expected.pop(oldest))
        event = anyio.Event()
        self._expected[run_id] = event
        self._end_waiters[run_id].add(event)

    def expected_end(self, run_id: str) -> anyio.Event | None:
        """The event ``expect_end`` noted for ``run_id``, if any (taken: forget it after)."""
        return self._expected.pop(run_id, None)

    def forget(self, run_id: str, event: anyio.Event) -> None:
        """Stop waiting with ``event``."""
        for table in (self._run_waiters, self._end_waiters):
            waiters = table.get(run_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del table[run_id]

    @property
    def connected(self) -> bool:
        """True while the LISTEN connection is open."""
        return self._conn is not None and not self._conn.is_closed()


def _wake(waiters: set[anyio.Event] | None) -> None:
    for event in waiters or ():
        event.set()
