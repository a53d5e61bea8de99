"""Agent names from the agents list: paged, bare, refreshed when a new agent appears."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from exporter.letta.client import LettaClient
from exporter.letta.http import build_http_client
from exporter.letta.requester import ClientOptions
from exporter.poll import agent_names
from exporter.poll.agent_names import AgentNames
from tests.fake_letta.fake import FakeLetta


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def fake() -> AsyncIterator[FakeLetta]:
    with FakeLetta() as server:
        yield server


def client_for(fake: FakeLetta) -> LettaClient:
    http = build_http_client(fake.base_url, api_key=None, user_id=None, timeout=5.0)
    return LettaClient(http, ClientOptions(retries=0))


def agent_requests(fake: FakeLetta) -> list[dict[str, list[str]]]:
    return [query for _, path, query, _ in fake.requests if path == "/v1/agents/"]


async def test_every_page_is_read_without_relationships(
    fake: FakeLetta, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(agent_names, "PAGE", 2)
    ids = [fake.add_agent(f"support bot {n}") for n in range(5)]
    client = client_for(fake)
    names = AgentNames(client, clock=Clock())
    await names.refresh(ids)
    assert names.info([*ids, "agent-unknown"]) == tuple(
        (agent_id, f"support bot {n}") for n, agent_id in enumerate(ids)
    )
    queries = agent_requests(fake)
    assert len(queries) == 3  # 2 + 2 + 1
    # Memory blocks, tools and sources are never asked for.
    assert all(q["include_relationships"] == [""] for q in queries)
    assert [q.get("after") for q in queries] == [None, [ids[1]], [ids[3]]]
    await client.aclose()


async def test_a_new_agent_is_named_soon_and_a_deleted_one_loses_its_name(
    fake: FakeLetta,
) -> None:
    first = fake.add_agent("alpha")
    clock = Clock()
    client = client_for(fake)
    names = AgentNames(client, clock=clock)
    assert names.due([first])
    await names.refresh([first])
    assert not names.due([first])
    second = fake.add_agent("beta")
    clock.now += agent_names.UNKNOWN_REFRESH_S - 1
    assert not names.due([first, second])  # not once per cycle
    clock.now += 1
    assert names.due([first, second])  # an agent the last read did not know
    fake.delete_agent(first)
    await names.refresh([first, second])
    assert names.info([first, second]) == ((second, "beta"),)
    # The deleted agent stays unknown: it does not trigger a read every 30 s.
    clock.now += agent_names.UNKNOWN_REFRESH_S
    assert not names.due([first, second])
    clock.now += agent_names.REFRESH_S
    assert names.due([first, second])
    await client.aclose()


async def test_a_failed_read_keeps_the_names_and_waits_its_turn(
    fake: FakeLetta, caplog: pytest.LogCaptureFixture
) -> None:
    agent = fake.add_agent("alpha")
    clock = Clock()
    client = client_for(fake)
    names = AgentNames(client, clock=clock)
    await names.refresh([agent])
    fake.stop()  # Letta goes away
    clock.now += agent_names.REFRESH_S
    await names.refresh([agent])
    assert names.info([agent]) == ((agent, "alpha"),)
    assert "cannot read agent names" in caplog.text
    assert not names.due([agent])
    await client.aclose()
