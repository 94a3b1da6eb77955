"""Where the browser tests find Chromium, and whether they must run.

The browser is the system's Chromium (Debian's ``chromium`` package), never one
downloaded by ``playwright install``. Without it (or without Playwright) the browser
tests are skipped with the reason, unless ``FORGEFLOW_BROWSER_TESTS=1`` requires them:
then a missing browser fails them. CI sets that variable.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

__all__ = ["ARGS", "CHROMIUM", "REQUIRED", "REQUIRE_VARIABLE", "missing_browser"]

REQUIRE_VARIABLE = "FORGEFLOW_BROWSER_TESTS"
REQUIRED = os.environ.get(REQUIRE_VARIABLE, "") == "1"
# FORGEFLOW_CHROMIUM points at another Chromium build (another system's path, say).
CHROMIUM = os.environ.get("FORGEFLOW_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def missing_browser() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if importlib.util.find_spec("playwright") is None:
        return "the browser tests need Playwright: pip install -e '.[dev]'"
    if not Path(CHROMIUM).is_file():
        return f"the browser tests need Chromium at {CHROMIUM}: apt-get install chromium"
    return None
