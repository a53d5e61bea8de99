"""The exporter's poll cycle in-process, against a Letta API mocked with respx, on a fake clock.

The one module the cycle tests (tests/test_cycle_*.py) build the exporter with, through
`exporter.cli.wiring.build_exporter` as `serve` does, and that reaches into its parts:
those tests use only `CycleRig`, `RigLetta` and `Samples`, so when the tracker or the
poller change shape only this file follows.

    async with open_rig(tmp_path, runs_grace_period=5) as rig:
        await rig.cycle()                       # first start: history is not counted
        run = rig.letta.create_run("agent-a")
        rig.letta.update_run(run, status="completed", stop_reason="end_turn")
        await rig.cycle()
        rig.advance(6)
        await rig.cycle()
        assert rig.metrics().value("letta_runs_finished_total") == 1

The Letta API is `tests.fake_letta.fake.FakeLetta`'s store (the runs API of 0.16.8: list
cursors, GET, steps, usage, metrics, messages, tools, agents), answered through a respx
route instead of a socket, so each request costs microseconds and every one is seen
(`rig.letta.count_requests(...)`). Time is the rig's: `advance()` moves the exporter's clock,
Letta's clock and the client's monotonic clock together; the client's waits (retries,
pacing) move them instead of sleeping.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import respx
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter.cli.config import load_settings
from exporter.cli.wiring import Clocks, Exporter, build_exporter
from tests.fake_letta.fake import FakeLetta

BASE_URL = "http://letta.test"
# The model handle of the steps `RigLetta.finished` adds; Letta reports the part after "/".
MODEL = "openai/gpt-4o-mini"
# The fixtures' day: runs the tests create sit around here unless they say otherwise.
START = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC).timestamp()


class RigLetta(FakeLetta):
    """FakeLetta's runs store, answered through respx; plus failures to order and a log.

    Everything FakeLetta offers to set the store up (create_run, update_run,
    set_callback, delete_run, commit, add_step, ...) works as documented there. Its
    socket-level faults (`inject`) do not: use `fail`.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        super().__init__(clock=clock)
        self._failures: list[_Failure] = []
        self.log: list[httpx.Request] = []
        self.ignore_cursors = False
        """A broken server: list requests are answered as if they had no cursor."""
        self.refuse = False
        """Nothing listens: every request fails to connect."""

    def inject(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("the rig's Letta has no socket: use fail()")

    def fail(self, path_regex: str, status: int = 500, *, times: int = 1, body: Any = None) -> None:
        """Answer the next `times` requests whose path matches `path_regex` with
        `status` (body `{"detail": ...}` unless given), before the store sees them."""
        detail = body if body is not None else {"detail": "An unknown error occurred"}
        self._failures.append(_Failure(re.compile(path_regex), status, detail, times))

    def count_requests(self, path_regex: str, **params: str) -> int:
        """How many requests the exporter made whose path matches `path_regex` (re.search)
        and whose query has each of `params`."""
        pattern = re.compile(path_regex)
        return sum(
            1
            for request in self.log
            if pattern.search(request.url.path)
            and all(request.url.params.get(k) == v for k, v in params.items())
        )

    def finished(
        self,
        agent_id: str = "agent-a",
        *,
        status: str = "completed",
        stop_reason: str | None = "end_turn",
        took: float = 2.0,
        tokens: tuple[int, int] | None = None,
        created_at: float | None = None,
        **create: Any,
    ) -> str:
        """A run created `took` seconds ago (or at `created_at`) that finishes now, with
        one step of `tokens` (prompt, completion) if given; returns its id."""
        created = created_at if created_at is not None else self._clock() - took
        run_id = self.create_run(agent_id, created_at=created, **create)
        if tokens is not None:
            self.add_step(run_id, model=MODEL, prompt_tokens=tokens[0], completion_tokens=tokens[1])
        self.update_run(run_id, status=status, stop_reason=stop_reason)
        return run_id

    def running(self, agent_id: str = "agent-a", **create: Any) -> str:
        """A run that started now and is still running; returns its id."""
        run_id = self.create_run(agent_id, **create)
        self.update_run(run_id, status="running")
        return run_id

    def answer(self, request: httpx.Request) -> httpx.Response:
        """The respx side effect: one request, answered like the real server."""
        self.log.append(request)
        if self.refuse:
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        # The fake's answers by chance, budget or to everything (`answer_at_random`,
        # `set_request_budget`, `answer_everything`), on the rig's clock.
        planned = self._planned_answer()
        if planned is not None:
            return httpx.Response(planned.status, content=planned.body, headers=planned.headers)
        path = request.url.path
        for failure in self._failures:
            if failure.pattern.search(path):
                failure.times -= 1
                if failure.times <= 0:
                    self._failures.remove(failure)
                return httpx.Response(failure.status, json=failure.body)
        query = request.url.query.decode()
        if self.ignore_cursors:
            params = request.url.params.remove("before").remove("after")
            query = str(params)
        # FakeLetta's own router, minus its socket (and its socket-level faults).
        resp = self._dispatch(
            request.method,
            path,
            query,
            request.headers,  # type: ignore[arg-type]  # only .get() is used
            request.url.host,
        )
        headers = list(resp.headers)
        if resp.content_type is not None:
            headers.append(("content-type", resp.content_type))
        return httpx.Response(resp.status, content=resp.body, headers=headers)


@dataclass(slots=True)
class _Failure:
    pattern: re.Pattern[str]
    status: int
    body: Any
    times: int


class Samples:
    """The samples of one scrape of /metrics, as Prometheus would read them."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._samples: list[tuple[str, dict[str, str], float]] = [
            (sample.name, dict(sample.labels), sample.value)
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        ]

    def value(self, name: str, **labels: str) -> float:
        """Sum of the samples named `name` whose labels include `labels` (0 if none)."""
        return sum(
            value
            for sample, have, value in self._samples
            if sample == name and all(have.get(k) == v for k, v in labels.items())
        )

    def __repr__(self) -> str:
        # What a failed assertion shows: the scrape's samples, without the buckets.
        lines = (line for line in self._text.splitlines() if not line.startswith("#"))
        return "\n".join(line for line in lines if "_bucket{" not in line)

    def series(self, name: str) -> dict[tuple[tuple[str, str], ...], float]:
        """Every sample named `name`, by its sorted labels."""
        return {
            tuple(sorted(have.items())): value
            for sample, have, value in self._samples
            if sample == name
        }


class CycleRig:
    """One exporter, built by `exporter.cli.wiring.build_exporter`, on the rig's clock."""

    def __init__(self, state_path: Path, settings: Mapping[str, Any], start: float) -> None:
        self.now = start
        self._monotonic = 1000.0
        self.letta = RigLetta(clock=lambda: self.now)
        self.settings = load_settings(
            {
                "base_url": BASE_URL,
                "state_path": state_path,
                # The rig's requests cost nothing; a pace would only make the client wait.
                "letta_rate_limit": 0,
                **settings,
            }
        )
        self._exporter: Exporter | None = None
        self._run_until = start
        self.on_wait: Callable[[], None] | None = None
        """Called after each wait of `run_for` (and each wait the client does), with the
        clock moved on: what Letta does meanwhile (new runs, a fault that ends)."""

    # ---- the clock ------------------------------------------------------------------

    def advance(self, seconds: float) -> None:
        """Let `seconds` pass for the exporter and for Letta."""
        self.now += seconds
        self._monotonic += seconds

    def monotonic(self) -> float:
        """The exporter's monotonic clock (seconds), which `advance` moves too."""
        return self._monotonic

    async def sleep(self, seconds: float) -> None:
        """What the exporter's waits do on the rig: time passes, at once."""
        self.advance(max(0.0, seconds))
        if self.on_wait is not None:
            self.on_wait()
        await asyncio.sleep(0)

    # ---- the exporter ---------------------------------------------------------------

    def start(self) -> None:
        """Start the exporter on the state file (as the process does, minus the server and
        tracing), built as `serve` builds it, on the rig's clock."""
        assert self._exporter is None, "already started"
        clocks = Clocks(
            wall=lambda: self.now, monotonic=self.monotonic, sleep=self.sleep, wait=self.loop_wait
        )
        self._exporter = build_exporter(self.settings, environ={}, clocks=clocks)

    async def stop(self) -> None:
        """Stop it as SIGTERM does: the state file keeps what the last cycle committed."""
        if self._exporter is not None:
            await self._exporter.close()
            self._exporter = None

    async def cycle(self) -> bool:
        """One poll cycle; True when every request of it succeeded."""
        assert self._exporter is not None, "not started"
        return await self._exporter.poller.cycle()

    async def run_for(self, seconds: float) -> None:
        """The poll loop (`Poller.run`, its waits included) for `seconds` of the rig's
        time: it stops at the first wait that ends after them."""
        assert self._exporter is not None, "not started"
        self._run_until = self.now + seconds
        await self._exporter.poller.run(asyncio.Event())

    async def loop_wait(self, stop: asyncio.Event, seconds: float) -> None:
        """The poll loop's wait on the rig: time passes at once; `run_for` ends here."""
        self.advance(max(0.0, seconds))
        if self.on_wait is not None:
            self.on_wait()
        if self.now >= self._run_until:
            stop.set()
        await asyncio.sleep(0)

    async def cycles(self, count: int, every: float) -> None:
        """`count` cycles, `every` seconds apart (the clock moves before each)."""
        for _ in range(count):
            self.advance(every)
            await self.cycle()

    def metrics(self) -> Samples:
        """What a scrape of /metrics shows now (the last committed cycle)."""
        assert self._exporter is not None, "not started"
        return Samples(generate_latest(self._exporter.registry).decode())


@asynccontextmanager
async def open_rig(
    tmp_path: Path, *, start: float = START, state: Path | None = None, **settings: Any
) -> AsyncIterator[CycleRig]:
    """A started rig on `tmp_path/state.sqlite` (or `state`), with `settings` given by
    Settings field name (e.g. `runs_grace_period=5`, `enrich_steps=False`)."""
    rig = CycleRig(state or tmp_path / "state.sqlite", settings, start)
    router = respx.MockRouter(using="httpx", assert_all_called=False)
    router.route(url__startswith=BASE_URL).mock(side_effect=rig.letta.answer)
    with router:
        rig.start()
        try:
            yield rig
        finally:
            await rig.stop()
