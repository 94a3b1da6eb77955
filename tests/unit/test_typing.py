"""Typing for users: mypy --strict on a user's module checks inputs and keeps types."""

from __future__ import annotations

from pathlib import Path

from mypy import api

USER_MODULE = Path(__file__).resolve().parents[1] / "typing_check" / "user_module.py"


def test_a_users_module_type_checks_inputs_outputs_and_optional_steps(tmp_path: Path) -> None:
    """Wrong inputs are errors, outputs and optional results typed (see user_module.py)."""
    out, err, status = api.run(
        ["--strict", "--cache-dir", str(tmp_path / "cache"), str(USER_MODULE)]
    )
    assert status == 0, out + err
