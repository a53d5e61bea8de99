"""`letta-exporter check --wait`: wait until named runs, or an agent's open runs, have ended.

Each run still open is read with `GET /v1/runs/{id}` once a round. The pause between
rounds grows from half a second to a few seconds, and every request passes the client's
rate cap (`--letta.rate-limit`), so a long wait stays gentle on Letta. Rendering the
result and choosing the exit code is `exporter.cli.check`'s job.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Final

from exporter.core.listing.walk import Walk
from exporter.letta.client import LettaClient
from exporter.letta.errors import LettaNotFound, LettaUnavailable
from exporter.letta.models import Run, to_epoch_ns
from exporter.poll.pager import RunPager
from exporter.units import NS_PER_S

FIRST_PAUSE_S: Final = 0.5
MAX_PAUSE_S: Final = 5.0
_PAUSE_GROWTH: Final = 1.5
# With nothing changing, the "still waiting" line repeats this often (CI logs stay short).
_HEARTBEAT_S: Final = 30.0
_MAX_ACTIVE_PAGES: Final = 1000

Report = Callable[[str], None]


class UnknownRun(Exception):
    """A run named with `--run` does not exist (a typo, or another server)."""

    def __init__(self, run_id: str) -> None:
        super().__init__(run_id)
        self.run_id = run_id


@dataclass(frozen=True, slots=True)
class WaitResult:
    """How the wait ended: the last state of every run, and which could not be judged."""

    runs: tuple[Run, ...]
    """Last state seen of each run still there, ended or (after a timeout) open."""
    deleted: tuple[str, ...]
    """Runs that vanished while waited for: their outcome is unknown."""
    timed_out: bool

    @property
    def still_open(self) -> tuple[Run, ...]:
        """Runs that had not ended when the wait gave up."""
        return tuple(run for run in self.runs if not run.is_terminal)


def pauses() -> Iterator[float]:
    """Seconds to pause before each next round: 0.5, 0.75, 1.1, … then 5 for good."""
    pause = FIRST_PAUSE_S
    while True:
        yield pause
        pause = min(MAX_PAUSE_S, pause * _PAUSE_GROWTH)


async def open_run_ids(client: LettaClient, agents: Collection[str], page_size: int) -> list[str]:
    """Ids of the runs of `agents` open now (`created` or `running`), newest first."""
    walk = Walk(floor_ns=0)
    pager = RunPager(client, on_lost_cursor=lambda: None)
    found: list[str] = []
    async for page in pager.pages(
        walk, page_size=page_size, max_pages=_MAX_ACTIVE_PAGES, active=True
    ):
        found.extend(run.id for run in page.fresh if run.agent_id in agents)
    return found


async def wait_for_runs(
    client: LettaClient,
    run_ids: Sequence[str],
    *,
    timeout_s: float,
    report: Report,
    clock: Callable[[], float] = time.monotonic,
) -> WaitResult:
    """Poll each run until all have ended, were deleted, or `timeout_s` ran out.

    Raises `UnknownRun` when a run does not exist at the first look, and `LettaError`
    when Letta cannot be read then; later transient failures are reported and retried.
    """
    deadline = clock() + timeout_s
    latest: dict[str, Run] = {}
    for run_id in dict.fromkeys(run_ids):
        try:
            latest[run_id] = await client.get_run(run_id)
        except LettaNotFound:
            raise UnknownRun(run_id) from None
    deleted: list[str] = []
    waiting = [run_id for run_id, run in latest.items() if not run.is_terminal]
    if waiting:
        report(_waiting_line(waiting, latest, deadline - clock()))
    next_heartbeat = clock() + _HEARTBEAT_S
    pause = pauses()
    while waiting:
        left = deadline - clock()
        if left <= 0:
            return WaitResult(tuple(latest.values()), tuple(deleted), timed_out=True)
        await asyncio.sleep(min(next(pause), left))
        still: list[str] = []
        for run_id in waiting:
            try:
                run = await client.get_run(run_id)
            except LettaNotFound:
                del latest[run_id]
                deleted.append(run_id)
                report(f"{run_id} was deleted while waited for: its outcome is unknown")
                continue
            except LettaUnavailable as exc:
                report(f"cannot read {run_id} now ({exc}); trying again")
                still.append(run_id)
                continue
            latest[run_id] = run
            if run.is_terminal:
                report(_ended_line(run))
            else:
                still.append(run_id)
        if still and (still != waiting or clock() >= next_heartbeat):
            report(_waiting_line(still, latest, deadline - clock()))
            next_heartbeat = clock() + _HEARTBEAT_S
        waiting = still
    return WaitResult(tuple(latest.values()), tuple(deleted), timed_out=False)


def _waiting_line(waiting: Sequence[str], latest: dict[str, Run], left_s: float) -> str:
    now_ns = time.time_ns()
    states = ", ".join(
        f"{run_id} {latest[run_id].status} for {_span(now_ns - latest[run_id].created_ns)}"
        for run_id in waiting
    )
    plural = "run" if len(waiting) == 1 else "runs"
    return f"waiting for {len(waiting)} {plural} (gives up in {_span(left_s * NS_PER_S)}): {states}"


def _ended_line(run: Run) -> str:
    reason = f" ({run.stop_reason})" if run.stop_reason else ""
    took = ""
    if run.completed_at is not None:
        took = f" after {_span(to_epoch_ns(run.completed_at) - run.created_ns)}"
    return f"{run.id} ended: {run.status}{reason}{took}"


def _span(ns: float) -> str:
    """12s, 3m05s, 1h02m: how long, to the second (clock skew never shows as negative)."""
    seconds = max(0, round(ns / NS_PER_S))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"
