"""The request rate in force: a cap that halves on 429 and climbs back step by step.

Letta Cloud publishes no request limit; a 429 is the only signal. So the pace is AIMD,
as TCP paces a shared link: a 429 halves the rate, at most once per `CUT_INTERVAL_S`
and not for requests sent before the last cut (the 429s of requests in flight together,
or of one request's retries, are one congestion); after `HOLD_S` without a 429, every
`RECOVERY_INTERVAL_S` adds a twentieth of the way back. So a storm of 429s takes the
rate to `FLOOR_PER_S` in a few seconds and holds it there, and quiet brings it back to
the ceiling in `HOLD_S` + 20 s: `--letta.rate-limit`, or with no cap (0) the rate
observed over the `OBSERVE_WINDOW_S` before the first 429; there, once back at that rate
and `OBSERVE_WINDOW_S` without a 429, the pace lets go (no cap, as configured) and
observes again, so a 429 on the first requests after a start does not hold the exporter
for good at the few requests it had sent by then.

Requests are spaced by GCRA (a token bucket of one second's worth of requests), so a
lower rate delays requests; it never drops one.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Final

FLOOR_PER_S: Final = 1.0
DECREASE_FACTOR: Final = 0.5
CUT_INTERVAL_S: Final = 1.0
HOLD_S: Final = 5.0
RECOVERY_INTERVAL_S: Final = 1.0
RECOVERY_STEPS: Final = 20
OBSERVE_WINDOW_S: Final = 10.0


class AdaptivePace:
    """Spaces requests at the rate in force and adapts it to the server's 429s."""

    def __init__(
        self,
        cap_per_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._capped = cap_per_s > 0
        self._ceiling: float | None = max(FLOOR_PER_S, cap_per_s) if self._capped else None
        self._base = self._ceiling  # the rate in force at the last 429 (or the cap)
        self._last_429_at = -math.inf
        self._last_cut_at = -math.inf
        self._tat = 0.0  # GCRA theoretical arrival time
        # Send times while nothing caps the rate, to learn the ceiling at the first 429.
        self._sent: deque[float] | None = deque() if self._ceiling is None else None

    def rate(self) -> float | None:
        """Requests per second in force; None while nothing caps them."""
        if self._base is None or self._ceiling is None:
            return None
        quiet = self._clock() - self._last_429_at - HOLD_S
        if quiet < 0:
            return self._base
        step = max(FLOOR_PER_S, (self._ceiling - FLOOR_PER_S) / RECOVERY_STEPS)
        steps = min(RECOVERY_STEPS + 1.0, quiet // RECOVERY_INTERVAL_S + 1)  # finite
        return min(self._ceiling, self._base + steps * step)

    async def acquire(self) -> float:
        """Wait for the next slot; returns the send time, to pass to `throttled`."""
        while True:
            now = self._clock()
            rate = self.rate()
            if not self._capped and rate is not None and self._recovered(now, rate):
                self._release()
                rate = None
            if rate is None:
                self._remember(now)
                return now
            interval = 1.0 / rate
            tolerance = max(0.0, 1.0 - interval)
            tat = max(self._tat, now)
            if tat - tolerance <= now:
                self._tat = tat + interval
                return now
            await self._sleep(tat - tolerance - now)

    def throttled(self, sent_at: float) -> None:
        """A request sent at `sent_at` got a 429: cut the rate (once per round) and
        hold it."""
        now = self._clock()
        if self._ceiling is None:
            self._ceiling = self._observed(now)
            self._sent = None
        current = self.rate() or self._ceiling
        self._last_429_at = now
        if sent_at < self._last_cut_at or now - self._last_cut_at < CUT_INTERVAL_S:
            self._base = current  # the same congestion as the last cut: hold, no cut
            return
        self._base = max(FLOOR_PER_S, current * DECREASE_FACTOR)
        self._last_cut_at = now

    def _recovered(self, now: float, rate: float) -> bool:
        return rate >= (self._ceiling or 0.0) and now - self._last_429_at >= OBSERVE_WINDOW_S

    def _release(self) -> None:
        self._ceiling = self._base = None
        self._sent = deque()

    def _remember(self, now: float) -> None:
        sent = self._sent
        if sent is None:
            return
        sent.append(now)
        while sent and sent[0] < now - OBSERVE_WINDOW_S:
            sent.popleft()

    def _observed(self, now: float) -> float:
        sent = self._sent or deque()
        if not sent:
            return FLOOR_PER_S
        span = min(OBSERVE_WINDOW_S, max(1.0, now - sent[0]))
        return max(FLOOR_PER_S, len(sent) / span)
