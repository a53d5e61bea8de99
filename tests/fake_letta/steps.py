"""Steps, traces and tools: what the enrichment reads about one run."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from tests.fake_letta.constants import TOOL_TYPES
from tests.fake_letta.model import Step, Timings
from tests.fake_letta.responses import valid_path_id
from tests.fake_letta.shapes import step_dict, tool_dict
from tests.fake_letta.store import RunStore
from tests.fake_letta.wire import new_id, to_us

_TIMING_FIELDS: Final = ("llm_request_ns", "tool_execution_ns", "step_ns")


class StepsAndTools(RunStore):
    """Control API: a run's steps and trace, and the org's tools."""

    def add_step(
        self,
        run_id: str,
        *,
        model: str = "openai-proxy/fake-llm",
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        cached_input_tokens: int | None = None,
        cache_write_tokens: int | None = None,
        reasoning_tokens: int | None = None,
        status: str = "success",
        stop_reason: str | None = None,
        trace_id: str | None = None,
        tool_ids: Iterable[str] = (),
        step_id: str | None = None,
        step_ns: int | None = None,
        llm_request_ns: int | None = None,
        tool_execution_ns: int | None = None,
        **overrides: Any,
    ) -> str:
        """Append a step to a run (shape of ``runs/*/steps.json``) and return its id.

        ``model`` is the handle (``provider/model``); the step's ``model`` field is the
        part after the slash, as Letta reports it. The ``*_details`` objects are derived
        the way Letta fills them (``cached_tokens`` and ``cache_read_tokens`` both carry
        the cached count). ``tool_ids`` feed ``run_metrics.tools_used`` at the next
        :meth:`update_run`; they need not be registered with :meth:`add_tool` (an
        unregistered id answers 404 on ``/v1/tools/{id}``, like a deleted tool).
        ``overrides`` replace any other Step field verbatim (e.g. ``error_type``,
        ``error_data``, ``provider_name``, ``context_window_limit``).

        ``step_ns``, ``llm_request_ns`` and ``tool_execution_ns`` (durations in ns) make
        a ``step_metrics`` row served by ``GET /v1/steps/{id}/metrics``; with none of
        them the step has no row and that route answers 404.
        """
        now = self._clock()
        with self._lock:
            run = self._run_or_raise(run_id)
            self._materialise_lazy_steps(run)
            sid = step_id or new_id("step")
            data = step_dict(
                sid,
                run,
                model=model,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                cached_input_tokens=cached_input_tokens,
                cache_write_tokens=cache_write_tokens,
                reasoning_tokens=reasoning_tokens,
                status=status,
                stop_reason=stop_reason,
                trace_id=trace_id,
            )
            unknown = set(overrides) - set(data)
            if unknown:
                raise TypeError(f"unknown Step fields: {sorted(unknown)}")
            data["project_id"] = self._run_projects.get(run.sid)
            data.update(overrides)
            timings: Timings | None = (llm_request_ns, tool_execution_ns, step_ns)
            if timings == (None, None, None):
                timings = None
            step = Step(
                us=to_us(now),
                seq=next(self._seq),
                data=data,
                tool_ids=tuple(tool_ids),
                timings=timings,
            )
            run.steps.append(step)
            self._steps_by_id[sid] = (run, step)
            return sid

    def update_step(self, step_id: str, **fields: Any) -> None:
        """Change fields of an existing step, e.g. a ``pending`` step that finished:
        ``update_step(sid, status="success", prompt_tokens=10, completion_tokens=5)``.
        ``total_tokens`` follows prompt + completion unless given explicitly.

        ``step_ns``, ``llm_request_ns`` and ``tool_execution_ns`` update the step's
        ``step_metrics`` row (creating it if needed), the way Letta records the row at
        step start and fills the durations at step end."""
        with self._lock:
            entry = self._steps_by_id.get(step_id)
            if entry is None:
                raise KeyError(step_id)
            step = entry[1]
            timing_fields = {k: fields.pop(k) for k in _TIMING_FIELDS if k in fields}
            if timing_fields:
                llm, tool, total = step.timings or (None, None, None)
                step.timings = (
                    timing_fields.get("llm_request_ns", llm),
                    timing_fields.get("tool_execution_ns", tool),
                    timing_fields.get("step_ns", total),
                )
            if not fields:
                return
            data = step.data
            unknown = set(fields) - set(data)
            if unknown:
                raise TypeError(f"unknown Step fields: {sorted(unknown)}")
            data.update(fields)
            if "total_tokens" not in fields:
                data["total_tokens"] = data["prompt_tokens"] + data["completion_tokens"]

    def set_trace(self, run_id: str, rows: list[dict[str, Any]]) -> None:
        """Give the run span rows (§7.3 dicts, already in ``Timestamp`` order). From then
        on ``/trace`` answers 200 with them instead of 501 (no ClickHouse)."""
        with self._lock:
            self._run_or_raise(run_id).trace = [dict(row) for row in rows]

    # ------------------------------------------------------------------ control API: tools

    def add_tool(self, name: str, *, tool_id: str | None = None, tool_type: str = "custom") -> str:
        """Register a tool served by ``GET /v1/tools/{tool_id}`` and return its id
        (``tool-<uuid4>`` unless given).

        The body has the 18 keys of a real ``Tool`` in their order (``agents/alpha.json``
        ``tools``). Built-in types (``letta_*``) look like the fixtures' core tools (no
        source code, the type as the only tag); a ``custom`` tool gets a stub Python
        source and JSON schema, as one created through the API would have.

        Raises:
            ValueError: ``tool_id`` is not ``tool-<uuid4>`` (the real route could never
                serve it: its path validator answers 422), is already registered, or
                ``tool_type`` is not a ``ToolType`` value.
        """
        if tool_type not in TOOL_TYPES:
            raise ValueError(f"unknown tool_type {tool_type!r}; expected one of {TOOL_TYPES}")
        tid = tool_id or new_id("tool")
        if not valid_path_id(tid, "tool"):
            raise ValueError(f"tool id {tid!r} is not tool-<uuid4>")
        with self._lock:
            if tid in self._tools:
                raise ValueError(f"duplicate tool id {tid}")
            self._tools[tid] = tool_dict(tid, name, tool_type)
        return tid

    def delete_tool(self, tool_id: str) -> bool:
        """Forget a tool: ``/v1/tools/{id}`` answers 404 from then on, while run metrics
        that name it keep the id. Returns False if it was not registered."""
        with self._lock:
            return self._tools.pop(tool_id, None) is not None
