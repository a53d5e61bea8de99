"""When a failed request is sent again: letta-client's policy, as tenacity runs it."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from exporter.letta.errors import LettaUnavailable

# The client's messages keep the logger name they had before the modules split.
log = logging.getLogger("exporter.letta.client")


def retrying(
    endpoint: str, *, retries: int, max_wait: float, sleep: Callable[[float], Awaitable[None]]
) -> AsyncRetrying:
    """Up to `retries` more attempts of a retryable LettaUnavailable, then the error."""
    return AsyncRetrying(
        stop=stop_after_attempt(retries + 1),
        wait=_WaitHonouringRetryAfter(max_wait),
        retry=retry_if_exception(_should_retry),
        before_sleep=lambda state: _log_retry(endpoint, state),
        sleep=sleep,
        reraise=True,
    )


class _WaitHonouringRetryAfter:
    """Exponential backoff with jitter, unless the server said how long to wait."""

    def __init__(self, max_wait: float) -> None:
        self._backoff = wait_random_exponential(multiplier=0.5, max=max_wait)

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, LettaUnavailable) and exc.retry_after:
            return exc.retry_after  # at most the total deadline (`Requester._postpone_if_long`)
        return float(self._backoff(state))


def _should_retry(exc: BaseException) -> bool:
    return isinstance(exc, LettaUnavailable) and exc.retryable


def _log_retry(endpoint: str, state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    wait = state.next_action.sleep if state.next_action else 0.0
    log.debug("retrying %s in %.1fs after: %s", endpoint, wait, exc)
