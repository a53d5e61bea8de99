"""The request rate in force: a cap that halves on 429 and climbs back step by step.

Letta Cloud publishes no request limit; a 429 is the only signal. So the pace is AIMD,
as TCP paces a shared link: each 429 halves the rate (once per round of requests: the
429s of requests sent before the last cut are the same congestion), and every
`RECOVERY_INTERVAL_S` without one adds a fixed step, between `FLOOR_PER_S` and the
ceiling: `--letta.rate-limit`, or with no cap (0) the rate observed over the last
`OBSERVE_WINDOW_S` before the first 429.

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
RECOVERY_INTERVAL_S: Final = 5.0
RECOVERY_STEPS: Final = 20  # from the floor back to the ceiling in 20 steps (100 s)
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
        self._ceiling: float | None = max(FLOOR_PER_S, cap_per_s) if cap_per_s > 0 else None
        self._base = self._ceiling  # the rate set at the last cut (or the cap)
        self._base_at = clock()
        self._last_cut_at = -math.inf
        self._tat = 0.0  # GCRA theoretical arrival time
        # Send times while nothing caps the rate, to learn the ceiling at the first 429.
        self._sent: deque[float] | None = deque() if self._ceiling is None else None

    def rate(self) -> float | None:
        """Requests per second in force; None while nothing caps them."""
        if self._base is None or self._ceiling is None:
            return None
        steps = math.floor((self._clock() - self._base_at) / RECOVERY_INTERVAL_S)
        step = max(FLOOR_PER_S, (self._ceiling - FLOOR_PER_S) / RECOVERY_STEPS)
        return min(self._ceiling, self._base + steps * step)

    async def acquire(self) -> float:
        """Wait for the next slot; returns the send time, to pass to `throttled`."""
        while True:
            now = self._clock()
            rate = self.rate()
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
        """A request sent at `sent_at` got a 429: cut the rate, once per round."""
        if sent_at < self._last_cut_at:
            return  # sent before the last cut: the same congestion
        now = self._clock()
        if self._ceiling is None:
            self._ceiling = self._observed(now)
            current = self._ceiling
        else:
            current = self.rate() or self._ceiling
        self._sent = None
        self._base = max(FLOOR_PER_S, current * DECREASE_FACTOR)
        self._base_at = now
        self._last_cut_at = now

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
