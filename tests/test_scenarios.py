"""The real exporter process against the fake Letta API: exported totals equal the truth.

Each test drives `python -m exporter` over real HTTP on loopback and compares
`letta_runs_finished_total` per (agent, status, stop_reason) with the fake's ground truth.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fake_letta.fake import FakeLetta
from tests.harness import Exporter, expected, exporter_on, running, wait_polls

pytestmark = pytest.mark.e2e

OUTCOMES = [
    ("completed", "end_turn"),
    ("completed", "max_steps"),
    ("completed", "requires_approval"),
    ("completed", "llm_api_error"),  # non-canonical pair the streaming path produces
    ("failed", "llm_api_error"),
    ("failed", None),
    ("cancelled", "cancelled"),
]


@pytest.fixture(
    params=[
        ("letta-0.16.8", "postgres"),
        ("conventional", "postgres"),
        ("relative", "postgres"),
        ("letta-0.16.8", "sqlite"),
    ],
    ids=["letta-0.16.8", "conventional", "relative", "sqlite"],
)
def fake(request: pytest.FixtureRequest) -> Iterator[FakeLetta]:
    semantics, backend = request.param
    with FakeLetta(semantics=semantics, backend=backend) as server:
        yield server


def finish_runs(fake: FakeLetta, count: int, agents: list[str], *, start: int = 0) -> list[str]:
    """Create runs that go created → running → a terminal outcome."""
    ids = []
    for i in range(start, start + count):
        run_id = fake.create_run(agents[i % len(agents)], background=i % 2 == 0)
        fake.update_run(run_id, status="running")
        status, reason = OUTCOMES[i % len(OUTCOMES)]
        fake.update_run(run_id, status=status, stop_reason=reason)
        ids.append(run_id)
    return ids


def assert_totals_match(exporter: Exporter, fake: FakeLetta, timeout: float = 30.0) -> None:
    exporter.wait_for(
        lambda: exporter.finished() == expected(fake.truth()),
        timeout,
        "exported totals to equal the fake's truth",
    )


def test_runs_are_counted_exactly_once_across_pages(fake: FakeLetta, tmp_path: Path) -> None:
    agents = ["agent-alpha", "agent-beta", "agent-gamma"]
    with exporter_on(fake.base_url, tmp_path, "--letta.page-size=4") as exp:
        finish_runs(fake, 30, agents)
        assert_totals_match(exp, fake)
        finish_runs(fake, 12, agents, start=30)
        assert_totals_match(exp, fake)
        wait_polls(exp, 6)  # five more whole cycles re-read the same window: no double count
        assert exp.finished() == expected(fake.truth())
        assert exp.value("letta_up") == 1


def test_same_second_ties_are_neither_skipped_nor_repeated(fake: FakeLetta, tmp_path: Path) -> None:
    with exporter_on(fake.base_url, tmp_path, "--letta.page-size=5") as exp:
        second = float(int(time.time()))
        for i in range(23):
            # Nine share one microsecond, the rest one second: both kinds of tie.
            created = second + (0.25 if i < 9 else 0.3 + i / 1000)
            run_id = fake.create_run("agent-ties", created_at=created)
            fake.update_run(run_id, status="completed", stop_reason="end_turn")
        assert_totals_match(exp, fake)
        assert exp.finished() == {("agent-ties", "completed", "end_turn"): 23}


def test_a_late_committed_run_behind_newer_ones_is_still_counted(
    fake: FakeLetta, tmp_path: Path
) -> None:
    with exporter_on(fake.base_url, tmp_path, "--letta.page-size=3") as exp:
        late = fake.create_run("agent-late", created_at=time.time() - 20, visible=False)
        finish_runs(fake, 9, ["agent-on-time"])
        assert_totals_match(exp, fake)
        fake.update_run(late, status="completed", stop_reason="end_turn")
        fake.commit(late)
        assert_totals_match(exp, fake)
        assert exp.value("letta_exporter_late_runs_total") >= 1


def test_runs_that_never_finish_become_stale_not_in_progress_forever(
    fake: FakeLetta, tmp_path: Path
) -> None:
    args = ("--runs.stale-after=1.5s",)
    with exporter_on(fake.base_url, tmp_path, *args) as exp:
        fake.create_run("agent-zombie")  # sync path: stays created while it runs
        exp.wait_for(
            lambda: exp.value("letta_runs_in_progress", agent="agent-zombie") == 1,
            what="the open run to be in progress",
        )
        assert exp.value("letta_run_oldest_in_progress_created_timestamp_seconds") > 0
        exp.wait_for(
            lambda: (
                exp.value("letta_runs_stale", agent="agent-zombie") == 1
                and exp.value("letta_runs_in_progress", agent="agent-zombie") == 0
            ),
            what="the zombie to turn stale",
        )
        assert exp.finished() == {}


def test_a_status_flip_within_grace_counts_the_final_status_and_later_flips_are_reported(
    fake: FakeLetta, tmp_path: Path
) -> None:
    args = ("--runs.grace-period=3s",)
    with exporter_on(fake.base_url, tmp_path, *args) as exp:
        early = fake.create_run("agent-a")
        fake.update_run(early, status="completed", stop_reason="requires_approval")
        # The flip must come after a poll saw the first status: the run settling (followed,
        # neither in progress nor counted).
        exp.wait_for(
            lambda: (
                exp.value("letta_exporter_open_runs") == 1
                and exp.value("letta_runs_in_progress") == 0
                and exp.finished() == {}
            ),
            what="the exporter to see the first status (settling within its grace period)",
        )
        fake.update_run(early, status="cancelled", stop_reason="cancelled")
        assert_totals_match(exp, fake)
        assert exp.finished() == {("agent-a", "cancelled", "cancelled"): 1}

        late = fake.create_run("agent-a")
        fake.update_run(late, status="completed", stop_reason="requires_approval")
        exp.wait_for(lambda: sum(exp.finished().values()) == 2, what="the second run")
        fake.update_run(late, status="cancelled", stop_reason="cancelled")
        exp.wait_for(
            lambda: exp.value("letta_exporter_runs_changed_after_count_total") == 1,
            what="the late flip to be reported",
        )
        assert sum(exp.finished().values()) == 2


def test_deleted_runs_and_a_deleted_cursor_lose_no_surviving_run(
    fake: FakeLetta, tmp_path: Path
) -> None:
    doomed, kept = "agent-doomed", "agent-kept"
    base = time.time() - 100
    for i in range(40):
        # Kept runs are the newest and the oldest: every cursor mid-walk belongs to the
        # doomed agent, and a restarted list starts above the cursor (detectably lost).
        agent = kept if i < 2 or i >= 38 else doomed
        run_id = fake.create_run(agent, created_at=base + i)
        fake.update_run(run_id, status="completed", stop_reason="end_turn")
    followed = fake.create_run(doomed)  # open when its agent is deleted
    fake.inject("timeout", delay=0.25, times=200, path_prefix="/v1/runs/")
    args = ("--letta.page-size=4", "--poll.max-pages=1", "--backfill=1h")
    with running(Exporter(fake.base_url, tmp_path / "s.sqlite", *args)) as exp:

        def walking_doomed_runs() -> bool:
            for _, _, query, _ in fake.requests:
                cursor = (query.get("before") or query.get("after") or [""])[0]
                run = fake.get(cursor)
                if query.get("limit") == ["4"] and run and run["agent_id"] == doomed:
                    return True
            return False

        exp.wait_for(walking_doomed_runs, what="the walk to reach the doomed runs")
        fake.delete_agent(doomed)
        fake.clear_faults()
        exp.wait_ready()
        exp.wait_for(
            lambda: exp.finished(("agent",)).get((kept,)) == 4, what="every kept run counted"
        )
        exp.wait_for(
            lambda: (
                exp.value("letta_exporter_cursor_lost_total") >= 1
                and exp.value("letta_runs_deleted_total") == 1
            ),
            what="the lost cursor and the deleted open run to be counted",
        )
        assert exp.finished(("agent",))[(doomed,)] <= 36
        assert followed not in [r["id"] for r in fake.runs()]


@pytest.mark.parametrize(
    ("kind", "options"),
    [
        ("500", {"times": 3}),
        ("503", {"times": 2}),
        ("429", {"times": 2, "retry_after": 0.3}),
        ("timeout", {"times": 2, "delay": 2.5}),
        ("truncated", {"times": 2}),
        ("garbage", {"times": 1}),
        ("reset", {"times": 2}),
    ],
)
def test_api_faults_delay_but_never_lose_or_double_runs(
    kind: str, options: dict[str, float], tmp_path: Path
) -> None:
    with (
        FakeLetta() as fake,
        exporter_on(fake.base_url, tmp_path, "--letta.page-size=3") as exp,
    ):
        finish_runs(fake, 5, ["agent-a", "agent-b"])
        assert_totals_match(exp, fake)
        fake.inject(kind, path_prefix="/v1/runs/", **options)  # type: ignore[arg-type]
        finish_runs(fake, 8, ["agent-a", "agent-b"], start=5)
        fake.inject(kind, path_prefix="/v1/runs/", **options)  # type: ignore[arg-type]
        assert_totals_match(exp, fake, timeout=60)
        codes = {
            labels
            for (name, labels), _ in exp.samples().items()
            if name == "letta_exporter_api_requests_total"
        }
        assert len(codes) >= 2, "the faulty answers are visible in the request counter"


def test_an_invalid_item_is_skipped_and_counted_without_poisoning_the_page(
    tmp_path: Path,
) -> None:
    with (
        FakeLetta() as fake,
        exporter_on(fake.base_url, tmp_path, "--letta.page-size=4") as exp,
    ):
        finish_runs(fake, 3, ["agent-a"])
        fake.add_raw_item({"status": 42, "created_at": "not a date"}, created_at=time.time())
        finish_runs(fake, 3, ["agent-a"], start=3)
        assert_totals_match(exp, fake)
        exp.wait_for(
            lambda: exp.value("letta_exporter_invalid_items_total", endpoint="runs_list") >= 1,
            what="the invalid item to be counted",
        )


def test_unknown_status_and_stop_reason_values_are_kept(tmp_path: Path) -> None:
    with (
        FakeLetta() as fake,
        exporter_on(fake.base_url, tmp_path) as exp,
    ):
        paused = fake.create_run("agent-a")
        fake.update_run(paused, status="paused")  # unknown, no completion mark: still open
        exp.wait_for(
            lambda: exp.value("letta_runs_in_progress", status="paused") == 1,
            what="the paused run to be followed",
        )
        fake.update_run(paused, status="completed", stop_reason="brand_new_reason")
        odd = fake.create_run("agent-a")
        fake.update_run(odd, status="expired", stop_reason="Quota Exhausted!")
        want = expected(fake.truth())
        # An unknown status with a stop reason is finished to the exporter, not to the fake.
        want[("agent-a", "expired", "quota_exhausted")] += 1
        exp.wait_for(lambda: exp.finished() == want, what="both odd runs to be counted")


def test_first_start_counts_from_now_and_backfill_counts_history(tmp_path: Path) -> None:
    with FakeLetta() as fake:
        old = time.time() - 600
        for i in range(6):
            run_id = fake.create_run("agent-a", created_at=old + i)
            fake.update_run(run_id, status="completed", stop_reason="end_turn")
        open_at_start = fake.create_run("agent-a", created_at=old + 10)

        with running(Exporter(fake.base_url, tmp_path / "a.sqlite")) as exp:
            exp.wait_ready()
            exp.wait_for(
                lambda: exp.value("letta_runs_in_progress") == 1,
                what="the scan to reach the run active at start, past the history",
            )
            wait_polls(exp, 3)
            assert exp.finished() == {}, "history before the first start is not counted"
            fake.update_run(open_at_start, status="failed", stop_reason="llm_api_error")
            exp.wait_for(
                lambda: exp.finished() == {("agent-a", "failed", "llm_api_error"): 1},
                what="the run active at start to be counted when it ends",
            )

        with running(Exporter(fake.base_url, tmp_path / "b.sqlite", "--backfill=1h")) as exp:
            assert_totals_match(exp, fake)
            assert any("backfill" in line for line in exp.logs)


def test_sigterm_finishes_the_cycle_commits_and_exits_zero(tmp_path: Path) -> None:
    with FakeLetta() as fake:
        exp = Exporter(fake.base_url, tmp_path / "s.sqlite").start()
        try:
            exp.wait_ready()
            finish_runs(fake, 4, ["agent-a"])
            assert_totals_match(exp, fake)
            assert exp.terminate() == 0
        finally:
            exp.kill()
        with running(Exporter(fake.base_url, tmp_path / "s.sqlite")) as again:
            again.wait_ready()
            assert again.finished() == expected(fake.truth())


def test_wrong_credentials_set_up_to_zero_and_say_why(tmp_path: Path) -> None:
    with (
        FakeLetta(password="right") as fake,
        running(
            Exporter(fake.base_url, tmp_path / "s.sqlite", env={"LETTA_API_KEY": "wrong-key-123"})
        ) as exp,
    ):
        exp.wait_for(
            lambda: exp.value("letta_exporter_poll_errors_total", reason="auth") >= 1,
            what="an auth poll error",
        )
        assert exp.value("letta_up") == 0
        assert exp.get("/readyz").status_code == 503
        assert any("check the server password (LETTA_API_KEY" in line for line in exp.logs)
        assert not any("wrong-key-123" in line for line in exp.logs)
