"""Browser tests run where Chromium is, are skipped elsewhere, and are required in CI."""

from __future__ import annotations

import pytest

from .chromium import REQUIRE_VARIABLE, REQUIRED, missing_browser


@pytest.fixture(scope="session", autouse=True)
def chromium_available() -> None:
    """Skip this directory's tests without a browser, or fail them if they are required."""
    reason = missing_browser()
    if reason is None:
        return
    if REQUIRED:
        pytest.fail(f"{reason} ({REQUIRE_VARIABLE}=1 requires the browser tests)")
    pytest.skip(f"{reason}; set {REQUIRE_VARIABLE}=1 to make this a failure")
