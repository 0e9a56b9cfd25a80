"""A per-key sliding-window rate limit (subject-access requests per portal).

Owns: counting requests per key in the last ``window`` seconds and refusing
the one over the limit with ``QuotaExceeded`` (RESOURCE_EXHAUSTED), saying
when to retry. In memory: a restart forgets the window, which only ever lets
a portal ask again sooner, never reveals anything.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from gateway.errors import QuotaExceeded


class RateLimiter:
    def __init__(
        self,
        per_window: int,
        window_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limit = per_window
        self._window = window_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: dict[str, deque[float]] = {}

    def take(self, key: str, who: str) -> None:
        """Count one request of ``key``; raise QuotaExceeded when over the limit."""
        now = self._clock()
        with self._lock:
            q = self._seen.setdefault(key, deque())
            while q and q[0] <= now - self._window:
                q.popleft()
            if len(q) >= self._limit:
                retry = max(0.0, q[0] + self._window - now) if q else self._window
                raise QuotaExceeded(
                    f"{who} made {self._limit} subject-access requests in the last "
                    f"{self._window:.0f} s; retry in {retry:.0f} s"
                )
            q.append(now)
            if len(self._seen) > 10_000:  # forget idle keys
                for k in [k for k, v in self._seen.items() if not v or v[-1] <= now - self._window]:
                    del self._seen[k]
