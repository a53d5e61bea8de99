"""The cursor direction: judged on every page, against every kind of server the fake plays."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator

import pytest

from exporter.core.listing.direction import FLIP_AFTER, Answer, CursorDirection, classify
from exporter.core.listing.walk import Walk
from exporter.letta.client import LettaClient
from exporter.letta.http import build_http_client
from exporter.letta.models import Run
from exporter.poll.pager import RunPager, next_limit
from tests.fake_letta.constants import Backend, Semantics, UnknownCursor
from tests.fake_letta.fake import FakeLetta

S = 1_000_000_000
KINDS: list[tuple[Semantics, Backend, UnknownCursor]] = [
    (semantics, backend, unknown)
    for semantics in ("letta-0.16.8", "conventional", "relative")
    for backend in ("postgres", "sqlite")
    for unknown in ("ignore", "404")
]


def test_pages_are_judged_against_the_cursor_key() -> None:
    cursor = (10 * S + 500, "run-m")
    assert classify([], cursor) is Answer.EMPTY
    assert classify([(11 * S, "run-a"), (10 * S, "run-b")], cursor) is Answer.NOT_OLDER
    assert classify([(10 * S + 500, "run-m")], cursor) is Answer.NOT_OLDER  # the cursor itself
    assert classify([(10 * S + 500, "run-a"), (10 * S, "run-b")], cursor) is Answer.SAME_SECOND
    assert classify([(10 * S + 400, "run-z"), (9 * S, "run-b")], cursor) is Answer.OLDER


def test_the_first_evidence_decides_and_a_decided_direction_needs_repeated_evidence() -> None:
    direction = CursorDirection()
    assert direction.label == "unknown" and direction.param == "before"
    assert direction.evidence("after") and direction.label == "after"
    assert direction.switches == 0  # a first decision is not a switch
    for _ in range(FLIP_AFTER - 1):
        assert not direction.evidence("before") and direction.label == "after"
    assert direction.evidence("after") is False  # agreeing evidence resets the count
    for _ in range(FLIP_AFTER - 1):
        direction.evidence("before")
    assert direction.evidence("before") and direction.label == "before"
    assert direction.switches == 1


def client_for(fake: FakeLetta) -> LettaClient:
    return LettaClient(build_http_client(fake.base_url, api_key=None, user_id=None, timeout=5.0))


async def walk_all(pager: RunPager, walk: Walk, page_size: int) -> list[Run]:
    """One whole walk down to its floor (several cycles if a page stalls)."""
    runs: list[Run] = []
    limit = page_size
    for _ in range(1000):
        step = await pager.next_page(walk, limit, active=False)
        runs.extend(step.fresh)
        if step.done:
            return runs
        if step.stalled:
            walk.new_cycle()
        limit = next_limit(step, limit, page_size)
    raise AssertionError("the walk did not reach its floor")


class Clock:
    """A wall clock the test moves: bursts land in the seconds it chooses."""

    def __init__(self) -> None:
        self.now = float(int(time.time()) - 600)

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=KINDS, ids=["-".join(kind) for kind in KINDS])
def fake(request: pytest.FixtureRequest) -> Iterator[FakeLetta]:
    semantics, backend, unknown = request.param
    with FakeLetta(
        semantics=semantics, backend=backend, unknown_cursor=unknown, clock=Clock()
    ) as server:
        yield server


def test_a_walk_through_a_burst_with_shared_timestamps_sees_every_run_once(
    fake: FakeLetta,
) -> None:
    rng = random.Random(7)
    ids = []
    clock = fake._clock
    assert isinstance(clock, Clock)
    for _ in range(8):  # 4 bursts a second, 60 runs each: 240 runs/s
        ids += fake.finish_burst(60, ["agent-a", "agent-b"], shared_fraction=0.3, rng=rng)
        clock.now += 0.25

    async def main() -> tuple[list[Run], CursorDirection]:
        client = client_for(fake)
        pager = RunPager(client, on_lost_cursor=lambda: None)
        try:
            runs = await walk_all(pager, Walk(floor_ns=0), page_size=25)
        finally:
            await client.aclose()
        return runs, pager.direction

    runs, direction = asyncio.run(main())
    assert sorted(r.id for r in runs) == sorted(ids)
    # Down to the bottom of the list, where whole-second cursors answer ambiguously.
    assert direction.label == ("after" if fake.semantics == "relative" else "before")
    assert direction.switches == 0


def test_a_server_that_changes_semantics_between_walks_is_followed() -> None:
    with FakeLetta(semantics="letta-0.16.8", unknown_cursor="ignore", clock=Clock()) as fake:
        fake.finish_burst(100, ["agent-a"], shared_fraction=0.1, spread_s=5.0)
        switches: list[int] = []

        async def main() -> list[int]:
            client = client_for(fake)
            pager = RunPager(client, on_lost_cursor=lambda: None)
            pager.direction.evidence("before")
            seen = []
            try:
                for semantics in ("relative", "relative", "letta-0.16.8"):
                    fake.set_semantics(semantics, "ignore")
                    runs = await walk_all(pager, Walk(floor_ns=0), page_size=10)
                    seen.append(len({r.id for r in runs}))
                    switches.append(pager.direction.switches)
            finally:
                await client.aclose()
            return seen

        assert asyncio.run(main()) == [100, 100, 100]
        assert switches == [1, 1, 2]


def test_a_deleted_cursor_run_is_a_lost_cursor_not_a_switch() -> None:
    with FakeLetta(semantics="relative", unknown_cursor="ignore", clock=Clock()) as fake:
        # Seeded: with some spreads the first ten runs share a second, the pages widen
        # and no cursor exists to delete (the test then proved nothing, or failed).
        ids = fake.finish_burst(
            30, ["agent-a"], shared_fraction=0.0, spread_s=5.0, rng=random.Random(3)
        )
        lost: list[int] = []

        async def main() -> tuple[list[Run], CursorDirection]:
            client = client_for(fake)
            pager = RunPager(client, on_lost_cursor=lambda: lost.append(1))
            walk = Walk(floor_ns=0)
            runs: list[Run] = []
            try:
                page = await pager.next_page(walk, 10, active=False)
                runs += page.fresh
                limit = next_limit(page, 10, 10)
                page = await pager.next_page(walk, limit, active=False)  # decides "after"
                runs += page.fresh
                assert walk.cursors, "the walk must hold a cursor to delete"
                for cursor_id, _ in walk.cursors:
                    fake.delete_run(cursor_id)
                runs += await walk_all(pager, walk, page_size=10)
            finally:
                await client.aclose()
            return runs, pager.direction

        runs, direction = asyncio.run(main())
        deleted = set(ids) - {r.id for r in runs}
        assert lost and direction.label == "after" and direction.switches == 0
        assert len({r.id for r in runs}) == len(runs) and not deleted


def test_an_idle_cycle_costs_one_request_whatever_the_direction() -> None:
    with FakeLetta(semantics="relative", unknown_cursor="ignore") as fake:
        fake.finish_burst(5, ["agent-a"])

        async def main() -> None:
            client = client_for(fake)
            pager = RunPager(client, on_lost_cursor=lambda: None)
            try:
                await walk_all(pager, Walk(floor_ns=0), page_size=100)
            finally:
                await client.aclose()

        fake.reset_requests()
        asyncio.run(main())
        assert len([r for r in fake.requests if r[1] == "/v1/runs/"]) == 1


def test_rows_of_the_cursor_second_against_nothing_decide_nothing_on_whole_seconds() -> None:
    # At the bottom of a whole-second (SQLite) relative server, `before` (newer there)
    # answers with the cursor's older second-mates and `after` (older) with nothing.
    clock = Clock()
    with FakeLetta(semantics="relative", backend="sqlite", clock=clock) as fake:
        ids = [fake.create_run("agent-a", created_at=clock.now + i / 100) for i in range(20)]
        cursor = ids[15]
        key = (int((clock.now + 0.15) * 1e6) * 1000, cursor)

        async def main() -> CursorDirection:
            client = client_for(fake)
            pager = RunPager(client, on_lost_cursor=lambda: None)
            walk = Walk(floor_ns=0, cursors=[(cursor, key)], pos=key)
            try:
                step = await pager.next_page(walk, 5, active=False)
            finally:
                await client.aclose()
            assert step.fresh and all(run.id in ids[:15] for run in step.fresh)
            return pager.direction

        assert asyncio.run(main()).label == "unknown"
