"""A randomised, seeded fault campaign against the real exporter and the fake Letta API.

Each *schedule* starts a :class:`~tests.fake_letta.fake.FakeLetta` (random profile:
0.16.8 or cloud, cursor semantics, 404 or silent restart on an unknown cursor, and
backend), an
:class:`~tests.otlp_receiver.OtlpReceiver` and the exporter (small
pages, tracing on), then plays a random interleaving of: run creation (single runs,
same-second bursts, late commits, sustained floods of 250 finished runs/s with shared
timestamps at the head), quiet spells (a frozen head), the server changing its cursor
semantics between polls, state changes, steps with token counts, deletions of
open runs, zombies, HTTP faults on every endpoint the exporter reads, invalid list items
and ``kill -9`` restarts of the exporter. Once the schedule is over and the faults are
cleared, it waits for the exporter to settle and checks the invariants:

* ``letta_runs_finished_total`` by (agent, status, stop_reason) equals ``fake.truth()``
  and ``letta_run_tokens_total`` by (agent, model, type) equals ``fake.token_truth()``
  (nothing lost, nothing doubled);
* no ``letta_*`` counter or histogram sample ever went down, across restarts included;
* every counted run's root span (``invoke_agent …`` with ``letta.run.id``) arrived, and
  no run has two *different* traces. Identical re-sends are allowed (at-least-once after
  a ``kill -9`` between an export and the outbox commit) and reported as "resent".

Run it on demand::

    python -m tests.campaign --schedules 1000
    python -m tests.campaign --schedules 1 --seed 123456   # replay one schedule

Schedule ``i`` of a campaign uses seed ``--seed + i``; a failing schedule prints its seed
and leaves its actions and exporter logs under ``--artifacts``. The action sequence is a
function of the seed; the timing against the exporter's cycles is not, so a replay
reproduces a failure often, not always.

Known violation, reduced to a deterministic case in tests/test_campaign.py: a 200 that
is not JSON on GET /v1/runs/{id} made the exporter exit (fixed).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.fake_letta.constants import Backend, Semantics, UnknownCursor
from tests.fake_letta.fake import FakeLetta
from tests.fake_letta.faults import Fault
from tests.harness import Exporter, expected
from tests.otlp_receiver import OtlpReceiver, ReceivedSpan

__all__ = ["ScheduleResult", "main", "run_campaign", "run_schedule"]

SEMANTICS: Final[tuple[Semantics, ...]] = ("letta-0.16.8", "conventional", "relative")
BACKENDS: Final[tuple[Backend, ...]] = ("postgres", "sqlite")
UNKNOWN_CURSORS: Final[tuple[UnknownCursor, ...]] = ("ignore", "404")
FLOOD_PER_TICK: Final = 25  # finished runs every FLOOD_TICK_S: 250 runs/s
FLOOD_TICK_S: Final = 0.1
OUTCOMES: Final[tuple[tuple[str, str | None], ...]] = (
    ("completed", "end_turn"),
    ("failed", "llm_api_error"),
    ("cancelled", "cancelled"),
    ("completed", "requires_approval"),
    ("failed", None),
    ("completed", "max_steps"),
    ("failed", "invalid_tool_call"),
)
MODELS: Final = ("openai/gpt-4o-mini", "anthropic/claude-sonnet-4", "openai-proxy/fake-llm")
# Where faults are aimed: the paths the exporter reads (list and active share "/v1/runs/").
FAULT_TARGETS: Final[dict[str, str]] = {
    "list": r"^/v1/runs/$",
    "get": r"^/v1/runs/run-[^/]+$",
    "usage": r"^/v1/runs/[^/]+/usage$",
    "steps": r"^/v1/runs/[^/]+/steps$",
    "metrics": r"^/v1/runs/[^/]+/metrics$",
    "trace": r"^/v1/runs/[^/]+/trace$",
    "step_metrics": r"^/v1/steps/[^/]+/metrics$",
    "messages_walk": r"^/v1/messages/$",
    "steps_walk": r"^/v1/steps/$",
    "any": r"^/v1/",
}
# How often each target is picked: some paths are read rarely (GET of an open run that
# no list showed, /trace once per process since a 501 is remembered), so faults aimed
# there are mostly left unserved.
FAULT_WEIGHTS: Final[dict[str, float]] = {
    "list": 4,
    "get": 1,
    "usage": 2,
    "steps": 2,
    "metrics": 2,
    "trace": 1,
    "step_metrics": 1,
    "messages_walk": 1,
    "steps_walk": 1,
    "any": 3,
}
# Kinds the client retries (5xx, 429, timeouts, transport errors) and kinds it cannot
# (a 200 that is not JSON): the latter cost an enrichment attempt with a 2 s, 4 s, ...
# backoff, so the schedule keeps them rare to stay fast.
RETRIED_FAULTS: Final = ("500", "502", "503", "429", "timeout", "reset", "truncated")
FAULT_KINDS: Final = (*RETRIED_FAULTS, "garbage")
# List items that must fail the exporter's Run model (and so be skipped, never counted).
INVALID_ITEMS: Final[tuple[Callable[[str], dict[str, Any]], ...]] = (
    lambda now: {"status": 42},
    lambda now: {"id": "run-bad", "created_at": now, "status": 42},
    lambda now: {"created_at": now, "status": "completed", "agent_id": "agent-x"},
    lambda now: {"id": None, "agent_id": "agent-x", "status": "completed", "created_at": now},
    lambda now: {"id": "run-nodate", "agent_id": "agent-x", "status": "completed"},
    lambda now: {
        "id": "run-baddate",
        "agent_id": "agent-x",
        "status": "completed",
        "created_at": "not a date",
    },
    lambda now: {"id": "run-noagent", "status": "failed", "created_at": now},
    lambda now: {"surprise": True},
)
TRACE_SETTLE: Final = "--traces.settle-delay=0.2s"
SETTLE_TIMEOUT_S: Final = 90.0
RECHECK_S: Final = 1.0
# Once the faults are cleared, the longest legitimate wait is an enrichment backoff
# (2 s, 4 s, ... after the few non-retried faults a schedule aims at enrichment).
NO_PROGRESS_S: Final = 20.0

SampleKey = tuple[str, tuple[tuple[str, str], ...]]


# --------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------


@dataclass
class ScheduleResult:
    """What one schedule did and what its checks found."""

    seed: int
    semantics: str = ""
    unknown_cursor: str = ""
    backend: str = ""
    page_size: int = 0
    backfill: bool = False
    cloud: bool = False
    actions: int = 0
    runs_created: int = 0
    runs_counted: int = 0
    zombies: int = 0
    deleted: int = 0
    faults_injected: Counter[str] = field(default_factory=Counter)
    faults_served: Counter[str] = field(default_factory=Counter)
    restarts: int = 0
    lost: int = 0
    doubled: int = 0
    tokens_lost: int = 0
    tokens_doubled: int = 0
    spans_missing: int = 0
    spans_resent: int = 0
    spans_different: int = 0
    counter_decreases: list[str] = field(default_factory=list)
    error: str | None = None
    wall_s: float = 0.0
    artifacts: str | None = None

    @property
    def ok(self) -> bool:
        return (
            self.error is None
            and self.lost == 0
            and self.doubled == 0
            and self.tokens_lost == 0
            and self.tokens_doubled == 0
            and self.spans_missing == 0
            and self.spans_different == 0
            and not self.counter_decreases
        )

    def problems(self) -> str:
        parts = [
            f"{name}={value}"
            for name, value in (
                ("lost", self.lost),
                ("doubled", self.doubled),
                ("tokens_lost", self.tokens_lost),
                ("tokens_doubled", self.tokens_doubled),
                ("spans_missing", self.spans_missing),
                ("spans_different", self.spans_different),
            )
            if value
        ]
        parts += [f"decrease: {d}" for d in self.counter_decreases[:5]]
        if self.error:
            parts.append(f"error: {self.error}")
        return "; ".join(parts) or "ok"


# --------------------------------------------------------------------------------------
# The fake, counting the faults it actually serves
# --------------------------------------------------------------------------------------


class _CountingFake(FakeLetta):
    """FakeLetta that counts the injected faults actually served, by kind."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.served: Counter[str] = Counter()
        self._served_lock = threading.Lock()

    def _take_fault(self, path: str) -> Fault | None:
        fault = super()._take_fault(path)
        if fault is not None:
            with self._served_lock:
                self.served[fault.kind] += 1
        return fault


