"""Ground truth for tests: what a perfect exporter would have counted."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any, Final

from tests.fake_letta.constants import BULK_MODEL
from tests.fake_letta.model import Run, lazy_totals, step_model
from tests.fake_letta.shapes import tool_messages
from tests.fake_letta.store import RunStore

_TOKEN_TYPES: Final = (
    ("input", "prompt_tokens"),
    ("output", "completion_tokens"),
    ("cached_input", "cached_input_tokens"),
    ("cache_write", "cache_write_tokens"),
    ("reasoning", "reasoning_tokens"),
)


class Truths(RunStore):
    """Inspection: counts over the visible finished runs, and runs as listed."""

    def truth(self, project_id: str | None = None) -> Counter[tuple[str, str, str | None]]:
        """Count ``(agent_id, status, stop_reason)`` over visible terminal runs (status
        completed/failed/cancelled, or any status once ``completed_at`` is set), of one
        project when ``project_id`` is given. This is what a perfect exporter would have
        counted."""
        with self._lock:
            return Counter(
                (run.agent_id, run.status, run.stop_reason)
                for run in self._finished_locked(project_id)
            )

    def token_truth(self, project_id: str | None = None) -> Counter[tuple[str, str, str]]:
        """Token totals by ``(agent_id, model, type)`` over the runs :meth:`truth` counts,
        summed over *all* steps of each run (not the 50 that ``/usage`` sees).

        ``model`` is the Step's ``model`` field as ``/steps`` serves it (``gpt-4o-mini``,
        not the handle); ``type`` is ``input`` (prompt_tokens), ``output``
        (completion_tokens), ``cached_input`` (cached_input_tokens), ``cache_write``
        (cache_write_tokens) or ``reasoning`` (reasoning_tokens). Zero and null values
        make no entry. Bulk runs are read from their lazy description, not materialised.
        ``project_id`` limits it to one project's runs.
        """
        out: Counter[tuple[str, str, str]] = Counter()
        bulk: dict[str, list[int]] = {}  # agent -> [input, output] of its lazy bulk runs
        with self._lock:
            for run in self._finished_locked(project_id):
                agent = run.agent_id
                if run.lazy_steps is not None:
                    prompt, completion = lazy_totals(run.lazy_steps)
                    acc = bulk.get(agent) or bulk.setdefault(agent, [0, 0])
                    acc[0] += prompt
                    acc[1] += completion
                    continue
                for step in run.steps:
                    data = step.data
                    model = data["model"]
                    for kind, field in _TOKEN_TYPES:
                        value = data[field]
                        if value:
                            out[(agent, model, kind)] += value
        bulk_model = step_model(BULK_MODEL)
        for agent, (prompt, completion) in bulk.items():
            out[(agent, bulk_model, "input")] += prompt
            out[(agent, bulk_model, "output")] += completion
        return +out  # drops entries that summed to zero

    def step_count_truth(self) -> dict[str, int]:
        """``run_id -> number of steps`` (all of them, no 50 cap) over the runs
        :meth:`truth` counts."""
        with self._lock:
            return {
                run.sid: run.lazy_steps[0] if run.lazy_steps is not None else len(run.steps)
                for run in self._finished_locked()
            }

    def tool_truth(self) -> Counter[tuple[str, str]]:
        """Tool use by ``(agent_id, tool)`` over the runs :meth:`truth` counts: every
        distinct id in the run's ``tools_used`` as ``/v1/runs/{id}/metrics`` serves it
        right now (so nothing for runs without a metrics row, and only committed metrics
        transactions), once per run, named by its registered name or, when
        ``/v1/tools/{id}`` would not answer 200, by the id itself."""
        now = self._clock()
        out: Counter[tuple[str, str]] = Counter()
        with self._lock:
            for run in self._finished_locked():
                if not run.has_metrics:
                    continue
                if run.pending:
                    self._promote(run, now)
                for tool_id in dict.fromkeys(run.m_tools or ()):
                    tool = self._tools.get(tool_id)
                    out[(run.agent_id, tool["name"] if tool is not None else tool_id)] += 1
        return out

    def tool_call_truth(self) -> tuple[Counter[tuple[str, str]], Counter[tuple[str, str]]]:
        """What the runs' messages show: (runs that called each tool, calls of each tool)
        by ``(agent_id, tool name)``, over the runs :meth:`truth` counts."""
        runs: Counter[tuple[str, str]] = Counter()
        calls: Counter[tuple[str, str]] = Counter()
        with self._lock:
            for run in self._finished_locked():
                names = [
                    call["tool_call"]["name"]
                    for call in tool_messages(run, self._tools)
                    if call["message_type"] == "tool_call_message"
                ]
                for name in names:
                    calls[(run.agent_id, name)] += 1
                for name in dict.fromkeys(names):
                    runs[(run.agent_id, name)] += 1
        return runs, calls

    def runs(self) -> list[dict[str, Any]]:
        """Every visible run as the list endpoint would show it right now (newest first;
        raw items excluded)."""
        now = self._clock()
        with self._lock:
            visible = [row for row in reversed(self._rows) if isinstance(row, Run)]
            return [json.loads(self._list_bytes(run, now)) for run in visible]

    def get(self, run_id: str) -> dict[str, Any] | None:
        """One run as the list endpoint would show it (so with ``total_duration_ns`` once
        visible), including runs not committed yet; ``None`` if unknown."""
        now = self._clock()
        with self._lock:
            run = self._runs.get(run_id)
            return None if run is None else json.loads(self._list_bytes(run, now))

    def __len__(self) -> int:
        with self._lock:
            return sum(1 for run in self._runs.values() if run.visible)
