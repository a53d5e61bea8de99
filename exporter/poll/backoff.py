"""How long the poll loop waits after a failed cycle, and what may end that wait early.

The exporter is a guest of the Letta server: a failed cycle is followed by at least the
poll interval (a pending walk or due enrichment never shortens it), and each further
failure doubles the wait, with jitter so that many exporters do not retry in step, up to
`MAX_BACKOFF_S`. The first good cycle brings the loop back to its interval. After a
401/403 the wait also ends when the API key file changes: the rotated key is tried at
once instead of after minutes of backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final

from exporter.letta.auth import Fingerprint, file_fingerprint

MAX_BACKOFF_S: Final = 300.0
JITTER: Final = 0.25
"""A wait is stretched by up to this share, at random."""
KEY_CHECK_EVERY_S: Final = 1.0

Wait = Callable[[asyncio.Event, float], Awaitable[None]]
"""Wait `seconds` or until the event is set, whichever comes first."""


async def wait_or_stop(stop: asyncio.Event, seconds: float) -> None:
    """The loop's wait in production: real time, cut short by `stop`."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds if seconds > 0 else 0.001)


class PollBackoff:
    """Consecutive failed cycles and the wait they call for."""

    def __init__(
        self,
        interval_s: float,
        *,
        max_s: float = MAX_BACKOFF_S,
        uniform: Callable[[], float] = random.random,
    ) -> None:
        self._interval_s = interval_s
        self._max_s = max(max_s, interval_s)
        self._uniform = uniform
        self.failures = 0
        self.wait_s = 0.0
        """The wait after the last cycle: 0 after a good one."""

    def failed(self, asked_s: float | None = None) -> float:
        """Count a failed cycle; returns the wait before the next one (at least what
        Letta asked for with Retry-After, `asked_s`)."""
        self.failures += 1
        doubled = self._interval_s * 2.0 ** min(self.failures - 1, 30)
        jittered = min(self._max_s, doubled * (1.0 + JITTER * self._uniform()))
        self.wait_s = max(self._interval_s, jittered, asked_s or 0.0)
        return self.wait_s

    def succeeded(self) -> None:
        """A good cycle: back to the poll interval."""
        self.failures = 0
        self.wait_s = 0.0


class KeyFileWatch:
    """Tells when the API key file changed since the last 401/403 (None: no file)."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._seen: Fingerprint = file_fingerprint(path) if path is not None else None

    def rejected(self) -> None:
        """Letta rejected the key: remember the file as it is now."""
        if self._path is not None:
            self._seen = file_fingerprint(self._path)

    def changed(self) -> bool:
        """Whether the file differs from what Letta last rejected."""
        return self._path is not None and file_fingerprint(self._path) != self._seen

    @property
    def watched(self) -> bool:
        """Whether there is a file to watch."""
        return self._path is not None


async def wait_unless_key_changes(
    wait: Wait, stop: asyncio.Event, seconds: float, key: KeyFileWatch
) -> None:
    """`wait`, in slices of a second, ending early once the key file changes."""
    if not key.watched:
        await wait(stop, seconds)
        return
    left = seconds
    while left > 0 and not stop.is_set() and not key.changed():
        step = min(KEY_CHECK_EVERY_S, left)
        await wait(stop, step)
        left -= step
