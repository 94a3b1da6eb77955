"""Settings: arguments win over FORGEFLOW_* variables, which win over defaults; bad values
are refused with the name of the field or variable they came from."""

from __future__ import annotations

import dataclasses
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from forgeflow import ConfigurationError, Settings
from forgeflow._settings import ENV_VARS, direct_url

ROOT = Path(__file__).resolve().parents[2]


def test_without_arguments_or_environment_the_defaults_apply() -> None:
    """An empty environment gives the documented defaults."""
    settings = Settings.load(environ={})
    assert settings == Settings()
    assert (settings.database_url, settings.base_url) == (None, "http://localhost:8000")
    assert (settings.lease, settings.sleep_threshold) == (
        timedelta(seconds=30),
        timedelta(seconds=60),
    )
    assert (settings.retention, settings.min_pool, settings.max_pool) == (None, 2, 20)


def test_the_environment_is_read_and_parsed() -> None:
    """Every FORGEFLOW_* variable sets its field, parsed to its type."""
    environ = {
        "FORGEFLOW_DATABASE_URL": "postgresql://app@db:5432/flows",
        "FORGEFLOW_BASE_URL": "https://flows.example.com/",
        "FORGEFLOW_LEASE": "5s",
        "FORGEFLOW_SLEEP_THRESHOLD": "2m",
        "FORGEFLOW_RETENTION": "30d",
        "FORGEFLOW_MIN_POOL": "1",
        "FORGEFLOW_MAX_POOL": " 8 ",
        "FORGEFLOW_SECRET": "s3cret",
        "FORGEFLOW_ADMIN_TOKEN": "t0ken",
        "FORGEFLOW_LISTEN_URL": "postgresql://app:pw@db-direct:5432/flows",
        "FORGEFLOW_PGBOUNCER": " Yes ",
    }
    assert set(environ) == set(ENV_VARS.values())
    settings = Settings.load(environ=environ)
    assert settings == Settings(
        database_url="postgresql://app@db:5432/flows",
        base_url="https://flows.example.com",
        lease=timedelta(seconds=5),
        sleep_threshold=timedelta(minutes=2),
        retention=timedelta(days=30),
        min_pool=1,
        max_pool=8,
        secret="s3cret",
        admin_token="t0ken",
        listen_url="postgresql://app:pw@db-direct:5432/flows",
        pgbouncer=True,
    )
    assert "s3cret" not in repr(settings) and "t0ken" not in repr(settings)
    assert "pw@" not in repr(settings)


def test_arguments_win_over_the_environment_and_none_means_unset() -> None:
    """An explicit value beats its variable; None falls through to the variable."""
    environ = {"FORGEFLOW_LEASE": "5s", "FORGEFLOW_BASE_URL": "https://env.example.com"}
    settings = Settings.load(environ=environ, lease="1m", base_url=None)
    assert settings.lease == timedelta(minutes=1)
    assert settings.base_url == "https://env.example.com"
    assert settings.lease_seconds == 60


def test_given_defaults_yield_to_the_environment() -> None:
    """``defaults=`` replaces the built-in defaults but not what the environment says."""
    defaults = {"max_pool": 4, "base_url": "http://127.0.0.1:9000"}
    assert Settings.load(environ={}, defaults=defaults).max_pool == 4
    chosen = Settings.load(environ={"FORGEFLOW_MAX_POOL": "12"}, defaults=defaults)
    assert (chosen.max_pool, chosen.base_url) == (12, "http://127.0.0.1:9000")


