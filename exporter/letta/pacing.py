"""The request rate in force: throttled only when the share of 429s says congestion.

Letta Cloud publishes no request limit; a 429 is the only signal, and not every 429 is
one: a key shared with a busy application, or a proxy in front of a self-hosted server,
answers a few requests 429 whatever the rate. Halving on each of them (AIMD, as TCP
does on a lost packet) held the exporter at its floor under 2.5 % of random 429s. So the
pace judges the answers of the last `WINDOW_S` seconds, as client-side adaptive
throttling does in Google's SRE book (chapter "Handling Overload"): the server is
congested only once the requests exceed `K` times the accepted ones (more than about
9 % of 429s) and at least `MIN_THROTTLED` were 429, over at least a second. Then the
rate is cut to what the server accepted in the last second, but not below `BACK_OFF` of
what was sent while the 429s are at most `MILD` of the answers, nor below `DEEPEST_CUT`
of it above; when the pace held nothing back (no cap yet, or fewer requests than it
allows), the 429s came from a burst and the cut only spaces the requests out at the
rate sent. Requests then go evenly spaced. Answers to requests sent before a cut are
not judged again. While 429s still come at that share, too few to judge, the rate holds
(a storm holds it at the floor). Without congestion it rises once per `ADJUST_EVERY_S`: after a
mild overshoot at the rate in force by `INCREASE` up to `NEAR` times the rate that met
the limit and by 1 % from there; otherwise, or once `CAREFUL_S` passed without a cut,
by `INCREASE_LATER`; up to `--letta.rate-limit`, and with no cap (0) the pace lets go
once it allows `RELEASE_ABOVE` times what is sent.

The wait a 429 asks for (Retry-After, retry-after-ms) is the retry policy's business,
for the request that got it (`retry.py`), not the pace's.

Requests are spaced by GCRA (a token bucket of one second's worth of requests; while
429s hold the rate below the cap, evenly, since the server's own bucket would answer a
burst with more 429s), so a lower rate delays requests; it never drops one.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Final

log = logging.getLogger(__name__)

FLOOR_PER_S: Final = 1.0
WINDOW_S: Final = 5.0
K: Final = 1.1
MIN_THROTTLED: Final = 5
ADJUST_EVERY_S: Final = 1.0
BACK_OFF: Final = 0.9
"""Under a mild overshoot, the cut is to at least this share of the rate sent."""
DEEPEST_CUT: Final = 0.5
MILD: Final = 0.55
"""Up to this share of 429s the overshoot is mild: a server's bucket of one request
answers every other request 429 at any rate between its limit and twice that, so the
accepted rate there says less about the limit than the rate sent."""
BINDING: Final = 0.8
"""The pace holds requests back when at least this share of its rate is sent."""
INCREASE: Final = 1.05
"""The rise per `ADJUST_EVERY_S` for `CAREFUL_S` after a mild overshoot, up to `NEAR`
times the rate that met it; 1 % from there, so the limit just found is approached
slowly."""
NEAR: Final = 0.95
CAREFUL_S: Final = 20.0
INCREASE_LATER: Final = 1.25
"""The rise after that, or after a deep cut (the 429s of a burst, a storm): a limit that
lifted is left behind quickly."""
RELEASE_ABOVE: Final = 2.0
"""With no cap, the pace lets go once it allows this many times what is sent."""


class AdaptivePace:
    """Spaces requests at the rate in force and adapts it to the share of 429s."""

    def __init__(
        self,
        cap_per_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._ceiling = max(FLOOR_PER_S, cap_per_s) if cap_per_s > 0 else math.inf
        self._rate = self._ceiling  # inf: nothing caps the requests
        self._answers: deque[tuple[float, bool]] = deque()  # (sent at, throttled)
        self._throttled = 0  # of the answers
        self._sent: deque[float] = deque()
        self._next_adjust = clock() + ADJUST_EVERY_S
        self._cut_at = -math.inf  # answers to requests sent before it were judged
        self._met = math.inf  # the rate sent when the last cut came
        self._mild = False  # the last cut came from a mild overshoot: a limit is near
        self._tat = 0.0  # GCRA theoretical arrival time
        # Below the cap because of 429s: requests go evenly spaced, without the bucket's
        # burst, which a server's own bucket would answer with more 429s.
        self._even = False

    def rate(self) -> float | None:
        """Requests per second in force; None while nothing caps them."""
        return None if math.isinf(self._rate) else self._rate

    async def acquire(self) -> float:
        """Wait for the next slot; returns the send time (for `answered`)."""
        while True:
            now = self._clock()
            self._adjust(now)
            if math.isinf(self._rate):
                self._remember(now)
                return now
            interval = 1.0 / self._rate
            tolerance = 0.0 if self._even else max(0.0, 1.0 - interval)
            tat = max(self._tat, now)
            if tat - tolerance <= now:
                self._tat = tat + interval
                self._remember(now)
                return now
            await self._sleep(tat - tolerance - now)

    def answered(self, sent_at: float, *, throttled: bool) -> None:
        """A request sent at `sent_at` got an answer: a 429 when `throttled`."""
        if sent_at >= self._cut_at:
            self._answers.append((sent_at, throttled))
            self._throttled += throttled
        now = self._clock()
        self._forget(now)
        if not self._cut(now):
            self._adjust(now)

    def _forget(self, now: float) -> None:
        answers = self._answers
        while answers and answers[0][0] < now - WINDOW_S:
            self._throttled -= answers.popleft()[1]

    def _cut(self, now: float) -> bool:
        """Cut the rate if the answers since the last cut say congestion."""
        answers = self._answers
        requests = len(answers)
        throttled = self._throttled
        accepted = requests - throttled
        if throttled < MIN_THROTTLED or requests <= K * accepted:
            return False
        span = now - answers[0][0]
        if span < ADJUST_EVERY_S:
            return False  # too short to tell the rate the server accepts
        # The rates of the last second: a window that began idle would understate them.
        recent, recent_429s = self._recent(now)
        sent = min(self._rate, recent)
        # What the server accepted, but never below half of what was sent: 429s to a
        # burst of requests in flight together say little about the rate it accepts.
        # A limit is near only when a mild overshoot came while the pace held the
        # requests back; otherwise (no cap yet, or fewer requests than it allows) the
        # rate sent says nothing about where the limit is.
        binding = recent >= BINDING * self._rate * ADJUST_EVERY_S
        mild = throttled <= MILD * requests
        self._mild = mild and binding
        # Not held back, the requests came in bursts: spacing them out is the first cut.
        keep = BACK_OFF if mild else DEEPEST_CUT if binding else 1.0
        target = max(recent - recent_429s, keep * sent)
        self._rate = min(self._ceiling, max(FLOOR_PER_S, target))
        log.debug(
            "%d of %d answers 429 over %.1fs (last second: %d of %d): pace %.1f requests/s",
            throttled,
            requests,
            span,
            recent_429s,
            recent,
            self._rate,
        )
        self._met = sent
        self._even = True
        # The answers judged here are not judged again: the next cut needs 429s to
        # requests sent at the new rate.
        self._cut_at = now
        self._next_adjust = now + ADJUST_EVERY_S
        answers.clear()
        self._throttled = 0
        return True

    def _recent(self, now: float) -> tuple[int, int]:
        """Answers, and 429s among them, to requests sent in the last ADJUST_EVERY_S."""
        answered = throttled = 0
        for sent_at, was_429 in reversed(self._answers):
            if sent_at < now - ADJUST_EVERY_S:
                break
            answered += 1
            throttled += was_429
        return answered, throttled

    def _adjust(self, now: float) -> None:
        """Raise the rate, once per `ADJUST_EVERY_S` without congestion."""
        if now < self._next_adjust:
            return
        self._next_adjust = now + ADJUST_EVERY_S
        self._forget(now)
        if math.isinf(self._rate):
            return
        answered = len(self._answers)
        if answered > K * (answered - self._throttled):
            return  # 429s still come, too few yet to judge: hold (a storm holds the floor)
        if not self._mild or now - self._cut_at >= CAREFUL_S:
            rise = INCREASE_LATER  # far from a limit, or long since it was met
        else:
            rise = INCREASE if self._rate < NEAR * self._met else 1.01
        self._rate = min(self._ceiling, self._rate * rise)
        if math.isinf(self._ceiling) and self._rate > RELEASE_ABOVE * self._sent_per_s(now):
            self._rate = math.inf
        self._even = self._rate < self._ceiling

    def _remember(self, now: float) -> None:
        sent = self._sent
        sent.append(now)
        while sent and sent[0] < now - WINDOW_S:
            sent.popleft()

    def _sent_per_s(self, now: float) -> float:
        sent = self._sent
        while sent and sent[0] < now - WINDOW_S:
            sent.popleft()
        return len(sent) / WINDOW_S
