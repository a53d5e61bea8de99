"""The exporter against a real Letta 0.16.8 server, checked against Letta's own database.

One campaign per module: the exporter process starts, the workload drives every run
creation path and outcome on a few lanes at once, the exporter is killed (-9) and
restarted with the same state file in the middle, and once every run has ended the
exporter's counters are compared with the ``runs``, ``steps``, ``run_metrics`` and
``tools`` tables (plus the runs deleted after they finished, recorded just before).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.harness import Exporter
from tests.realserver.stack import Stack
from tests.realserver.truth import Truth
from tests.realserver.workload import Hooks, Workload, read_truth_of

pytestmark = [pytest.mark.e2e, pytest.mark.letta_server, pytest.mark.timeout(1800)]

# Real-server timings: requests can take seconds on a busy 2-core machine, and a
# requires_approval run that is cancelled must change before it is counted.
REAL_FLAGS = (
    "--letta.timeout=30s",
    "--letta.retries=5",
    "--poll.interval=0.5s",
    "--runs.grace-period=10s",
    "--runs.callback-wait=60s",
    "--log.level=info",
)
KILL_AFTER_FINISHED = 6  # kill -9 once the exporter has counted this many runs
SETTLE_S = 300.0

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def summed(samples: Samples, name: str, *keys: str) -> Counter[tuple[str, ...]]:
    """Samples of `name` summed by the given labels; zero entries dropped."""
    out: Counter[tuple[str, ...]] = Counter()
    for (sample, labels), value in samples.items():
        if sample == name:
            as_dict = dict(labels)
            out[tuple(as_dict.get(k, "") for k in keys)] += int(value)
    return +out


def flat(counter: Counter[tuple[str, ...]]) -> Counter[str]:
    """One-label counters keyed by the bare value."""
    return Counter({key[0]: value for key, value in counter.items()})


@dataclass
class Campaign:
    """What the exporter said once everything ended, and what the database says."""

    samples: Samples
    truth: Truth  # runs still in the database
    removed: Truth  # runs deleted with their agent after they finished
    deleted_in_flight: list[str]
    check_groups: Counter[tuple[str, str, str]]
    restarts: int
    agents: dict[str, tuple[str, bool]]  # agent id -> (name, an approval waits), listed at the end
    created: dict[str, str]  # every agent the workload created, deleted ones too: id -> name
    workload_s: float
    exporter_logs: list[str]

    @property
    def expected(self) -> Truth:
        return self.truth + self.removed


class ExporterHolder:
    """The current exporter process; replaced by the kill -9 + restart."""

    def __init__(self, exporter: Exporter) -> None:
        self.current = exporter

    def wait(self, predicate, what: str, timeout: float = SETTLE_S) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if predicate(self.current):
                    return
            except Exception:
                pass
            time.sleep(0.25)
        raise AssertionError(
            f"timed out waiting for {what}; exporter logs:\n" + "\n".join(self.current.logs[-40:])
        )


def _hooks(stack: Stack, holder: ExporterHolder) -> Hooks:
    def counted(agent: str) -> None:
        # The runs of this agent, all finished: wait until the exporter counted each.
        finished = read_truth_of(stack, [agent]).finished_runs
        holder.wait(
            lambda e: e.finished(by=("agent",)).get((agent,), 0) >= finished,
            f"the exporter to count the {finished} runs of {agent}",
        )

    def seen_open(agent: str, run_id: str) -> None:
        holder.wait(
            lambda e: e.value("letta_runs_in_progress", agent=agent) >= 1,
            f"the exporter to follow {run_id} as open",
        )

    return Hooks(before_delete_finished=counted, before_delete_in_flight=seen_open)


def _settled(exporter: Exporter, expected_finished: int) -> bool:
    samples = exporter.samples()
    finished = sum(v for (n, _), v in samples.items() if n == "letta_runs_finished_total")
    open_runs = sum(v for (n, _), v in samples.items() if n == "letta_exporter_open_runs")
    backlog = sum(v for (n, _), v in samples.items() if n == "letta_exporter_enrichment_backlog")
    return finished >= expected_finished and open_runs == 0 and backlog == 0


def _named(exporter: Exporter, listed: Iterable[str]) -> bool:
    """Whether every agent Letta lists that has finished runs is named."""
    samples = exporter.samples()
    named = {dict(labels)["agent"] for (n, labels), _ in samples.items() if n == "letta_agent_info"}
    finished = {agent for (agent,) in summed(samples, "letta_runs_finished_total", "agent")}
    return finished & set(listed) <= named


def _check(stack: Stack) -> Counter[tuple[str, str, str]]:
    done = subprocess.run(
        [sys.executable, "-m", "exporter", "check", f"--letta.url={stack.letta_url}"]
        + ["--since=1h", "--output=json", "--letta.timeout=60s"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode in (0, 1), done.stderr
    groups: Counter[tuple[str, str, str]] = Counter()
    for group in json.loads(done.stdout)["groups"]:
        groups[(group["agent"], group["status"], group["stop_reason"] or "none")] += group["runs"]
    return groups


def _agents(stack: Stack) -> dict[str, tuple[str, bool]]:
    """Every agent's name and whether Letta says an approval waits on it."""
    response = httpx.get(
        f"{stack.letta_url}/v1/agents/",
        params={"limit": 1000, "include": "agent.pending_approval"},
        timeout=60,
    )
    response.raise_for_status()
    return {a["id"]: (a["name"], a.get("pending_approval") is not None) for a in response.json()}


