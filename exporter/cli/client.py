"""The Letta client the `--letta.*` settings describe."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from exporter.cli.config import Settings
from exporter.letta.client import InvalidItemObserver, LettaClient
from exporter.letta.headers import reveal
from exporter.letta.http import build_http_client
from exporter.letta.requester import (
    CLOUD_CREDENTIAL,
    SELF_HOSTED_CREDENTIAL,
    ClientOptions,
    PostponeObserver,
    RequestObserver,
)

log = logging.getLogger(__name__)


def client_from_settings(
    settings: Settings,
    *,
    on_request: RequestObserver | None = None,
    on_invalid_item: InvalidItemObserver | None = None,
    on_postponed: PostponeObserver | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> LettaClient:
    """The client the `--letta.*` settings describe (the serve loop and `check` alike);
    its pace and retries wait on `clock` and `sleep`."""
    user_id = settings.user_id
    if settings.cloud and user_id is not None:
        log.warning("--letta.user-id does not apply to Letta Cloud (the API key is the user)")
        user_id = None
    http = build_http_client(
        settings.base_url,
        api_key=settings.api_key.get_secret_value() if settings.api_key else None,
        api_key_file=settings.api_key_file,
        user_id=user_id,
        project_id=settings.project_id,
        project=settings.project,
        timeout=settings.letta_timeout,
        extra_headers=reveal(settings.extra_headers),
    )
    return LettaClient(
        http,
        ClientOptions(
            total_deadline=settings.letta_timeout * 3,
            retries=settings.letta_retries,
            max_response_bytes=settings.letta_max_response_bytes,
            credential_hint=CLOUD_CREDENTIAL if settings.cloud else SELF_HOSTED_CREDENTIAL,
        ),
        on_request=on_request,
        on_invalid_item=on_invalid_item,
        on_postponed=on_postponed,
        rate_limit=settings.letta_rate_limit,
        clock=clock,
        sleep=sleep,
    )