# --------------------------------------------------------------------------------------
# Reading the exporter
# --------------------------------------------------------------------------------------


def monotonic_samples(exporter: Exporter) -> dict[SampleKey, float]:
    """Every ``letta_*`` counter and histogram sample (they may never go down)."""
    out: dict[SampleKey, float] = {}
    for family in text_string_to_metric_families(exporter.metrics_text()):
        if family.type not in ("counter", "histogram") or not family.name.startswith("letta_"):
            continue
        for sample in family.samples:
            if sample.name.endswith(("_total", "_bucket", "_count", "_sum")):
                out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _diff(exported: Counter[Any], truth: Counter[Any]) -> tuple[int, int]:
    """(lost, doubled): how far below and above the truth the exported totals are."""
    lost = sum(max(0, truth[k] - exported[k]) for k in truth)
    doubled = sum(max(0, exported[k] - truth[k]) for k in exported)
    return lost, doubled


def _span_content(span: ReceivedSpan) -> tuple[Any, ...]:
    return (
        span.trace_id,
        span.span_id,
        span.parent_span_id,
        span.name,
        span.start_ns,
        span.end_ns,
        repr(sorted(span.attributes.items())),
        span.status_code,
        span.status_message,
        repr([(e.name, e.time_ns, sorted(e.attributes.items())) for e in span.events]),
    )


