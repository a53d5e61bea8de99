"""The run store: the sorted runs table, its indexes, and what every part reads from it."""

from __future__ import annotations

import bisect
import itertools
import threading
from collections.abc import Callable, Iterator
from typing import Any

from tests.fake_letta.constants import (
    BULK_MODEL,
    TERMINAL_STATUSES,
    USAGE_STEP_WINDOW,
    Backend,
    Semantics,
    UnknownCursor,
)
from tests.fake_letta.model import (
    RawItem,
    Row,
    Run,
    Step,
    Timings,
    bucket,
    lazy_tokens,
    remove_sorted,
    row_key,
)
from tests.fake_letta.responses import RouteError, not_found
from tests.fake_letta.shapes import encode_run, step_dict
from tests.fake_letta.wire import dumps, new_id


class RunStore:
    """The in-memory tables behind the fake and the lock that guards them.

    The control API, the truths and the routes (mixins over this class) all read and
    write these tables; methods ending in ``_locked`` expect the caller to hold the lock.
    """

    # The server profile, set by FakeLetta and read by the listing and the routes.
    semantics: Semantics
    unknown_cursor: UnknownCursor
    password: str | None
    require_user_id: bool
    honour_project_header: bool
    serves_run_metrics: bool
    serves_messages_list: bool
    serves_steps_list: bool

    def __init__(self, *, backend: Backend, clock: Callable[[], float], cloud: bool) -> None:
        self.backend: Backend = backend
        self.cloud = cloud
        self._clock: Callable[[], float] = clock
        # Aware created_at serialises with "Z" on Postgres; SQLite hands back naive values.
        self._zulu = backend == "postgres"
        self._lock = threading.Lock()
        self._seq = itertools.count()
        self._runs: dict[str, Run] = {}  # every run, visible or not
        self._rows: list[Row] = []  # visible runs + raw items, sorted by row_key
        self._by_status: dict[Any, list[Row]] = {}
        self._by_agent: dict[Any, list[Row]] = {}
        self._raw: dict[str, RawItem] = {}  # handle -> raw item
        self._raw_by_id: dict[str, RawItem] = {}  # raw items with a string "id" (cursorable)
        self._steps_by_id: dict[str, tuple[Run, Step]] = {}
        self._tools: dict[str, dict[str, Any]] = {}  # tool id -> Tool JSON (org-wide)
        self._agents: dict[str, tuple[int, dict[str, Any]]] = {}  # id -> (created us, JSON)
        self._run_projects: dict[str, str] = {}  # run id -> project id (cloud profile)
        self._scope = threading.local()  # the X-Project-Id of the request being served
        self._requests: list[tuple[str, str, dict[str, list[str]], int]] = []
        self._project_headers: list[str | None] = []
        # Bulk-loaded runs share one metadata dict (copied before any write) and its JSON.
        self._bulk_meta: dict[str, Any] = {"run_type": "send_message"}
        self._bulk_meta_json = dumps(self._bulk_meta)
        # (agent_id, conversation_id or "") -> the run waiting for approval there.
        self._pending_approvals: dict[tuple[str, str], str] = {}
        # Threads whose request Letta keeps pending after its run was cancelled (letta
        # issue 3176): thread -> the cancelled run.
        self._orphaned_approvals: dict[tuple[str, str], str] = {}

    def _run_or_raise(self, run_id: str) -> Run:
        run = self._runs.get(run_id)
        if run is None:
            raise KeyError(run_id)
        return run

    def _insert_row(self, row: Row) -> None:
        bisect.insort(self._rows, row, key=row_key)
        bisect.insort(self._by_status.setdefault(bucket(row.status), []), row, key=row_key)
        bisect.insort(self._by_agent.setdefault(bucket(row.agent_id), []), row, key=row_key)

    def _remove_row(self, row: Row) -> None:
        remove_sorted(self._rows, row)
        remove_sorted(self._by_status[bucket(row.status)], row)
        remove_sorted(self._by_agent[bucket(row.agent_id)], row)

    def _reindex(self, row: Row, field: str, index: dict[Any, list[Row]], old: Any) -> None:
        remove_sorted(index[bucket(old)], row)
        bisect.insort(index.setdefault(bucket(getattr(row, field)), []), row, key=row_key)

    def _rebuild_indexes(self) -> None:
        by_status: dict[Any, list[Row]] = {}
        by_agent: dict[Any, list[Row]] = {}
        for row in self._rows:  # already sorted, so every bucket comes out sorted too
            by_status.setdefault(bucket(row.status), []).append(row)
            by_agent.setdefault(bucket(row.agent_id), []).append(row)
        self._by_status = by_status
        self._by_agent = by_agent

    def _step_summary(self, run: Run) -> tuple[int, list[str] | None]:
        """num_steps and tools_used as the metrics refresh computes them: over the (at
        most) 50 newest steps."""
        if run.lazy_steps is not None:
            return min(run.lazy_steps[0], USAGE_STEP_WINDOW), None
        window = run.steps[-USAGE_STEP_WINDOW:]
        tools: list[str] = []
        for step in window:
            for tool_id in step.tool_ids:
                if tool_id not in tools:
                    tools.append(tool_id)
        return len(window), tools or None

    def _promote(self, run: Run, now: float) -> None:
        """Apply the metrics transactions whose commit time has come."""
        changed = False
        while run.pending and run.pending[0][0] <= now:
            _, terminal, run_ns, num_steps, tools = run.pending.pop(0)
            if terminal:
                run.m_run_ns = run_ns
            run.m_num_steps = num_steps
            run.m_tools = tools
            changed = True
        if changed:
            run.j_list = None

    def _materialise_lazy_steps(self, run: Run) -> None:
        if run.lazy_steps is None:
            return
        spec = run.lazy_steps
        run.lazy_steps = None
        step_ns = spec[3]
        # Shares of the step's time, so that llm + tool <= step as in a real step.
        timings: Timings = (step_ns * 3 // 4, step_ns // 8, step_ns)
        last = spec[0] - 1
        for index, (prompt, completion) in enumerate(lazy_tokens(spec)):
            sid = new_id("step")
            data = step_dict(
                sid,
                run,
                model=BULK_MODEL,
                prompt_tokens=prompt,
                completion_tokens=completion,
                cached_input_tokens=None,
                cache_write_tokens=None,
                reasoning_tokens=None,
                status="success",
                stop_reason=run.stop_reason if index == last else None,
                trace_id=None,
            )
            step = Step(
                us=run.us + 1000 * (index + 1),
                seq=next(self._seq),
                data=data,
                tool_ids=(),
                timings=timings,
                bulk=True,
            )
            run.steps.append(step)
            self._steps_by_id[sid] = (run, step)

    def _get_bytes(self, run: Run) -> bytes:
        # GET /v1/runs/{id} never fills total_duration_ns in 0.16.8 (§3.3).
        if run.j_get is None:
            run.j_get = encode_run(run, None, zulu=self._zulu)
        return run.j_get

    def _list_bytes(self, run: Run, now: float) -> bytes:
        if run.pending:
            self._promote(run, now)
        if run.j_list is None:
            duration = run.m_run_ns if run.has_metrics else None
            run.j_list = encode_run(run, duration, zulu=self._zulu)
        return run.j_list

    def _row_bytes(self, row: Row, now: float) -> bytes:
        if isinstance(row, Run):
            return self._list_bytes(row, now)
        assert isinstance(row, RawItem)
        return row.body

    def _delete_locked(self, run: Run) -> None:
        if run.visible:
            self._remove_row(run)
        for step in run.steps:
            self._steps_by_id.pop(step.data["id"], None)
        self._run_projects.pop(run.sid, None)
        del self._runs[run.sid]

    def _remove_raw_locked(self, raw: RawItem) -> None:
        self._remove_row(raw)
        del self._raw[raw.handle]
        if self._raw_by_id.get(raw.sid) is raw:
            del self._raw_by_id[raw.sid]

    def _finished_locked(self, project_id: str | None = None) -> Iterator[Run]:
        """Visible runs that are terminal, or were once (``completed_at`` is set)."""
        for run in self._runs.values():
            if project_id is not None and self._run_projects.get(run.sid) != project_id:
                continue
            if run.visible and (run.status in TERMINAL_STATUSES or run.completed_us is not None):
                yield run

    def _request_project(self) -> str | None:
        """The project the request being served is scoped to (cloud profile), else None."""
        return getattr(self._scope, "project", None) if self.cloud else None

    def _in_scope(self, run: Run) -> bool:
        scope = self._request_project()
        return scope is None or self._run_projects.get(run.sid) == scope

    def _visible_run(self, run_id: str) -> Run | None:
        run = self._runs.get(run_id)
        return run if run is not None and run.visible and self._in_scope(run) else None

    def _run_for_route(self, run_id: str) -> Run:
        run = self._visible_run(run_id)
        if run is None:
            raise RouteError(not_found("Run", run_id))
        return run
