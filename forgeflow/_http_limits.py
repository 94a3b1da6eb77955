"""Rate limits on the HTTP trigger endpoints (start, events, hooks), kept in memory.

Counting is done by the ``limits`` library (a moving window in process memory): each
limit admits at most N requests in any interval one period long. Limits are per process;
behind several server processes each enforces its own.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import re
import time
from dataclasses import dataclass
from typing import Literal, NamedTuple

from limits import RateLimitItem, RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter
from starlette.requests import Request

from ._durations import parse_duration

__all__ = ["RateLimit", "RateLimitOption", "RateLimiter", "Refusal", "parse_rate"]

_RATE = re.compile(r"\s*(\d+)\s*/\s*(\S+)\s*")
_PERIODS = {
    "s": 1,
    "sec": 1,
    "second": 1,
    "min": 60,
    "minute": 60,
    "h": 3600,
    "hour": 3600,
    "d": 86400,
    "day": 86400,
}


def parse_rate(rate: str, *, field: str = "rate") -> RateLimitItem:
    """Parse ``"60/min"``, ``"10/s"``, ``"5/2s"`` or ``"1000/hour"`` into a limit."""
    match = _RATE.fullmatch(rate) if isinstance(rate, str) else None
    if match is None:
        raise ValueError(f"{field}: {rate!r} is not a rate (use e.g. '60/min', '10/s', '5/2s')")
    count, period = int(match.group(1)), match.group(2).lower()
    word = period[:-1] if period.endswith("s") and period[:-1] in _PERIODS else period
    if word in _PERIODS:
        seconds = float(_PERIODS[word])
    else:
        try:
            seconds = parse_duration(period, field=field).total_seconds()
        except ValueError:
            raise ValueError(f"{field}: {rate!r} has no period forgeflow knows") from None
    if count < 1 or seconds < 1 or seconds != int(seconds):
        raise ValueError(f"{field}: {rate!r} needs at least 1 request per whole seconds (>= 1s)")
    return RateLimitItemPerSecond(count, int(seconds), namespace="forgeflow")


@dataclass(frozen=True)
class RateLimit:
    """Request limits on the start, event and hook endpoints (``create_app(rate_limit=)``).

    ``per_client`` is shared by those endpoints for one client address; ``per_hook``
    applies to each hook id across all clients. ``None`` switches either off.
    ``trusted_proxies`` is how many reverse proxies in front of the app append to
    ``X-Forwarded-For``: 0 (the default) ignores that header, since any client can send it.
    """

    per_client: str | None = "600/min"
    per_hook: str | None = "60/min"
    trusted_proxies: int = 0

    def __post_init__(self) -> None:
        if self.per_client is not None:
            parse_rate(self.per_client, field="rate_limit.per_client")
        if self.per_hook is not None:
            parse_rate(self.per_hook, field="rate_limit.per_hook")
        if isinstance(self.trusted_proxies, bool) or not (
            isinstance(self.trusted_proxies, int) and self.trusted_proxies >= 0
        ):
            raise ValueError("rate_limit.trusted_proxies: a count of proxies, 0 or more")


RateLimitOption = RateLimit | str | Literal[False] | None


class Refusal(NamedTuple):
    """Why a request was refused: which limit, and in how many seconds to retry."""

    scope: Literal["client", "hook"]
    limit: str
    retry_after: int


class RateLimiter:
    """Counts requests per client address and per hook id against a :class:`RateLimit`."""

    def __init__(self, config: RateLimit) -> None:
        self.config = config
        self._storage = MemoryStorage()
        self._window = MovingWindowRateLimiter(self._storage)
        self._per_client = _item(config.per_client, "per_client")
        self._per_hook = _item(config.per_hook, "per_hook")

    @classmethod
    def from_option(cls, option: RateLimitOption) -> RateLimiter | None:
        """The limiter for ``create_app``'s ``rate_limit`` argument (None: no limits)."""
        if option is None or option is False:
            return None
        if isinstance(option, str):
            return cls(RateLimit(per_client=option))
        if isinstance(option, RateLimit):
            return cls(option)
        raise ValueError(
            "rate_limit: a RateLimit, a rate such as '60/min', or None/False to switch it off"
        )

    def client_address(self, request: Request) -> str:
        """The address a request is counted against (an IPv6 client by its /64)."""
        address = request.client.host if request.client else ""
        ip = _ip(address)
        hops = self.config.trusted_proxies
        if hops:
            forwarded = [
                entry.strip()
                for header in request.headers.getlist("x-forwarded-for")
                for entry in header.split(",")
            ]
            # Each trusted proxy appended the address it saw: the entry that many places
            # from the end is the one the outermost trusted proxy received the request from.
            if len(forwarded) >= hops:
                ip = _ip(forwarded[-hops]) or ip
        if ip is None:
            return address or "unknown"
        if isinstance(ip, ipaddress.IPv6Address):
            if ip.ipv4_mapped is not None:
                return str(ip.ipv4_mapped)
            # One IPv6 host usually holds a whole /64: count the network, not each address.
            return str(ipaddress.IPv6Network((ip, 64), strict=False))
        return str(ip)

    async def check(self, request: Request, hook_id: str | None = None) -> Refusal | None:
        """Count the request; a :class:`Refusal` when it goes over a limit."""
        if self._per_client is not None:
            refusal = await self._hit(
                self._per_client, "client", self.client_address(request), self.config.per_client
            )
            if refusal is not None:
                return refusal
        if hook_id is not None and self._per_hook is not None:
            # Hook ids come from the URL and may be long: count a digest of each.
            digest = hashlib.sha256(hook_id.encode("utf-8", "surrogatepass")).hexdigest()[:32]
            return await self._hit(self._per_hook, "hook", digest, self.config.per_hook)
        return None

    async def _hit(
        self, item: RateLimitItem, scope: Literal["client", "hook"], key: str, rate: str | None
    ) -> Refusal | None:
        if await self._window.hit(item, scope, key):
            return None
        stats = await self._window.get_window_stats(item, scope, key)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        return Refusal(scope, rate or "", retry_after)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _item(rate: str | None, name: str) -> RateLimitItem | None:
    return None if rate is None else parse_rate(rate, field=f"rate_limit.{name}")
