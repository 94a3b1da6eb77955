"""Small request helpers shared by the HTTP tests."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx

from forgeflow import Forgeflow, HookRecord
from forgeflow.http import SIGNATURE_HEADER, sign

from .server import until_status

__all__ = ["SECRET", "TOKEN", "cursor_of", "signed", "start", "waiting_hook"]

SECRET = "s3cret-for-tests"
TOKEN = "admin-token-for-tests"


async def start(http: httpx.AsyncClient, name: str, input: Any, **kw: Any) -> str:
    """POST /workflows/{name}/start; the new run's id (asserting the 202)."""
    response = await http.post(f"/workflows/{name}/start", json={"input": input}, **kw)
    assert response.status_code == 202, response.text
    run_id: str = response.json()["run_id"]
    return run_id


async def waiting_hook(ff: Forgeflow, http: httpx.AsyncClient, title: str = "doc") -> HookRecord:
    """Start an approval run, wait until it waits, and return its hook."""
    response = await http.post("/workflows/approval/start", json={"input": {"title": title}})
    run_id = response.json()["run_id"]
    record = await until_status(ff, run_id, "waiting")
    hook: HookRecord = record.hooks[0]
    return hook


def signed(body: Any, *, secret: str = SECRET, at: float | None = None) -> dict[str, Any]:
    """Request keywords for a JSON body with its signature header."""
    raw = json.dumps(body).encode()
    stamp = None if at is None else int(at)
    return {
        "content": raw,
        "headers": {SIGNATURE_HEADER: sign(secret, raw, stamp), "Content-Type": "application/json"},
    }


def cursor_of(value: Any, *, raw: bytes | None = None) -> str:
    """A forged ``?cursor=``: ``value`` (or ``raw`` bytes) encoded like the API's cursors."""
    data = raw if raw is not None else json.dumps(value).encode()
    return base64.urlsafe_b64encode(data).decode().rstrip("=")
