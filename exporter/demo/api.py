"""The routes of Letta 0.16.8 that an exporter reads, answered from a `World`.

Cursors are those of 0.16.8: in the runs list `before` lists older runs and `after`
newer ones in either order; the steps, messages and agents lists page with `after`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Final
from urllib.parse import parse_qs

from exporter.demo import shapes
from exporter.demo.world import SimRun, World

Answer = tuple[int, bytes]
DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 1000
_FILTERS: Final = ("agent_id", "conversation_id", "stop_reason", "background")


def _not_found(what: str) -> Answer:
    return 404, shapes.encode({"detail": f"{what} not found"})


def _bad(message: str) -> Answer:
    return 422, shapes.encode({"detail": message})


class LettaApi:
    """Answers one GET (path and query string) as Letta would at that moment."""

    def __init__(self, world: World, clock: Callable[[], int] = time.time_ns) -> None:
        self._world = world
        self._clock = clock

    def get(self, path: str, query: str) -> Answer:
        now = self._clock()
        runs = self._world.advance(now)
        params = parse_qs(query, keep_blank_values=True)
        if path in ("/v1/health/", "/v1/health"):
            return 200, shapes.encode(shapes.HEALTH)
        if path == "/v1/runs/":
            return self._list_runs(runs, params, now)
        if path == "/v1/agents/":
            return self._list_agents(params)
        if path.startswith("/v1/tools/"):
            tool = self._world.tools.get(path.removeprefix("/v1/tools/"))
            return (200, shapes.encode(shapes.tool_body(tool))) if tool else _not_found("Tool")
        if path.startswith("/v1/runs/"):
            run_id, _, part = path.removeprefix("/v1/runs/").partition("/")
            run = next((r for r in reversed(runs) if r.id == run_id), None)
            if run is None:
                return _not_found(f"Run with id={run_id}")
            return self._run_part(run, part, params, now)
        return _not_found("Route")

    def _list_runs(self, runs: list[SimRun], params: dict[str, list[str]], now: int) -> Answer:
        try:
            limit = int(params.get("limit", [str(DEFAULT_LIMIT)])[0])
        except ValueError:
            return _bad("limit: Input should be a valid integer")
        if not 1 <= limit <= MAX_LIMIT:
            return _bad(f"limit: must be between 1 and {MAX_LIMIT}")
        selected = [r for r in runs if _matches(r, params, now)]
        for param, older in (("before", True), ("after", False)):
            if param in params:
                cursor = _find(runs, params[param][0])
                if cursor is None:
                    selected = []  # an unknown cursor: nothing before or after it
                    continue
                key = (cursor.created_ns, cursor.id)
                selected = [
                    r for r in selected if ((r.created_ns, r.id) < key) == older and r is not cursor
                ]
        descending = params.get("order", ["desc"])[0] != "asc"
        selected.sort(key=lambda r: (r.created_ns, r.id), reverse=descending)
        body = [shapes.run_body(r, now, listed=True) for r in selected[:limit]]
        return 200, shapes.encode(body)

    def _run_part(self, run: SimRun, part: str, params: dict[str, list[str]], now: int) -> Answer:
        if part == "":
            return 200, shapes.encode(shapes.run_body(run, now, listed=False))
        if part == "trace":
            return 501, shapes.encode(shapes.TRACE_NOT_SERVED)
        done = run.finished(now)
        if part == "steps":
            steps = [shapes.step_body(run, s) for s in run.steps] if done else []
            return 200, shapes.encode(_page(steps, params))
        if part == "messages":
            return 200, shapes.encode(_page(shapes.messages_body(run) if done else [], params))
        if part == "usage":
            usage = shapes.usage_body(run)
            if not done:
                usage = {k: 0 if v is not None else None for k, v in usage.items()}
            return 200, shapes.encode(usage)
        if part == "metrics":
            if not done:
                return _not_found(f"Run metrics for run {run.id}")
            return 200, shapes.encode(shapes.metrics_body(run))
        return _not_found("Route")

    def _list_agents(self, params: dict[str, list[str]]) -> Answer:
        agents = [shapes.agent_body(a) for a in self._world.agents]
        return 200, shapes.encode(_page(agents, params))


def _find(runs: Sequence[SimRun], run_id: str) -> SimRun | None:
    return next((r for r in runs if r.id == run_id), None)


def _matches(run: SimRun, params: dict[str, list[str]], now: int) -> bool:
    status = run.status(now)
    if params.get("active", ["false"])[0] == "true" and status not in ("created", "running"):
        return False
    if "statuses" in params and status not in params["statuses"]:
        return False
    done = run.finished(now)
    values = {
        "agent_id": run.agent.id,
        "conversation_id": "",
        "stop_reason": run.stop_reason if done else "",
        "background": str(run.background).lower(),
    }
    return all(values[name] == params[name][0] for name in _FILTERS if name in params)


def _page(items: list[dict[str, Any]], params: dict[str, list[str]]) -> list[dict[str, Any]]:
    """One page of an id-cursor list in its natural (ascending) order: `after`, `limit`."""
    if params.get("order", ["asc"])[0] == "desc":
        items = items[::-1]
    if "after" in params:
        ids = [item["id"] for item in items]
        after = params["after"][0]
        items = items[ids.index(after) + 1 :] if after in ids else []
    limit = int(params.get("limit", [str(DEFAULT_LIMIT)])[0] or DEFAULT_LIMIT)
    return items[:limit]
