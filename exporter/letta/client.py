"""Async HTTP client for the Letta runs API: auth, retries, size caps, per-endpoint stats."""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar
from urllib.parse import urlencode

import aiohttp
import httpx
from httpx_aiohttp import HttpxAiohttpClient
from pydantic import BaseModel, TypeAdapter, ValidationError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from exporter import __version__
from exporter.letta.auth import BearerAuth
from exporter.letta.errors import (
    LettaAuthError,
    LettaBadResponse,
    LettaError,
    LettaNotFound,
    LettaNotImplemented,
    LettaPostponed,
    LettaRequestError,
    LettaUnavailable,
)
from exporter.letta.models import (
    Agent,
    CursorParam,
    Run,
    RunMetrics,
    Step,
    StepMetrics,
    Tool,
    Usage,
)
from exporter.letta.pacing import AdaptivePace

log = logging.getLogger(__name__)

RUNS_PATH: Final = "/v1/runs/"  # the slash form: `/v1/runs` answers 307 (§1.1)
MAX_LIST_LIMIT: Final = 1000

_RUN_LIST: Final = TypeAdapter(list[Run])
_STEP_LIST: Final = TypeAdapter(list[Step])
_AGENT_LIST: Final = TypeAdapter(list[Agent])
AGENTS_PATH: Final = "/v1/agents/"
STEPS_PAGE: Final = 100
MAX_STEP_PAGES: Final = 100  # 10,000 steps: far beyond any max_steps a client would set
MESSAGES_PAGE: Final = 50
# Tool returns can be large; only names are kept, and no page may exceed this.
MESSAGES_MAX_BYTES: Final = 4 * 1024 * 1024
MAX_MESSAGE_PAGES: Final = 100
# Messages that carry the tool calls a run made (an approval request is a call too, as
# run_metrics.tools_used counts it).
_TOOL_CALL_MESSAGES: Final = frozenset({"tool_call_message", "approval_request_message"})
TRACE_LIMIT: Final = 5000  # the route's maximum; a long run has a few spans per step
USER_AGENT: Final = f"letta-exporter/{__version__}"
SELF_HOSTED_CREDENTIAL: Final = "check the server password (LETTA_API_KEY or LETTA_API_KEY_FILE)"
CLOUD_CREDENTIAL: Final = (
    "check the API key (LETTA_API_KEY or LETTA_API_KEY_FILE) and its access to the project"
)

_M = TypeVar("_M", bound=BaseModel)
RequestObserver = Callable[[str, str, float], None]
"""Called once per HTTP attempt with (endpoint, code, seconds)."""
InvalidItemObserver = Callable[[str, str], None]
"""Called once per skipped list item with (endpoint, reason)."""
PostponeObserver = Callable[[str], None]
"""Called with the endpoint whenever Letta's Retry-After postpones a request."""
# Statuses letta-client 1.12 retries (`_should_retry`): request timeout, lock conflict
# (0.16.8 answers database lock errors with 409 + Retry-After: 1), rate limit, 5xx.
_RETRIED_4XX: Final = frozenset({408, 409, 429})
# Answers that say the route is not served: the endpoint, not the run, is missing.
_NOT_SERVED: Final = frozenset({405, 501})


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """Transport knobs; defaults suit a Letta server on the same network."""

    timeout: float = 10.0
    total_deadline: float = 60.0
    retries: int = 3
    retry_max_wait: float = 8.0  # letta-client's MAX_RETRY_DELAY
    max_response_bytes: int = 32 * 1024 * 1024
    # What a 401/403 asks the user to check: the key on Cloud, the password self-hosted.
    credential_hint: str = SELF_HOSTED_CREDENTIAL


@dataclass(frozen=True, slots=True)
class Page:
    """One list response: the valid runs, and how many items the server sent."""

    runs: list[Run]
    raw_count: int


