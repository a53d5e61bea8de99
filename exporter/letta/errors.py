"""Why a request to Letta failed, as exception types that carry a bounded `reason` label.

    LettaError
    ├── LettaUnavailable   timeout, connection error, 429, 5xx (retried before raising)
    ├── LettaAuthError     401 / 403: the API key or password is wrong
    ├── LettaNotFound      404: the run (or its metrics row) does not exist
    ├── LettaRequestError  any other 4xx: the exporter asked for something invalid
    ├── LettaNotImplemented 501: the server lacks the feature (`/trace` without ClickHouse)
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
    """The server did not answer usefully; worth retrying later."""

    def __init__(self, message: str, *, reason: str, retry_after: float | None = None) -> None:
        super().__init__(message, reason=reason)
        self.retry_after = retry_after


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
    """501: the server lacks the feature (e.g. `/trace` without ClickHouse); not retried."""

    reason = "http_5xx"


class LettaBadResponse(LettaError):
    """A body that cannot be used: not JSON, wrong shape, or too large."""
