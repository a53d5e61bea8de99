"""`rate_limit`: a token bucket over all requests."""

from __future__ import annotations

import threading
import time


class RateLimiter:
    """Token bucket: `burst` requests at once, then one per `interval` seconds."""

    def __init__(self, interval_s: float, burst: int) -> None:
        self._interval = interval_s
        self._burst = float(burst)
        self._tokens = float(burst)
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def allow(self) -> bool:
        """Take a token if one is left."""
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self._burst, self._tokens + (now - self._last) / self._interval)
            self._last = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            return False
