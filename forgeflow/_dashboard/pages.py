"""The small HTML pages a person sees after clicking a hook link in an email."""

from __future__ import annotations

import json
from datetime import UTC
from html import escape
from typing import Any

from starlette.responses import HTMLResponse

from .._models import HookRecord, HookStatus, Outcome
from ..errors import HookError

__all__ = ["choices", "hook_error", "page", "recorded"]

_STYLE = """
body { font: 16px/1.5 system-ui, sans-serif; color: #1f2328; background: #f6f8fa; margin: 0; }
main { max-width: 32rem; margin: 10vh auto; background: #fff; padding: 2rem 2.5rem;
       border: 1px solid #d0d7de; border-radius: 8px; }
h1 { font-size: 1.4rem; margin-top: 0; }
.choices a { display: inline-block; margin: .25rem .5rem .25rem 0; padding: .5rem 1rem;
             border-radius: 6px; color: #fff; text-decoration: none; }
.approve { background: #1a7f37; } .reject { background: #cf222e; }
.escalate { background: #9a6700; }
dt { font-weight: 600; } dd { margin: 0 0 .5rem 0; }
"""

_HEADERS = {
    # The hook id in the URL is a credential: never leak it in a Referer, never cache it.
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "frame-ancestors 'none'; base-uri 'none'",
}


def page(status: int, title: str, message: str, extra: str = "") -> HTMLResponse:
    """A minimal page; ``title`` and ``message`` are escaped, ``extra`` is trusted HTML."""
    body = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body><main>"
        f"<h1>{escape(title)}</h1><p>{escape(message)}</p>{extra}</main></body></html>"
    )
    return HTMLResponse(body, status_code=status, headers=_HEADERS)


def recorded(decision: str) -> HTMLResponse:
    """The decision was taken."""
    return page(200, "Thank you", f"Your decision ({decision}) has been recorded.")


def hook_error(exc: HookError) -> HTMLResponse:
    """The hook is unknown, already used or expired."""
    messages = {
        404: ("Link not found", "This link is not valid."),
        409: ("Already decided", "A decision has already been recorded for this request."),
        410: ("Link expired", "This request has expired; no decision can be taken any more."),
    }
    title, message = messages.get(exc.status_code, ("Not possible", exc.message))
    return page(exc.status_code, title, message)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def choices(hook: HookRecord) -> HTMLResponse:
    """The hook and a link per decision (a link opened without ?decision=)."""
    if hook.status is HookStatus.CONSUMED:
        return page(
            409, "Already decided", "A decision has already been recorded for this request."
        )
    if hook.is_expired:
        return page(410, "Link expired", "This request has expired.")
    rows = [("Workflow", hook.workflow), ("Request", hook.name)]
    # The metadata the workflow gave the hook is what is being approved: show it.
    rows += [(str(key), _text(value)) for key, value in hook.metadata.items()]
    if hook.expires_at is not None:
        rows.append(("Expires", hook.expires_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")))
    details = (
        "<dl>"
        + "".join(f"<dt>{escape(key)}</dt><dd>{escape(value)}</dd>" for key, value in rows)
        + "</dl>"
    )
    links = "".join(
        f'<a class="{o.value}" href="?decision={o.value}">{o.value.capitalize()}</a>'
        for o in Outcome
    )
    return page(200, "Decision needed", "Choose one:", f'{details}<p class="choices">{links}</p>')
