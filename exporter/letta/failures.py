"""What an HTTP answer or a transport failure means, as a `LettaError` subclass."""

from __future__ import annotations

import asyncio
import email.utils
import json
import re
import socket
import ssl
import time
from collections.abc import Mapping
from typing import Final

import aiohttp
import httpx

from exporter.letta.errors import (
    LettaAuthError,
    LettaNotFound,
    LettaNotImplemented,
    LettaRequestError,
    LettaUnavailable,
)

# Statuses letta-client 1.12 retries (`_should_retry`): request timeout, lock conflict
# (0.16.8 answers database lock errors with 409 + Retry-After: 1), rate limit, 5xx.
_RETRIED_4XX: Final = frozenset({408, 409, 429})
# Answers that say the route is not served: the endpoint, not the run, is missing.
_NOT_SERVED: Final = frozenset({405, 501})
DETAIL_MAX_CHARS: Final = 200
DETAIL_MAX_BYTES: Final = 4096
# Whatever follows a word that introduces a credential, and token-shaped keys.
_CREDENTIAL: Final = re.compile(
    r"(?i)\b(bearer|password|api[ _-]?key|token|secret|authorization)\b[\"']?\s*[:=]?\s*\S+"
)
_KEY_LIKE: Final = re.compile(r"\b(sk|pk|ak|key)-[A-Za-z0-9_\-]{8,}")


def raise_for_status(
    endpoint: str, response: httpx.Response, credential_hint: str, detail: str = ""
) -> None:
    """Raise the LettaError a non-2xx answer stands for; `credential_hint` ends a 401/403's,
    `detail` (Letta's own words, from `letta_detail`) follows the status of a 4xx."""
    status = response.status_code
    if status < 300:
        return
    said = f" ({detail})" if detail else ""
    # As in letta-client, the server's `x-should-retry` overrides the status.
    should_retry = response.headers.get("x-should-retry")
    if status in (401, 403):
        raise LettaAuthError(f"{endpoint}: Letta answered {status}{said}; {credential_hint}")
    transient = status in _RETRIED_4XX or (status >= 500 and status not in _NOT_SERVED)
    if transient or should_retry == "true":
        reason = "http_429" if status == 429 else "http_5xx" if status >= 500 else "http_4xx"
        raise LettaUnavailable(
            f"{endpoint}: Letta answered {status}" + (" (rate limited)" if status == 429 else ""),
            reason=reason,
            retry_after=_retry_after_seconds(response.headers),
            retryable=should_retry != "false",
        )
    if status == 404:
        raise LettaNotFound(f"{endpoint}: 404 not found{said}")
    if status in _NOT_SERVED:
        raise LettaNotImplemented(
            f"{endpoint}: Letta answered {status} (the route is not served there)",
            reason="http_5xx" if status >= 500 else "http_4xx",
        )
    if 300 <= status < 400:
        raise LettaRequestError(
            f"{endpoint}: unexpected redirect {status}; is LETTA_BASE_URL the server root?"
        )
    raise LettaRequestError(f"{endpoint}: Letta answered {status}{said}")


def wants_detail(status: int) -> bool:
    """Whether Letta's `detail` is worth reading: a 4xx that is not retried."""
    return 400 <= status < 500 and status not in _RETRIED_4XX


def letta_detail(body: bytes) -> str:
    """Letta's `{"detail": ...}` as one short line without anything that looks like a
    credential; "" when the body has none."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return ""
    detail = parsed.get("detail") if isinstance(parsed, dict) else None
    if detail is None:
        return ""
    text = detail if isinstance(detail, str) else json.dumps(detail, separators=(",", ":"))
    text = _CREDENTIAL.sub(r"\1 <redacted>", text)
    text = _KEY_LIKE.sub("<redacted>", text)
    text = " ".join(text.split())  # one line: no newlines or control whitespace
    text = "".join(ch for ch in text if ch.isprintable())
    return text if len(text) <= DETAIL_MAX_CHARS else text[: DETAIL_MAX_CHARS - 1] + "…"


def _retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """How long the server asked to wait, as letta-client reads it: `retry-after-ms`
    first, then `Retry-After` in seconds or as an HTTP date. None when neither parses."""
    try:
        return max(0.0, float(headers.get("retry-after-ms", "")) / 1000)
    except ValueError:
        pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, parsed.timestamp() - time.time())


def timed_out(exc: httpx.TransportError) -> bool:
    """Whether a transport error is a timeout rather than a failed connection."""
    # httpx-aiohttp maps every aiohttp connection error, resets and disconnects included,
    # to httpx.ConnectTimeout; only aiohttp's own timeouts are timeouts.
    cause = exc.__cause__
    if isinstance(cause, aiohttp.ClientError):
        return isinstance(cause, asyncio.TimeoutError)
    return isinstance(exc, httpx.TimeoutException)


def connect_problem(exc: httpx.TransportError, base_url: str) -> str:
    """Why Letta at `base_url` could not be reached, in words a user can act on."""
    check = "is LETTA_BASE_URL (--letta.url) right?"
    for cause in _chain(exc):
        if isinstance(cause, ssl.SSLCertVerificationError):
            # aiohttp wraps OpenSSL's error; the wrapped one has the verify message.
            original = getattr(cause, "certificate_error", cause)
            detail = getattr(original, "verify_message", None) or str(original)
            return (
                f"Letta's TLS certificate is not trusted ({detail}); for a private CA, "
                "point SSL_CERT_FILE at a bundle that holds it"
            )
        if isinstance(cause, aiohttp.ClientConnectorDNSError | socket.gaierror):
            return f"cannot resolve the host of {base_url}: {check}"
        if isinstance(cause, ConnectionRefusedError) or "connection refused" in str(cause).lower():
            return (
                f"nothing answers at {base_url} (connection refused): does Letta run "
                f"there, and {check}"
            )
    name = type(exc.__cause__ if isinstance(exc.__cause__, aiohttp.ClientError) else exc).__name__
    return f"cannot reach Letta at {base_url} ({name}): does Letta run there, and {check}"


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and its causes and contexts, each once (a chain can loop)."""
    seen: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and not any(cause is known for known in seen):
        seen.append(cause)
        cause = cause.__cause__ or cause.__context__
    return seen
