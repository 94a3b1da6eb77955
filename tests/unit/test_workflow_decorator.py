"""@workflow written without parentheses, or with a positional option, does what it says."""

from __future__ import annotations

import pytest

from forgeflow import WorkflowContext, WorkflowDefinition, default_registry, workflow


def test_workflow_without_parentheses_registers_version_1() -> None:
    """Bare @workflow is @workflow(version=1), in the default registry."""

    @workflow
    async def unit_tests_bare_decorator_probe(ctx: WorkflowContext, n: int) -> int:
        return n

    assert isinstance(unit_tests_bare_decorator_probe, WorkflowDefinition)
    assert unit_tests_bare_decorator_probe.version == 1
    assert unit_tests_bare_decorator_probe.input_type is int
    found = default_registry.get_version("unit_tests_bare_decorator_probe", 1)
    assert found is unit_tests_bare_decorator_probe


def test_a_positional_version_says_what_to_write() -> None:
    """@workflow(2) raises a TypeError showing the keyword form."""
    with pytest.raises(TypeError, match=r"write @workflow\(version=2\)"):
        workflow(2)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="takes its options as keywords"):
        workflow("billing")  # type: ignore[call-overload]
