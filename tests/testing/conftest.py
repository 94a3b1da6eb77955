"""The toolkit's tests use the plugin's fixtures, with this directory's own registry."""

from __future__ import annotations

import pytest

from forgeflow import Registry

from . import workflows


@pytest.fixture
def forgeflow_registry() -> Registry:
    """The workflows of tests/testing/workflows.py (the plugin's override point)."""
    return workflows.registry


@pytest.fixture(autouse=True)
def journal() -> list[str]:
    """The steps' journal, emptied for each test."""
    workflows.journal.clear()
    return workflows.journal
