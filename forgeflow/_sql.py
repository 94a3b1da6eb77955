"""Loads the named queries of ``sql/queries.sql`` once."""

from __future__ import annotations

import re
from importlib import resources

__all__ = ["QUERIES"]


def _load() -> dict[str, str]:
    text = resources.files("forgeflow").joinpath("sql/queries.sql").read_text("utf-8")
    queries: dict[str, str] = {}
    for block in re.split(r"^-- name: ", text, flags=re.MULTILINE)[1:]:
        name, _, body = block.partition("\n")
        queries[name.strip()] = body.strip().rstrip(";")
    return queries


QUERIES = _load()
