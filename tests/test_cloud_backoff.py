"""Letta Cloud, part 2: the real exporter backs off as letta-client does and notices an
endpoint that is not there (the fake's Cloud profile: no `/metrics`, 408/409 with
Retry-After, 429 with retry-after-ms under a request budget).

A 429 storm slows the exporter to the floor and back with nothing lost or doubled; a
server without `/metrics` gives tool metrics from the runs' messages and
`letta_exporter_endpoint_up{endpoint="metrics"}` 0 within a few cycles; a 409 lock
conflict with Retry-After is retried.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from exporter.letta.pacing import FLOOR_PER_S
from tests.fake_letta.fake import FakeLetta
from tests.harness import Exporter, expected, running, wait_polls

pytestmark = pytest.mark.e2e

KEY = "sk-let-cloud-test-key"
TOOLS = ["web_search", "send_email", "conversation_search"]


def cloud_fake() -> FakeLetta:
    fake = FakeLetta(semantics="relative", password=KEY, cloud=True)
    return fake


def cloud_exporter(fake: FakeLetta, tmp_path: Path, *args: str) -> Exporter:
    return Exporter(fake.base_url, tmp_path / "s.sqlite", *args, env={"LETTA_API_KEY": KEY})


def finish_run(fake: FakeLetta, agent: str, rng: random.Random, tool_ids: list[str]) -> str:
    run_id = fake.create_run(agent)
    fake.update_run(run_id, status="running")
    for _ in range(rng.randrange(1, 4)):
        used = rng.sample(tool_ids, rng.randrange(0, 3))
        fake.add_step(
            run_id, prompt_tokens=rng.randrange(100, 900), completion_tokens=7, tool_ids=used
        )
    fake.update_run(run_id, status="completed", stop_reason="end_turn")
    return run_id


def test_without_metrics_the_tools_come_from_messages_and_the_endpoint_is_down(
    tmp_path: Path,
) -> None:
    rng = random.Random(21)
    with cloud_fake() as fake:
        fake.serves_messages_list = False  # the per-run path (the walk: test_cycle_message_walk)
        tool_ids = [fake.add_tool(name) for name in TOOLS]
        with running(cloud_exporter(fake, tmp_path)) as exp:
            exp.wait_ready()
            polls_before = exp.value("letta_exporter_polls_total")
            run_ids = [finish_run(fake, f"agent-{i % 2}", rng, tool_ids) for i in range(12)]
            exp.wait_for(
                lambda: exp.value("letta_exporter_endpoint_up", endpoint="metrics") == 0,
                what="metrics to be found missing",
            )
            decided_after = exp.value("letta_exporter_polls_total") - polls_before
            runs_per_tool, calls_per_tool = fake.tool_call_truth()
            exp.wait_for(lambda: exp.finished() == expected(fake.truth()), what="every run")
            wait_polls(exp, 3)
            assert exp.totals("letta_run_tool_calls_total", ("agent", "tool")) == runs_per_tool
            assert (
                exp.totals("letta_run_tool_invocations_total", ("agent", "tool")) == calls_per_tool
            )
            assert exp.finished() == expected(fake.truth())
            assert exp.value("letta_exporter_endpoint_up", endpoint="messages") == 1
            assert exp.value("letta_exporter_enrichment_failures_total") == 0
            assert decided_after <= 8, f"decided after {decided_after} cycles"
            warnings = [line for line in exp.logs if "does not serve metrics" in line]
            assert len(warnings) == 1, warnings
        requests = fake.requests
        metrics_asked = sum(1 for r in requests if r[1].endswith("/metrics"))
        messages_asked = sum(1 for r in requests if r[1].endswith("/messages"))
        run_gets = sum(1 for r in requests if re.fullmatch(r"/v1/runs/run-[^/]+", r[1]))
        print(
            f"\n{len(run_ids)} runs: /metrics asked {metrics_asked}x, /messages "
            f"{messages_asked}x, GET run {run_gets}x, decided after {decided_after:.0f} cycles"
        )
        # The deciding runs and those already in flight (8 at once), not one per run.
        assert metrics_asked <= 3 + 8
        assert messages_asked == len(run_ids)


def test_a_409_lock_conflict_with_retry_after_is_retried(tmp_path: Path) -> None:
    rng = random.Random(22)
    with cloud_fake() as fake:
        tool_ids = [fake.add_tool(name) for name in TOOLS]
        fake.serves_steps_list = False  # per-run steps (the walk: test_cycle_steps_walk)
        fake.inject("409", times=2, retry_after=1, path_regex=r"/steps$")
        fake.inject("408", times=1, retry_after=0, path_regex=r"^/v1/runs/$")
        with running(cloud_exporter(fake, tmp_path)) as exp:
            exp.wait_ready()
            for i in range(4):
                finish_run(fake, f"agent-{i}", rng, tool_ids)
            exp.wait_for(lambda: exp.finished() == expected(fake.truth()), what="every run")
            exp.wait_for(lambda: exp.tokens() == fake.token_truth(), what="every token")
            assert (
                exp.value("letta_exporter_api_requests_total", endpoint="run_steps", code="409")
                == 2
            )
            assert exp.value("letta_exporter_enrichment_failures_total") == 0
            assert exp.value("letta_exporter_requests_postponed_total") == 0


def test_a_429_storm_slows_to_the_floor_and_back_losing_and_doubling_nothing(
    tmp_path: Path,
) -> None:
    rng = random.Random(23)
    cap = 5.0
    with cloud_fake() as fake:
        # The per-run path, 8 runs' requests in flight at once, is what a storm must slow.
        # The walks send one request at a time, each 429 waiting its Retry-After: too
        # few 429s in the pace's 5 s window to judge, so it never reaches its floor.
        fake.serves_messages_list = False
        fake.serves_steps_list = False
        tool_ids = [fake.add_tool(name) for name in TOOLS]
        exporter = cloud_exporter(fake, tmp_path, f"--letta.rate-limit={cap:g}")
        with running(exporter) as exp:
            exp.wait_ready()
            rate = "letta_exporter_request_rate_limit"
            assert exp.value(rate) == cap
            for i in range(10):
                finish_run(fake, f"agent-{i % 3}", rng, tool_ids)
            fake.set_request_budget(0.5)  # a storm: one request every two seconds
            exp.wait_for(lambda: exp.value(rate) == FLOOR_PER_S, what="the floor")
            for i in range(10):
                finish_run(fake, f"agent-{i % 3}", rng, tool_ids)
            throttled = fake.throttled
            exp.wait_for(lambda: fake.throttled >= throttled + 5, what="more of the storm")
            fake.set_request_budget(None)
            exp.wait_for(lambda: exp.value(rate) == cap, timeout=60, what="the cap again")
            # How long each took: tests/benchmarks/bench_pacing.py, on a virtual clock.
            exp.wait_for(lambda: exp.finished() == expected(fake.truth()), what="every run")
            exp.wait_for(lambda: exp.tokens() == fake.token_truth(), what="every token")
            wait_polls(exp, 3)
            runs_per_tool, _ = fake.tool_call_truth()
            assert exp.finished() == expected(fake.truth())
            assert exp.tokens() == fake.token_truth()
            assert exp.totals("letta_run_tool_calls_total", ("agent", "tool")) == runs_per_tool
            assert exp.value("letta_exporter_api_requests_total", code="429") > 0
            assert fake.throttled > 0
