"""`letta-exporter check`: one look at recent runs, for CI jobs and humans.

Lists the runs created in the last `--since`, prints them grouped by agent, status and
stop reason with duration and TTFT percentiles, and exits 1 if any of them failed (status
`failed`, or a failing stop reason such as `llm_api_error` on a run Letta marked
`completed`), 2 on bad usage or when Letta cannot be read, else 0. No state file is used.

With `--wait` it judges given runs (`--run`) or an agent's open runs instead, once they
have ended (`exporter.cli.check_wait`); a timeout, an unknown or a deleted run exit 2.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from exporter.cli.check_wait import UnknownRun, WaitResult, open_run_ids, wait_for_runs
from exporter.cli.client import client_from_settings
from exporter.cli.config import FLAGS, ConfigError, Settings, load_settings
from exporter.core.durations import parse_duration
from exporter.core.listing.walk import Walk
from exporter.letta.errors import LettaError
from exporter.letta.models import Run, is_failure, to_epoch_ns
from exporter.poll.pager import RunPager
from exporter.units import NS_PER_S

_MAX_PAGES: Final = 10_000  # 10M runs at 1000 a page: a window this big is a mistake
_CONNECTION_FIELDS: Final = frozenset(
    {
        "base_url",
        "api_key_file",
        "user_id",
        "project_id",
        "project",
        "letta_headers_file",
        "letta_timeout",
        "letta_retries",
        "letta_page_size",
        "letta_rate_limit",
        "letta_max_response_bytes",
    }
)
EXIT_OK: Final = 0
EXIT_FAILED_RUNS: Final = 1
EXIT_ERROR: Final = 2


@dataclass(frozen=True, slots=True)
class Group:
    """Runs of one (agent, status, stop_reason) in the window."""

    agent: str
    status: str
    stop_reason: str | None
    runs: int
    durations_s: tuple[float, ...]
    ttfts_s: tuple[float, ...]

    @property
    def failed(self) -> bool:
        return is_failure(self.status, self.stop_reason)


def build_parser() -> argparse.ArgumentParser:
    """`check`'s own flags plus the Letta connection flags of the exporter."""
    parser = argparse.ArgumentParser(
        prog="letta-exporter check",
        description="Summarise recent Letta runs; exit 1 if any failed, 2 on errors.",
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument("--since", help="window to look back (default 1h)")
    parser.add_argument(
        "--agent",
        action="append",
        dest="agents",
        help="only this agent id (repeatable); with --wait, wait for its open runs",
    )
    parser.add_argument(
        "--run", action="append", dest="run_ids", help="with --wait: this run id (repeatable)"
    )
    parser.add_argument(
        "--wait", action="store_true", help="wait until the runs have ended, then judge them"
    )
    parser.add_argument("--timeout", help="with --wait: give up (exit 2) after this (default 10m)")
    parser.add_argument("--output", choices=("table", "json"), default="table")
    for flag in FLAGS:
        if flag.field in _CONNECTION_FIELDS:
            parser.add_argument(flag.flag, dest=flag.field, help=f"{flag.help} (${flag.env})")
    return parser


def main(argv: Sequence[str]) -> int:
    """Entry point of `letta-exporter check`."""
    args = vars(build_parser().parse_args(argv))
    if args.get("wait") or "run_ids" in args or "timeout" in args:
        return _main_wait(args)
    since_raw = args.pop("since", "1h")
    agents = frozenset(args.pop("agents", None) or ())
    output = args.pop("output")
    try:
        since_s = float(parse_duration(since_raw))
        if not since_s > 0:
            raise ValueError(f"{since_raw!r} is not a positive duration")
        settings = load_settings(args)
    except (ValueError, ConfigError) as exc:
        print(f"letta-exporter check: {exc}", file=sys.stderr)
        return EXIT_ERROR
    try:
        runs = asyncio.run(fetch_runs(settings, since_s))
    except LettaError as exc:
        print(
            f"letta-exporter check: cannot read runs from {settings.display_url}: {exc}",
            file=sys.stderr,
        )
        return EXIT_ERROR
    groups = summarise([r for r in runs if not agents or r.agent_id in agents])
    if output == "json":
        print(json.dumps(as_json(groups, since_s), indent=2))
    else:
        print(as_table(groups, since_s))
    return EXIT_FAILED_RUNS if any(g.failed for g in groups) else EXIT_OK


async def fetch_runs(settings: Settings, since_s: float) -> list[Run]:
    """Every run created in the last `since_s` seconds, newest first (one walk)."""
    client = client_from_settings(settings)
    floor = int((time.time() - since_s) * NS_PER_S)
    walk = Walk(floor_ns=floor, count=True, first=True)
    pager = RunPager(client, on_lost_cursor=lambda: None)
    runs: list[Run] = []
    try:
        async for page in pager.pages(
            walk, page_size=settings.letta_page_size, max_pages=_MAX_PAGES, active=False
        ):
            runs.extend(page.fresh)
    finally:
        await client.aclose()
    return runs


def summarise(runs: Sequence[Run]) -> list[Group]:
    """Runs grouped by (agent, status, stop_reason), most runs first."""
    by_key: dict[tuple[str, str, str | None], list[Run]] = defaultdict(list)
    for run in runs:
        by_key[(run.agent_id, run.status, run.stop_reason)].append(run)
    groups = []
    for (agent, status, reason), members in by_key.items():
        durations = sorted(d for d in map(_duration_s, members) if d is not None)
        ttfts = sorted(
            r.ttft_ns / NS_PER_S for r in members if r.ttft_ns is not None and r.ttft_ns >= 0
        )
        groups.append(Group(agent, status, reason, len(members), tuple(durations), tuple(ttfts)))
    return sorted(groups, key=lambda g: (-g.runs, g.agent, g.status, g.stop_reason or ""))


def _duration_s(run: Run) -> float | None:
    # The exporter's rule: Letta's total_duration_ns, else completed_at - created_at.
    if run.total_duration_ns is not None and run.total_duration_ns >= 0:
        return run.total_duration_ns / NS_PER_S
    if run.completed_at is not None:
        seconds = (to_epoch_ns(run.completed_at) - run.created_ns) / NS_PER_S
        return seconds if seconds >= 0 else None
    return None


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (a value that occurred); None without values."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


_QUANTILES: Final = (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))


