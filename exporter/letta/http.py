"""The httpx client every Letta request goes through: transport, auth and scope headers."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Final

import httpx
from httpx_aiohttp import HttpxAiohttpClient

from exporter import __version__
from exporter.letta.auth import BearerAuth

USER_AGENT: Final = f"letta-exporter/{__version__}"


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