@pytest.fixture(scope="module")
def campaign(letta_stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Campaign]:
    state: Path = tmp_path_factory.mktemp("real-exporter") / "state.db"
    holder = ExporterHolder(Exporter(letta_stack.letta_url, state, *REAL_FLAGS).start(60))
    workload = Workload(letta_stack, _hooks(letta_stack, holder))
    failure: list[BaseException] = []

    def drive() -> None:
        try:
            workload.drive(concurrency=3)
        except BaseException as exc:  # re-raised in the test thread
            failure.append(exc)

    started = time.monotonic()
    driver = threading.Thread(target=drive, name="workload")
    driver.start()
    try:
        # kill -9 in the middle, once some runs are counted and others are in flight.
        holder.wait(
            lambda e: (
                sum(e.finished(by=("agent",)).values()) >= KILL_AFTER_FINISHED
                or not driver.is_alive()
            ),
            f"{KILL_AFTER_FINISHED} counted runs",
        )
        killed_mid_run = driver.is_alive()
        holder.current.kill()
        holder.current = Exporter(letta_stack.letta_url, state, *REAL_FLAGS).start(60)
        driver.join(SETTLE_S * 3)
        assert not driver.is_alive(), "the workload did not end:\n" + "\n".join(workload.log)
        if failure:
            raise failure[0]
        assert killed_mid_run, "the workload ended before the exporter was killed"
        workload_s = time.monotonic() - started
        holder.wait(
            lambda e: read_truth_of(letta_stack).open_runs == 0, "every run in Letta to end"
        )
        truth = read_truth_of(letta_stack)
        expected = (truth + workload.removed).finished_runs
        holder.wait(lambda e: _settled(e, expected), f"the exporter to count {expected} runs")
        # Names of agents new since the last read of the agents list follow within 30 s.
        listed = _agents(letta_stack).keys()
        holder.wait(lambda e: _named(e, listed), "the exporter to name every agent with runs")
        print(
            f"\nreal-server campaign: {expected} finished runs "
            f"({workload.removed.finished_runs} deleted after finishing, "
            f"{len(workload.deleted_in_flight)} deleted in flight), "
            f"{sum(truth.steps.values())} steps, workload {workload_s:.1f} s, "
            f"settled {time.monotonic() - started:.1f} s after it began"
        )
        yield Campaign(
            samples=holder.current.samples(),
            truth=truth,
            removed=workload.removed,
            deleted_in_flight=workload.deleted_in_flight,
            check_groups=_check(letta_stack),
            restarts=1,
            agents=_agents(letta_stack),
            created=dict(workload.names),
            workload_s=workload_s,
            exporter_logs=holder.current.logs,
        )
    finally:
        holder.current.kill()
        driver.join(5)
        workload.close()


