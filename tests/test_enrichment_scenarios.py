"""Enrichment end to end: the real exporter against the fake Letta API.

Token totals by (agent, model, type) must equal what the fake's steps hold; failing
enrichment endpoints delay a run's count but never lose or double it; kill -9 while
enrichments are pending loses nothing.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from tests.fake_letta.fake import FakeLetta
from tests.harness import Exporter, expected, exporter_on, running, wait_polls

pytestmark = pytest.mark.e2e

MODELS = ["openai/gpt-4o-mini", "anthropic/claude-sonnet-4"]
TokenKey = tuple[str, str, str]


def finish_with_steps(
    fake: FakeLetta, agent: str, steps: int, rng: random.Random, truth: Counter[TokenKey]
) -> str:
    """A run with `steps` steps of random tokens, finished; adds its tokens to `truth`."""
    run_id = fake.create_run(agent)
    fake.update_run(run_id, status="running")
    for _ in range(steps):
        handle = rng.choice(MODELS)
        tokens = {
            "prompt_tokens": rng.randrange(100, 2000),
            "completion_tokens": rng.randrange(1, 200),
            "cached_input_tokens": rng.choice([None, rng.randrange(1, 90)]),
            "reasoning_tokens": rng.choice([None, rng.randrange(1, 50)]),
        }
        fake.add_step(run_id, model=handle, tool_ids=["tool-0001"], **tokens)  # type: ignore[arg-type]
        model = handle.partition("/")[2]
        for kind, key in (
            ("input", "prompt_tokens"),
            ("output", "completion_tokens"),
            ("cached_input", "cached_input_tokens"),
            ("reasoning", "reasoning_tokens"),
        ):
            if tokens[key]:
                truth[(agent, model, kind)] += tokens[key]  # type: ignore[operator]
    fake.update_run(run_id, status="completed", stop_reason="end_turn")
    return run_id


def test_token_totals_by_model_and_type_equal_the_steps_including_runs_over_50_steps(
    tmp_path: Path,
) -> None:
    rng = random.Random(3)
    truth: Counter[TokenKey] = Counter()
    with FakeLetta() as fake, exporter_on(fake.base_url, tmp_path) as exp:
        for i in range(10):
            finish_with_steps(fake, f"agent-{i % 2}", rng.randrange(1, 6), rng, truth)
        finish_with_steps(fake, "agent-long", 73, rng, truth)  # /usage would see only 50
        exp.wait_for(lambda: exp.tokens() == truth, what="tokens to equal the truth")
        assert exp.finished() == expected(fake.truth())
        assert exp.value("letta_run_steps_sum", agent="agent-long") == 73
        assert exp.value("letta_run_tool_calls_total", tool="tool-0001") == 11
        assert exp.value("letta_exporter_enrichment_failures_total") == 0
        # The steps answered, so /usage (which could add nothing) was never asked for.
        assert not [r for r in fake.requests if r[1].endswith("/usage")]


@pytest.mark.parametrize("kind", ["500", "timeout", "garbage", "truncated"])
def test_failing_enrichment_endpoints_delay_but_never_lose_or_double(
    kind: str, tmp_path: Path
) -> None:
    rng = random.Random(5)
    truth: Counter[TokenKey] = Counter()
    with FakeLetta() as fake, exporter_on(fake.base_url, tmp_path) as exp:
        for i in range(6):
            run_id = finish_with_steps(fake, "agent-a", 3, rng, truth)
            endpoint = ["usage", "steps", "metrics"][i % 3]
            # Fewer failures than --enrich.max-attempts (5); 5xx and timeouts are retried
            # by the client too, garbage is not: each one costs an enrichment attempt.
            fake.inject(kind, times=4, path_prefix=f"/v1/runs/{run_id}/{endpoint}", delay=3.0)
        exp.wait_for(lambda: exp.tokens() == truth, timeout=90, what="tokens after the faults")
        assert exp.finished() == expected(fake.truth())
        wait_polls(exp, 6)
        assert exp.tokens() == truth, "a late success counted nothing twice"


def test_an_endpoint_that_never_recovers_is_given_up_and_the_run_still_counts(
    tmp_path: Path,
) -> None:
    rng = random.Random(9)
    truth: Counter[TokenKey] = Counter()
    with (
        FakeLetta() as fake,
        exporter_on(fake.base_url, tmp_path, "--enrich.max-attempts=2") as exp,
    ):
        run_id = finish_with_steps(fake, "agent-a", 2, rng, truth)
        fake.inject("503", times=10_000, path_prefix=f"/v1/runs/{run_id}/steps")
        exp.wait_for(
            lambda: exp.value("letta_exporter_enrichment_failures_total", endpoint="steps") == 1,
            timeout=60,
            what="the steps endpoint to be given up",
        )
        assert exp.finished() == expected(fake.truth())
        tokens = exp.tokens()
        # Without steps, the totals come from /usage under model "unknown".
        assert {key[1] for key in tokens} == {"unknown"}
        assert tokens[("agent-a", "unknown", "input")] == sum(
            v for k, v in truth.items() if k[2] == "input"
        )


def test_kill_9_while_enrichments_are_pending_loses_nothing(tmp_path: Path) -> None:
    rng = random.Random(13)
    truth: Counter[TokenKey] = Counter()
    state = tmp_path / "s.sqlite"
    with FakeLetta() as fake:
        exp = Exporter(fake.base_url, state).start()
        try:
            exp.wait_ready()
            fake.inject("timeout", times=40, path_prefix="/v1/runs/run-", delay=0.4)
            for i in range(12):
                finish_with_steps(fake, f"agent-{i % 3}", 2, rng, truth)
            exp.wait_for(
                lambda: sum(1 for r in fake.requests if r[1].endswith("/steps")) >= 3,
                what="enrichment to be under way",
            )
            exp.kill()
            exp = Exporter(fake.base_url, state).start()
            exp.wait_for(lambda: exp.tokens() == truth, timeout=90, what="tokens")
            assert exp.finished() == expected(fake.truth())
        finally:
            exp.kill()


@pytest.mark.parametrize("switched_off", ["--enrich.metrics=false", "--enrich.usage=false"])
def test_each_run_is_counted_with_an_enrichment_endpoint_switched_off(
    tmp_path: Path, switched_off: str
) -> None:
    # Found by tests/benchmarks/bench_realserver.py: with /metrics off, the run was counted
    # after /steps and the loop then read the enrichment it had just dropped (a crash).
    rng = random.Random(7)
    truth: Counter[TokenKey] = Counter()
    with FakeLetta() as fake:
        for index in range(3):
            finish_with_steps(fake, f"agent-{index}", 2, rng, truth)
        state = tmp_path / "state.db"
        with running(Exporter(fake.base_url, state, switched_off, "--backfill=1h")) as exp:
            exp.wait_for(lambda: sum(exp.finished().values()) == 3, what="3 counted runs")
            exp.wait_for(lambda: exp.tokens() == truth, what="tokens")
            assert not [line for line in exp.logs if "Traceback" in line]
