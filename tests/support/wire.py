"""A TCP proxy in front of the test server that records the round trips clients make.

Each client connection's messages are read as PostgreSQL's frontend protocol: a simple
query ('Q') is one round trip, and so is everything up to an extended-protocol Sync
('S'). For each connection the proxy keeps one entry per round trip: the SQL text sent
in it (the query, or the statements parsed before the Sync; empty for a statement
prepared earlier). Bytes are relayed unchanged in both directions.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import struct
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

__all__ = ["RoundTrips", "ends_transaction", "recording_proxy"]

# Untyped messages sent before the startup message: SSL and GSS encryption requests.
_NEGOTIATION_CODES = {80877103, 80877104}


# A COMMIT or ROLLBACK statement (not the COMMITTED of an isolation level).
_ENDS = re.compile(r"\b(COMMIT|ROLLBACK)\b", re.IGNORECASE)


def ends_transaction(text: str) -> bool:
    """True if the round trip's ``text`` holds a COMMIT or a ROLLBACK."""
    return _ENDS.search(text) is not None


class RoundTrips:
    """What every connection through the proxy sent, one SQL text per round trip."""

    def __init__(self) -> None:
        self.connections: list[list[str]] = []

    def transactions(self, marker: str) -> list[list[str]]:
        """Every transaction (BEGIN up to its COMMIT or ROLLBACK) on any connection that
        sent ``marker`` in one of its round trips, as its round trips' texts."""
        found = []
        for trips in self.connections:
            current: list[str] | None = None
            for text in trips:
                if text.lstrip().upper().startswith("BEGIN"):
                    current = []
                if current is None:
                    continue
                current.append(text)
                if ends_transaction(text):
                    if any(marker in t for t in current):
                        found.append(current)
                    current = None
        return found


async def _read_message(reader: asyncio.StreamReader, typed: bool) -> tuple[bytes, bytes]:
    head = await reader.readexactly(5 if typed else 4)
    (length,) = struct.unpack("!i", head[-4:])
    return head, await reader.readexactly(length - 4)


async def _client_to_server(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, trips: list[str]
) -> None:
    while True:  # untyped: encryption requests (refused by the server), then startup
        head, body = await _read_message(reader, typed=False)
        writer.write(head + body)
        await writer.drain()
        if struct.unpack("!i", body[:4])[0] not in _NEGOTIATION_CODES:
            break
    parsed: list[str] = []
    while True:
        head, body = await _read_message(reader, typed=True)
        kind = head[:1]
        if kind == b"Q":
            trips.append(body.rstrip(b"\0").decode())
        elif kind == b"P":
            name_end = body.index(b"\0")
            parsed.append(body[name_end + 1 : body.index(b"\0", name_end + 1)].decode())
        elif kind == b"S":
            trips.append("; ".join(parsed))
            parsed = []
        writer.write(head + body)
        await writer.drain()
        if kind == b"X":
            return


async def _server_to_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()


async def _quietly(pump: Coroutine[Any, Any, None]) -> None:
    """Run ``pump`` until either side closes its end."""
    with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
        await pump


def _upstream(dsn: str) -> tuple[str, int | None]:
    """The server's address in ``dsn``: (host, port), or (unix socket path, None)."""
    parts = urlsplit(dsn)
    port = parts.port or 5432
    host = parse_qs(parts.query).get("host", [parts.hostname or "localhost"])[0]
    if host.startswith("/"):
        return f"{host}/.s.PGSQL.{port}", None
    return host, port


@asynccontextmanager
async def recording_proxy(dsn: str) -> AsyncIterator[tuple[str, RoundTrips]]:
    """A DSN reaching ``dsn``'s database through a recording proxy, and its record."""
    record = RoundTrips()
    host, port = _upstream(dsn)
    tasks: set[asyncio.Task[None]] = set()

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if port is None:
            up_reader, up_writer = await asyncio.open_unix_connection(host)
        else:
            up_reader, up_writer = await asyncio.open_connection(host, port)
        trips: list[str] = []
        record.connections.append(trips)
        pumps = [
            asyncio.ensure_future(_quietly(_client_to_server(reader, up_writer, trips))),
            asyncio.ensure_future(_quietly(_server_to_client(up_reader, writer))),
        ]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            for w in (writer, up_writer):
                w.close()

    def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.ensure_future(relay(reader, writer))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    listening = server.sockets[0].getsockname()[1]
    parts = urlsplit(dsn)
    user = parts.netloc.rpartition("@")[0]
    query = {k: v[0] for k, v in parse_qs(parts.query).items() if k != "host"}
    query["sslmode"] = "disable"
    netloc = f"{user}@127.0.0.1:{listening}" if user else f"127.0.0.1:{listening}"
    try:
        yield urlunsplit(parts._replace(netloc=netloc, query=urlencode(query))), record
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            await server.wait_closed()
