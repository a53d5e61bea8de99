"""One GET to Letta: pace, retries, Retry-After, deadline, size cap, per-attempt observer."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlencode

import aiohttp
import httpx

from exporter.letta.errors import LettaBadResponse, LettaPostponed, LettaUnavailable
from exporter.letta.failures import (
    DETAIL_MAX_BYTES,
    connect_problem,
    letta_detail,
    raise_for_status,
    timed_out,
    wants_detail,
)
from exporter.letta.pacing import AdaptivePace
from exporter.letta.retry import retrying

# The client's messages keep the logger name they had before the modules split.
log = logging.getLogger("exporter.letta.client")

SELF_HOSTED_CREDENTIAL: Final = "check the server password (LETTA_API_KEY or LETTA_API_KEY_FILE)"
CLOUD_CREDENTIAL: Final = (
    "check the API key (LETTA_API_KEY or LETTA_API_KEY_FILE) and its access to the project"
)

RequestObserver = Callable[[str, str, float], None]
"""Called once per HTTP attempt with (endpoint, code, seconds)."""
PostponeObserver = Callable[[str], None]
"""Called with the endpoint whenever Letta's Retry-After postpones a request."""


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """Request knobs; defaults suit a Letta server on the same network.

    The timeout of one HTTP read is the http client's own (`build_http_client`).
    """

    total_deadline: float = 60.0
    retries: int = 3
    retry_max_wait: float = 8.0  # letta-client's MAX_RETRY_DELAY
    max_response_bytes: int = 32 * 1024 * 1024
    # What a 401/403 asks the user to check: the key on Cloud, the password self-hosted.
    credential_hint: str = SELF_HOSTED_CREDENTIAL


class Requester:
    """Sends GETs to one Letta server; raises only `LettaError` subclasses."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        options: ClientOptions,
        *,
        on_request: RequestObserver | None,
        on_postponed: PostponeObserver | None,
        rate_limit: float,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        self._http = http
        # Absolute URLs built here parse once in httpx; a relative path plus params is
        # parsed, joined to the base URL and re-parsed with the query on every request.
        self._base = str(http.base_url).rstrip("/")
        self.display_url = _without_userinfo(http.base_url)
        """The base URL as errors name it (no user or password)."""
        # One pace for every request, so backfill and enrichment together stay polite.
        self.pace = AdaptivePace(rate_limit, clock=clock, sleep=sleep)
        self._clock = clock
        self._sleep = sleep
        self._options = options
        self._on_request = on_request or (lambda endpoint, code, seconds: None)
        self._on_postponed = on_postponed or (lambda endpoint: None)
        # Until then, Letta asked for no requests at all (a long Retry-After on a 429/503).
        self._quiet_until = -float("inf")
        self._quiet_reason = "http_429"

    async def aclose(self) -> None:
        """Close the underlying connection pool."""
        await self._http.aclose()

    async def get(
        self,
        endpoint: str,
        path: str,
        params: Mapping[str, str | int] | None,
        max_bytes: int | None = None,
    ) -> bytes:
        """The body of `GET path?params`, retried as letta-client would; `endpoint` names
        the request in errors, logs and the observer."""
        options = self._options
        async for attempt in retrying(
            endpoint, retries=options.retries, max_wait=options.retry_max_wait, sleep=self._sleep
        ):
            with attempt:
                return await self._get_once(endpoint, path, params, max_bytes)
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    async def _get_once(
        self,
        endpoint: str,
        path: str,
        params: Mapping[str, str | int] | None,
        max_bytes: int | None,
    ) -> bytes:
        quiet_for = self._quiet_until - self._clock()
        if quiet_for > 0:
            self._on_postponed(endpoint)
            raise LettaPostponed(
                f"{endpoint}: Letta asked for no requests for another {quiet_for:.0f}s",
                reason=self._quiet_reason,
                retry_after=quiet_for,
            )
        sent_at = await self.pace.acquire()
        started = time.perf_counter()
        code = "error"
        try:
            async with asyncio.timeout(self._options.total_deadline):
                url = f"{self._base}{path}?{urlencode(params)}" if params else self._base + path
                async with self._http.stream("GET", url) as response:
                    status = response.status_code
                    code = str(status)
                    self.pace.answered(sent_at, throttled=status == 429)
                    detail = await _read_detail(response) if wants_detail(status) else ""
                    try:
                        raise_for_status(endpoint, response, self._options.credential_hint, detail)
                    except LettaUnavailable as exc:
                        self._postpone_if_long(endpoint, response.status_code, exc)
                        raise
                    return await self._read_capped(endpoint, response, max_bytes)
        except TimeoutError:
            code = "timeout"
            raise LettaUnavailable(
                f"{endpoint}: no complete answer within {self._options.total_deadline:g}s",
                reason="timeout",
            ) from None
        except httpx.TransportError as exc:
            if timed_out(exc):
                code = "timeout"
                raise LettaUnavailable(f"{endpoint}: request timed out", reason="timeout") from None
            code = "connect_error"
            raise LettaUnavailable(
                f"{endpoint}: {connect_problem(exc, self.display_url)}", reason="connect"
            ) from None
        except httpx.DecodingError:
            raise LettaBadResponse(
                f"{endpoint}: the body does not match its content-encoding"
            ) from None
        except aiohttp.ClientError as exc:
            # httpx-aiohttp passes on the aiohttp errors it has no httpx name for, such
            # as a response that is not HTTP at all.
            code = "connect_error"
            raise LettaUnavailable(
                f"{endpoint}: broken answer from Letta ({type(exc).__name__})", reason="connect"
            ) from None
        finally:
            self._on_request(endpoint, code, time.perf_counter() - started)

    def _postpone_if_long(self, endpoint: str, status: int, exc: LettaUnavailable) -> None:
        # A wait the server asks for is honoured in place while it is within the time a
        # request may take (its total deadline); a longer one would hold the request's
        # slot past that, so the work is postponed instead.
        wait = exc.retry_after
        if not exc.retryable or wait is None or wait <= self._options.total_deadline:
            return
        if status in (429, 503):
            self._quiet_until = max(self._quiet_until, self._clock() + wait)
            self._quiet_reason = exc.reason
        self._on_postponed(endpoint)
        log.info("%s: Letta asked to wait %.0fs; postponing that work", endpoint, wait)
        raise LettaPostponed(
            f"{endpoint}: Letta answered {status} and asked to wait {wait:.0f}s",
            reason=exc.reason,
            retry_after=wait,
        ) from None

    async def _read_capped(
        self, endpoint: str, response: httpx.Response, max_bytes: int | None
    ) -> bytes:
        cap = min(self._options.max_response_bytes, max_bytes or self._options.max_response_bytes)
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > cap:
            raise LettaBadResponse(
                f"{endpoint}: response of {declared} bytes exceeds the {cap}-byte cap",
                reason="too_large",
            )
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > cap:
                raise LettaBadResponse(
                    f"{endpoint}: response exceeds the {cap}-byte cap", reason="too_large"
                )
            chunks.append(chunk)
        return b"".join(chunks)


async def _read_detail(response: httpx.Response) -> str:
    """Letta's `detail` from the first few KB of an error answer."""
    head = b""
    async for chunk in response.aiter_bytes():
        head += chunk
        if len(head) >= DETAIL_MAX_BYTES:
            break
    return letta_detail(head[:DETAIL_MAX_BYTES])


def _without_userinfo(url: httpx.URL) -> str:
    return str(url.copy_with(userinfo=b"")).rstrip("/") if url.userinfo else str(url).rstrip("/")
