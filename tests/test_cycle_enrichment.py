"""Enrichment through the poll cycle, in-process: retries with backoff, then give-ups.

A finished run waits for its steps, usage and metrics before it is counted; a failed
fetch is retried after 2 s, 4 s, ... and given up after --enrich.max-attempts, the run
then counted without that detail. See tests/cycle_rig.py for the mocked Letta API.
Client-level retries are off here (`letta_retries=0`), so one attempt is one request.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.cycle_rig import CycleRig, open_rig

FINISHED = "letta_runs_finished_total"
FAILURES = "letta_exporter_enrichment_failures_total"
TOKENS = "letta_run_tokens_total"
STEPS = r"/steps$"


async def past_grace(rig: CycleRig, **finished: Any) -> str:
    """First start, then a run that finished and whose grace period just ended (the
    next cycle enriches it). Returns its id."""
    assert await rig.cycle()
    rig.advance(15)
    run = rig.letta.finished("agent-a", tokens=(700, 20), **finished)
    await rig.cycle()
    rig.advance(6)
    return run


async def test_a_failed_fetch_is_retried_after_a_growing_backoff(tmp_path: Path) -> None:
    async with open_rig(tmp_path, letta_retries=0, runs_grace_period=5) as rig:
        await past_grace(rig)
        rig.letta.fail(STEPS, 500, times=2)
        await rig.cycle()  # attempt 1 fails: next one in 2 s
        assert rig.letta.count_requests(STEPS) == 1
        assert rig.metrics().value(FINISHED) == 0
        rig.advance(1)
        await rig.cycle()
        assert rig.letta.count_requests(STEPS) == 1  # still backing off
        rig.advance(1.5)
        await rig.cycle()  # attempt 2 fails: next one in 4 s
        assert rig.letta.count_requests(STEPS) == 2
        rig.advance(3)
        await rig.cycle()
        assert rig.letta.count_requests(STEPS) == 2
        rig.advance(1.5)
        await rig.cycle()  # attempt 3 answers
        samples = rig.metrics()
        assert rig.letta.count_requests(STEPS) == 3
        assert samples.value(FINISHED) == 1
        assert samples.value(TOKENS, model="gpt-4o-mini", type="input") == 700
        assert samples.value(FAILURES) == 0
        assert samples.value("letta_exporter_enrichment_backlog") == 0


async def test_a_fetch_failing_every_attempt_is_given_up_and_the_run_counted_without_it(
    tmp_path: Path,
) -> None:
    async with open_rig(
        tmp_path, letta_retries=0, runs_grace_period=5, enrich_max_attempts=3
    ) as rig:
        await past_grace(rig)
        rig.letta.fail(STEPS, 503, times=100)
        await rig.cycle()
        assert rig.metrics().value("letta_exporter_enrichment_backlog") == 1
        await rig.cycles(10, every=5)
        samples = rig.metrics()
        assert rig.letta.count_requests(STEPS) == 3
        assert samples.value(FINISHED) == 1
        assert samples.series(FAILURES) == {(("endpoint", "steps"),): 1}
        # Without the steps, /usage has the totals, by no model.
        assert samples.value(TOKENS, model="unknown", type="input") == 700
        assert samples.value(TOKENS, model="gpt-4o-mini") == 0
        await rig.cycles(5, every=15)
        assert rig.metrics().value(FINISHED) == 1


async def test_an_endpoint_answering_404_for_runs_that_exist_is_given_up_then_not_asked(
    tmp_path: Path,
) -> None:
    async with open_rig(tmp_path, letta_retries=0, runs_grace_period=5) as rig:
        assert await rig.cycle()
        rig.advance(15)
        runs = [rig.letta.finished(agent, tokens=(10, 1)) for agent in ("a", "b", "c")]
        await rig.cycle()
        rig.advance(6)
        rig.letta.fail(STEPS, 404, times=3, body={"detail": "Not Found"})
        await rig.cycle()
        samples = rig.metrics()
        # Each run is counted at once, without its steps (a 404 is never retried).
        assert samples.value(FINISHED) == 3
        assert samples.series(FAILURES) == {(("endpoint", "steps"),): 3}
        assert all(rig.letta.count_requests(f"/v1/runs/{run}$") == 1 for run in runs)
        # Three runs that exist without steps: Letta does not serve them here.
        assert samples.value("letta_exporter_endpoint_up", endpoint="steps") == 0
        rig.advance(15)
        rig.letta.finished("d", tokens=(10, 1))
        await rig.cycles(2, every=15)
        samples = rig.metrics()
        assert samples.value(FINISHED) == 4
        assert rig.letta.count_requests(STEPS) == 3
        assert samples.value(TOKENS, agent="d", model="unknown") == 11  # from /usage


async def test_a_run_deleted_before_its_details_are_fetched_is_counted_without_them(
    tmp_path: Path,
) -> None:
    async with open_rig(tmp_path, letta_retries=0, runs_grace_period=5) as rig:
        run = await past_grace(rig)
        rig.letta.fail(STEPS, 500, times=1)
        await rig.cycle()  # enriching; its steps wait for a retry
        rig.letta.delete_run(run)
        await rig.cycles(3, every=5)
        samples = rig.metrics()
        assert samples.value(FINISHED, agent="agent-a") == 1
        assert samples.value(FAILURES, endpoint="steps") == 1
        assert samples.value("letta_exporter_endpoint_up", endpoint="steps") == 1
        assert samples.value("letta_exporter_enrichment_backlog") == 0
