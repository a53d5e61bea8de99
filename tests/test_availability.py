"""Endpoint availability (decided from a few runs, re-checked) and tools from messages."""

from __future__ import annotations

import logging
from collections import Counter

import httpx
import pytest
import respx

from exporter.core.enrichment.availability import RECHECK_NS, RUNS_TO_DECIDE, EndpointAvailability
from exporter.letta.client import MESSAGES_PAGE, LettaClient
from exporter.letta.http import build_http_client
from exporter.letta.requester import ClientOptions
from tests.conftest import load_fixture

letta_api = respx.MockRouter(using="httpx", assert_all_called=False)
BASE = "http://letta.test"
RUNS = f"{BASE}/v1/runs/"


def test_an_endpoint_is_down_after_a_few_runs_in_a_row_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    endpoints = EndpointAvailability()
    endpoints.register("metrics")
    assert endpoints.up() == {"metrics": True}
    caplog.set_level(logging.INFO, "exporter.core.enrichment.availability")
    for _ in range(RUNS_TO_DECIDE - 1):
        endpoints.not_served("metrics", 0, "404")
    assert endpoints.up() == {"metrics": True}
    endpoints.answered("metrics")  # one run that has it: the count starts again
    for _ in range(RUNS_TO_DECIDE):
        endpoints.not_served("metrics", 10, "404")
    assert endpoints.up() == {"metrics": False}
    assert not endpoints.should_ask("metrics", 20)
    endpoints.not_served("metrics", 30, "404")  # one more in flight: no second warning
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "does not serve metrics" in warnings[0].getMessage()


def test_a_down_endpoint_is_rechecked_by_one_run_per_period() -> None:
    endpoints = EndpointAvailability()
    for _ in range(RUNS_TO_DECIDE):
        endpoints.not_served("trace", 0, "405/501")
    assert not endpoints.should_ask("trace", RECHECK_NS - 1)
    assert endpoints.should_ask("trace", RECHECK_NS)  # the re-check
    assert not endpoints.should_ask("trace", RECHECK_NS + 1)  # only one run asks
    endpoints.not_served("trace", RECHECK_NS + 2, "405/501")
    assert endpoints.up() == {"trace": False}
    assert endpoints.should_ask("trace", 2 * RECHECK_NS)
    endpoints.answered("trace")
    assert endpoints.up() == {"trace": True}
    assert endpoints.should_ask("trace", 2 * RECHECK_NS + 1)


def client() -> LettaClient:
    return LettaClient(
        build_http_client(BASE, api_key=None, user_id=None, timeout=1.0),
        ClientOptions(retries=0),
    )


@pytest.mark.parametrize(
    ("fixture", "calls"),
    [
        ("sync_multi_step", {"conversation_search": 2}),
        ("sync_max_steps", {"conversation_search": 3}),
        ("stream_bad_tool", {"definitely_not_a_real_tool": 1}),
        ("approval_requested_then_cancelled", {"conversation_search": 1}),
        ("approval_continuation", {}),
        ("sync_end_turn", {}),
    ],
)
@letta_api
async def test_tool_calls_come_from_real_messages(fixture: str, calls: dict[str, int]) -> None:
    messages = load_fixture(f"runs/{fixture}/messages.json")
    route = letta_api.get(f"{RUNS}run-1/messages").mock(
        return_value=httpx.Response(200, json=messages)
    )
    assert await client().tool_calls("run-1") == calls
    params = route.calls.last.request.url.params
    assert (params["order"], params["limit"]) == ("asc", str(MESSAGES_PAGE))


def tool_message(n: int, call_id: str | None = None) -> dict[str, object]:
    call = {"name": f"tool_{n % 3}", "arguments": "{}", "tool_call_id": call_id or f"call-{n}"}
    return {
        "id": f"message-{n:04d}",
        "message_type": "tool_call_message",
        "tool_call": call,
        "tool_calls": [call],
        "padding": "x" * 100,
    }


@letta_api
async def test_messages_are_paged_with_after_and_a_repeated_call_counts_once() -> None:
    messages = [tool_message(n) for n in range(MESSAGES_PAGE + 7)]
    messages.append(tool_message(999, call_id="call-0"))  # the same call again

    def page(request: httpx.Request) -> httpx.Response:
        after = request.url.params.get("after")
        start = 0 if after is None else [m["id"] for m in messages].index(after) + 1
        limit = int(request.url.params["limit"])
        return httpx.Response(200, json=messages[start : start + limit])

    route = letta_api.get(f"{RUNS}run-1/messages").mock(side_effect=page)
    calls = await client().tool_calls("run-1")
    assert calls == Counter(f"tool_{n % 3}" for n in range(MESSAGES_PAGE + 7))
    assert route.call_count == 2
    assert route.calls[1].request.url.params["after"] == f"message-{MESSAGES_PAGE - 1:04d}"


@letta_api
async def test_a_page_over_the_byte_bound_is_asked_again_smaller() -> None:
    big = [tool_message(n) | {"tool_return": "y" * 200_000} for n in range(30)]

    def page(request: httpx.Request) -> httpx.Response:
        after = request.url.params.get("after")
        start = 0 if after is None else [m["id"] for m in big].index(after) + 1
        limit = int(request.url.params["limit"])
        return httpx.Response(200, json=big[start : start + limit])

    route = letta_api.get(f"{RUNS}run-1/messages").mock(side_effect=page)
    calls = await client().tool_calls("run-1")
    assert sum(calls.values()) == 30
    # 50 messages of ~200 kB exceed the 4 MiB bound; 12 at a time do not.
    assert [int(c.request.url.params["limit"]) for c in route.calls][:2] == [50, 12]
