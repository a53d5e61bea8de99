"""The runs routes: the list, the active runs, one run and its usage, metrics and trace."""

from __future__ import annotations

from typing import Final

from tests.fake_letta.constants import (
    ACTIVE_ENDPOINT_LIMIT,
    ACTIVE_STATUSES,
    RUN_STATUSES,
    STOP_REASONS,
    USAGE_STEP_WINDOW,
)
from tests.fake_letta.cursors import RunListing
from tests.fake_letta.model import lazy_tokens
from tests.fake_letta.query import Query
from tests.fake_letta.responses import (
    Response,
    check_run_id,
    detail_response,
    json_response,
    not_found,
)
from tests.fake_letta.shapes import metrics_dict

_TRACE_501_DETAIL: Final = (
    "OTEL traces require ClickHouse. Set LETTA_CLICKHOUSE_ENDPOINT and configure "
    "ClickHouse connection."
)


class RunRoutes(RunListing):
    """Handlers of ``/v1/runs/``, ``/v1/runs/active`` and ``/v1/runs/{id}[/...]``."""

    def _route_run(self, route: str, method: str, run_id: str, q: Query) -> Response:
        """``/v1/runs/{id}`` and its ``trace``, ``usage`` and ``metrics`` sub-routes."""
        if route == "trace":
            limit = q.get_int("limit", 1000, ge=1, le=5000)
            q.raise_if_invalid()
            check_run_id(run_id)
            with self._lock:
                run = self._visible_run(run_id)
                rows = run.trace if run is not None else None
                if rows is None:
                    # No ClickHouse configured: 501 before any lookup (errors/run_trace_unknown).
                    return detail_response(501, _TRACE_501_DETAIL)
                return json_response(200, rows[:limit])
        if route == "metrics" and not self.serves_run_metrics:
            return detail_response(404, "Not Found")  # no such route: the router's own 404
        check_run_id(run_id)
        now = self._clock()
        with self._lock:
            if route == "run" and method == "DELETE":
                self._run_for_route(run_id)
                # 0.16.8 calls a RunManager method that does not exist (§3.9).
                return detail_response(500, "An unknown error occurred")
            if route == "run":
                run = self._run_for_route(run_id)
                if run.pending:
                    self._promote(run, now)
                return Response(200, self._get_bytes(run))
            if route == "usage":
                run = self._run_for_route(run_id)
                if run.lazy_steps is not None:  # bulk run: no need to build its Steps
                    pairs = lazy_tokens(run.lazy_steps)[-USAGE_STEP_WINDOW:]
                    prompt = sum(p for p, _ in pairs)
                    completion = sum(c for _, c in pairs)
                    total = prompt + completion
                else:
                    window = run.steps[-USAGE_STEP_WINDOW:]  # newest 50 only (§3.5)
                    prompt = sum(s.data["prompt_tokens"] for s in window)
                    completion = sum(s.data["completion_tokens"] for s in window)
                    total = sum(s.data["total_tokens"] for s in window)
                return json_response(
                    200,
                    {
                        "completion_tokens": completion,
                        "prompt_tokens": prompt,
                        "total_tokens": total,
                        "prompt_tokens_details": None,
                        "completion_tokens_details": None,
                    },
                )
            if route == "metrics":
                maybe_run = self._visible_run(run_id)
                if maybe_run is None or not maybe_run.has_metrics:
                    return not_found("RunMetrics", run_id)
                if maybe_run.pending:
                    self._promote(maybe_run, now)
                return json_response(
                    200, metrics_dict(maybe_run, self._run_projects.get(maybe_run.sid))
                )
        raise AssertionError(f"unrouted {route}")

    def _route_list(self, q: Query) -> Response:
        agent_id = q.get_str("agent_id")
        agent_ids = q.get_list("agent_ids")
        statuses = q.get_list("statuses")
        background = q.get_bool("background", None)
        stop_reason = q.get_choice("stop_reason", STOP_REASONS, None, enum=True)
        conversation_id = q.get_str("conversation_id")
        before = q.get_str("before")
        after = q.get_str("after")
        limit = q.get_int("limit", 100, ge=1, le=1000)
        order = q.get_choice("order", ("asc", "desc"), "desc")
        q.get_choice("order_by", ("created_at",), "created_at")
        active = q.get_bool("active", False)
        ascending_flag = q.get_bool("ascending", False)
        q.raise_if_invalid()
        if statuses is not None:
            for value in statuses:
                if value not in RUN_STATUSES:  # RunStatus(value) raising ValueError -> 400
                    return detail_response(400, f"{value!r} is not a valid RunStatus")
        elif active:
            statuses = list(ACTIVE_STATUSES)  # active only applies without statuses
        ascending = True if ascending_flag else order == "asc"  # ascending overrides order
        if agent_id:
            agent_ids = [agent_id]  # agent_id replaces agent_ids
        now = self._clock()
        with self._lock:
            parts = self._list_locked(
                agent_ids=agent_ids,
                statuses=statuses,
                background=background,
                stop_reason=stop_reason,
                conversation_id=conversation_id,
                before=before,
                after=after,
                limit=min(limit, 1000),
                ascending=ascending,
                now=now,
            )
        return Response(200, b"[" + b",".join(parts) + b"]")

    def _route_active(self, q: Query) -> Response:
        agent_id = q.get_str("agent_id")
        background = q.get_bool("background", None)
        q.raise_if_invalid()
        now = self._clock()
        with self._lock:
            parts = self._list_locked(
                agent_ids=[agent_id] if agent_id else None,
                statuses=list(ACTIVE_STATUSES),
                background=background,
                stop_reason=None,
                conversation_id=None,
                before=None,
                after=None,
                limit=ACTIVE_ENDPOINT_LIMIT,
                ascending=False,
                now=now,
            )
        return Response(200, b"[" + b",".join(parts) + b"]")
