"""Dashboards and rules against a real Prometheus scraping the real exporter.

The fake Letta API plays a busy server for as long as the test needs (about ten seconds):
runs arriving and ending every few hundred milliseconds (a third failing, many with
llm_api_error), steps with tokens, tools and timings, callbacks that half fail, a zombie
run that never ends, a run committed late with an old created_at, deleted runs, a status
flip after counting, an invalid list item, a burst of 429s, agents past the label cap,
a tool-call approval that has waited for a person for two hours when it starts, runs out
of credits, an agent whose context overflows, a run finished without a stop reason, and a
conversation deadlocked by a cancelled approval.
The real exporter polls it; a real Prometheus (Debian's `/usr/bin/prometheus`) scrapes
the exporter every second and evaluates the shipped rules. Then every panel query of both
dashboards must return data from Prometheus' HTTP API, the variables must list the job,
instance and agents, and the alerts of MUST_FIRE must fire. A second test plays a healthy
mix and checks that the alerts on stop reasons and impossible states stay silent.
"""

from __future__ import annotations

import heapq
import itertools
import json
import math
import random
import re
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.dashboard_files import DASHBOARD_FILES, RULES, dashboard_targets, load_dashboard
from tests.fake_letta.fake import FakeLetta
from tests.harness import Exporter, poll_until, running
from tests.tools import require_tool

pytestmark = pytest.mark.e2e


# Grafana's variables, replaced the way Grafana would for "All" and a short time range.
VARIABLES = {
    "job": ".*",
    "instance": ".*",
    "agent": ".*",
    "datasource": "",
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "1m",
}

# Panels that may return no data in this scenario, with the reason. The test also checks
# that they really are empty, so an entry cannot outlive its reason unnoticed.
EMPTY_IN_THIS_SCENARIO = {
    ("letta-runs.json", "Time to first token"): (
        "Letta 0.16.8 never fills ttft_ns (the fake mirrors it), so the TTFT histogram has "
        "no series"
    ),
    ("letta-exporter.json", "Project scope"): (
        "the exporter runs without --letta.project-id, so letta_exporter_scope_verified has "
        "no sample (tests/test_cloud.py covers the scoped case)"
    ),
}

# The alerts this scenario must set off, with the shipped rules (thresholds unchanged
# except LettaRunStuck's, see RULE_OVERRIDES).
MUST_FIRE = {
    "LettaRunFailureRatioHigh",
    "LettaLLMAPIErrorSurge",
    "LettaRunErrorBudgetFastBurn",
    "LettaRunErrorBudgetSlowBurn",
    "LettaRunStuck",
    "LettaStaleRuns",
    "LettaCallbackFailures",
    "LettaApprovalWaitingTooLong",
    "LettaOutOfCredits",
    "LettaAgentContextOverflow",
    "LettaRunsInconsistent",
    "LettaConversationDeadlocked",
}

# The alerts a healthy mix (test_the_stop_reason_alerts_stay_silent_on_a_healthy_mix)
# must leave silent: each watches a state that mix only comes near.
SILENT_WHEN_HEALTHY = {
    "LettaOutOfCredits",
    "LettaAgentContextOverflow",
    "LettaRunsInconsistent",
    "LettaConversationDeadlocked",
}

# Test-only edits of the shipped thresholds, as (alert, shipped text, test text). The
# shipped file is never changed. LettaRunStuck wants a run open for 30 minutes while the
# gauge behind it only covers runs younger than --runs.stale-after (2s here), so the
# test asks for 1 second.
RULE_OVERRIDES = [
    ("LettaRunStuck", "> 1800", "> 1"),
]

