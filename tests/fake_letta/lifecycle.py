"""The life of a run as RunManager writes it: create, update, commit, callback, delete."""

from __future__ import annotations

import operator
import uuid
from collections.abc import Mapping
from types import EllipsisType
from typing import Any

from tests.fake_letta.constants import TERMINAL_STATUSES, Timestamp
from tests.fake_letta.model import Run
from tests.fake_letta.shapes import AGENT_TEMPLATE
from tests.fake_letta.store import RunStore
from tests.fake_letta.wire import dumps, fmt_us, new_id, to_us


class RunLifecycle(RunStore):
    """Control API: runs and agents come and go."""

    def create_run(
        self,
        agent_id: str | None = None,
        *,
        status: str = "created",
        created_at: Timestamp | None = None,
        background: bool = False,
        run_type: str = "send_message",
        conversation_id: str | None = None,
        callback_url: str | None = None,
        visible: bool = True,
        run_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        has_metrics: bool = True,
        project_id: str | None = None,
    ) -> str:
        """Insert a run, as ``RunManager.create_run`` does, and return its ``run-<uuid4>`` id.

        Args:
            agent_id: owner; a fresh ``agent-<uuid4>`` if omitted.
            status: initial status; a terminal one is applied like a first terminal
                ``update_run`` (sets ``completed_at`` and ``run_ns``).
            created_at: the sort key; defaults to the clock. It never changes later.
            run_type: ``metadata.run_type``. ``send_message_async`` also gets
                ``"lettuce": null`` like the real async path.
            visible: ``False`` models a late commit: the run is invisible everywhere
                (lists, cursors, 404 on GET) until :meth:`commit`, and keeps its old
                ``created_at``.
            metadata: extra keys merged over ``{"run_type": ...}``.
            has_metrics: ``False`` models a run older than the ``run_metrics`` table
                (``/metrics`` is 404 and the list's ``total_duration_ns`` stays null).
            project_id: the Cloud project the run's agent belongs to (cloud profile).
        """
        now = self._clock()
        with self._lock:
            rid = run_id or new_id("run")
            if rid in self._runs:
                raise ValueError(f"duplicate run id {rid}")
            run = Run()
            run.sid = rid
            run.us = to_us(created_at) if created_at is not None else to_us(now)
            run.seq = next(self._seq)
            run.agent_id = agent_id or new_id("agent")
            run.status = "created" if status in TERMINAL_STATUSES else status
            run.stop_reason = None
            run.background = background
            run.conversation_id = conversation_id
            run.completed_us = None
            meta: dict[str, Any] = {"run_type": run_type}
            if run_type == "send_message_async":
                meta["lettuce"] = None
            if metadata:
                meta.update(metadata)
            run.metadata = meta
            run.meta_json = dumps(meta)
            run.callback_url = callback_url
            run.callback_sent_us = None
            run.callback_status_code = None
            run.callback_error = None
            run.visible = visible
            run.has_metrics = has_metrics
            run.run_start_ns = run.us * 1000
            run.m_run_ns = None
            run.m_num_steps = 0
            run.m_tools = None
            run.pending = []
            run.steps = []
            run.lazy_steps = None
            run.trace = None
            run.j_get = None
            run.j_list = None
            self._runs[rid] = run
            if project_id is not None:
                self._run_projects[rid] = project_id
            if visible:
                self._insert_row(run)
            if status in TERMINAL_STATUSES:
                self._update_locked(run, now, status=status)
            return rid

    def commit(self, run_id: str) -> None:
        """Make a ``visible=False`` run visible (it keeps its original ``created_at``)."""
        with self._lock:
            run = self._run_or_raise(run_id)
            if not run.visible:
                run.visible = True
                self._insert_row(run)

    def update_run(
        self,
        run_id: str,
        *,
        status: str,
        stop_reason: str | None | EllipsisType = ...,
        completed_at: Timestamp | None = None,
        run_ns: int | None = None,
        metrics_delay: float = 0.0,
        error: str | Mapping[str, Any] | None = None,
        without_completed_at: bool = False,
    ) -> None:
        """Apply ``RunManager.update_run_by_id_async`` semantics (§5.1).

        Any status/stop-reason string is accepted (no transition is rejected, unknown
        values such as ``"paused"`` included). On a terminal status (completed, failed,
        cancelled): ``completed_at`` is set only if still empty (from the clock unless
        given), and ``run_ns`` is recomputed every time (default: clock − created_at).
        Every update also refreshes ``num_steps`` (capped at 50) and ``tools_used``; that
        metrics transaction becomes visible ``metrics_delay`` seconds later, which is
        when the list starts showing ``total_duration_ns``.

        Args:
            stop_reason: ``...`` (default) leaves it unchanged; ``None`` clears it.
            error: merged into ``metadata["error"]`` (a string or an error object).
            without_completed_at: a terminal write that leaves ``completed_at`` null,
                which 0.16.8 never does but users report (letta issue 3109).
        """
        now = self._clock()
        with self._lock:
            run = self._run_or_raise(run_id)
            self._update_locked(
                run,
                now,
                status=status,
                stop_reason=stop_reason,
                completed_at=completed_at,
                run_ns=run_ns,
                metrics_delay=metrics_delay,
                error=error,
                without_completed_at=without_completed_at,
            )

    def _update_locked(
        self,
        run: Run,
        now: float,
        *,
        status: str,
        stop_reason: str | None | EllipsisType = ...,
        completed_at: Timestamp | None = None,
        run_ns: int | None = None,
        metrics_delay: float = 0.0,
        error: str | Mapping[str, Any] | None = None,
        without_completed_at: bool = False,
    ) -> None:
        old_status = run.status
        run.status = status
        if stop_reason is not ...:
            run.stop_reason = stop_reason
        terminal = status in TERMINAL_STATUSES
        if terminal and run.completed_us is None and not without_completed_at:
            run.completed_us = to_us(completed_at) if completed_at is not None else to_us(now)
        if error is not None:
            if run.metadata is self._bulk_meta:
                run.metadata = dict(run.metadata)  # copy-on-write for bulk runs
            run.metadata["error"] = dict(error) if isinstance(error, Mapping) else error
            run.meta_json = dumps(run.metadata)
        if old_status != status and run.visible:
            self._reindex(run, "status", self._by_status, old_status)
        # The separate run_metrics transaction (§5.1): run_ns only on terminal writes.
        if terminal:
            new_run_ns = run_ns if run_ns is not None else (to_us(now) - run.us) * 1000
        else:
            new_run_ns = None
        num_steps, tools = self._step_summary(run)
        run.pending.append((now + metrics_delay, terminal, new_run_ns, num_steps, tools))
        run.pending.sort(key=operator.itemgetter(0))
        self._promote(run, now)
        run.j_get = run.j_list = None

    def set_callback(
        self,
        run_id: str,
        status_code: int | None = None,
        error: str | None = None,
        *,
        sent_at: Timestamp | None = None,
    ) -> None:
        """Record the async callback attempt: fills ``callback_sent_at`` (clock unless
        given), ``callback_status_code`` and ``callback_error``."""
        now = self._clock()
        with self._lock:
            run = self._run_or_raise(run_id)
            run.callback_sent_us = to_us(sent_at) if sent_at is not None else to_us(now)
            run.callback_status_code = status_code
            run.callback_error = error
            run.j_get = run.j_list = None

    def delete_run(self, run_id: str) -> bool:
        """Hard-delete one run with its steps and metrics. Returns False if unknown."""
        with self._lock:
            run = self._runs.get(run_id)
            if run is None:
                return False
            self._delete_locked(run)
            return True

    def add_agent(self, name: str, *, agent_id: str | None = None) -> str:
        """Create an agent for ``GET /v1/agents/`` (shaped on ``agents/alpha.json``) and
        return its id. Runs need no agent: this only gives an id a name in the list."""
        agent_id = agent_id or f"agent-{uuid.uuid4()}"
        with self._lock:
            created_us = int(self._clock() * 1_000_000)
            body = dict(AGENT_TEMPLATE, id=agent_id, name=name)
            body["created_at"] = fmt_us(created_us, zulu=self._zulu)
            self._agents[agent_id] = (created_us, body)
        return agent_id

    def delete_agent(self, agent_id: str) -> int:
        """Delete an agent: its runs (visible or not), steps and metrics vanish by
        cascade (§3.9), and so do raw items carrying that ``agent_id``. Returns the
        number of runs removed."""
        with self._lock:
            self._agents.pop(agent_id, None)
            victims = [run for run in self._runs.values() if run.agent_id == agent_id]
            for run in victims:
                self._delete_locked(run)
            for raw in [r for r in self._raw.values() if r.agent_id == agent_id]:
                self._remove_raw_locked(raw)
            return len(victims)
