"""Client-side politeness: a thread-safe token bucket and `Retry-After` parsing."""

from __future__ import annotations

import email.utils
import threading
import time
from collections.abc import Callable

MAX_RETRY_AFTER_S = 300.0


class TokenBucket:
    """Thread-safe rate limiter (the GCRA form of a token bucket): `burst` requests at once, then one per 1/rate s.

    `pause(s)` holds every caller for `s` seconds (a 429's Retry-After); afterwards the spacing resumes, so the
    threads that queued up during the pause do not all fire at once.
    """

    def __init__(self, rate: float, burst: int = 1, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval, self.burst, self._clock = 1.0 / rate, burst, clock
        self._next = clock()  # theoretical arrival time of the next request
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            now = self._clock()
            due = max(self._next, now)
            start = max(now, due - (self.burst - 1) * self.interval)
            self._next = due + self.interval
        if start > now:
            time.sleep(start - now)

    def pause(self, seconds: float) -> None:
        with self._lock:
            self._next = max(self._next, self._clock() + seconds)


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), clamped to [0, 300]."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)
