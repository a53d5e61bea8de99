"""Bursts against every kind of runs-list cursor: each finished run is counted exactly once.

The real exporter (`--poll.interval=1s`, pages of 50) against the fake Letta API playing
each cursor semantics (0.16.8's swapped cursors, time-absolute ones, cursors relative to
the sort order that answer 404 to an unknown cursor or silently restart from the head),
on each precision (Postgres microseconds, SQLite's whole-second cursor compare). The
traffic is a sustained burst of 250 runs/s with 30 % of each burst sharing one timestamp
at the head, then a frozen head (no new runs). Within 10 poll intervals of the traffic
stopping the totals equal the truth: nothing lost, nothing doubled.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fake_letta.constants import Backend, Semantics, UnknownCursor
from tests.fake_letta.fake import FakeLetta
from tests.harness import Exporter, expected, exporter_on, running, wait_polls

pytestmark = pytest.mark.e2e

POLL_S = 1.0
# How soon the exporter catches up after a burst depends on the machine: on a loaded CI
# runner a burst's enrichment backlog drained in 20 s, not the 10 polls it takes alone.
# The wait ends as soon as the totals are right; tests/benchmarks times the catching up.
CATCH_UP_S = 180.0
ARGS = (f"--poll.interval={POLL_S}s", "--letta.page-size=50", "--backfill=1h")
AGENTS = ["agent-a", "agent-b", "agent-c"]
KINDS: list[tuple[Semantics, UnknownCursor, Backend]] = [
    (semantics, unknown, backend)
    for semantics, unknown in (
        ("letta-0.16.8", "ignore"),
        ("conventional", "ignore"),
        ("relative", "404"),
        ("relative", "ignore"),
    )
    for backend in ("postgres", "sqlite")
]


def burst(
    fake: FakeLetta,
    seconds: float,
    rng: random.Random,
    *,
    per_tick: int = 25,
    tick_s: float = 0.1,
) -> None:
    """`per_tick` finished runs every `tick_s` (250 runs/s by default) for `seconds`."""
    started = time.monotonic()
    for tick in range(round(seconds / tick_s)):
        fake.finish_burst(per_tick, AGENTS, shared_fraction=0.3, rng=rng)
        delay = started + (tick + 1) * tick_s - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def burst_until(
    fake: FakeLetta, rng: random.Random, done: Callable[[], bool], what: str, timeout: float = 60
) -> None:
    """Bursts of a second (as `burst`) until `done()` holds; AssertionError after `timeout`."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        burst(fake, 1.0, rng)


def assert_exact_after_traffic(exp: Exporter, fake: FakeLetta) -> None:
    """Equal to the truth once the exporter caught up, and still equal three polls later."""
    truth = expected(fake.truth())
    exp.wait_for(lambda: exp.finished() == truth, CATCH_UP_S, "totals to equal the truth")
    wait_polls(exp, 3)
    assert exp.finished() == truth
    assert exp.value("letta_exporter_counting_lag_seconds") == 0


@pytest.mark.parametrize(
    ("semantics", "unknown", "backend"), KINDS, ids=["-".join(kind) for kind in KINDS]
)
def test_a_burst_then_a_frozen_head_is_counted_exactly_once(
    semantics: Semantics, unknown: UnknownCursor, backend: Backend, tmp_path: Path
) -> None:
    rng = random.Random(12)
    with (
        FakeLetta(semantics=semantics, unknown_cursor=unknown, backend=backend) as fake,
        exporter_on(fake.base_url, tmp_path, *ARGS) as exp,
    ):
        burst(fake, 3.0, rng)
        assert_exact_after_traffic(exp, fake)
        expected_param = "after" if semantics == "relative" else "before"
        assert exp.value("letta_exporter_list_cursor_info", param=expected_param) == 1
        assert exp.value("letta_exporter_pagination_stalls_total") == 0


@pytest.mark.parametrize("backend", ["postgres", "sqlite"])
def test_a_server_changing_cursor_semantics_between_polls_is_followed(
    backend: Backend, tmp_path: Path
) -> None:
    rng = random.Random(13)
    with (
        FakeLetta(semantics="letta-0.16.8", backend=backend) as fake,
        exporter_on(fake.base_url, tmp_path, *ARGS) as exp,
    ):
        switches = "letta_exporter_cursor_direction_switches_total"
        # Each change lasts until the exporter has followed it, however slow its cycles:
        # a change at a fixed moment may come and go between two of its walks.
        for semantics, param in (("relative", "after"), ("letta-0.16.8", "before")) * 2:
            switched = exp.value(switches)
            fake.set_semantics(semantics, "ignore")

            def followed(param: str = param, switched: float = switched) -> bool:
                return exp.value("letta_exporter_list_cursor_info", param=param) == 1 and (
                    param == "after" and switched == 0 or exp.value(switches) > switched
                )

            burst_until(fake, rng, followed, f"the exporter to list with {param!r}")
        burst(fake, 1.0, rng)
        assert_exact_after_traffic(exp, fake)
        assert exp.value("letta_exporter_list_cursor_info", param="before") == 1
        assert exp.value(switches) >= 3


def test_kill_9_during_a_burst_on_relative_silent_whole_second_cursors(tmp_path: Path) -> None:
    rng = random.Random(14)
    state = tmp_path / "s.sqlite"
    with FakeLetta(semantics="relative", unknown_cursor="ignore", backend="sqlite") as fake:
        first = Exporter(fake.base_url, state, *ARGS)
        with running(first):
            first.wait_ready()
            burst(fake, 1.5, rng)
            first.kill()
        burst(fake, 1.5, rng)  # while it is down
        with running(Exporter(fake.base_url, state, *ARGS)) as second:
            burst(fake, 1.0, rng)
            assert_exact_after_traffic(second, fake)
