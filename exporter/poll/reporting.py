"""What the poll cycle says in the log: failures without a storm, walk progress."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Final

from exporter.core.listing.walk import Walk
from exporter.letta.errors import LettaAuthError, LettaError
from exporter.units import NS_PER_S

log = logging.getLogger(__name__)

_REPEAT_AFTER_S: Final = 300.0
_PROGRESS_EVERY_S: Final = 5.0


class FailureLog:
    """One line when polling starts to fail (or fails differently) and one when it works
    again, a reminder every 5 minutes in between: no log storm while Letta is down."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._last: tuple[str, float] | None = None

    def failed(self, exc: LettaError, wait_s: float) -> None:
        """Log a failed poll and the wait before the next one."""
        key = f"{type(exc).__name__}:{exc.reason}"
        now = self._monotonic()
        last = self._last
        if last is not None and last[0] == key and now - last[1] < _REPEAT_AFTER_S:
            log.debug("poll failed again: %s; next poll in %s", exc, _seconds(wait_s))
            return
        self._last = (key, now)
        if isinstance(exc, LettaAuthError):
            log.error(
                "Letta rejected the credentials: %s; next poll in %s or when the key file changes",
                exc,
                _seconds(wait_s),
            )
        else:
            log.warning(
                "poll failed (%s): %s; next poll in %s, later while it keeps failing",
                exc.reason,
                exc,
                _seconds(wait_s),
            )

    def succeeded(self) -> None:
        """Say once that Letta answers again."""
        if self._last is not None:
            log.info("Letta API reachable again: polling every interval")
            self._last = None


def _seconds(value: float) -> str:
    return f"{value:.0f}s" if value >= 10 else f"{value:.1f}s"


class WalkProgress:
    """Backfill/catch-up progress: pages, runs/s and ETA, at most every 5 seconds."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._start: tuple[float, int, int, float] | None = None

    def report(self, walk: Walk | None) -> None:
        """Log the pending walk's progress when it is time to."""
        if walk is None or walk.pos is None:
            self._start = None
            return
        now = self._monotonic()
        remaining = walk.remaining_ns()
        if self._start is None:
            self._start = (now, walk.runs, remaining, now)
            return
        started, runs0, remaining0, last_log = self._start
        if now - last_log < _PROGRESS_EVERY_S:
            return
        self._start = (started, runs0, remaining0, now)
        elapsed = max(now - started, 1e-9)
        rate = (walk.runs - runs0) / elapsed
        done_ns = remaining0 - remaining
        eta = remaining / done_ns * elapsed if done_ns > 0 else float("inf")
        log.info(
            "walking history: %d pages, %d runs, %.0f runs/s, %.0f s of history left, ETA %s",
            walk.pages,
            walk.runs,
            rate,
            remaining / NS_PER_S,
            f"{eta:.0f} s" if eta != float("inf") else "unknown",
        )
