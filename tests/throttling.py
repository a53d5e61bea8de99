"""A server that answers 429: its request budget as a token bucket (`FakeLetta`'s
`set_request_budget`), and the modelled server the pace is tested and measured against
(tests/test_retries.py, tests/benchmarks/bench_pacing.py)."""

from __future__ import annotations

import random


class TokenBucket:
    """`per_s` tokens a second, at most `burst` of them kept; a request takes one."""

    def __init__(self, per_s: float, *, burst: float = 1.0, now: float = 0.0) -> None:
        self.per_s = per_s
        self._burst = burst
        self._tokens = burst
        self._at = now

    def take(self, now: float) -> float | None:
        """None when a token was there (taken), else the seconds until one is."""
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self.per_s)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return None
        return (1.0 - self._tokens) / self.per_s


class ThrottlingServer:
    """Answers 429 above `limit` requests/s (a bucket of one request, as
    `FakeLetta.set_request_budget`), at random with `noise`, or always while `storm`."""

    def __init__(
        self, *, limit: float | None = None, noise: float = 0.0, storm: bool = False
    ) -> None:
        self.noise = noise
        self.storm = storm
        self._rng = random.Random(26)
        self._bucket = TokenBucket(limit) if limit is not None else None

    def lift_limit(self) -> None:
        """Accept any rate from now on (noise and storms still apply)."""
        self._bucket = None

    def throttles(self, now: float) -> bool:
        """Whether a request arriving at `now` is answered 429."""
        if self.storm or self._rng.random() < self.noise:
            return True
        return self._bucket is not None and self._bucket.take(now) is not None
