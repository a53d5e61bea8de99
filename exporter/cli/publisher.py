"""The one snapshot /metrics, the status page and the health endpoints show.

Each committed cycle publishes its snapshot with the readings of that moment (the
request rate in force, the endpoints Letta serves, the scope verdict, the web config
reload). Those change between cycles, so they are read again whenever they may have
changed, after each answer from Letta and after each web config reload, and the
snapshot is published again if they did: a scrape sees a change as soon as it did when
it asked the parts itself, and asks nothing.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable

from exporter.metrics.collector import RunsCollector
from exporter.metrics.snapshot import Health, Readings, Snapshot
from exporter.web.status import StatusPage


class Publisher:
    """Puts the readings into each cycle's snapshot and shows it; again on a change."""

    def __init__(self, collector: RunsCollector, status_page: StatusPage) -> None:
        self._collector = collector
        self._status_page = status_page
        self._read: Callable[[], Readings] = Readings
        self._shown = Snapshot()
        self._lock = threading.Lock()

    def read_from(self, read: Callable[[], Readings]) -> None:
        """Where the readings come from (set once the parts that hold them exist)."""
        self._read = read

    def cycle(self, snapshot: Snapshot) -> None:
        """Show a committed cycle's snapshot with the readings of now."""
        with self._lock:
            self._shown = dataclasses.replace(snapshot, readings=self._read())
            self._collector.publish(self._shown)
            self._status_page.publish(self._shown)

    def refresh(self) -> None:
        """Show the last cycle's snapshot again if a reading changed since."""
        with self._lock:
            readings = self._read()
            if readings == self._shown.readings:
                return
            self._shown = dataclasses.replace(self._shown, readings=readings)
            self._collector.publish(self._shown)
            self._status_page.show(self._shown)

    def health(self) -> Health:
        """Poll health as last published (/healthz, /readyz)."""
        # One reference read, without the lock: a probe never waits for a publication.
        return self._shown.health
