"""Where enrichment comes from when Letta may not serve an endpoint.

`not_served_or_raise` tells "this endpoint is not served here" (404 for a run that still
exists, 405, 501) from "this run is gone" (404, and the run's own GET is 404 too).
`ToolSource` reads the tools a run used from `/metrics`, or from the run's messages
where `/metrics` is not served (Letta Cloud documents no such route).
"""

from __future__ import annotations

import asyncio

from exporter.core.counting.tool_names import ToolNames
from exporter.core.enrichment.availability import EndpointAvailability
from exporter.core.enrichment.queue import EnrichmentQueue
from exporter.core.runs.record import RunRecord
from exporter.letta.client import LettaClient
from exporter.letta.errors import LettaNotFound, LettaNotImplemented, LettaRequestError
from exporter.letta.models import Tool


async def not_served_or_raise(
    client: LettaClient,
    endpoints: EndpointAvailability,
    run_id: str,
    endpoint: str,
    exc: LettaNotFound | LettaNotImplemented,
    now: int,
) -> None:
    """Record a "not served" answer of `endpoint`; re-raises `exc` when the run is gone."""
    status = "404"
    if isinstance(exc, LettaNotFound):
        try:
            await client.get_run(run_id)
        except LettaNotFound:
            raise exc from None
    else:
        status = "405/501"
    endpoints.not_served(endpoint, now, status)


class ToolSource:
    """The tools a run used: `/metrics` where served, else the run's messages."""

    def __init__(
        self,
        client: LettaClient,
        enrichment: EnrichmentQueue,
        tool_names: ToolNames,
        endpoints: EndpointAvailability,
    ) -> None:
        self._client = client
        self._enrichment = enrichment
        self._tool_names = tool_names
        self._endpoints = endpoints
        self._lookups: dict[str, asyncio.Future[Tool]] = {}

    async def fetch(self, record: RunRecord, now: int) -> None:
        """Store the run's tools (or count it without, if neither is served)."""
        client, endpoints, enrichment = self._client, self._endpoints, self._enrichment
        if endpoints.should_ask("metrics", now):
            try:
                metrics = await client.get_run_metrics(record.id)
            except (LettaNotFound, LettaNotImplemented) as exc:
                await not_served_or_raise(client, endpoints, record.id, "metrics", exc, now)
            else:
                endpoints.answered("metrics")
                for tool_id in dict.fromkeys(metrics.tools_used or ()):
                    if tool_id not in self._tool_names:
                        await self._resolve_tool(tool_id)
                enrichment.answered_metrics(record, metrics)
                return
        if endpoints.should_ask("messages", now):
            try:
                calls = await client.tool_calls(record.id)
            except (LettaNotFound, LettaNotImplemented) as exc:
                await not_served_or_raise(client, endpoints, record.id, "messages", exc, now)
            else:
                endpoints.answered("messages")
                enrichment.answered_tool_calls(record, calls)
                return
        enrichment.skipped(record, "metrics")

    async def _resolve_tool(self, tool_id: str) -> None:
        # Runs enriched together often share tools: one lookup per id, awaited by all.
        lookup = self._lookups.get(tool_id)
        if lookup is None:
            lookup = asyncio.ensure_future(self._client.get_tool(tool_id))
            self._lookups[tool_id] = lookup
        try:
            name = (await asyncio.shield(lookup)).name
        except (LettaNotFound, LettaRequestError):
            # Deleted, foreign or malformed id (404/422): the id is the best label there is.
            name = tool_id
        finally:
            if lookup.done():
                self._lookups.pop(tool_id, None)
        self._tool_names.name(tool_id, name)