def build_http_client(
    base_url: str,
    *,
    api_key: str | None,
    user_id: str | None,
    timeout: float,
    api_key_file: Path | None = None,
    project_id: str | None = None,
    project: str | None = None,
    extra_headers: Mapping[str, str] | None = None,
) -> httpx.AsyncClient:
    """An httpx client with Letta's auth and scope headers, as letta-client sends them.

    The key lives only in the client's auth (re-read from `api_key_file` when that
    changes). `extra_headers` go on every request; they come first, so they cannot
    replace the key, the project headers or `user_id`.

    Requests go through aiohttp (httpx-aiohttp), behind the same httpx API: against a
    canned local server a request cost 1.2-2.0 ms of CPU with httpx's own connection
    layer (httpcore, h11, anyio) and 0.6-1.0 ms on aiohttp's, which doubled enrichment
    throughput (tests/benchmarks/bench_enrichment.py).
    """
    # httpx.Headers: setting a name replaces it whatever its case in `extra_headers`.
    headers = httpx.Headers({"Accept": "application/json", "User-Agent": USER_AGENT})
    headers.update(extra_headers or {})
    if project_id:
        headers["X-Project-Id"] = project_id
    if project:
        headers["X-Project"] = project
    if user_id:
        # Letta reads the actor from a header literally named `user_id` (§1.2).
        headers["user_id"] = user_id
    # HttpxAiohttpClient rather than transport=AiohttpTransport(): httpx ignores the
    # HTTP(S)_PROXY variables when it is handed a transport.
    return HttpxAiohttpClient(
        base_url=base_url.rstrip("/"),
        headers=headers,
        auth=BearerAuth(api_key, api_key_file),
        timeout=httpx.Timeout(timeout),
        follow_redirects=False,
        # Keep every connection the pool may open: with fewer keep-alive slots than
        # connections, enrichment above 8 in flight closed and reopened a TCP connection
        # for most requests (measured).
        limits=httpx.Limits(max_connections=16, max_keepalive_connections=16),
    )


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


class _WaitHonouringRetryAfter:
    """Exponential backoff with jitter, unless the server said how long to wait."""

    def __init__(self, max_wait: float) -> None:
        self._backoff = wait_random_exponential(multiplier=0.5, max=max_wait)

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, LettaUnavailable) and exc.retry_after:
            return exc.retry_after  # at most the total deadline (`_postpone_if_long`)
        return float(self._backoff(state))


def _should_retry(exc: BaseException) -> bool:
    return isinstance(exc, LettaUnavailable) and exc.retryable


