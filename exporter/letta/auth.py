"""The Bearer credential of every request, re-read from LETTA_API_KEY_FILE when it changes.

A rotated key (a Kubernetes Secret update, a vault agent rewriting the file) takes
effect without a restart: the file is checked at most once a second, and at once after a
401, so a request that raced the rotation is sent again with the new key instead of
failing the poll. The key itself is never logged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Final

import httpx

log = logging.getLogger(__name__)

_CHECK_EVERY_S: Final = 1.0
Fingerprint = tuple[int, int, int] | None


def file_fingerprint(path: Path) -> Fingerprint:
    """What changes when the file is replaced or rewritten; None while it is missing."""
    try:
        # Follows symlinks: a Kubernetes secret swaps its ..data link, not the files.
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class BearerAuth(httpx.Auth):
    """`Authorization: Bearer <key>` from a fixed key, or from a file watched for changes."""

    def __init__(
        self,
        key: str | None,
        key_file: Path | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        check_every_s: float = _CHECK_EVERY_S,
    ) -> None:
        self._key = key
        self._file = key_file
        self._clock = clock
        self._check_every_s = check_every_s
        self._fingerprint = file_fingerprint(key_file) if key_file is not None else None
        self._next_check = clock() + check_every_s
        self._problem: str | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"BearerAuth(key_file={self._file!s})"

    def current_key(self, *, force: bool = False) -> str | None:
        """The key to send now; re-reads the file if it changed since it was last read."""
        if self._file is not None and (force or self._clock() >= self._next_check):
            with self._lock:
                self._next_check = self._clock() + self._check_every_s
                self._reload()
        return self._key

    def _reload(self) -> None:
        assert self._file is not None
        seen = file_fingerprint(self._file)
        if seen == self._fingerprint and self._problem is None:
            return
        try:
            key = self._file.read_text(encoding="utf-8").strip()
            if not key:
                raise ValueError("it is empty")
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            problem = f"cannot read {self._file}: {reason}"
            if problem != self._problem:  # once per problem, not once a second
                log.warning("%s; keeping the previous API key", problem)
            self._problem = problem
            return
        self._fingerprint = seen
        self._problem = None
        if key != self._key:
            self._key = key
            log.info("API key file %s changed: using the new key", self._file)

    def _apply(self, request: httpx.Request, key: str | None) -> None:
        if key:
            request.headers["Authorization"] = f"Bearer {key}"
        else:
            request.headers.pop("Authorization", None)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Send with the current key; after a 401, once more if the file holds a new one."""
        key = self.current_key()
        self._apply(request, key)
        response = yield request
        if response.status_code == 401 and self._file is not None:
            fresh = self.current_key(force=True)
            if fresh != key:
                self._apply(request, fresh)
                yield request
