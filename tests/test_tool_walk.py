"""The messages walk's rules (exporter.core.enrichment.tool_walk): how far to walk, which
runs a walk covers, and their calls grouped by run, each call once."""

from __future__ import annotations

from exporter.core.enrichment.tool_walk import MessageRate, ToolWalk, WalkPlan, plan_walk
from exporter.core.runs.record import Enrichment, Phase, RunRecord
from exporter.letta.messages import ListedMessage, listed_messages
from exporter.units import NS_PER_S

T0 = 1_800_000_000 * NS_PER_S


def record(run_id: str, created_s: float) -> RunRecord:
    return RunRecord(
        id=run_id,
        agent_id="agent-a",
        created_ns=T0 + int(created_s * NS_PER_S),
        phase=Phase.ENRICHING,
        status="completed",
        enrich=Enrichment(pending=["metrics"]),
    )


def msg(message_id: str, run_id: str | None, at_s: float, *calls: tuple[str, str]) -> ListedMessage:
    return ListedMessage(message_id, run_id, T0 + int(at_s * NS_PER_S), tuple(calls))


class completed:  # noqa: N801 - reads as the callable it stands for
    """completed_at for runs the exporter knows: their end, in seconds after T0."""

    def __init__(self, ends: dict[str, float]) -> None:
        self._ends = ends

    def __call__(self, run_id: str) -> int | None:
        end = self._ends.get(run_id)
        return None if end is None else T0 + int(end * NS_PER_S)


def test_without_a_rate_the_walk_aims_at_every_run_and_reads_no_more_pages_than_runs() -> None:
    runs = [record("run-old", 0), record("run-new", 50)]
    plan = plan_walk(runs, T0 + 60 * NS_PER_S, MessageRate())
    assert plan is not None
    assert [r.id for r in plan.runs] == ["run-new", "run-old"]
    assert plan.budget == 2


def test_with_a_rate_the_walk_serves_the_newest_runs_it_pays_for() -> None:
    now = T0 + 3600 * NS_PER_S
    # 100 messages/s, 1000 a page: a page per 10 s of age.
    rate = MessageRate(per_s=100.0)
    recent = [record(f"run-{i}", 3600 - 5 - i) for i in range(5)]
    old = record("run-old", 0)  # an hour back: 360 pages for one run
    plan = plan_walk([old, *recent], now, rate)
    assert plan is not None
    assert {r.id for r in plan.runs} == {r.id for r in recent}
    assert plan.budget == 5
    assert plan_walk([old], now, rate) is None, "one old run: cheaper per run"


def test_a_run_is_served_once_the_walk_read_past_a_run_that_ended_before_it_began() -> None:
    planned = record("run-b", 10)
    walk = ToolWalk(WalkPlan((planned,), budget=5), completed({"run-a": 8.0, "run-b": 20.0}))
    # 0.16.8 returns a desc page in ascending order: the oldest message comes first.
    page1 = [
        msg("m3", "run-b", 12, ("call-1", "web_search")),
        msg("m4", "run-b", 15, ("call-2", "web_search"), ("call-3", "fetch")),
    ]
    assert walk.take(page1) == "m3"
    assert walk.served() == {}, "messages of run-b may lie below: not covered yet"
    page2 = [
        msg("m1", "run-a", 7, ("call-9", "other")),
        msg("m2", "run-b", 11, ("call-1", "web_search")),  # the same call again
    ]
    assert walk.take(page2) is None, "covered: run-a ended before run-b began"
    assert walk.served() == {"run-b": {"web_search": 2, "fetch": 1}}
    assert "run-a" not in walk.calls, "runs not planned are not kept"


def test_the_end_of_the_list_covers_every_run() -> None:
    planned = record("run-b", 10)
    walk = ToolWalk(WalkPlan((planned,), budget=5), completed({}))
    assert walk.take([msg("m2", "run-b", 12, ("c", "t"))]) == "m2"
    assert walk.take([]) is None
    assert walk.served() == {"run-b": {"t": 1}}