class LettaClient:
    """Reads runs from one Letta server. Raises only `LettaError` subclasses."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        options: ClientOptions | None = None,
        *,
        on_request: RequestObserver | None = None,
        on_invalid_item: InvalidItemObserver | None = None,
        on_postponed: PostponeObserver | None = None,
        rate_limit: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._http = http
        # Absolute URLs built here parse once in httpx; a relative path plus params is
        # parsed, joined to the base URL and re-parsed with the query on every request.
        self._base = str(http.base_url).rstrip("/")
        # One pace for every request, so backfill and enrichment together stay polite.
        self.pace = AdaptivePace(rate_limit, clock=clock, sleep=sleep)
        self._clock = clock
        self._sleep = sleep
        self._options = options or ClientOptions()
        self._on_request = on_request or (lambda endpoint, code, seconds: None)
        self._on_invalid_item = on_invalid_item or (lambda endpoint, reason: None)
        self._on_postponed = on_postponed or (lambda endpoint: None)
        # Until then, Letta asked for no requests at all (a long Retry-After on a 429/503).
        self._quiet_until = -float("inf")
        self._quiet_reason = "http_429"

    async def aclose(self) -> None:
        """Close the underlying connection pool."""
        await self._http.aclose()

    async def list_runs(
        self,
        *,
        limit: int,
        cursor: str | None = None,
        cursor_param: CursorParam = "before",
        active: bool = False,
    ) -> Page:
        """One page of `GET /v1/runs/?order=desc`, newest first.

        `cursor` goes in `cursor_param`: `before` walks older on 0.16.8 (swapped
        cursors, §4.2) and on servers with time-absolute cursors; `after` does on servers
        whose cursors are relative to the order. The pager finds out which (direction.py).
        """
        params: dict[str, str | int] = {"order": "desc", "limit": min(limit, MAX_LIST_LIMIT)}
        if cursor is not None:
            params[cursor_param] = cursor
        if active:
            params["active"] = "true"
        endpoint = "runs_active" if active else "runs_list"
        body = await self._get(endpoint, RUNS_PATH, params)
        return self._parse_page(endpoint, body)

    async def list_runs_where(self, *, limit: int, **filters: str) -> Page:
        """One page of `GET /v1/runs/?order=desc` with exact-match filters (`agent_id`,
        `conversation_id`, `stop_reason`), newest first."""
        params: dict[str, str | int] = {"order": "desc", "limit": min(limit, MAX_LIST_LIMIT)}
        params.update(filters)
        return self._parse_page("runs_list", await self._get("runs_list", RUNS_PATH, params))

    async def get_run(self, run_id: str) -> Run:
        """`GET /v1/runs/{id}`; raises LettaNotFound when the run is gone."""
        return self._parse_one("run", Run, await self._get("run", f"{RUNS_PATH}{run_id}", None))

    async def get_usage(self, run_id: str) -> Usage:
        """`GET /v1/runs/{id}/usage`."""
        return self._parse_one(
            "run_usage", Usage, await self._get("run_usage", f"{RUNS_PATH}{run_id}/usage", None)
        )

    async def get_run_metrics(self, run_id: str) -> RunMetrics:
        """`GET /v1/runs/{id}/metrics`; LettaNotFound when the run has no metrics row."""
        body = await self._get("run_metrics", f"{RUNS_PATH}{run_id}/metrics", None)
        return self._parse_one("run_metrics", RunMetrics, body)

    async def list_steps(self, run_id: str) -> list[Step]:
        """Every step of a run, oldest first, paged with the steps list's `after` cursor.

        The steps list has conventional cursors (`after` = next page, §4.6), unlike the
        runs list. A page that repeats a step id ends the paging instead of looping.
        """
        steps: list[Step] = []
        seen: set[str] = set()
        after: str | None = None
        for _ in range(MAX_STEP_PAGES):
            params: dict[str, str | int] = {"order": "asc", "limit": STEPS_PAGE}
            if after is not None:
                params["after"] = after
            body = await self._get("run_steps", f"{RUNS_PATH}{run_id}/steps", params)
            try:
                page = _STEP_LIST.validate_json(body)
            except ValidationError as exc:
                raise LettaBadResponse(
                    f"run_steps: not a list of steps: {_first_error(exc)}"
                ) from None
            fresh = [step for step in page if step.id not in seen]
            steps.extend(fresh)
            seen.update(step.id for step in fresh)
            if len(page) < STEPS_PAGE or not fresh:
                break
            after = page[-1].id
        return steps

    async def tool_calls(self, run_id: str) -> dict[str, int]:
        """How often the run called each tool, by name, from `GET /v1/runs/{id}/messages`.

        Tool call and approval request messages carry the calls; only their names and
        call ids are kept from each page, which the byte cap bounds. Pages are read
        oldest first with the absolute `after` cursor (§3.4); a page with fewer messages
        than asked ends it (messages the run filters out of its answers hide their tool
        calls anyway). A call repeated (same call id) counts once.
        """
        calls: dict[str, int] = {}
        seen_calls: set[str] = set()
        seen_ids: set[str] = set()
        after: str | None = None
        limit = MESSAGES_PAGE
        for _ in range(MAX_MESSAGE_PAGES):
            params: dict[str, str | int] = {"order": "asc", "limit": limit}
            if after is not None:
                params["after"] = after
            path = f"{RUNS_PATH}{run_id}/messages"
            try:
                body = await self._get("run_messages", path, params, MESSAGES_MAX_BYTES)
            except LettaBadResponse as exc:
                if exc.reason != "too_large" or limit == 1:
                    raise
                limit = max(1, limit // 4)  # large tool returns: ask for fewer at once
                continue
            ids = _collect_tool_calls(body, calls, seen_calls)
            fresh = [i for i in dict.fromkeys(ids) if i not in seen_ids]
            seen_ids.update(fresh)
            if len(fresh) < limit:
                break
            after = ids[-1]
        return calls

    async def list_agents(self, *, limit: int, after: str | None) -> list[Agent]:
        """One page of the agents list, oldest first, after the agent id `after`.

        The agents list has order-relative cursors (`after` in ascending order is the next
        page, on 0.16.8 too). `include_relationships=` (empty) asks for no relationships:
        without it, a client that is not letta-client 1.x gets every agent's memory
        blocks, tools and sources, tens of kB per agent.
        """
        params: dict[str, str | int] = {"order": "asc", "limit": limit, "include_relationships": ""}
        if after is not None:
            params["after"] = after
        body = await self._get("agents", AGENTS_PATH, params)
        try:
            return _AGENT_LIST.validate_json(body)
        except ValidationError as exc:
            raise LettaBadResponse(f"agents: not a list of agents: {_first_error(exc)}") from None

    async def get_tool(self, tool_id: str) -> Tool:
        """`GET /v1/tools/{id}`."""
        return self._parse_one("tool", Tool, await self._get("tool", f"/v1/tools/{tool_id}", None))

    async def get_step_metrics(self, step_id: str) -> StepMetrics:
        """`GET /v1/steps/{id}/metrics`."""
        body = await self._get("step_metrics", f"/v1/steps/{step_id}/metrics", None)
        return self._parse_one("step_metrics", StepMetrics, body)

    async def get_trace(self, run_id: str) -> list[Any]:
        """`GET /v1/runs/{id}/trace`: the server's span rows (§7.3), as loose JSON objects.

        Raises LettaNotImplemented (501) when the server has no ClickHouse. The rows are
        not validated here: `exporter.traces.spans` converts what it can and counts the rest.
        """
        body = await self._get("run_trace", f"{RUNS_PATH}{run_id}/trace", {"limit": TRACE_LIMIT})
        try:
            rows: Any = json.loads(body)
        except ValueError:
            raise LettaBadResponse("run_trace: the body is not JSON") from None
        if not isinstance(rows, list):
            raise LettaBadResponse(f"run_trace: expected a JSON array, got {type(rows).__name__}")
        return rows

    @staticmethod
    def _parse_one(endpoint: str, model: type[_M], body: bytes) -> _M:
        try:
            return model.model_validate_json(body)
        except ValidationError as exc:
            raise LettaBadResponse(f"{endpoint}: unexpected body: {_first_error(exc)}") from None

    def _parse_page(self, endpoint: str, body: bytes) -> Page:
        try:
            runs = _RUN_LIST.validate_json(body)
            return Page(runs, len(runs))
        except ValidationError:
            pass  # fall through to item-by-item parsing to find the bad ones
        try:
            raw: Any = json.loads(body)
        except ValueError:
            raise LettaBadResponse(f"{endpoint}: the body is not JSON") from None
        if not isinstance(raw, list):
            raise LettaBadResponse(f"{endpoint}: expected a JSON array, got {type(raw).__name__}")
        runs = []
        for index, item in enumerate(raw):
            try:
                runs.append(Run.model_validate(item))
            except ValidationError as exc:
                item_id = item.get("id") if isinstance(item, dict) else None
                log.warning(
                    "skipping invalid item %d (id=%r) in a %s page: %s",
                    index,
                    item_id,
                    endpoint,
                    _first_error(exc),
                )
                self._on_invalid_item(endpoint, "invalid")
        return Page(runs, len(raw))

    async def _get(
        self,
        endpoint: str,
        path: str,
        params: Mapping[str, str | int] | None,
        max_bytes: int | None = None,
    ) -> bytes:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._options.retries + 1),
            wait=_WaitHonouringRetryAfter(self._options.retry_max_wait),
            retry=retry_if_exception(_should_retry),
            before_sleep=lambda state: _log_retry(endpoint, state),
            sleep=self._sleep,
            reraise=True,
        )
        async for attempt in retrying:
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
                    code = str(response.status_code)
                    if response.status_code == 429:
                        self.pace.throttled(sent_at)
                    try:
                        _raise_for_status(endpoint, response, self._options.credential_hint)
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
            if _timed_out(exc):
                code = "timeout"
                raise LettaUnavailable(f"{endpoint}: request timed out", reason="timeout") from None
            code = "connect_error"
            raise LettaUnavailable(
                f"{endpoint}: {_connect_problem(exc)}", reason="connect"
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


def _timed_out(exc: httpx.TransportError) -> bool:
    # httpx-aiohttp maps every aiohttp connection error, resets and disconnects included,
    # to httpx.ConnectTimeout; only aiohttp's own timeouts are timeouts.
    cause = exc.__cause__
    if isinstance(cause, aiohttp.ClientError):
        return isinstance(cause, asyncio.TimeoutError)
    return isinstance(exc, httpx.TimeoutException)


def _connect_problem(exc: httpx.TransportError) -> str:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            # aiohttp wraps OpenSSL's error; the wrapped one has the verify message.
            original = getattr(cause, "certificate_error", cause)
            detail = getattr(original, "verify_message", None) or str(original)
            return (
                f"Letta's TLS certificate is not trusted ({detail}); for a private CA, "
                "point SSL_CERT_FILE at a bundle that holds it"
            )
        cause = cause.__cause__ or cause.__context__
    name = type(exc.__cause__ if isinstance(exc.__cause__, aiohttp.ClientError) else exc).__name__
    return f"cannot reach Letta ({name})"


def _raise_for_status(endpoint: str, response: httpx.Response, credential_hint: str) -> None:
    status = response.status_code
    if status < 300:
        return
    # As in letta-client, the server's `x-should-retry` overrides the status.
    should_retry = response.headers.get("x-should-retry")
    if status in (401, 403):
        raise LettaAuthError(f"{endpoint}: Letta answered {status}; {credential_hint}")
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
        raise LettaNotFound(f"{endpoint}: 404 not found")
    if status in _NOT_SERVED:
        raise LettaNotImplemented(
            f"{endpoint}: Letta answered {status} (the route is not served there)",
            reason="http_5xx" if status >= 500 else "http_4xx",
        )
    if 300 <= status < 400:
        raise LettaRequestError(
            f"{endpoint}: unexpected redirect {status}; is LETTA_BASE_URL the server root?"
        )
    raise LettaRequestError(f"{endpoint}: Letta answered {status}")


def _log_retry(endpoint: str, state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    wait = state.next_action.sleep if state.next_action else 0.0
    log.info("retrying %s in %.1fs after: %s", endpoint, wait, exc)


def _collect_tool_calls(body: bytes, calls: dict[str, int], seen_calls: set[str]) -> list[str]:
    """Add the page's tool calls to `calls`; returns the page's message ids in order."""
    try:
        page: Any = json.loads(body)
    except ValueError:
        raise LettaBadResponse("run_messages: the body is not JSON") from None
    if not isinstance(page, list):
        raise LettaBadResponse(f"run_messages: expected a JSON array, got {type(page).__name__}")
    ids: list[str] = []
    for message in page:
        if not isinstance(message, dict):
            continue
        message_id = message.get("id")
        if isinstance(message_id, str):
            ids.append(message_id)
        if message.get("message_type") not in _TOOL_CALL_MESSAGES:
            continue
        listed = message.get("tool_calls")
        single = message.get("tool_call")
        for n, call in enumerate(listed if isinstance(listed, list) and listed else [single]):
            if not isinstance(call, dict) or not isinstance(call.get("name"), str):
                continue
            call_id = call.get("tool_call_id")
            key = call_id if isinstance(call_id, str) else f"{message_id}#{n}"
            if key in seen_calls:
                continue
            seen_calls.add(key)
            calls[call["name"]] = calls.get(call["name"], 0) + 1
    return ids


def _first_error(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False, include_input=False)
    if not errors:
        return str(exc)
    first = errors[0]
    location = ".".join(str(part) for part in first.get("loc", ()))
    return f"{location}: {first.get('msg', 'invalid')}"


__all__ = [
    "ClientOptions",
    "LettaClient",
    "LettaError",
    "Page",
    "build_http_client",
]