@dataclass
class SpanReport:
    roots: dict[str, set[tuple[str, str]]]  # run id -> distinct (trace_id, root span_id)
    resent: int  # identical copies beyond the first
    different: list[str]  # human-readable descriptions


def span_report(spans: list[ReceivedSpan]) -> SpanReport:
    roots: dict[str, set[tuple[str, str]]] = {}
    copies: Counter[tuple[Any, ...]] = Counter()
    versions: dict[tuple[str, str], set[tuple[Any, ...]]] = {}
    for span in spans:
        content = _span_content(span)
        copies[content] += 1
        versions.setdefault((span.trace_id, span.span_id), set()).add(content)
        run_id = span.attributes.get("letta.run.id")
        if span.name.startswith("invoke_agent ") and isinstance(run_id, str):
            roots.setdefault(run_id, set()).add((span.trace_id, span.span_id))
    different = [
        f"run {run_id} has {len(ids)} different root spans: {sorted(ids)}"
        for run_id, ids in roots.items()
        if len(ids) > 1
    ]
    different += [
        f"span {trace_id}/{span_id} arrived in {len(contents)} different versions"
        for (trace_id, span_id), contents in versions.items()
        if len(contents) > 1
    ]
    return SpanReport(roots, sum(n - 1 for n in copies.values()), different)


# --------------------------------------------------------------------------------------
# One schedule
# --------------------------------------------------------------------------------------


@dataclass
class _Model:
    """What the schedule did to the fake, so actions pick sensible targets."""

    created: list[str] = field(default_factory=list)  # visible, status "created"
    running: list[str] = field(default_factory=list)  # visible, status "running"
    invisible: list[str] = field(default_factory=list)  # late commits not committed yet
    invisible_done: set[str] = field(default_factory=set)  # ... of which finished
    callbacks: set[str] = field(default_factory=set)
    finished: int = 0
    deleted: int = 0
    created_total: int = 0

    def open_runs(self) -> list[str]:
        return (
            self.created
            + self.running
            + [r for r in self.invisible if r not in self.invisible_done]
        )


