"""Settings: one object read from arguments, then ``FORGEFLOW_*`` variables, then defaults.

Every entry point (``Forgeflow.connect``, ``ff.worker()``, the CLI, the HTTP app, the
testing toolkit) builds or inherits the same :class:`Settings`, so a value given once is
honoured everywhere. docs/operating.md documents each field in one table.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ._durations import format_duration, parse_duration
from .errors import ConfigurationError

__all__ = ["ENV_VARS", "Settings", "direct_url"]

# The environment variable of each field.
ENV_VARS: dict[str, str] = {
    "database_url": "FORGEFLOW_DATABASE_URL",
    "base_url": "FORGEFLOW_BASE_URL",
    "lease": "FORGEFLOW_LEASE",
    "sleep_threshold": "FORGEFLOW_SLEEP_THRESHOLD",
    "retention": "FORGEFLOW_RETENTION",
    "min_pool": "FORGEFLOW_MIN_POOL",
    "max_pool": "FORGEFLOW_MAX_POOL",
    "secret": "FORGEFLOW_SECRET",
    "admin_token": "FORGEFLOW_ADMIN_TOKEN",
    "listen_url": "FORGEFLOW_LISTEN_URL",
    "pgbouncer": "FORGEFLOW_PGBOUNCER",
}

_MIN_RETENTION = timedelta(hours=1)


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name}: expected a string, got {type(value).__name__}")
    return value


def _database_url(value: Any, name: str) -> str:
    text = _text(value, name).strip()
    if urlsplit(text).scheme not in ("postgresql", "postgres"):
        raise ValueError(f"{name}: expected a postgresql:// URL, got {_hide_password(text)!r}")
    return text


def _hide_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


def _base_url(value: Any, name: str) -> str:
    text = _text(value, name).strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(
            f"{name}: expected an absolute http(s) URL such as "
            f"'https://flows.example.com', got {text!r}"
        )
    return text.rstrip("/")


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _flag(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError(f"{name}: expected true or false (1/0, yes/no, on/off), got {value!r}")


def direct_url(listen_url: str | None, database_url: str) -> str | None:
    """The direct URL of ``listen_url``: a URL naming no database takes ``database_url``'s."""
    if listen_url is None:
        return None
    parts = urlsplit(listen_url)
    if parts.path.strip("/"):
        return listen_url
    return urlunsplit(parts._replace(path=urlsplit(database_url).path))


def _duration(value: Any, name: str) -> timedelta:
    return parse_duration(value, field=name)


def _count(value: Any, name: str) -> int:
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise ValueError(f"{name}: expected a whole number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name}: expected a whole number, got {type(value).__name__}")
    return value


_PARSERS: dict[str, Callable[[Any, str], Any]] = {
    "database_url": _database_url,
    "base_url": _base_url,
    "lease": _duration,
    "sleep_threshold": _duration,
    "retention": _duration,
    "min_pool": _count,
    "max_pool": _count,
    "secret": _text,
    "admin_token": _text,
    "listen_url": _database_url,
    "pgbouncer": _flag,
}


@dataclass(frozen=True)
class Settings:
    """forgeflow's settings: explicit values, then ``FORGEFLOW_*`` variables, then defaults."""

    #: PostgreSQL URL; None starts the embedded server under ``./.forgeflow``.
    database_url: str | None = field(default=None, repr=False)
    #: Public address of the HTTP app, the start of every hook link.
    base_url: str = "http://localhost:8000"
    #: How long a claimed run stays with its worker without a heartbeat.
    lease: timedelta = timedelta(seconds=30)
    #: Waits longer than this release the worker; shorter ones sleep in place.
    sleep_threshold: timedelta = timedelta(seconds=60)
    #: How long finished runs are kept; None keeps them forever.
    retention: timedelta | None = None
    #: Connections the client's pool keeps open, and at most opens.
    min_pool: int = 2
    max_pool: int = 20
    #: HMAC secret trigger calls to the HTTP app must be signed with.
    secret: str | None = field(default=None, repr=False)
    #: Bearer token of the HTTP app's admin endpoints and dashboard.
    admin_token: str | None = field(default=None, repr=False)
    #: A direct PostgreSQL URL (no pooler in between) for LISTEN, migrations and
    #: advisory locks; None uses ``database_url``. Without a database name, that of
    #: ``database_url``.
    listen_url: str | None = field(default=None, repr=False)
    #: ``database_url`` goes through PgBouncer in transaction pooling: no prepared
    #: statement outlives its transaction, and ``listen_url`` is required.
    pgbouncer: bool = False

    def __post_init__(self) -> None:
        if self.lease <= timedelta(0):
            raise ValueError(f"lease: must be positive, got {format_duration(self.lease)}")
        if self.sleep_threshold < timedelta(0):
            raise ValueError("sleep_threshold: cannot be negative")
        if self.retention is not None and self.retention < _MIN_RETENTION:
            raise ValueError(
                f"retention: must be at least 1h, got {format_duration(self.retention)}"
            )
        if self.min_pool < 0:
            raise ValueError(f"min_pool: cannot be negative, got {self.min_pool}")
        if self.max_pool < 1:
            raise ValueError(f"max_pool: must be at least 1, got {self.max_pool}")
        if self.min_pool > self.max_pool:
            raise ValueError(f"min_pool: {self.min_pool} is more than max_pool ({self.max_pool})")
        if self.pgbouncer and self.listen_url is None:
            raise ValueError(
                "pgbouncer: needs listen_url (FORGEFLOW_LISTEN_URL), a direct PostgreSQL "
                "URL: LISTEN, migrations and advisory locks cannot go through "
                "transaction pooling"
            )

    @classmethod
    def load(
        cls,
        *,
        environ: Mapping[str, str] | None = None,
        defaults: Mapping[str, Any] | None = None,
        **values: Any,
    ) -> Settings:
        """Settings from ``values`` (None means unset), else the environment, else defaults.

        ``defaults`` replaces built-in defaults (the CLI's pool sizes, ``serve``'s own
        address) without overriding the environment. A bad environment variable raises
        ConfigurationError naming it; a bad value raises ValueError naming the field.
        """
        env = os.environ if environ is None else environ
        resolved = {name: _parse(name, v, name) for name, v in values.items() if v is not None}
        given_by: dict[str, str] = {}
        for name, variable in ENV_VARS.items():
            text = env.get(variable, "").strip()
            if name in resolved or not text:
                continue
            try:
                resolved[name] = _parse(name, text, variable)
            except ValueError as exc:
                raise ConfigurationError(str(exc)) from None
            given_by[name] = variable
        for name, value in (defaults or {}).items():
            if name not in resolved and value is not None:
                resolved[name] = _parse(name, value, name)
        try:
            return cls(**resolved)
        except ValueError as exc:
            name = str(exc).partition(":")[0]
            if name not in given_by:
                raise
            variable = given_by[name]
            raise ConfigurationError(f"{variable}{str(exc)[len(name) :]}") from None

    def replace(self, **values: Any) -> Settings:
        """A copy with the given fields changed (None leaves a field as it is), validated."""
        changed = {name: _parse(name, v, name) for name, v in values.items() if v is not None}
        return dataclasses.replace(self, **changed)

    @property
    def lease_seconds(self) -> float:
        """The lease in seconds."""
        return self.lease.total_seconds()


def _parse(name: str, value: Any, label: str) -> Any:
    parser = _PARSERS.get(name)
    if parser is None:
        raise TypeError(f"Settings has no field {name!r}")
    return parser(value, label)
