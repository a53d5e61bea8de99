"""What Letta's own database says about its runs: the ground truth of the contract tests.

Read from the ``runs``, ``steps``, ``run_metrics`` and ``tools`` tables, in the label form
the exporter uses (agent id, status, stop reason or ``none``, model, token type, tool name).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import pg8000.native  # type: ignore[import-untyped]

TERMINAL = ("completed", "failed", "cancelled")
# Step columns per exporter token type (input includes cached and cache-write tokens).
TOKEN_COLUMNS = (
    ("input", "prompt_tokens"),
    ("output", "completion_tokens"),
    ("cached_input", "cached_input_tokens"),
    ("cache_write", "cache_write_tokens"),
    ("reasoning", "reasoning_tokens"),
)


@dataclass
class Truth:
    """Counts over finished runs (and the runs still open)."""

    finished: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    tokens: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    steps: dict[str, int] = field(default_factory=dict)  # run id -> steps
    step_agents: dict[str, str] = field(default_factory=dict)  # run id -> agent
    tools: Counter[tuple[str, str]] = field(default_factory=Counter)
    callbacks: Counter[tuple[str, str]] = field(default_factory=Counter)
    open_runs: int = 0

    def __add__(self, other: Truth) -> Truth:
        return Truth(
            self.finished + other.finished,
            self.tokens + other.tokens,
            {**self.steps, **other.steps},
            {**self.step_agents, **other.step_agents},
            self.tools + other.tools,
            self.callbacks + other.callbacks,
            self.open_runs + other.open_runs,
        )

    @property
    def finished_runs(self) -> int:
        return sum(self.finished.values())

    def steps_by_agent(self) -> Counter[str]:
        """Total steps of finished runs per agent."""
        out: Counter[str] = Counter()
        for run_id, count in self.steps.items():
            out[self.step_agents[run_id]] += count
        return out

    def runs_by_agent(self) -> Counter[str]:
        out: Counter[str] = Counter()
        for agent in self.step_agents.values():
            out[agent] += 1
        return out


def callback_result(code: int | None, error: str | None) -> str:
    """success (a 2xx answer), failure (an error or another status), unknown (nothing yet)."""
    if error or (code is not None and code >= 300):
        return "failure"
    return "unknown" if code is None else "success"


def read_truth(conn: pg8000.native.Connection, agents: Iterable[str] | None = None) -> Truth:
    """The truth over all runs, or only over those of `agents`."""
    only = list(agents) if agents is not None else None
    where, params = ("WHERE r.agent_id = ANY(:agents)", {"agents": only}) if only else ("", {})
    if only is not None and not only:
        return Truth()
    truth = Truth()
    rows = conn.run(
        f"SELECT r.id, r.agent_id, r.status, r.stop_reason, r.callback_status_code,"
        f" r.callback_error, r.callback_url FROM runs r {where}",
        **params,
    )
    finished_ids = set()
    for run_id, agent, status, stop_reason, cb_code, cb_error, cb_url in rows:
        if status not in TERMINAL:
            truth.open_runs += 1
            continue
        finished_ids.add(run_id)
        truth.finished[(agent, status, stop_reason or "none")] += 1
        truth.steps[run_id] = 0
        truth.step_agents[run_id] = agent
        if cb_url:
            truth.callbacks[(agent, callback_result(cb_code, cb_error))] += 1
    columns = ", ".join(f"s.{column}" for _, column in TOKEN_COLUMNS)
    for row in conn.run(
        f"SELECT s.run_id, r.agent_id, COALESCE(s.model, s.model_handle), {columns}"
        f" FROM steps s JOIN runs r ON r.id = s.run_id {where}",
        **params,
    ):
        run_id, agent, model = row[0], row[1], row[2]
        if run_id not in finished_ids:
            continue
        truth.steps[run_id] += 1
        for (kind, _), value in zip(TOKEN_COLUMNS, row[3:], strict=True):
            if value:
                truth.tokens[(agent, model or "unknown", kind)] += value
    for run_id, agent, tool_name in conn.run(
        "SELECT DISTINCT r.id, r.agent_id, COALESCE(t.name, tu.tool_id)"
        " FROM runs r JOIN run_metrics m ON m.id = r.id,"
        " LATERAL jsonb_array_elements_text(COALESCE(m.tools_used::jsonb, '[]'::jsonb))"
        " AS tu(tool_id) LEFT JOIN tools t ON t.id = tu.tool_id " + where,
        **params,
    ):
        if run_id in finished_ids:
            truth.tools[(agent, tool_name)] += 1
    return truth