def as_json(groups: Sequence[Group], since_s: float) -> dict[str, Any]:
    """The machine-readable summary (`--output json`)."""
    return {"since_seconds": since_s, **_groups_json(groups)}


def _groups_json(groups: Sequence[Group]) -> dict[str, Any]:
    return {
        "runs": sum(g.runs for g in groups),
        "failed_runs": sum(g.runs for g in groups if g.failed),
        "groups": [
            {
                "agent": g.agent,
                "status": g.status,
                "stop_reason": g.stop_reason,
                "runs": g.runs,
                "failed": g.failed,
                "duration_seconds": {n: percentile(g.durations_s, q) for n, q in _QUANTILES},
                "ttft_seconds": {n: percentile(g.ttfts_s, q) for n, q in _QUANTILES},
            }
            for g in groups
        ],
    }


def _window(seconds: float) -> str:
    """1h, 1h30m, 30d, 90s: the form `--since` takes (`2.592e+06s` read badly)."""
    parts: list[str] = []
    rest = round(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, rest = divmod(rest, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or f"{seconds:g}s"


def as_table(groups: Sequence[Group], since_s: float) -> str:
    """The human-readable summary: one row per group, then a total line."""
    total = sum(g.runs for g in groups)
    failed = sum(g.runs for g in groups if g.failed)
    footer = f"{total} runs in the last {_window(since_s)}, {failed} failed"
    return "\n".join([*_group_lines(groups), footer])


def _group_lines(groups: Sequence[Group]) -> list[str]:
    header = ["AGENT", "STATUS", "STOP_REASON", "RUNS", "P50", "P95", "P99", "TTFT_P50", "TTFT_P95"]
    rows = [header]
    for g in groups:
        rows.append(
            [
                g.agent,
                g.status,
                g.stop_reason or "-",
                str(g.runs),
                *(_seconds(percentile(g.durations_s, q)) for _, q in _QUANTILES),
                _seconds(percentile(g.ttfts_s, 0.5)),
                _seconds(percentile(g.ttfts_s, 0.95)),
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"


DEFAULT_WAIT_TIMEOUT: Final = "10m"


def _main_wait(args: dict[str, Any]) -> int:
    """`check --wait`: wait until the runs have ended, then summarise them."""
    run_ids = list(args.pop("run_ids", None) or ())
    agents = list(dict.fromkeys(args.pop("agents", None) or ()))
    output = args.pop("output")
    timeout_raw = args.pop("timeout", DEFAULT_WAIT_TIMEOUT)
    try:
        if not args.pop("wait", False):
            raise ValueError("--run and --timeout go with --wait")
        if "since" in args:
            raise ValueError("--since judges a window; it does not go with --wait")
        if not run_ids and not agents:
            raise ValueError("--wait needs --run ID or --agent ID")
        try:
            timeout_s = float(parse_duration(timeout_raw))
        except ValueError as exc:
            raise ValueError(f"invalid --timeout: {exc}") from None
        if not timeout_s > 0:
            raise ValueError(f"invalid --timeout: {timeout_raw!r} is not a positive duration")
        settings = load_settings(args)
    except (ValueError, ConfigError) as exc:
        _error(str(exc))
        return EXIT_ERROR
    try:
        result = asyncio.run(_wait(settings, run_ids, agents, timeout_s))
    except UnknownRun as exc:
        _error(f"run {exc.run_id} does not exist on {settings.display_url}")
        return EXIT_ERROR
    except LettaError as exc:
        _error(f"cannot read runs from {settings.display_url}: {exc}")
        return EXIT_ERROR
    except KeyboardInterrupt:
        _error("interrupted before the runs ended")
        return EXIT_ERROR
    groups = summarise(result.runs)
    if output == "json":
        print(json.dumps(wait_json(result, groups), indent=2))
    else:
        print(wait_table(result, groups))
    if result.timed_out:
        still = ", ".join(run.id for run in result.still_open)
        _error(f"gave up after {_window(timeout_s)} (--timeout); still open: {still}")
    if result.timed_out or result.deleted:
        return EXIT_ERROR
    return EXIT_FAILED_RUNS if any(g.failed for g in groups) else EXIT_OK


async def _wait(
    settings: Settings, run_ids: Sequence[str], agents: Sequence[str], timeout_s: float
) -> WaitResult:
    client = client_from_settings(settings)
    try:
        wanted = list(run_ids)
        if agents:
            opened = await open_run_ids(client, frozenset(agents), settings.letta_page_size)
            if not opened:
                _progress(f"no open runs of {', '.join(agents)}")
            wanted.extend(opened)
        return await wait_for_runs(client, wanted, timeout_s=timeout_s, report=_progress)
    finally:
        await client.aclose()


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _error(sentence: str) -> None:
    print(f"letta-exporter check: {sentence}", file=sys.stderr, flush=True)


def wait_json(result: WaitResult, groups: Sequence[Group]) -> dict[str, Any]:
    """The machine-readable summary of `--wait`: groups as usual, plus each run's end."""
    return {
        "timed_out": result.timed_out,
        "still_open": [run.id for run in result.still_open],
        "deleted": list(result.deleted),
        **_groups_json(groups),
        "waited_runs": [
            {
                "id": run.id,
                "agent": run.agent_id,
                "status": run.status,
                "stop_reason": run.stop_reason,
                "ended": run.is_terminal,
                "failed": is_failure(run.status, run.stop_reason),
                "duration_seconds": _duration_s(run),
            }
            for run in result.runs
        ],
    }


def wait_table(result: WaitResult, groups: Sequence[Group]) -> str:
    """The usual table of the runs waited for, then what became of them."""
    total = sum(g.runs for g in groups) + len(result.deleted)
    failed = sum(g.runs for g in groups if g.failed)
    footer = f"{total} runs waited for, {failed} failed"
    if result.still_open:
        footer += f", {len(result.still_open)} still open"
    if result.deleted:
        footer += f", {len(result.deleted)} deleted"
    return "\n".join([*_group_lines(groups), footer])
