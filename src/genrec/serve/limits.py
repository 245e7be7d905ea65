"""What one client may ask of the server, and the admin endpoints' rate limit.

Every endpoint but `/admin/*` answers anyone, so each bound here caps the work
an unauthenticated caller can make the server do: bytes read, requests and
items per call, query and history length, compute time per call, how long an
idle connection is kept. Going over a bound is a 4xx saying which bound
(413 for the body, 422 for the rest, 429 for the admin rate); only a call that
runs out of compute time is a 503, since the same call may fit on a quieter
server. `genrec serve` sets each bound from a command-line flag.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field, fields


def _limit(default, help: str):
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class ServeLimits:
    """Bounds on one call (each field's `help` is its `genrec serve` flag's help). With the
    defaults the worst call (64 searches at k=100) costs the demo's generative model
    about a second of one core, against 8.4 s for 256 searches at k=1000 before."""

    max_body_bytes: int = _limit(256 * 1024, "request body bytes, 413 past it (64 requests of 512-character queries fit)")
    max_requests_per_call: int = _limit(64, "requests in one POST /retrieve")
    max_k: int = _limit(100, "items one request may ask for")
    max_query_chars: int = _limit(512, "characters in a query")
    max_history: int = _limit(200, "interactions GET /users/{id}?recent= may return")
    max_call_s: float = _limit(10.0, "seconds of compute one call may take before it is answered 503")
    keep_alive_s: float = _limit(5.0, "seconds before an idle or half-sent connection is closed")
    max_connections: int = _limit(1000, "open connections before new requests are answered 503")
    admin_calls_per_minute: int = _limit(10, "/admin/* calls per client address per minute, 429 past it")

    def __post_init__(self) -> None:
        for limit in fields(self):
            value = getattr(self, limit.name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{limit.name} must be a positive number, got {value!r}")


class RateLimiter:
    """A token bucket per key: `per_minute` calls, refilled evenly over the minute.

    Thread-safe and bounded in memory: buckets that are full again are forgotten.
    """

    def __init__(self, per_minute: int, clock=time.monotonic):
        self.rate = per_minute / 60.0
        self.capacity = float(per_minute)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Spend one call for `key`; returns 0 when allowed, else the seconds until the next is."""
        with self._lock:
            now = self.clock()
            self._forget_full(now)
            tokens, last = self._buckets.get(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            if tokens < 1:
                self._buckets[key] = (tokens, now)
                return (1 - tokens) / self.rate
            self._buckets[key] = (tokens - 1, now)
            return 0.0

    def _forget_full(self, now: float) -> None:
        if len(self._buckets) > 1024:
            self._buckets = {k: (t, last) for k, (t, last) in self._buckets.items()
                             if t + (now - last) * self.rate < self.capacity}