def test_a_walk_cut_short_by_its_budget_serves_only_what_it_covered() -> None:
    newer, older = record("run-new", 100), record("run-old", 10)
    walk = ToolWalk(
        WalkPlan((newer, older), budget=1), completed({"run-mid": 50.0, "run-new": 110.0})
    )
    page = [msg("m5", "run-new", 101, ("c1", "t")), msg("m4", "run-mid", 49)]
    assert walk.take(page) is None, "the budget is spent"
    assert walk.served() == {"run-new": {"t": 1}}


def test_newest_first_pages_take_the_oldest_message_as_the_cursor() -> None:
    walk = ToolWalk(WalkPlan((record("run-b", 10),), budget=5), completed({}))
    page = [msg("m9", "run-b", 30), msg("m8", "run-b", 20), msg("m7", "run-b", 11)]
    assert walk.take(page) == "m7"


def test_a_page_that_repeats_itself_stops_the_walk_without_covering() -> None:
    walk = ToolWalk(WalkPlan((record("run-b", 10),), budget=5), completed({}))
    page = [msg("m2", "run-b", 12)]
    assert walk.take(page) == "m2"
    assert walk.take(page) is None
    assert walk.served() == {}


def test_a_failed_run_bounds_nothing() -> None:
    # Only a completed run's end bounds its inserts (a cancelled step may still write).
    walk = ToolWalk(WalkPlan((record("run-b", 10),), budget=5), completed({}))
    assert walk.take([msg("m1", "run-x", 5)]) == "m1"
    assert walk.served() == {}


def test_the_rate_is_learnt_from_the_dates_read() -> None:
    rate = MessageRate()
    walk = ToolWalk(WalkPlan((record("run-b", 10),), budget=5), completed({}))
    walk.take([msg(f"m{i}", "run-b", 10 + i) for i in range(11)])
    walk.learn(rate)
    assert rate.per_s == 1.1


def test_listed_messages_keep_ids_runs_dates_and_calls() -> None:
    body = b"""[
      {"id": "message-1", "message_type": "tool_call_message", "run_id": "run-1",
       "date": "2026-11-23T12:00:00.5Z",
       "tool_call": {"name": "a", "tool_call_id": "c1"},
       "tool_calls": [{"name": "a", "tool_call_id": "c1"}, {"name": "b", "tool_call_id": "c2"}]},
      {"id": "message-2", "message_type": "approval_request_message", "run_id": "run-1",
       "date": "2026-11-23T12:00:01", "tool_call": {"name": "c", "arguments": "{}"}},
      {"id": "message-3", "message_type": "assistant_message", "run_id": null, "date": 5},
      {"message_type": "assistant_message"},
      "junk"
    ]"""
    listed = listed_messages(body)
    assert [(m.id, m.run_id, m.calls) for m in listed] == [
        ("message-1", "run-1", (("c1", "a"), ("c2", "b"))),
        ("message-2", "run-1", (("message-2#0", "c"),)),
        ("message-3", None, ()),
    ]
    assert listed[1].date_ns is not None and listed[0].date_ns is not None
    assert listed[1].date_ns - listed[0].date_ns == NS_PER_S // 2
    assert listed[2].date_ns is None


def test_when_a_page_s_ends_share_a_date_a_repeated_page_makes_the_walk_try_the_other_end() -> None:
    walk = ToolWalk(WalkPlan((record("run-b", 10),), budget=5), completed({}))
    newest_first = [msg("m3", "run-b", 12), msg("m2", "run-b", 12), msg("m1", "run-b", 12)]
    assert walk.take(newest_first) == "m3", "0.16.8's order is the guess"
    assert walk.take(newest_first[1:]) == "m1", "the page repeated: the other end"
    assert walk.take([]) is None
    assert walk.served() == {"run-b": {}}