STALE_AFTER = 2.0
EXPORTER_FLAGS = (
    "--poll.interval=0.2s",
    "--runs.grace-period=0.2s",
    f"--runs.stale-after={STALE_AFTER:g}s",
    # Longer than the test; the late run below is created just younger than this.
    "--runs.forget-after=60s",
    # Room for the agents of the first seconds (the overflowing one included); the
    # extra agents of later seconds land in __other__.
    "--agents.label-limit=8",
    "--enrich.step-timings=true",
    # Give up an enrichment endpoint at its first bad answer (the /metrics faults below).
    "--enrich.max-attempts=1",
    # A cap, as on a real server: the 429 burst below halves it (to 250/s) for a few
    # seconds. Without one the pace falls to half the rate observed before the 429s,
    # which the idle start-up keeps low, and short-lived items (the invalid one) go
    # unseen.
    "--letta.rate-limit=500",
)
MODELS = {"openai/gpt-4o-mini": (0.15, 0.6), "anthropic/claude-sonnet-4": (3.0, 15.0)}
OUTCOMES = [
    ("completed", "end_turn"),
    ("failed", "llm_api_error"),
    ("completed", "end_turn"),
    ("failed", None),
    ("completed", "max_steps"),
    ("failed", "llm_api_error"),
    ("cancelled", "cancelled"),
    ("completed", "llm_api_error"),  # a streaming run reports the LLM error this way
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `predicate` every 0.25s; fail naming `what` after `timeout` seconds."""
    if not poll_until(predicate, timeout, interval=0.25):
        raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


def rules_for_test(tmp_path: Path) -> Path:
    """The shipped rules with every `for:` set to 0s and RULE_OVERRIDES applied.

    The shipped `for:` durations (minutes) would outlast the test; zero keeps the same
    expressions but fires on the first evaluation that matches.
    """
    rules = yaml.safe_load(RULES.read_text())
    overrides = {alert: (old, new) for alert, old, new in RULE_OVERRIDES}
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "alert" not in rule:
                continue
            rule["for"] = "0s"
            if rule["alert"] in overrides:
                old, new = overrides.pop(rule["alert"])
                assert old in rule["expr"], f"{rule['alert']}: {old!r} not in the shipped rule"
                rule["expr"] = rule["expr"].replace(old, new)
    assert not overrides, f"overrides for alerts that do not exist: {overrides}"
    path = tmp_path / "letta-runs.rules.yml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    return path


class Prometheus:
    """A real Prometheus server on a free loopback port, scraping one target every 1s."""

    def __init__(self, tmp_path: Path, target: str, rules: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp_path / "prometheus.log"
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(rules)],
            "scrape_configs": [
                {"job_name": "letta-exporter", "static_configs": [{"targets": [target]}]}
            ],
        }
        self.config_path = tmp_path / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.data = tmp_path / "prometheus-data"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        prometheus = require_tool("prometheus", "prometheus")
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                [
                    prometheus,
                    f"--config.file={self.config_path}",
                    f"--storage.tsdb.path={self.data}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_until(
                lambda: httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200,
                30,
                "Prometheus to be ready",
            )
        except AssertionError:
            self.stop()
            raise AssertionError("Prometheus did not start:\n" + self.log()) from None

    def stop(self) -> None:
        """Kill the server (the TSDB is throwaway) and reap it."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result vector (a scalar result becomes one sample)."""
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        body = response.json()
        assert body["status"] == "success", f"{expr}: {body.get('error')}"
        data = body["data"]
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        result: list[dict[str, Any]] = data["result"]
        return result

    def label_values(self, label: str, selector: str) -> list[str]:
        """What Grafana's `label_values(selector, label)` variable query lists."""
        response = httpx.get(
            f"{self.url}/api/v1/label/{label}/values", params={"match[]": selector}, timeout=10
        )
        values: list[str] = response.json()["data"]
        return values

    def firing(self) -> dict[str, dict[str, str]]:
        """The alerts firing now: name -> annotations."""
        alerts = httpx.get(f"{self.url}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
        return {
            a["labels"]["alertname"]: a["annotations"] for a in alerts if a["state"] == "firing"
        }


@contextmanager
def prometheus(tmp_path: Path, target: str, rules: Path) -> Iterator[Prometheus]:
    """Start a Prometheus; always kill it."""
    server = Prometheus(tmp_path, target, rules)
    server.start()
    try:
        yield server
    finally:
        server.stop()


class Traffic:
    """A busy Letta server on the fake API, driven from one background thread.

    Events are scheduled on a heap by time since start; recurring ones reschedule
    themselves. Every run that ends gets steps (tokens, a tool, timings) first, as Letta
    writes them during the run.
    """

    def __init__(self, fake: FakeLetta, seed: int = 7) -> None:
        self.fake = fake
        self.rng = random.Random(seed)
        self.tools = [fake.add_tool(name) for name in ("web_search", "send_email", "run_code")]
        self._heap: list[tuple[float, int, Callable[[], object]]] = []
        self._seq = itertools.count()
        self._outcomes = itertools.cycle(OUTCOMES)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="traffic", daemon=True)
        self.errors: list[BaseException] = []
        self._t0 = 0.0

    # ---- scheduling
    def at(self, delay: float, action: Callable[[], object]) -> None:
        heapq.heappush(self._heap, (self._now() + delay, next(self._seq), action))

    def every(self, period: float, action: Callable[[], object]) -> None:
        def repeat() -> None:
            action()
            self.at(period, repeat)

        self.at(0, repeat)

    def _now(self) -> float:
        return time.monotonic() - self._t0

    def _loop(self) -> None:
        while not self._stop.is_set():
            if self._heap and self._heap[0][0] <= self._now():
                _, _, action = heapq.heappop(self._heap)
                try:
                    action()
                except BaseException as exc:  # kept for the test, not lost in a thread
                    self.errors.append(exc)
                    return
            else:
                self._stop.wait(0.01)

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._schedule()
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread; its errors stay in `errors` for the test to assert on."""
        self._stop.set()
        self._thread.join(10)

    # ---- what happens
    def _finish(self, run_id: str, status: str, stop_reason: str | None) -> None:
        for _ in range(self.rng.randint(1, 3)):
            model = self.rng.choice(sorted(MODELS))
            self.fake.add_step(
                run_id,
                model=model,
                prompt_tokens=self.rng.randrange(500, 4000),
                completion_tokens=self.rng.randrange(10, 400),
                cached_input_tokens=self.rng.choice([None, self.rng.randrange(1, 400)]),
                reasoning_tokens=self.rng.choice([None, self.rng.randrange(1, 100)]),
                tool_ids=[self.rng.choice(self.tools)],
                step_ns=self.rng.randrange(200, 3000) * 1_000_000,
            )
        # As the streaming path records an LLM failure (runs/stream_llm_500/run.json).
        error = {"message_type": "error_message", "error_type": "llm_error", "message": "…"}
        self.fake.update_run(
            run_id,
            status=status,
            stop_reason=stop_reason,
            error=error if stop_reason == "llm_api_error" else None,
        )

    def _run(self, agent: str, lifetime: float, *, callback: bool = False) -> None:
        status, reason = next(self._outcomes)
        url = "http://client.invalid/callback" if callback else None
        run_id = self.fake.create_run(agent, background=callback, callback_url=url)

        def end() -> None:
            self._finish(run_id, status, reason)
            if callback:
                # Half the callbacks fail: the client answered 500.
                self.fake.set_callback(run_id, status_code=self.rng.choice([200, 500]))

        self.at(lifetime, end)

    def _schedule(self) -> None:
        fake, rng = self.fake, self.rng
        agents = itertools.cycle(["agent-alpha", "agent-beta"])
        # A zombie: created and never finished. It turns stale after STALE_AFTER.
        self.at(0, lambda: fake.create_run("agent-zombie"))
        # The steady traffic; half the runs are async with a callback.
        callbacks = itertools.cycle([True, False])
        self.every(
            0.15, lambda: self._run(next(agents), rng.uniform(0.3, 0.8), callback=next(callbacks))
        )
        # Long runs: always some open for over a second (LettaRunStuck, in-progress gauges).
        self.every(0.3, lambda: self._run("agent-slow", 1.5))
        # Committed late with a created_at 55s old: a late run, followed (younger than
        # --runs.forget-after), stale at once, and dropped as expired 5 seconds later.
        self.at(0.5, lambda: fake.create_run("agent-ancient", created_at=time.time() - 55))
        # Letta rate limits the list five times in a row: one poll cycle fails.
        self.at(
            1.0,
            lambda: fake.inject("429", times=5, retry_after=0.05, path_regex=r"^/v1/runs/?$"),
        )
        # A lock conflict whose Retry-After (5s) outlasts a request (3 × 1s): that run's
        # steps are postponed, not waited for.
        self.at(2.5, lambda: fake.inject("409", retry_after=5, path_regex=r"/steps$"))
        # An item the exporter cannot parse; gone again after a few polls.
        self.at(1.5, self._invalid_item)
        # Runs deleted while open (their agent deleted): 404 on the next look.
        for when in (2.0, 5.0, 8.0):
            self.at(when, self._deleted_run)
        # A run counted as completed/requires_approval that is cancelled afterwards.
        for when in (1.0, 4.0):
            self.at(when, self._flipped_run)
        # Three /metrics answers that are not JSON: given up at once (max-attempts 1).
        # (Not /usage: it is asked for only when /steps did not answer.)
        self.at(3.0, lambda: fake.inject("garbage", times=3, path_regex=r"/metrics$"))
        # Letta Cloud runs out of credits: two runs stop insufficient_credits.
        for when in (1.0, 1.2):
            self.at(when, lambda: fake.finish_with("agent-billing", "insufficient_credits"))
        # An agent whose system prompt outgrew its model: every run overflows. Three runs
        # only: their error type is "none", which must not outnumber "llm_error" (asserted
        # in LettaRunFailureRatioHigh's description below).
        for when in (1.0, 1.5, 2.0):
            self.at(
                when,
                lambda: fake.finish_with("agent-hog", "context_window_overflow_in_system_prompt"),
            )
        # A run that ends completed without a stop reason (letta issue 3109).
        self.at(1.5, self._run_without_stop_reason)
        # A conversation's approval cancelled, then a message to it refused (letta 3176).
        self.at(0.5, lambda: fake.request_approval("agent-beta", conversation_id="conv-x"))
        self.at(1.0, self._cancel_then_refuse)
        # Agents past --agents.label-limit: recorded as __other__.
        extras = itertools.cycle(["agent-extra-1", "agent-extra-2", "agent-extra-3"])
        self.at(4.0, lambda: self.every(0.5, lambda: self._run(next(extras), 0.3)))

    def _cancel_then_refuse(self) -> None:
        # At once, as a user would: one walk often lists the refusal before the cancel.
        fake = self.fake
        fake.cancel_run(fake.pending_approval("agent-beta", "conv-x") or "")
        fake.send_message("agent-beta", conversation_id="conv-x")

    def _run_without_stop_reason(self) -> None:
        run_id = self.fake.create_run("agent-alpha")
        self.fake.update_run(run_id, status="completed", stop_reason=None)

    def _invalid_item(self) -> None:
        handle = self.fake.add_raw_item({"status": 42}, created_at=time.time())
        self.at(1.0, lambda: self.fake.remove_raw_item(handle))

    def _deleted_run(self) -> None:
        run_id = self.fake.create_run("agent-alpha")
        self.at(1.0, lambda: self.fake.delete_run(run_id))

    def _flipped_run(self) -> None:
        run_id = self.fake.create_run("agent-beta")
        self._finish(run_id, "completed", "requires_approval")
        # Long after grace period and enrichment: the exporter has counted it by then.
        self.at(
            3.0, lambda: self.fake.update_run(run_id, status="cancelled", stop_reason="cancelled")
        )


@contextmanager
def approval_waiting_for_hours(fake: FakeLetta) -> Iterator[str]:
    """Before the exporter starts: an agent asked for approval two hours ago and nobody
    answered (LettaApprovalWaitingTooLong, the pending-approval panels)."""
    asked = time.time() - 7200
    yield fake.request_approval("agent-human", created_at=asked, completed_at=asked + 1)


@contextmanager
def traffic(fake: FakeLetta) -> Iterator[Traffic]:
    """Run the traffic for the duration of the block; always stop it."""
    driver = Traffic(fake)
    driver.start()
    try:
        yield driver
    finally:
        driver.stop()


def substitute(expr: str) -> str:
    """`expr` with Grafana's variables replaced as in VARIABLES (unknown ones fail)."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        assert name in VARIABLES, f"unknown Grafana variable ${name} in {expr!r}"
        return VARIABLES[name]

    # `$1` in label_replace is a regex group, not a variable: Grafana leaves names
    # it has no variable for as they are.
    return re.sub(r"\$\{(\w+)\}|\$([A-Za-z_]\w*)", value, expr)


def by_title(queries: list[tuple[str, str, str, str]], title: str) -> str:
    """The one query of the panel with this title."""
    (expr,) = [q for _, t, _, q in queries if t == title]
    return expr


def has_data(result: list[dict[str, Any]]) -> bool:
    """At least one sample, and at least one that is a number (not NaN from 0/0)."""
    return any(not math.isnan(float(sample["value"][1])) for sample in result)


def test_every_panel_returns_data_and_the_alerts_fire(tmp_path: Path) -> None:
    queries = [
        (file, panel["title"], target["refId"], substitute(target["expr"]))
        for file in DASHBOARD_FILES
        for panel, target in dashboard_targets(load_dashboard(file))
    ]
    prices = tmp_path / "prices.yaml"
    prices.write_text(
        yaml.safe_dump(
            {
                "models": {
                    handle.partition("/")[2]: {"input": cost_in, "output": cost_out}
                    for handle, (cost_in, cost_out) in MODELS.items()
                }
            }
        )
    )
    flags = (*EXPORTER_FLAGS, f"--cost.price-file={prices}")
    rules = rules_for_test(tmp_path)

    with (
        FakeLetta() as fake,
        approval_waiting_for_hours(fake),
        running(Exporter(fake.base_url, tmp_path / "state.sqlite", *flags)) as exporter,
    ):
        fake.add_agent("Alpha support", agent_id="agent-alpha")
        fake.add_agent("Beta triage", agent_id="agent-beta")
        exporter.wait_ready()
        with (
            prometheus(tmp_path, f"127.0.0.1:{exporter.port}", rules) as prom,
            traffic(fake) as driver,
        ):
            wait_until(
                lambda: [s["value"][1] for s in prom.query("up")] == ["1"],
                15,
                "Prometheus to scrape the exporter",
            )
            # A query counts once it has returned data at any moment: gauges of open runs
            # come and go with the traffic, like on a real server.
            seen: set[tuple[str, str, str, str]] = set()
            pending = [q for q in queries if (q[0], q[1]) not in EMPTY_IN_THIS_SCENARIO]

            def all_panels_have_data() -> bool:
                for query in pending:
                    if query not in seen and has_data(prom.query(query[3])):
                        seen.add(query)
                return len(seen) == len(pending)

            try:
                wait_until(all_panels_have_data, 45, "every panel query to return data")
            except AssertionError:
                missing = [
                    f"{f} / {title} [{ref}]: {q}"
                    for f, title, ref, q in pending
                    if (f, title, ref, q) not in seen
                ]
                raise AssertionError(
                    "panel queries without data:\n"
                    + "\n".join(missing)
                    + "\nexporter log tail:\n"
                    + "\n".join(exporter.logs[-20:])
                ) from None

            # The variables' own queries list this scrape job, target and agents.
            for file in DASHBOARD_FILES:
                for var in load_dashboard(file)["templating"]["list"]:
                    if var["type"] != "query":
                        continue
                    match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", var["query"])
                    assert match, var["query"]
                    values = prom.label_values(match.group(2), substitute(match.group(1)))
                    assert values, f"{file}: variable {var['name']} lists nothing"
                    if var["name"] == "job":
                        assert values == ["letta-exporter"]
                    if var["name"] == "instance":
                        assert values == [f"127.0.0.1:{exporter.port}"]
                    if var["name"] == "agent":
                        assert {"agent-alpha", "agent-beta", "__other__"} <= set(values)

            # Per-agent panels show names where Letta has them, ids where it has none.
            top = by_title(queries, "Top agents by runs finished")
            names = {s["metric"]["agent"]: s["metric"]["agent_name"] for s in prom.query(top)}
            assert names["agent-alpha"] == "Alpha support"
            assert names["agent-beta"] == "Beta triage"
            assert names["agent-slow"] == "agent-slow"  # not in the agents list
            assert names["__other__"] == "__other__"
            stale = by_title(queries, "Stale runs by agent")
            assert {s["metric"]["agent_name"] for s in prom.query(stale)} >= {"agent-zombie"}

            for file, title, _, expr in queries:
                if (file, title) in EMPTY_IN_THIS_SCENARIO:
                    assert prom.query(expr) == [], (
                        f"{file} / {title} has data now: drop it from EMPTY_IN_THIS_SCENARIO"
                    )

            firing: dict[str, dict[str, str]] = {}

            def expected_alerts_fired() -> bool:
                firing.update(prom.firing())
                return firing.keys() >= MUST_FIRE

            try:
                wait_until(expected_alerts_fired, 30, "the alerts to fire")
            except AssertionError:
                raise AssertionError(
                    f"never fired: {sorted(MUST_FIRE - firing.keys())}; fired: {sorted(firing)}\n"
                    + json.dumps(httpx.get(f"{prom.url}/api/v1/rules", timeout=10).json())[:3000]
                ) from None
            description = firing["LettaRunFailureRatioHigh"]["description"]
            assert 'The most frequent error type is "llm_error"' in description
            assert driver.errors == [], f"the traffic thread failed: {driver.errors!r}"


def healthy_mix(fake: FakeLetta) -> None:
    """Runs of every ordinary kind, and the near misses of the silent alerts: one answer
    cut at max_tokens, a refusal while an approval really waits (then answered), an
    approval cancelled on the agent's own thread (Letta cleans that one up), failures."""
    for n in range(6):
        fake.send_message("agent-alpha")
        fake.finish_with("agent-beta", "end_turn" if n % 2 else "max_steps")
    fake.finish_with("agent-alpha", "llm_api_error")
    fake.update_run(fake.create_run("agent-alpha"), status="failed", stop_reason=None)
    fake.finish_with("agent-beta", "max_tokens_exceeded")
    fake.request_approval("agent-beta", conversation_id="conv-ok")
    assert fake.send_message("agent-beta", conversation_id="conv-ok")[0] == 409
    fake.answer_approval("agent-beta", conversation_id="conv-ok")
    fake.cancel_run(fake.request_approval("agent-alpha"))
    assert fake.send_message("agent-alpha")[0] == 200


def test_the_stop_reason_alerts_stay_silent_on_a_healthy_mix(tmp_path: Path) -> None:
    rules = rules_for_test(tmp_path)
    with (
        FakeLetta() as fake,
        running(Exporter(fake.base_url, tmp_path / "state.sqlite", *EXPORTER_FLAGS)) as exporter,
    ):
        exporter.wait_ready()
        with prometheus(tmp_path, f"127.0.0.1:{exporter.port}", rules) as prom:
            healthy_mix(fake)
            runs = sum(fake.truth().values())
            wait_until(
                lambda: (
                    [s["value"][1] for s in prom.query("sum(letta_runs_finished_total)")]
                    == [str(runs)]
                ),
                30,
                "Prometheus to have scraped every run counted",
            )
            scraped = time.time()

            def evaluated_twice_since_then() -> bool:
                groups = httpx.get(f"{prom.url}/api/v1/rules", timeout=10).json()["data"]
                return all(
                    _epoch(group["lastEvaluation"]) > scraped + 1.0 for group in groups["groups"]
                )

            wait_until(evaluated_twice_since_then, 15, "two more rule evaluations")
            alerts = httpx.get(f"{prom.url}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
            noisy = {a["labels"]["alertname"]: a["state"] for a in alerts}
            assert not noisy.keys() & SILENT_WHEN_HEALTHY, noisy
            # The near misses were seen: the mix did reach the rules.
            reasons = {
                s["metric"]["stop_reason"]
                for s in prom.query("letta:runs_finished:increase15m > 0")
            }
            assert {"max_tokens_exceeded", "requires_approval", "none"} <= reasons


def _epoch(rfc3339: str) -> float:
    """Prometheus' lastEvaluation (nanosecond RFC 3339, `Z`) as Unix seconds."""
    stamp = re.sub(r"(\.\d{6})\d*", r"\1", rfc3339).replace("Z", "+00:00")
    return datetime.fromisoformat(stamp).timestamp()
