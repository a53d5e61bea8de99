"""Traffic discipline (issue #26), in-process on the rig's clock: what the poll loop sends
to a Letta that fails, and what the pace does with 429s that are noise.

Every test counts requests (`rig.letta.log`) over time that passes at once
(`rig.run_for`); nothing sleeps. Numbers against a real process:
tests/benchmarks/bench_traffic.py.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from exporter.poll.backoff import KeyFileWatch, PollBackoff, wait_unless_key_changes
from tests.cycle_rig import BASE_URL, CycleRig, open_rig

BACKOFF = "letta_exporter_poll_backoff_seconds"
FINISHED = "letta_runs_finished_total"


async def first_good_cycle(rig: CycleRig) -> int:
    """A first start that works (a few runs of history); the requests it took."""
    for _ in range(3):
        rig.letta.finished()
    assert await rig.cycle()
    return len(rig.letta.log)


@pytest.mark.parametrize(("status", "most"), [(401, 8), (403, 8), (500, 20)])
async def test_a_server_answering_everything_with_an_error_gets_few_requests(
    tmp_path: Path, status: int, most: int
) -> None:
    # Default flags (15 s interval, 50 requests/s, 3 retries); first start, nothing known.
    async with open_rig(tmp_path, letta_rate_limit=50) as rig:
        rig.letta.answer_everything(status)
        await rig.run_for(20)
        sent = len(rig.letta.log)
        assert 1 <= sent <= most
        samples = rig.metrics()
        assert samples.value("letta_up") == 0
        assert samples.value(BACKOFF) >= 15
        reason = "http_5xx" if status == 500 else "auth"
        assert samples.value("letta_exporter_poll_errors_total", reason=reason) >= 1


async def test_connection_refused_after_a_good_poll_backs_off_and_names_the_url(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with open_rig(tmp_path, letta_rate_limit=50) as rig:
        before = await first_good_cycle(rig)
        rig.letta.refuse = True
        with caplog.at_level(logging.WARNING):
            await rig.run_for(20)
        assert len(rig.letta.log) - before <= 20
        warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(warnings) == 1, warnings  # one line for the change, not one per retry
        assert f"nothing answers at {BASE_URL}" in warnings[0]
        assert "LETTA_BASE_URL" in warnings[0]


async def test_the_wait_doubles_with_each_failure_and_a_good_cycle_ends_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with open_rig(tmp_path, letta_rate_limit=50, letta_retries=0) as rig:
        await first_good_cycle(rig)
        rig.letta.answer_everything(503)
        waits = []
        for _ in range(7):
            assert not await rig.cycle()
            waits.append(rig.metrics().value(BACKOFF))
        assert [15 <= w <= 15 * 1.25 for w in waits[:1]] == [True]
        assert all(b >= a for a, b in zip(waits, waits[1:], strict=False)), waits
        assert 120 <= waits[4] <= 150 * 1.25 * 2 and waits[-1] == 300
        rig.letta.answer_everything(None)
        with caplog.at_level(logging.INFO):
            assert await rig.cycle()
        assert rig.metrics().value(BACKOFF) == 0
        assert rig.metrics().value("letta_up") == 1
        assert any("reachable again" in r.getMessage() for r in caplog.records)


async def test_a_failed_cycle_waits_at_least_the_interval_even_with_a_walk_pending(
    tmp_path: Path,
) -> None:
    # A first start with a backfill leaves a walk pending after each page; a failure on
    # the next page must not make the loop ask again at once.
    async with open_rig(
        tmp_path, letta_rate_limit=0, letta_retries=0, letta_page_size=10, backfill=86400.0
    ) as rig:
        for _ in range(50):
            rig.letta.finished()
        rig.letta.answer_at_random(500, 0.5, seed=3)
        await rig.run_for(60)
        lists = rig.letta.count_requests(r"^/v1/runs/$")
        failures = rig.metrics().value("letta_exporter_poll_errors_total")
        assert failures >= 1
        # Each failed cycle costs the loop at least 15 s: at most 4 of them in 60 s.
        assert failures <= 4
        assert lists >= failures


async def test_a_new_key_file_ends_the_wait_after_a_401(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("old\n")
    watch = KeyFileWatch(key)
    watch.rejected()
    waited: list[float] = []

    async def wait(stop: asyncio.Event, seconds: float) -> None:
        waited.append(seconds)
        if len(waited) == 3:
            key.write_text("rotated key\n")

    await wait_unless_key_changes(wait, asyncio.Event(), 300.0, watch)
    assert sum(waited) == 3.0


def test_the_backoff_never_waits_less_than_the_interval_or_more_than_the_cap() -> None:
    for draw in (0.0, 0.5, 0.999):
        backoff = PollBackoff(15.0, uniform=lambda draw=draw: draw)
        waits = [backoff.failed() for _ in range(12)]
        assert waits[0] >= 15 and max(waits) == 300
        assert backoff.failed(asked_s=900) == 900  # Retry-After beyond the cap is honoured
        backoff.succeeded()
        assert backoff.wait_s == 0


async def test_random_429s_and_503s_lose_and_double_nothing(tmp_path: Path) -> None:
    # Issue #26's case: 2.5 % of answers 429 (Retry-After: 1) and 2.5 % 503, runs
    # finishing at 20/s, a 1 s interval, no cap. The old pace halved on every 429 and
    # left most runs uncounted a minute after the traffic ended.
    async with open_rig(tmp_path, letta_rate_limit=0, poll_interval=1.0) as rig:
        assert await rig.cycle()
        rig.letta.answer_at_random(429, 0.025, retry_after="1", seed=26)
        rig.letta.answer_at_random(503, 0.025, seed=26)
        created = [0]
        traffic_until = rig.now + 30
        made_until = [rig.now]

        def traffic() -> None:
            # Runs finishing at 20/s while the traffic lasts, each 2 s long.
            while made_until[0] + 0.05 <= min(rig.now, traffic_until):
                made_until[0] += 0.05
                rig.letta.finished(f"agent-{created[0] % 4}", created_at=made_until[0] - 2)
                created[0] += 1

        rig.on_wait = traffic
        await rig.run_for(30 + 60)
        assert created[0] == 600
        assert rig.letta.random_answers >= 10
        assert rig.metrics().value(FINISHED) == created[0]


async def test_a_cut_in_the_pace_is_on_metrics_before_the_cycle_ends(tmp_path: Path) -> None:
    # A scrape reads the rate in force from the published snapshot, which is published
    # again when the rate changes: a 429 storm shows while the cycle it slows is running.
    rate = "letta_exporter_request_rate_limit"
    async with open_rig(tmp_path, letta_rate_limit=0, runs_grace_period=0) as rig:
        assert await rig.cycle()
        assert rig.metrics().value(rate) == 0  # nothing caps the requests: no sample
        for n in range(40):
            rig.letta.finished(f"agent-{n % 4}")
        rig.letta.set_request_budget(5.0)
        during: list[float] = []
        rig.on_wait = lambda: during.append(rig.metrics().value(rate))
        rig.advance(1)
        await rig.cycle()  # counts the 40 runs: about 45 requests, 5 a second answered
        assert max(during) > 0, during
