"""The Letta runs API, one typed method an endpoint; requests go through `Requester`."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import httpx
from pydantic import TypeAdapter, ValidationError

from exporter.letta.bodies import first_error, json_array, parse_list, parse_one
from exporter.letta.errors import LettaBadResponse, LettaNotFound
from exporter.letta.messages import ListedMessage, collect_tool_calls, listed_messages
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
from exporter.letta.requester import ClientOptions, PostponeObserver, Requester, RequestObserver
from exporter.units import NS_PER_S

# The client's messages keep the logger name they had before the modules split.
log = logging.getLogger("exporter.letta.client")

RUNS_PATH: Final = "/v1/runs/"  # the slash form: `/v1/runs` answers 307 (§1.1)
MAX_LIST_LIMIT: Final = 1000

_RUN_LIST: Final = TypeAdapter(list[Run])
_STEP_LIST: Final = TypeAdapter(list[Step])
_AGENT_LIST: Final = TypeAdapter(list[Agent])
AGENTS_PATH: Final = "/v1/agents/"
MESSAGES_PATH: Final = "/v1/messages/"
STEPS_PATH: Final = "/v1/steps/"
STEPS_PAGE: Final = 100
MAX_STEP_PAGES: Final = 100  # 10,000 steps: far beyond any max_steps a client would set
MESSAGES_PAGE: Final = 50
# Tool returns can be large; only names are kept, and no page may exceed this.
MESSAGES_MAX_BYTES: Final = 4 * 1024 * 1024
MAX_MESSAGE_PAGES: Final = 100
TRACE_LIMIT: Final = 5000  # the route's maximum; a long run has a few spans per step

InvalidItemObserver = Callable[[str, str], None]
"""Called once per skipped list item with (endpoint, reason)."""


@dataclass(frozen=True, slots=True)
class Page:
    """One list response: the valid runs, and how many items the server sent."""

    runs: list[Run]
    raw_count: int


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
        self._requests = Requester(
            http,
            options or ClientOptions(),
            on_request=on_request,
            on_postponed=on_postponed,
            rate_limit=rate_limit,
            clock=clock,
            sleep=sleep,
        )
        # One pace for every request, so backfill and enrichment together stay polite.
        self.pace = self._requests.pace
        self._on_invalid_item = on_invalid_item or (lambda endpoint, reason: None)

    async def aclose(self) -> None:
        """Close the underlying connection pool."""
        await self._requests.aclose()

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
        try:
            body = await self._requests.get(endpoint, RUNS_PATH, params)
        except LettaNotFound as exc:
            if cursor is not None:
                raise  # an unknown cursor (§4.6), not a wrong URL
            raise LettaNotFound(
                f"{exc}; Letta serves no runs list at {self._requests.display_url}"
                f"{RUNS_PATH}: LETTA_BASE_URL (--letta.url) must be the server's root, "
                "without /v1"
            ) from None
        return self._parse_page(endpoint, body)

    async def list_runs_where(self, *, limit: int, **filters: str) -> Page:
        """One page of `GET /v1/runs/?order=desc` with exact-match filters (`agent_id`,
        `conversation_id`, `stop_reason`), newest first."""
        params: dict[str, str | int] = {"order": "desc", "limit": min(limit, MAX_LIST_LIMIT)}
        params.update(filters)
        return self._parse_page(
            "runs_list", await self._requests.get("runs_list", RUNS_PATH, params)
        )

    async def get_run(self, run_id: str) -> Run:
        """`GET /v1/runs/{id}`; raises LettaNotFound when the run is gone."""
        return parse_one("run", Run, await self._requests.get("run", f"{RUNS_PATH}{run_id}", None))

    async def get_usage(self, run_id: str) -> Usage:
        """`GET /v1/runs/{id}/usage`."""
        return parse_one(
            "run_usage",
            Usage,
            await self._requests.get("run_usage", f"{RUNS_PATH}{run_id}/usage", None),
        )

    async def get_run_metrics(self, run_id: str) -> RunMetrics:
        """`GET /v1/runs/{id}/metrics`; LettaNotFound when the run has no metrics row."""
        body = await self._requests.get("run_metrics", f"{RUNS_PATH}{run_id}/metrics", None)
        return parse_one("run_metrics", RunMetrics, body)

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
            body = await self._requests.get("run_steps", f"{RUNS_PATH}{run_id}/steps", params)
            page = parse_list("run_steps", _STEP_LIST, body, "steps")
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
                body = await self._requests.get("run_messages", path, params, MESSAGES_MAX_BYTES)
            except LettaBadResponse as exc:
                if exc.reason != "too_large" or limit == 1:
                    raise
                limit = max(1, limit // 4)  # large tool returns: ask for fewer at once
                continue
            ids = collect_tool_calls(body, calls, seen_calls)
            fresh = [i for i in dict.fromkeys(ids) if i not in seen_ids]
            seen_ids.update(fresh)
            if len(fresh) < limit:
                break
            after = ids[-1]
        return calls

    async def list_messages(self, *, limit: int, before: str | None = None) -> list[ListedMessage]:
        """One page of `GET /v1/messages/?order=desc`: every run's messages, newest rows
        first, older than the message `before` (cursors compare the insert sequence).

        0.16.8 returns a desc page in ascending order (it reverses the rows it read); the
        caller finds the page's oldest message by date. No `include_return_message_types`:
        0.16.8 filters by type after the SQL limit. Raises LettaBadResponse(too_large)
        when a page exceeds the byte cap (large tool returns): ask for fewer.
        """
        params: dict[str, str | int] = {"order": "desc", "limit": limit}
        if before is not None:
            params["before"] = before
        body = await self._requests.get("messages", MESSAGES_PATH, params, MESSAGES_MAX_BYTES)
        return listed_messages(body)

    async def list_all_steps(
        self, *, start_ns: int, limit: int, after: str | None = None
    ) -> list[Step]:
        """One page of `GET /v1/steps/?order=asc`: every run's steps created after
        `start_ns` (a strict bound on their hidden created_at), oldest first, after the
        step `after` (cursors compare (created_at, id)). 0.16.8 answers 400 to every
        query (it passes a bool as the order); letta-client documents it for Cloud."""
        start = datetime.fromtimestamp(start_ns / NS_PER_S, tz=UTC).isoformat()
        params: dict[str, str | int] = {"order": "asc", "limit": limit, "start_date": start}
        if after is not None:
            params["after"] = after
        body = await self._requests.get("steps", STEPS_PATH, params)
        return parse_list("steps", _STEP_LIST, body, "steps")

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
        body = await self._requests.get("agents", AGENTS_PATH, params)
        return parse_list("agents", _AGENT_LIST, body, "agents")

    async def get_tool(self, tool_id: str) -> Tool:
        """`GET /v1/tools/{id}`."""
        return parse_one(
            "tool", Tool, await self._requests.get("tool", f"/v1/tools/{tool_id}", None)
        )

    async def get_step_metrics(self, step_id: str) -> StepMetrics:
        """`GET /v1/steps/{id}/metrics`."""
        body = await self._requests.get("step_metrics", f"/v1/steps/{step_id}/metrics", None)
        return parse_one("step_metrics", StepMetrics, body)

    async def get_trace(self, run_id: str) -> list[Any]:
        """`GET /v1/runs/{id}/trace`: the server's span rows (§7.3), as loose JSON objects.

        Raises LettaNotImplemented (501) when the server has no ClickHouse. The rows are
        not validated here: `exporter.traces.passthrough` converts what it can and counts the rest.
        """
        body = await self._requests.get(
            "run_trace", f"{RUNS_PATH}{run_id}/trace", {"limit": TRACE_LIMIT}
        )
        return json_array("run_trace", body)

    def _parse_page(self, endpoint: str, body: bytes) -> Page:
        try:
            runs = _RUN_LIST.validate_json(body)
            return Page(runs, len(runs))
        except ValidationError:
            pass  # fall through to item-by-item parsing to find the bad ones
        raw = json_array(endpoint, body)
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
                    first_error(exc),
                )
                self._on_invalid_item(endpoint, "invalid")
        return Page(runs, len(raw))