def test_a_bad_argument_for_an_unset_variable_is_not_reported_against_it() -> None:
    """A broken variable is not read when its argument is given."""
    assert Settings.load(environ={"FORGEFLOW_LEASE": "never"}, lease=10).lease_seconds == 10


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("FORGEFLOW_LEASE", "soon", "is not a duration"),
        ("FORGEFLOW_LEASE", "0s", "must be positive"),
        ("FORGEFLOW_SLEEP_THRESHOLD", "-5s", "is not a duration"),
        ("FORGEFLOW_RETENTION", "30m", "must be at least 1h"),
        ("FORGEFLOW_RETENTION", "a month", "is not a duration"),
        ("FORGEFLOW_BASE_URL", "flows.example.com", "absolute http(s) URL"),
        ("FORGEFLOW_DATABASE_URL", "mysql://db/flows", "postgresql:// URL"),
        ("FORGEFLOW_MIN_POOL", "-1", "cannot be negative"),
        ("FORGEFLOW_MAX_POOL", "lots", "expected a whole number"),
        ("FORGEFLOW_MAX_POOL", "0", "must be at least 1"),
        ("FORGEFLOW_MIN_POOL", "50", "is more than max_pool"),
        ("FORGEFLOW_PGBOUNCER", "maybe", "expected true or false"),
        ("FORGEFLOW_PGBOUNCER", "1", "needs listen_url (FORGEFLOW_LISTEN_URL)"),
        ("FORGEFLOW_LISTEN_URL", "db-direct:5432", "postgresql:// URL"),
    ],
)
def test_a_bad_variable_raises_configuration_error_naming_it(
    variable: str, value: str, problem: str
) -> None:
    """The error starts with the variable's name and says what is wrong with its value."""
    with pytest.raises(ConfigurationError) as raised:
        Settings.load(environ={variable: value})
    assert str(raised.value).startswith(f"{variable}: "), str(raised.value)
    assert problem in str(raised.value)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("lease", "soon"),
        ("lease", 0),
        ("sleep_threshold", "-1s"),
        ("retention", "59m"),
        ("base_url", "/relative"),
        ("max_pool", "x"),
        ("min_pool", True),
        ("pgbouncer", "sometimes"),
        ("pgbouncer", True),
        ("listen_url", "http://db"),
    ],
)
def test_a_bad_argument_raises_value_error_naming_the_field(field: str, value: Any) -> None:
    """Values given in code are refused with a ValueError naming the field."""
    with pytest.raises(ValueError, match=rf"^{field}: ") as raised:
        Settings.load(environ={}, **{field: value})
    assert not isinstance(raised.value, ConfigurationError)


def test_a_password_in_a_bad_database_url_is_not_echoed() -> None:
    """The error for a wrong URL scheme hides the password in it."""
    with pytest.raises(ConfigurationError) as raised:
        Settings.load(environ={"FORGEFLOW_DATABASE_URL": "mysql://app:hunter2@db/x"})
    assert "hunter2" not in str(raised.value)


def test_settings_are_frozen_and_replace_validates() -> None:
    """A Settings cannot be changed in place; replace() returns a checked copy."""
    settings = Settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.lease = timedelta(seconds=1)  # type: ignore[misc]
    assert settings.replace(lease="5s", base_url=None).lease_seconds == 5
    with pytest.raises(ValueError, match=r"^max_pool: "):
        settings.replace(max_pool=0)
    with pytest.raises(TypeError, match="no field 'leese'"):
        settings.replace(leese="5s")


def test_every_setting_is_documented_in_the_operating_table() -> None:
    """docs/operating.md has one table row per field, with its variable and default."""
    text = (ROOT / "docs" / "operating.md").read_text()
    rows = {
        match.group(1): match.group(0) for match in re.finditer(r"^\| `(\w+)` \|.*$", text, re.M)
    }
    for item in dataclasses.fields(Settings):
        assert item.name in rows, item.name
        assert f"`{ENV_VARS[item.name]}`" in rows[item.name], item.name


def test_pgbouncer_is_off_by_default_and_switched_by_its_variable_or_argument() -> None:
    """Behind PgBouncer the direct URL is required; an argument beats the variable."""
    direct = "postgresql://app@db-direct:5432"
    assert Settings.load(environ={}).pgbouncer is False
    environ = {"FORGEFLOW_PGBOUNCER": "on", "FORGEFLOW_LISTEN_URL": direct}
    assert Settings.load(environ=environ).pgbouncer is True
    assert Settings.load(environ=environ, pgbouncer=False).pgbouncer is False
    assert Settings.load(environ={"FORGEFLOW_PGBOUNCER": "off"}).pgbouncer is False
    assert Settings.load(environ={}, pgbouncer="1", listen_url=direct).listen_url == direct


def test_a_listen_url_naming_no_database_takes_the_database_urls() -> None:
    """listen_url without a database name reaches the database of database_url."""
    pooled = "postgresql://app@pgbouncer:6432/flows?sslmode=disable"
    assert direct_url(None, pooled) is None
    assert direct_url("postgresql://app@db:5432", pooled) == "postgresql://app@db:5432/flows"
    assert direct_url("postgresql://app@db:5432/", pooled) == "postgresql://app@db:5432/flows"
    assert direct_url("postgresql://app@db:5432/other", pooled) == "postgresql://app@db:5432/other"
