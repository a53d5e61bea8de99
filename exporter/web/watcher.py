"""The web configuration in force, re-read when the file or a file it names changes.

The toolkit re-reads the file on every request; here `WebConfigWatcher` re-reads it when
it, or a certificate, key or CA file it names, changes (looked at no more than once a
second, when requests come). A file that fails to load, as one caught half-way through a
rotation may, leaves the previous configuration serving. Switching TLS on or off needs a
restart.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from exporter.letta.auth import Fingerprint, file_fingerprint
from exporter.web.config import WebSecurity, load_web_config
from exporter.web.errors import WebConfigError

log = logging.getLogger("exporter.web")


def _fingerprint(paths: tuple[Path, ...]) -> tuple[Fingerprint, ...]:
    return tuple(file_fingerprint(path) for path in paths)


class WebConfigWatcher:
    """The web configuration in force, re-read when its files change.

    A rotated certificate (cert-manager, a renewed Let's Encrypt cert) or an edited user
    list takes effect for the next connection without a restart. A change that does not
    load keeps the previous configuration serving and sets `last_reload_ok` to False
    until a later change loads.
    """

    def __init__(
        self,
        initial: WebSecurity,
        *,
        check_every_s: float = 1.0,
        on_reload: Callable[[], None] = lambda: None,
    ) -> None:
        self._current = initial
        self._fingerprint = _fingerprint(initial.watched)
        self._failure: str | None = None
        self._check_every_s = check_every_s
        self._next_check = time.monotonic() + check_every_s
        self._lock = threading.Lock()
        self.last_reload_ok = True
        # Told on the thread of the request that reloaded, before that request is
        # answered: a scrape that finds a new file shows the outcome at once.
        self._on_reload = on_reload

    def current(self) -> WebSecurity:
        """The configuration to apply to a connection or request starting now."""
        now = time.monotonic()
        if now >= self._next_check:
            with self._lock:
                if now >= self._next_check:
                    self._reload_if_changed()
                    self._next_check = time.monotonic() + self._check_every_s
        return self._current

    def _reload_if_changed(self) -> None:
        old = self._current
        before = _fingerprint(old.watched)
        if before == self._fingerprint and self._failure is None:
            return
        # After a failure every check reads again: the fix may be in a file the old
        # configuration does not name (a new cert_file copied after the edit).
        try:
            new = load_web_config(old.path)
            if (new.ssl_context is None) != (old.ssl_context is None):
                raise WebConfigError(
                    old.path, "tls_server_config", "turning TLS on or off needs a restart"
                )
        except WebConfigError as exc:
            if str(exc) != self._failure:  # once per problem, not once a second
                log.warning("%s; still serving with the previous web configuration", exc)
            self._failure = str(exc)
            self.last_reload_ok = False
            self._on_reload()
            return
        # The fingerprint taken before reading: a change made while reading loads again.
        self._fingerprint = before if new.watched == old.watched else _fingerprint(new.watched)
        self._failure = None
        self._current = new
        self.last_reload_ok = True
        self._on_reload()
        log.info("web config %s reloaded", old.path)
