"""The install lines in the docs work without a package index entry for forgeflow."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
# A pip install of forgeflow names a checkout (".", "-e .") or a built wheel (dist/…).
FROM_INDEX = re.compile(r"pip install [^\n#]*?['\"]?forgeflow(\[|\s|['\"]|$)")


def test_no_doc_installs_forgeflow_from_a_package_index() -> None:
    """forgeflow is not published: no page tells a reader to pip install it by name."""
    offending = [
        f"{path.relative_to(ROOT)}: {line.strip()}"
        for path in DOCS
        for line in path.read_text().splitlines()
        if FROM_INDEX.search(line)
    ]
    assert offending == []


def test_the_documented_wheel_build_gives_a_wheel_with_its_sql_and_extras(
    tmp_path: Path,
) -> None:
    """`pip wheel --no-deps -w dist .` (getting-started.md) builds an installable wheel."""
    assert "pip wheel --no-deps -w dist ." in (ROOT / "docs" / "getting-started.md").read_text()
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(ROOT)],
        check=True,
        timeout=100,
    )
    (wheel,) = tmp_path.glob("forgeflow-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = next(archive.read(n).decode() for n in names if n.endswith("/METADATA"))
    assert {"forgeflow/sql/queries.sql", "forgeflow/migrations/0001_initial.sql"} <= names
    for extra in ("embedded", "http"):
        assert f"Provides-Extra: {extra}" in metadata
