"""Every public name, and every public method of a public class, carries a docstring.

The API reference (docs/reference.md) is generated from these docstrings, so a missing
one is a hole in the documentation; this test names it.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import forgeflow
import forgeflow.errors
import forgeflow.http
import forgeflow.pytest_plugin
import forgeflow.testing

MODULES = [forgeflow, forgeflow.errors, forgeflow.testing, forgeflow.http]
REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "reference.md"


def _doc(value: Any) -> str:
    return (inspect.getdoc(value) or "").strip()


def _own_public_members(cls: type) -> Iterator[tuple[str, Any]]:
    """Methods, class/static methods and properties defined by ``cls`` itself."""
    for name, member in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(member, staticmethod | classmethod):
            yield name, member.__func__
        elif isinstance(member, property):
            yield name, member.fget
        elif inspect.isfunction(member):
            yield name, member


def _undocumented(module: ModuleType) -> Iterator[str]:
    for name in module.__all__:
        value = getattr(module, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            if not _doc(value):
                yield f"{module.__name__}.{name}"
        elif not callable(value) and not _doc(type(value)):
            yield f"{module.__name__}.{name} (an instance of an undocumented class)"
        if inspect.isclass(value) and value.__module__.startswith("forgeflow"):
            for member_name, member in _own_public_members(value):
                # A method without a docstring of its own inherits its base's (getdoc).
                if not _doc(getattr(value, member_name, member)):
                    yield f"{module.__name__}.{name}.{member_name}"


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_every_public_name_and_method_has_a_docstring(module: ModuleType) -> None:
    """Each name in the module's __all__, and each public method of its classes, is documented."""
    assert list(_undocumented(module)) == []


def test_public_modules_have_docstrings() -> None:
    """The public modules (and the pytest plugin) open with a docstring."""
    for module in [*MODULES, forgeflow.pytest_plugin]:
        assert _doc(module), module.__name__


def test_the_api_reference_lists_every_public_name() -> None:
    """docs/reference.md renders every name in forgeflow.__all__ (or its whole module)."""
    text = REFERENCE.read_text("utf-8")
    rendered = set(re.findall(r"^::: ([\w.]+)", text, flags=re.MULTILINE))
    missing = [
        name
        for name in forgeflow.__all__
        if f"forgeflow.{name}" not in rendered
        and f"{getattr(forgeflow, name).__module__}" not in rendered
    ]
    assert missing == []
    for module in MODULES[1:]:
        assert module.__name__ in rendered
