"""The command's own surface: --version, listing workflows, usage errors, registry hints."""

from __future__ import annotations

import asyncio

import forgeflow

from .runner import APP
from .runner import forgeflow as run_forgeflow

OWN_REGISTRY_APP = "tests/cli/own_registry_app.py"


async def test_version_prints_the_package_version() -> None:
    """`forgeflow --version` prints the installed version and exits 0."""
    result = await run_forgeflow("--version")
    assert (result.code, result.out.strip()) == (0, f"forgeflow {forgeflow.__version__}")


async def test_workflows_lists_what_a_module_registers() -> None:
    """`forgeflow workflows MODULE` lists names and versions, as a table or as JSON."""
    table = await run_forgeflow("workflows", APP)
    assert table.code == 0, table.err
    assert table.out.splitlines()[0].split()[:3] == ["WORKFLOW", "VERSION", "QUEUE"]
    assert [line.split()[:2] for line in table.out.splitlines()[1:]] == [
        ["booking", "1"],
        ["greet", "1"],
        ["review", "1"],
    ]
    listed = await run_forgeflow("workflows", APP, "--json")
    assert listed.code == 0, listed.err
    greet = next(w for w in listed.json() if w["name"] == "greet")
    assert greet == {
        "name": "greet",
        "version": 1,
        "queue": "default",
        "timeout_seconds": 86400.0,
        "deprecated": False,
    }
    own = await run_forgeflow("workflows", f"{OWN_REGISTRY_APP}:registry", "--json")
    assert [w["name"] for w in own.json()] == ["hello"]


async def test_bad_option_values_are_usage_errors() -> None:
    """Durations and other option values are checked by the parser: exit 2 with a usage line."""
    cases = [
        ["worker", APP, "--grace", "abc"],
        ["worker", APP, "--lease", "abc"],
        ["worker", APP, "--lease", "0s"],
        ["worker", APP, "--base-url", "not a url"],
        ["serve", APP, "--grace", "soon"],
        ["workflows"],
    ]
    results = await asyncio.gather(*(run_forgeflow(*args) for args in cases))
    for args, result in zip(cases, results, strict=True):
        assert result.code == 2, (args, result.err)
        assert "usage: forgeflow" in result.err, (args, result.err)
        assert "unexpected error" not in result.err


async def test_a_module_with_its_own_registry_says_how_to_point_at_it() -> None:
    """A module whose workflows live in its own Registry: the error names MODULE:registry."""
    results = await asyncio.gather(
        run_forgeflow("start", "hello", "--app", OWN_REGISTRY_APP),
        run_forgeflow("worker", OWN_REGISTRY_APP),
        run_forgeflow("workflows", OWN_REGISTRY_APP),
    )
    for result in results:
        assert result.code == 1, result.err
        assert f"{OWN_REGISTRY_APP}:registry" in result.err, result.err