class _Schedule:
    """One seeded schedule: its parameters, the actions so far, the exporters it ran."""

    def __init__(self, seed: int, workdir: Path, settle_timeout: float) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.workdir = workdir
        self.settle_timeout = settle_timeout
        self.result = ScheduleResult(seed=seed)
        self.model = _Model()
        self.actions: list[str] = []
        self.exporters: list[Exporter] = []
        self.exporter: Exporter | None = None
        self.high_water: dict[SampleKey, float] = {}
        self.t0 = time.monotonic()
        self.fake: _CountingFake | None = None
        rng = self.rng
        self.semantics: Semantics = rng.choice(SEMANTICS)
        self.backend: Backend = rng.choice(BACKENDS)
        self.unknown_cursor: UnknownCursor = rng.choice(UNKNOWN_CURSORS)
        self.page_size = rng.randint(5, 20)
        self.backfill = rng.random() < 0.5
        self.step_timings = rng.random() < 0.3
        self.n_actions = rng.randint(30, 150)
        self.max_restarts = rng.choice((0, 1, 1, 2, 2, 3))
        self.garbage_budget = rng.randint(0, 2)  # non-retried faults aimed at enrichment
        self.agents = [f"agent-{seed}-{i}" for i in range(rng.randint(1, 4))]
        # The server profile: 0.16.8 (per-run steps, /metrics; the messages walk) or the
        # cloud (the steps walk too, no /metrics). Its own generator, so that the draws
        # above and the actions stay what they were for every seed.
        self.cloud = random.Random(seed * 7919 + 1).random() < 0.5
        r = self.result
        r.cloud = self.cloud
        r.unknown_cursor = self.unknown_cursor
        r.semantics, r.backend, r.page_size, r.backfill = (
            self.semantics,
            self.backend,
            self.page_size,
            self.backfill,
        )

    # ---- bookkeeping -----------------------------------------------------------------

    def note(self, text: str) -> None:
        self.actions.append(f"{time.monotonic() - self.t0:8.3f} {text}")

    def exporter_args(self) -> list[str]:
        args = [
            f"--letta.page-size={self.page_size}",
            TRACE_SETTLE,
            # Give-ups change the token labels by design ("unknown" model); this campaign
            # is about counting exactly once, so a run's details are never given up.
            "--enrich.max-attempts=30",
        ]
        if self.backfill:
            args.append("--backfill=1h")
        if self.step_timings:
            args.append("--enrich.step-timings=true")
        return args

    def start_exporter(self, fake: FakeLetta, receiver: OtlpReceiver) -> Exporter:
        exporter = Exporter(
            fake.base_url,
            self.workdir / "state.sqlite",
            *self.exporter_args(),
            env={
                "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.base_url,
                "OTEL_SERVICE_NAME": "letta-exporter-campaign",
                "OTEL_EXPORTER_OTLP_TIMEOUT": "2",
            },
        )
        self.exporters.append(exporter)
        exporter.start()
        self.exporter = exporter
        self.note(f"exporter #{len(self.exporters)} started (pid {exporter.pid})")
        return exporter

    def check_counters(self, when: str) -> None:
        """Compare every monotonic sample with the highest value seen before."""
        exporter = self.exporter
        if exporter is None:
            return
        try:
            seen = monotonic_samples(exporter)
        except httpx.HTTPError:
            return
        for key, before in self.high_water.items():
            now = seen.get(key, 0.0)
            if now < before:
                text = f"{when}: {key[0]}{dict(key[1])} {before:g} -> {now:g}"
                self.result.counter_decreases.append(text)
                self.note("COUNTER DECREASE " + text)
        for key, value in seen.items():
            if value > self.high_water.get(key, 0.0):
                self.high_water[key] = value

    def kill(self) -> None:
        assert self.exporter is not None
        self.check_counters("before kill -9")
        self.exporter.kill()
        self.note(f"kill -9 exporter #{len(self.exporters)}")
        self.exporter = None
        self.result.restarts += 1

    # ---- actions ---------------------------------------------------------------------

    def ts(self, value: float) -> str:
        return datetime.fromtimestamp(value, UTC).isoformat().replace("+00:00", "Z")

    def create(self, fake: FakeLetta, created_at: float | None = None) -> str:
        rng = self.rng
        callback = "http://127.0.0.1:9/cb" if rng.random() < 0.1 else None
        run_id = fake.create_run(
            rng.choice(self.agents),
            created_at=created_at,
            background=rng.random() < 0.5,
            callback_url=callback,
        )
        if callback:
            self.model.callbacks.add(run_id)
        self.model.created.append(run_id)
        self.model.created_total += 1
        return run_id

    def add_steps(self, fake: FakeLetta, run_id: str) -> None:
        rng = self.rng
        n = 52 if rng.random() < 0.03 else rng.randint(1, 3)
        for _ in range(n):
            step_ns = rng.randrange(10**6, 10**9) if rng.random() < 0.5 else None
            llm_ns = step_ns // 2 if step_ns is not None and rng.random() < 0.5 else None
            fake.add_step(
                run_id,
                model=rng.choice(MODELS),
                prompt_tokens=rng.randrange(0, 3000),
                completion_tokens=rng.randrange(0, 300),
                cached_input_tokens=rng.choice([None, 0, rng.randrange(1, 500)]),
                cache_write_tokens=rng.choice([None, rng.randrange(1, 100)]),
                reasoning_tokens=rng.choice([None, rng.randrange(1, 80)]),
                step_ns=step_ns,
                llm_request_ns=llm_ns,
            )
        self.note(f"steps x{n} {run_id}")

    def finish(self, fake: FakeLetta, run_id: str) -> None:
        rng = self.rng
        status, reason = rng.choice(OUTCOMES)
        delay = rng.choice([0.0, 0.0, 0.0, rng.uniform(0.05, 0.6)])
        fake.update_run(run_id, status=status, stop_reason=reason, metrics_delay=delay)
        if run_id in self.model.callbacks and rng.random() < 0.7:
            fake.set_callback(run_id, rng.choice([200, 500, None]), rng.choice([None, "boom"]))
        m = self.model
        if run_id in m.created:
            m.created.remove(run_id)
        elif run_id in m.running:
            m.running.remove(run_id)
        else:
            m.invisible_done.add(run_id)
        m.finished += 1
        self.note(f"finish {run_id} {status}/{reason} metrics_delay={delay:.2f}")

    def inject_fault(self, fake: FakeLetta) -> None:
        rng = self.rng
        target = rng.choices(list(FAULT_TARGETS), [FAULT_WEIGHTS[t] for t in FAULT_TARGETS])[0]
        if target == "step_metrics" and not self.step_timings:
            target = "usage"
        kind = rng.choice(FAULT_KINDS)
        enrichment = target not in ("list", "get")
        if kind == "garbage" and enrichment:
            if self.garbage_budget <= 0:
                kind = rng.choice(RETRIED_FAULTS)
            else:
                self.garbage_budget -= 1
        delay: float | None = None
        retry_after: str | None = None
        times = rng.randint(1, 6 if target == "list" else 3)
        if kind == "timeout":
            # Mostly a slow answer under --letta.timeout=1s; sometimes a real timeout.
            delay = rng.choice([rng.uniform(0.02, 0.3), rng.uniform(0.02, 0.3), 1.3])
            times = min(times, 2)
        elif kind == "429":
            retry_after = rng.choice([None, "0", "0.2", "1"])
        elif kind == "garbage":
            times = 1
        fake.inject(
            kind,
            times=times,
            path_regex=FAULT_TARGETS[target],
            delay=delay,
            retry_after=retry_after,
        )
        self.result.faults_injected[kind] += times
        self.note(f"fault {kind} x{times} on {target} delay={delay} retry_after={retry_after}")

    def act(self, fake: FakeLetta, receiver: OtlpReceiver) -> None:
        rng = self.rng
        m = self.model
        up = self.exporter is not None
        open_visible = m.created + m.running
        open_all = m.open_runs()
        can_kill = up and self.result.restarts < self.max_restarts
        choices: list[tuple[str, float]] = [
            ("create", 14),
            ("burst", 3),
            ("flood", 1),
            ("quiet", 1),
            ("semantics", 1),
            ("late", 3),
            ("commit", 4 if m.invisible else 0),
            ("run", 6 if m.created else 0),
            ("step", 8 if open_all else 0),
            ("finish", 14 if open_all else 0),
            ("delete", 2 if open_visible else 0),
            ("fault", 8),
            ("raw", 2),
            ("kill", 3 if can_kill else 0),
            ("restart", 12 if not up else 0),
            ("scrape", 3 if up else 0),
        ]
        names = [name for name, weight in choices if weight > 0]
        weights = [weight for _, weight in choices if weight > 0]
        action = rng.choices(names, weights)[0]
        if action == "create":
            run_id = self.create(fake)
            self.note(f"create {run_id}")
            if rng.random() < 0.3:
                self.finish(fake, run_id)  # created and finished between two polls
        elif action == "burst":
            n = rng.randint(2, 2 * self.page_size if rng.random() < 0.3 else 8)
            now = time.time()
            if rng.random() < 0.5:
                stamps = [now] * n  # identical created_at
            else:  # the same whole second, microseconds apart, in any order
                second = float(int(now))
                stamps = [rng.uniform(second, now) for _ in range(n)]
            ids = [self.create(fake, created_at=s) for s in stamps]
            self.note(f"burst x{n} at {self.ts(stamps[0])}: {ids}")
            for run_id in ids:
                if rng.random() < 0.4:
                    self.finish(fake, run_id)
        elif action == "flood":
            ticks = rng.randint(3, 10)
            self.note(f"flood: {FLOOD_PER_TICK} finished runs every {FLOOD_TICK_S}s x{ticks}")
            started = time.monotonic()
            for tick in range(ticks):
                ids = fake.finish_burst(FLOOD_PER_TICK, self.agents, shared_fraction=0.3, rng=rng)
                m.finished += len(ids)
                m.created_total += len(ids)
                time.sleep(max(0.0, started + (tick + 1) * FLOOD_TICK_S - time.monotonic()))
        elif action == "quiet":
            pause = rng.uniform(0.5, 2.5)
            self.note(f"quiet for {pause:.2f}s (frozen head)")
            time.sleep(pause)
        elif action == "semantics":
            semantics = rng.choice(SEMANTICS)
            unknown = rng.choice(UNKNOWN_CURSORS)
            fake.set_semantics(semantics, unknown)
            self.note(f"server now has {semantics} cursors, unknown cursor -> {unknown}")
        elif action == "late":
            created_at = time.time() - rng.uniform(0.1, 3.0)
            run_id = fake.create_run(rng.choice(self.agents), created_at=created_at, visible=False)
            m.invisible.append(run_id)
            m.created_total += 1
            self.note(f"late (invisible) {run_id} created_at={self.ts(created_at)}")
            if rng.random() < 0.4:
                self.add_steps(fake, run_id)
            if rng.random() < 0.5:
                self.finish(fake, run_id)
        elif action == "commit":
            run_id = rng.choice(m.invisible)
            fake.commit(run_id)
            m.invisible.remove(run_id)
            if run_id in m.invisible_done:
                m.invisible_done.discard(run_id)
            else:
                m.created.append(run_id)  # its status may be created: close enough
            self.note(f"commit {run_id}")
        elif action == "run":
            run_id = rng.choice(m.created)
            fake.update_run(run_id, status="running")
            m.created.remove(run_id)
            m.running.append(run_id)
            self.note(f"running {run_id}")
        elif action == "step":
            self.add_steps(fake, rng.choice(open_all))
        elif action == "finish":
            self.finish(fake, rng.choice(open_all))
        elif action == "delete":
            run_id = rng.choice(open_visible)
            fake.delete_run(run_id)
            (m.created if run_id in m.created else m.running).remove(run_id)
            m.deleted += 1
            self.note(f"delete open {run_id}")
        elif action == "fault":
            self.inject_fault(fake)
        elif action == "raw":
            now = time.time() - rng.uniform(0, 2)
            obj = rng.choice(INVALID_ITEMS)(self.ts(now))
            fake.add_raw_item(obj, created_at=now if rng.random() < 0.7 else None)
            self.note(f"invalid item {obj}")
        elif action == "kill":
            self.kill()
            if rng.random() < 0.5:
                self.restart(fake, receiver)
        elif action == "restart":
            self.restart(fake, receiver)
        elif action == "scrape":
            self.check_counters("scrape")

    def restart(self, fake: FakeLetta, receiver: OtlpReceiver) -> None:
        self.start_exporter(fake, receiver)
        self.check_counters(f"after restart #{self.result.restarts}")

    # ---- the whole schedule ----------------------------------------------------------

    def play(self) -> ScheduleResult:
        rng = self.rng
        with ExitStack() as stack:
            fake = _CountingFake(
                semantics=self.semantics,
                backend=self.backend,
                unknown_cursor=self.unknown_cursor,
                cloud=self.cloud,
            )
            stack.enter_context(fake)
            self.fake = fake
            receiver = stack.enter_context(OtlpReceiver())
            stack.callback(self._kill_all)
            self.note(
                f"schedule seed={self.seed} {'cloud' if self.cloud else '0.16.8'} "
                f"{self.semantics}/{self.backend} "
                f"unknown_cursor={self.unknown_cursor} "
                f"page={self.page_size} backfill={self.backfill} "
                f"step_timings={self.step_timings} actions={self.n_actions} "
                f"max_restarts={self.max_restarts} agents={self.agents}"
            )
            if not self.backfill:
                # Without --backfill a first start counts nothing already finished: let
                # the first cycle commit (an open run makes the state non-fresh) before
                # anything finishes, so the truth is what a perfect exporter counts.
                zombie = fake.create_run(self.agents[0], status="running")
                self.note(f"seed zombie {zombie}")
                self.start_exporter(fake, receiver).wait_ready()
            else:
                self.start_exporter(fake, receiver)
            for _ in range(self.n_actions):
                self.act(fake, receiver)
                self.result.actions += 1
                if self.exporter is not None and self.exporter.returncode is not None:
                    raise AssertionError(
                        f"exporter exited with {self.exporter.returncode} on its own"
                    )
                # Mostly back to back, now and then across a poll cycle or two.
                pause = rng.uniform(0.0, 0.02) if rng.random() < 0.92 else rng.uniform(0.1, 0.4)
                time.sleep(pause)
            self.wind_down(fake, receiver)
            self.settle(fake, receiver)
        return self.result

    def wind_down(self, fake: FakeLetta, receiver: OtlpReceiver) -> None:
        rng = self.rng
        m = self.model
        fake.clear_faults()
        self.note("faults cleared")
        if self.exporter is None:
            self.restart(fake, receiver)
        for run_id in list(m.invisible):
            if rng.random() < 0.7:
                fake.commit(run_id)
                self.note(f"commit {run_id}")
                m.invisible.remove(run_id)
                if run_id not in m.invisible_done:
                    m.created.append(run_id)
        zombies = 0
        for run_id in m.created + m.running:
            if rng.random() < 0.7:
                self.finish(fake, run_id)
            else:
                zombies += 1
                self.note(f"zombie {run_id}")
        self.result.zombies = zombies
        self.result.deleted = m.deleted
        self.result.runs_created = m.created_total

    def settle(self, fake: _CountingFake, receiver: OtlpReceiver) -> None:
        exporter = self.exporter
        assert exporter is not None
        truth = expected(fake.truth())
        tokens_truth = fake.token_truth()
        counted = set(fake.step_count_truth())
        self.result.runs_counted = sum(truth.values())
        deadline = time.monotonic() + self.settle_timeout
        finished: Counter[tuple[str, ...]] = Counter()
        tokens: Counter[tuple[str, ...]] = Counter()
        roots: set[str] = set()
        matched_at: float | None = None
        progress: tuple[Any, ...] = ()
        progress_at = time.monotonic()
        while True:
            try:
                finished = exporter.finished()
                tokens = exporter.tokens()
            except httpx.HTTPError:
                pass
            roots = set(span_report(receiver.spans).roots)
            lost, doubled = _diff(finished, truth)
            tokens_lost, tokens_doubled = _diff(tokens, tokens_truth)
            done = lost == 0 and tokens_lost == 0 and counted <= roots
            if doubled or tokens_doubled:
                break  # counters never go down: this will not heal
            if done and matched_at is None:
                matched_at = time.monotonic()
            if matched_at is not None and time.monotonic() - matched_at >= RECHECK_S:
                break  # and stayed so: late doubles would have shown by now
            if not done:
                matched_at = None
            if (finished, tokens, len(roots)) != progress:
                progress, progress_at = (finished, tokens, len(roots)), time.monotonic()
            elif time.monotonic() - progress_at > NO_PROGRESS_S:
                break  # faults are cleared: nothing owed is more than a backoff away
            if time.monotonic() > deadline:
                break
            if exporter.returncode is not None:
                raise AssertionError(f"exporter exited with {exporter.returncode} on its own")
            time.sleep(0.2)
        self.check_counters("settled")
        r = self.result
        r.lost, r.doubled = _diff(finished, truth)
        r.tokens_lost, r.tokens_doubled = _diff(tokens, tokens_truth)
        report = span_report(receiver.spans)
        r.spans_missing = len(counted - set(report.roots))
        r.spans_resent = report.resent
        r.spans_different = len(report.different)
        for line in report.different[:20]:
            self.note("DIFFERENT " + line)
        if not r.ok:
            self.note(f"truth    {sorted(truth.items())}")
            self.note(f"exported {sorted(finished.items())}")
            self.note(f"token truth    {sorted(tokens_truth.items())}")
            self.note(f"tokens exported {sorted(tokens.items())}")
            self.note(f"runs without a root span: {sorted(counted - set(report.roots))}")
            self.note(f"fake runs now: {json.dumps(fake.runs())}")
        r.faults_served = Counter(fake.served)

    def _kill_all(self) -> None:
        for exporter in self.exporters:
            exporter.kill()

    def save_artifacts(self, root: Path) -> Path:
        where = root / f"seed-{self.seed}"
        where.mkdir(parents=True, exist_ok=True)
        (where / "actions.txt").write_text("\n".join(self.actions) + "\n")
        for n, exporter in enumerate(self.exporters, 1):
            (where / f"exporter-{n}.log").write_text("\n".join(exporter.logs) + "\n")
        data = {k: v for k, v in vars(self.result).items()}
        for name in ("faults_injected", "faults_served"):
            data[name] = dict(data[name])
        (where / "result.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
        requests = self.fake.requests if self.fake is not None else []
        (where / "letta-requests.txt").write_text(
            "".join(f"{m} {p} {json.dumps(q)} {code}\n" for m, p, q, code in requests)
        )
        return where


def run_schedule(
    seed: int,
    *,
    artifacts: Path | None = None,
    settle_timeout: float = SETTLE_TIMEOUT_S,
    keep: bool = False,
    log: Callable[[str], None] = lambda line: None,
) -> ScheduleResult:
    """Play the schedule of `seed` and check its invariants; never raises for a failure
    of the exporter (the result says what went wrong). A failing schedule (any, with
    `keep`) leaves its actions, exporter logs and request log under `artifacts`."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"campaign-{seed}-") as tmp:
        schedule = _Schedule(seed, Path(tmp), settle_timeout)
        try:
            schedule.play()
        except Exception as exc:  # a crashed exporter, a harness timeout: a failure
            schedule.result.error = f"{type(exc).__name__}: {str(exc)[:2000]}"
            schedule.note("ERROR " + traceback.format_exc())
        result = schedule.result
        result.wall_s = time.monotonic() - started
        if (keep or not result.ok) and artifacts is not None:
            try:
                result.artifacts = str(schedule.save_artifacts(artifacts))
            except OSError as exc:
                log(f"could not save the artifacts of seed {seed}: {exc}")
    return result


# --------------------------------------------------------------------------------------
# Campaign and summary
# --------------------------------------------------------------------------------------


def run_campaign(
    seeds: Sequence[int],
    *,
    artifacts: Path | None,
    settle_timeout: float = SETTLE_TIMEOUT_S,
    keep: bool = False,
    out: Callable[[str], None] = print,
) -> list[ScheduleResult]:
    results: list[ScheduleResult] = []
    out(_row_header())
    for seed in seeds:
        result = run_schedule(
            seed, artifacts=artifacts, settle_timeout=settle_timeout, keep=keep, log=out
        )
        results.append(result)
        out(_row(result))
        if not result.ok:
            out(f"  FAILED seed={seed}: {result.problems()}")
            out(f"  replay: python -m tests.campaign --schedules 1 --seed {seed}")
            if result.artifacts:
                out(f"  artifacts: {result.artifacts}")
    return results


def _row_header() -> str:
    return (
        f"{'seed':>10} {'prof':<6} {'semantics':<12} {'unk':<6} {'backend':<8} {'pg':>3} "
        f"{'bf':>2} {'act':>4} "
        f"{'runs':>5} {'faults':>6} {'rst':>3} {'lost':>4} {'dbl':>4} {'resent':>6} "
        f"{'diff':>4} {'wall':>6}  result"
    )


def _row(r: ScheduleResult) -> str:
    return (
        f"{r.seed:>10} {'cloud' if r.cloud else '0.16.8':<6} {r.semantics:<12} "
        f"{r.unknown_cursor:<6} {r.backend:<8} {r.page_size:>3} "
        f"{'y' if r.backfill else 'n':>2} {r.actions:>4} {r.runs_counted:>5} "
        f"{sum(r.faults_served.values()):>6} {r.restarts:>3} {r.lost:>4} {r.doubled:>4} "
        f"{r.spans_resent:>6} {r.spans_different:>4} {r.wall_s:>5.1f}s  "
        f"{'ok' if r.ok else 'FAIL'}"
    )


def summary(results: Sequence[ScheduleResult], wall_s: float) -> str:
    injected: Counter[str] = Counter()
    served: Counter[str] = Counter()
    for r in results:
        injected.update(r.faults_injected)
        served.update(r.faults_served)
    failed = [r for r in results if not r.ok]
    rows: list[tuple[str, str]] = [
        ("schedules", f"{len(results)} ({len(failed)} failed)"),
        ("runs created", str(sum(r.runs_created for r in results))),
        ("runs counted (truth)", str(sum(r.runs_counted for r in results))),
        ("open runs deleted", str(sum(r.deleted for r in results))),
        ("zombies left open", str(sum(r.zombies for r in results))),
        ("actions", str(sum(r.actions for r in results))),
        ("faults injected / served", f"{sum(injected.values())} / {sum(served.values())}"),
    ]
    for kind in sorted(injected.keys() | served.keys()):
        rows.append((f"  {kind}", f"{injected[kind]} / {served[kind]}"))
    rows += [
        ("restarts (kill -9)", str(sum(r.restarts for r in results))),
        ("lost (runs)", str(sum(r.lost for r in results))),
        ("doubled (runs)", str(sum(r.doubled for r in results))),
        (
            "tokens lost / doubled",
            f"{sum(r.tokens_lost for r in results)} / {sum(r.tokens_doubled for r in results)}",
        ),
        ("counter decreases", str(sum(len(r.counter_decreases) for r in results))),
        ("root spans missing", str(sum(r.spans_missing for r in results))),
        ("spans resent (identical)", str(sum(r.spans_resent for r in results))),
        ("spans different", str(sum(r.spans_different for r in results))),
        ("errors", str(sum(1 for r in results if r.error))),
        ("wall time", f"{wall_s:.1f} s"),
    ]
    width = max(len(name) for name, _ in rows)
    lines = ["", "summary", "-" * (width + 24)]
    lines += [f"{name:<{width}}  {value}" for name, value in rows]
    if failed:
        lines.append("failed seeds: " + " ".join(str(r.seed) for r in failed))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.campaign",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--schedules", type=int, default=40, help="number of schedules")
    parser.add_argument(
        "--seed", type=int, default=None, help="seed of the first schedule (default: random)"
    )
    parser.add_argument(
        "--artifacts",
        type=Path,
        default=Path(tempfile.gettempdir()) / "letta-campaign",
        help="where a failing schedule leaves its actions and exporter logs",
    )
    parser.add_argument(
        "--keep-artifacts", action="store_true", help="leave artifacts of passing schedules too"
    )
    parser.add_argument("--settle-timeout", type=float, default=SETTLE_TIMEOUT_S)
    args = parser.parse_args(argv)
    first = args.seed if args.seed is not None else random.SystemRandom().randrange(10**9)
    print(f"campaign: {args.schedules} schedules from seed {first}", flush=True)
    started = time.monotonic()
    results = run_campaign(
        list(range(first, first + args.schedules)),
        artifacts=args.artifacts,
        settle_timeout=args.settle_timeout,
        keep=args.keep_artifacts,
        out=lambda line: print(line, flush=True),
    )
    print(summary(results, time.monotonic() - started), flush=True)
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
