"""Loads the named queries of ``sql/queries.sql`` once.

A block headed ``-- name: X`` is a statement; one headed ``-- fragment: Y`` is a piece
of SQL that statements share, spliced in wherever a line reads ``-- include: Y``.
"""

from __future__ import annotations

import re
from importlib import resources

__all__ = ["QUERIES"]

_BLOCK = re.compile(r"^-- (name|fragment): ", re.MULTILINE)
_INCLUDE = re.compile(r"^[ \t]*-- include: (\w+)[ \t]*$", re.MULTILINE)


def _load() -> dict[str, str]:
    text = resources.files("forgeflow").joinpath("sql/queries.sql").read_text("utf-8")
    parts = _BLOCK.split(text)[1:]
    queries: dict[str, str] = {}
    fragments: dict[str, str] = {}
    for kind, block in zip(parts[::2], parts[1::2], strict=True):
        name, _, body = block.partition("\n")
        target = queries if kind == "name" else fragments
        target[name.strip()] = body.strip().rstrip(";")
    return {name: _INCLUDE.sub(lambda m: fragments[m[1]], body) for name, body in queries.items()}


QUERIES = _load()