def test_every_finished_run_is_counted_once_by_status_and_stop_reason(campaign: Campaign) -> None:
    exported = summed(
        campaign.samples, "letta_runs_finished_total", "agent", "status", "stop_reason"
    )
    assert exported == campaign.expected.finished
    # Every outcome the workload aims at really happened (else the test proves less).
    outcomes = {(status, reason) for _, status, reason in campaign.expected.finished}
    assert outcomes >= {
        ("completed", "end_turn"),
        ("completed", "max_steps"),
        ("completed", "tool_rule"),
        ("completed", "max_tokens_exceeded"),
        ("completed", "llm_api_error"),
        ("completed", "requires_approval"),
        ("failed", "none"),
        ("failed", "llm_api_error"),
        ("failed", "invalid_llm_response"),
        ("failed", "error"),
        ("cancelled", "cancelled"),
    }


def test_tokens_by_model_and_type_match_the_steps_table(campaign: Campaign) -> None:
    exported = summed(campaign.samples, "letta_run_tokens_total", "agent", "model", "type")
    assert exported == campaign.expected.tokens
    assert {t for _, _, t in exported} >= {"input", "output", "cached_input", "reasoning"}


def test_step_counts_match_the_steps_table(campaign: Campaign) -> None:
    expected = campaign.expected
    assert (
        flat(summed(campaign.samples, "letta_run_steps_sum", "agent")) == +expected.steps_by_agent()
    )
    assert (
        flat(summed(campaign.samples, "letta_run_steps_count", "agent")) == expected.runs_by_agent()
    )


def test_tool_uses_match_run_metrics(campaign: Campaign) -> None:
    exported = summed(campaign.samples, "letta_run_tool_calls_total", "agent", "tool")
    assert exported == campaign.expected.tools
    assert exported, "no run used a tool"


def test_callbacks_match_the_runs_table(campaign: Campaign) -> None:
    exported = summed(campaign.samples, "letta_run_callbacks_total", "agent", "result")
    assert exported == campaign.expected.callbacks
    assert {result for _, result in exported} >= {"success", "failure"}


def test_run_deleted_in_flight_is_counted_as_deleted_not_finished(campaign: Campaign) -> None:
    assert len(campaign.deleted_in_flight) == 1
    assert sum(summed(campaign.samples, "letta_runs_deleted_total", "agent").values()) == 1


def test_open_run_gauges_drop_to_zero(campaign: Campaign) -> None:
    for name in ("letta_runs_in_progress", "letta_runs_stale", "letta_exporter_open_runs"):
        assert sum(summed(campaign.samples, name).values()) == 0, name


def test_check_agrees_with_the_database_on_the_same_window(campaign: Campaign) -> None:
    assert campaign.check_groups == campaign.truth.finished
    exported = summed(
        campaign.samples, "letta_runs_finished_total", "agent", "status", "stop_reason"
    )
    assert exported == campaign.check_groups + campaign.removed.finished


def test_agents_are_named_as_letta_names_them(campaign: Campaign) -> None:
    named = {
        dict(labels)["agent"]: dict(labels)["agent_name"]
        for (name, labels), value in campaign.samples.items()
        if name == "letta_agent_info" and value == 1
    }
    # Every name is the one Letta holds for the agent. An agent deleted since the exporter's
    # last read of the list keeps that name until the next read, so deleted agents count too.
    letta_names = {agent: name for agent, (name, _) in campaign.agents.items()} | campaign.created
    assert named == {agent: letta_names.get(agent) for agent in named}
    # Every agent with finished runs that Letta still lists is named.
    finished = {
        agent for (agent,) in summed(campaign.samples, "letta_runs_finished_total", "agent")
    }
    assert finished & campaign.agents.keys() <= named.keys()
    # Names are served only for agents the exporter labels (those of any run it saw: finished,
    # open or deleted in flight), never for an agent without runs (cardinality).
    labelled = {
        dict(labels)["agent"]
        for (name, labels), value in campaign.samples.items()
        if name != "letta_agent_info" and "agent" in dict(labels)
    }
    assert named.keys() <= labelled


def test_approvals_waiting_match_the_agents_pending_approval(campaign: Campaign) -> None:
    waiting = flat(summed(campaign.samples, "letta_runs_awaiting_approval", "agent"))
    expected = Counter({agent: 1 for agent, (_, pending) in campaign.agents.items() if pending})
    assert waiting == expected
    assert len(expected) == 1  # the approval nobody answered
