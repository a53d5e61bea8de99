"""The poller's enrichment when Letta lacks an endpoint or asks to wait, in process: the
real client, poller, tracker and checkpoint against the fake, on one virtual clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from exporter.cli.client import client_from_settings
from exporter.cli.config import load_settings
from exporter.cli.wiring import tracker_options
from exporter.core.enrichment.availability import RECHECK_NS
from exporter.core.labels import CappedLabel
from exporter.core.tracker import Tracker
from exporter.poll.cycle import Poller
from exporter.poll.options import PollOptions
from exporter.series import catalogue as m
from exporter.series.aggregates import Aggregates
from exporter.store.checkpoint import Checkpoint
from tests.fake_letta.fake import FakeLetta

START = 1_800_000_000.0


@dataclass
class Rig:
    fake: FakeLetta
    poller: Poller
    tracker: Tracker
    postponed: list[str]
    now: list[float]

    async def cycles(self, n: int = 3, step_s: float = 10.0) -> None:
        for _ in range(n):
            self.now[0] += step_s
            await self.poller.cycle()

    def finish(self, agent: str = "agent-a", tools: tuple[str, ...] = ()) -> str:
        run_id = self.fake.create_run(agent)
        self.fake.add_step(run_id, prompt_tokens=10, completion_tokens=2, tool_ids=list(tools))
        self.fake.update_run(run_id, status="completed", stop_reason="end_turn")
        return run_id

    def asked(self, suffix: str) -> int:
        return sum(1 for r in self.fake.requests if r[1].endswith(suffix))

    def series(self, spec: m.MetricSpec) -> dict[tuple[str, ...], float]:
        return dict(self.tracker.aggregates.series(spec))


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    now = [START]
    with FakeLetta(clock=lambda: now[0]) as fake:
        settings = load_settings(
            {"base_url": fake.base_url, "letta_rate_limit": 0, "letta_timeout": 5.0}
        )
        postponed: list[str] = []
        client = client_from_settings(settings, on_postponed=postponed.append)
        tracker = Tracker(tracker_options(settings), Aggregates(), CappedLabel("agent", 50))
        checkpoint = Checkpoint(tmp_path / "s.sqlite")
        poller = Poller(
            client,
            tracker,
            checkpoint,
            PollOptions(),
            publish=lambda snapshot: None,
            first_start=True,
            clock=lambda: now[0],
        )
        try:
            yield Rig(fake, poller, tracker, postponed, now)
        finally:
            await client.aclose()
            checkpoint.close()


async def test_a_missing_metrics_route_is_noticed_then_not_asked_and_rechecked(rig: Rig) -> None:
    tool = rig.fake.add_tool("web_search")
    rig.fake.serves_run_metrics = False
    rig.fake.serves_messages_list = False  # the per-run path, as on a server without it
    await rig.cycles(1)
    for _ in range(5):
        rig.finish(tools=(tool,))
    await rig.cycles()
    assert rig.poller.endpoints.up()["metrics"] is False
    asked = rig.asked("/metrics")
    assert asked >= 3
    for _ in range(5):
        rig.finish(tools=(tool,))
    await rig.cycles()
    assert rig.asked("/metrics") == asked, "not asked while not served"
    assert rig.series(m.RUN_TOOL_CALLS) == {("agent-a", "web_search"): 10.0}
    assert rig.series(m.ENRICHMENT_FAILURES) == {}
    # The re-check: one run asks again after five minutes, and it is served again.
    rig.fake.serves_run_metrics = True
    rig.now[0] += RECHECK_NS / 1e9
    for _ in range(3):
        rig.finish(tools=(tool,))
    await rig.cycles()
    assert rig.poller.endpoints.up()["metrics"] is True
    assert rig.series(m.RUN_TOOL_CALLS) == {("agent-a", "web_search"): 13.0}


async def test_a_404_for_a_run_that_is_gone_stays_a_failure_and_proves_nothing(
    rig: Rig,
) -> None:
    await rig.cycles(1)
    run_ids = [rig.finish() for _ in range(4)]
    rig.now[0] += 10
    await rig.poller.cycle()  # seen finished; enrichment waits out the grace period
    for run_id in run_ids:
        rig.fake.delete_run(run_id)
    await rig.cycles()
    assert all(rig.poller.endpoints.up().values())
    # As before endpoint availability: each detail of each run is given up, once.
    assert rig.series(m.ENRICHMENT_FAILURES) == {
        ("steps",): 4.0,
        ("usage",): 4.0,
        ("metrics",): 4.0,
    }
    assert rig.series(m.RUNS_FINISHED) == {("agent-a", "completed", "end_turn"): 4.0}


async def test_a_long_retry_after_postpones_the_run_without_costing_an_attempt(
    rig: Rig,
) -> None:
    await rig.cycles(1)
    rig.fake.inject("409", retry_after=120, path_regex=r"/steps$")
    run_id = rig.finish()
    await rig.cycles()
    record = rig.tracker.runs.records[run_id]
    assert record.enrich is not None and record.enrich.attempts == 0
    assert rig.postponed == ["run_steps"]
    assert rig.series(m.RUNS_FINISHED) == {}
    await rig.cycles(2, step_s=60.0)
    assert rig.series(m.RUNS_FINISHED) == {("agent-a", "completed", "end_turn"): 1.0}
    assert rig.series(m.ENRICHMENT_FAILURES) == {}
