"""Why a request to Letta failed, as exception types that carry a bounded `reason` label.

    LettaError
    ├── LettaUnavailable   timeout, connection error, 408, 409, 429, 5xx (retried first)
    │   └── LettaPostponed Letta asked to wait longer than the request may take
    ├── LettaAuthError     401 / 403: the API key or password is wrong
    ├── LettaNotFound      404: the run (or its metrics row) does not exist
    ├── LettaRequestError  any other 4xx: the exporter asked for something invalid
    ├── LettaNotImplemented 405 / 501: the server does not serve the route
    └── LettaBadResponse   not JSON, wrong shape, or larger than the size cap

Messages name the endpoint and status, never request headers, so the API key cannot leak
through an exception text.
"""

from __future__ import annotations

from typing import Final

POLL_ERROR_REASONS: Final = (
    "timeout",
    "connect",
    "http_429",
    "http_5xx",
    "http_4xx",
    "auth",
    "bad_response",
    "too_large",
)


class LettaError(Exception):
    """Base class; `reason` is one of POLL_ERROR_REASONS."""

    reason: str = "bad_response"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class LettaUnavailable(LettaError):
    """The server did not answer usefully; worth retrying later.

    `retryable` is False when the server said not to retry (`x-should-retry: false`).
    """

    def __init__(
        self,
        message: str,
        *,
        reason: str,
        retry_after: float | None = None,
        retryable: bool = True,
    ) -> None:
        super().__init__(message, reason=reason)
        self.retry_after = retry_after
        self.retryable = retryable


class LettaPostponed(LettaUnavailable):
    """Letta asked to wait `retry_after` seconds, past the request's deadline: the work
    is to be done again after that, not retried now."""

    def __init__(self, message: str, *, reason: str, retry_after: float) -> None:
        super().__init__(message, reason=reason, retry_after=retry_after, retryable=False)
        self.wait_s = retry_after


class LettaAuthError(LettaError):
    """401/403: credentials are missing or wrong."""

    reason = "auth"


class LettaNotFound(LettaError):
    """404."""

    reason = "http_4xx"


class LettaRequestError(LettaError):
    """A 4xx other than 401/403/404/429."""

    reason = "http_4xx"


class LettaNotImplemented(LettaError):
    """405 or 501: the server does not serve this route (e.g. `/trace` without
    ClickHouse); not retried."""

    reason = "http_5xx"


class LettaBadResponse(LettaError):
    """A body that cannot be used: not JSON, wrong shape, or too large."""
