"""Rate-limited logging of refusals, per source.

Owns: deciding whether a log line about a refused call is written. Each
(source, kind) pair may write ``limits.refusal_log_burst`` lines per
``limits.refusal_log_window_seconds``; further lines are counted, and the next
line after the window says how many were suppressed. A source is the caller's
network address without its port, so a client opening a fresh connection per
call is still one source. Memory is bounded: past
``limits.refusal_log_sources`` pairs the table is cleared (and a line says so).

Does not own: what is logged (the interceptor), log formatting or handlers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from gateway.limits import DEFAULT_LIMITS, Limits


def source_of(peer: str) -> str:
    """``ipv4:10.0.0.5:53211`` -> ``ipv4:10.0.0.5``; ``ipv6:[::1]:5`` -> ``ipv6:[::1]``."""
    head, sep, tail = peer.rpartition(":")
    if sep and tail.isdigit() and head and not head.endswith(":"):
        return head[:64]
    return peer[:64]


@dataclass
class _Window:
    start: float
    written: int = 0
    suppressed: int = 0


class RateLimitedLog:
    def __init__(
        self,
        logger: logging.Logger,
        limits: Limits = DEFAULT_LIMITS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self._burst = limits.refusal_log_burst
        self._window = limits.refusal_log_window_seconds
        self._max_keys = limits.refusal_log_sources
        self._clock = clock
        self._lock = threading.Lock()
        self._windows: dict[tuple[str, str], _Window] = {}

    def log(
        self,
        level: int,
        source: str,
        kind: str,
        msg: str,
        *args: object,
        exc_info: bool = False,
        extra: Mapping[str, object] | None = None,
    ) -> bool:
        """Write ``msg % args`` unless ``source`` used up its lines for ``kind``.

        Returns whether the line was written. ``exc_info`` (a traceback) is
        only ever attached to the first line of a window.
        """
        now = self._clock()
        key = (source, kind)
        with self._lock:
            w = self._windows.get(key)
            if w is None:
                if len(self._windows) >= self._max_keys:
                    self._windows.clear()
                    self._log.warning("rate-limited log: too many sources, counters reset")
                w = self._windows[key] = _Window(now)
            elif now - w.start >= self._window:
                if w.suppressed:
                    self._log.log(
                        level,
                        "%d similar messages (%s) from %s suppressed in the last %.0f s",
                        w.suppressed,
                        kind,
                        source,
                        now - w.start,
                    )
                w.start, w.written, w.suppressed = now, 0, 0
            if w.written >= self._burst:
                w.suppressed += 1
                return False
            w.written += 1
            first = w.written == 1
        self._log.log(level, msg, *args, exc_info=exc_info and first, extra=extra)
        return True
