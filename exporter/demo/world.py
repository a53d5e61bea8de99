"""The simulated server's state: named agents with tools, and runs that arrive, work and end.

Everything about a run is drawn when it arrives (its path, steps, tokens, tool calls,
outcome and end); what a request sees then depends only on the time it asks. Runs arrive
about once a second; a provider incident now and then makes LLM errors frequent for a
few minutes. One run is stuck (running since before the start, never ending) and one run
asks for a tool approval that nobody gives.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Final

NS: Final = 1_000_000_000
# Runs kept for the lists; older ones are gone, as if deleted (an hour at the usual pace),
# except the stuck run and the approval left waiting.
MAX_RUNS: Final = 4000
# A provider incident: from minute 2 to minute 6 of every 15, most LLM calls fail.
INCIDENT_PERIOD_S: Final = 15 * 60
INCIDENT_START_S: Final = 2 * 60
INCIDENT_END_S: Final = 6 * 60


@dataclass(frozen=True, slots=True)
class Tool:
    id: str
    name: str
    description: str
    tool_type: str = "custom"


@dataclass(frozen=True, slots=True)
class Agent:
    id: str
    name: str
    description: str
    provider: str
    model: str
    tools: tuple[Tool, ...]
    endpoint: str = "https://api.openai.com/v1"


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    tool: Tool
    needs_approval: bool = False


@dataclass(frozen=True, slots=True)
class Step:
    id: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    stop_reason: str | None
    calls: tuple[ToolCall, ...] = ()
    error_type: str | None = None


@dataclass(frozen=True, slots=True)
class SimRun:
    """One run, decided when it arrives; `status(now)` is what Letta would answer then."""

    id: str
    agent: Agent
    run_type: str
    background: bool
    created_ns: int
    end_ns: int
    final_status: str
    stop_reason: str | None
    steps: tuple[Step, ...]
    error: str | None = None
    started_ns: int | None = None
    """When a streaming run turns `running`; sync and async runs stay `created` (0.16.8)."""

    def finished(self, now_ns: int) -> bool:
        return now_ns >= self.end_ns

    def status(self, now_ns: int) -> str:
        if self.finished(now_ns):
            return self.final_status
        if self.started_ns is not None and now_ns >= self.started_ns:
            return "running"
        return "created"


def _id(prefix: str, rng: random.Random) -> str:
    return f"{prefix}-{uuid.UUID(int=rng.getrandbits(128), version=4)}"


def _agents(rng: random.Random) -> tuple[Agent, ...]:
    def tool(name: str, description: str, tool_type: str = "custom") -> Tool:
        return Tool(_id("tool", rng), name, description, tool_type)

    search = tool("web_search", "Search the web.", "letta_builtin")
    memory = tool("archival_memory_search", "Search archival memory.", "letta_core")
    history = tool("conversation_search", "Search prior conversation history.", "letta_core")
    calendar = tool("calendar_lookup", "Read the user's calendar.")
    tickets = tool("create_ticket", "Open a support ticket.")
    code = tool("run_code", "Run Python in a sandbox.", "letta_builtin")
    refund = tool("issue_refund", "Refund an order (needs a human's approval).")
    specs = [
        (
            "support-desk",
            "Answers customer questions.",
            "openai",
            "gpt-4o-mini",
            (history, tickets),
        ),
        (
            "research-assistant",
            "Finds and summarises sources.",
            "anthropic",
            "claude-sonnet-4-5",
            (search, memory),
        ),
        ("code-reviewer", "Reviews pull requests.", "openai", "gpt-4.1", (code, search)),
        ("travel-planner", "Plans trips.", "openai", "gpt-4o-mini", (calendar, search)),
        (
            "refunds-desk",
            "Issues refunds after a human approves them.",
            "openai",
            "gpt-4.1",
            (refund, history),
        ),
    ]
    return tuple(
        Agent(_id("agent", rng), name, description, provider, model, tools)
        for name, description, provider, model, tools in specs
    )


@dataclass
class World:
    """The runs of the simulated server, advanced to the time each request asks."""

    start_ns: int
    seed: int = 2816
    rate_per_s: float = 1.0
    rng: random.Random = field(init=False)
    agents: tuple[Agent, ...] = field(init=False)
    runs: deque[SimRun] = field(init=False)
    kept: list[SimRun] = field(init=False)
    """The stuck run and the approval left waiting: never dropped with the old runs."""
    _next_arrival_ns: int = field(init=False)
    _approval_asked: bool = field(init=False, default=False)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.agents = _agents(self.rng)
        self.runs = deque(maxlen=MAX_RUNS)
        self.kept = [self._stuck_run()]
        self._next_arrival_ns = self.start_ns

    @property
    def tools(self) -> dict[str, Tool]:
        return {tool.id: tool for agent in self.agents for tool in agent.tools}

    @property
    def working_agents(self) -> tuple[Agent, ...]:
        """The agents that get runs all along; the last one waits for its approval."""
        return self.agents[:-1]

    def advance(self, now_ns: int) -> list[SimRun]:
        """Let the runs due by `now_ns` arrive; the runs known then, oldest first."""
        with self._lock:
            while self._next_arrival_ns <= now_ns:
                created = self._next_arrival_ns
                if not self._approval_asked and created - self.start_ns >= 3 * NS:
                    self._approval_asked = True
                    self.kept.append(self._approval_run(created))
                else:
                    self.runs.append(self._new_run(created))
                gap_s = self.rng.expovariate(self.rate_per_s)
                self._next_arrival_ns = created + max(1_000_000, int(gap_s * NS))
            known = [*self.kept, *self.runs]
            return sorted(
                (run for run in known if run.created_ns <= now_ns), key=lambda r: r.created_ns
            )

    def _stuck_run(self) -> SimRun:
        # Running since 40 minutes before the start (LettaRunStuck fires after 30 and 5
        # more); Letta never finishes some runs.
        agent = self.agents[1]
        created = self.start_ns - 40 * 60 * NS
        return SimRun(
            id=_id("run", self.rng),
            agent=agent,
            run_type="send_message_streaming",
            background=True,
            created_ns=created,
            end_ns=2**62,
            final_status="completed",
            stop_reason="end_turn",
            steps=(),
            started_ns=created + NS // 2,
        )

    def _approval_run(self, created: int) -> SimRun:
        agent = self.agents[-1]
        call = ToolCall(_id("call", self.rng), agent.tools[0], needs_approval=True)
        step = Step(_id("step", self.rng), 1800, 40, 0, "requires_approval", (call,))
        return SimRun(
            id=_id("run", self.rng),
            agent=agent,
            run_type="send_message",
            background=False,
            created_ns=created,
            end_ns=created + 1_400_000_000,
            final_status="completed",
            stop_reason="requires_approval",
            steps=(step,),
        )

    def _in_incident(self, at_ns: int) -> bool:
        second = ((at_ns - self.start_ns) // NS) % INCIDENT_PERIOD_S
        return INCIDENT_START_S <= second < INCIDENT_END_S

    def _new_run(self, created: int) -> SimRun:
        rng = self.rng
        agent = rng.choice(self.working_agents)
        run_type, background = rng.choice(
            [
                ("send_message", False),
                ("send_message_streaming", False),
                ("send_message_streaming", False),
                ("send_message_streaming", True),
                ("send_message_async", True),
            ]
        )
        llm_error_chance = 0.5 if self._in_incident(created) else 0.03
        roll = rng.random()
        status, stop_reason, error = "completed", "end_turn", None
        if roll < llm_error_chance:
            status, error = "failed", "llm"
            stop_reason = "error" if run_type == "send_message_async" else "llm_api_error"
        elif roll < llm_error_chance + 0.05:
            stop_reason = "max_steps"
        elif roll < llm_error_chance + 0.09:
            status, stop_reason = "cancelled", "cancelled"
        elif roll < llm_error_chance + 0.11:
            stop_reason = "tool_rule"
        steps = self._steps(agent, stop_reason, error is not None)
        duration = int(rng.uniform(0.8, 2.5) * len(steps) * NS)
        streaming = run_type == "send_message_streaming"
        return SimRun(
            id=_id("run", rng),
            agent=agent,
            run_type=run_type,
            background=background,
            created_ns=created,
            end_ns=created + duration,
            final_status=status,
            stop_reason=stop_reason,
            steps=steps,
            error=error,
            started_ns=created + 200_000_000 if streaming else None,
        )

    def _steps(self, agent: Agent, stop_reason: str, failed: bool) -> tuple[Step, ...]:
        rng = self.rng
        count = 10 if stop_reason == "max_steps" else rng.choice((1, 1, 2, 2, 3, 4))
        steps = []
        for index in range(count):
            last = index == count - 1
            step_id = _id("step", rng)
            if last and failed:
                steps.append(Step(step_id, 0, 0, 0, "llm_api_error", (), "LLMServerError"))
                break
            calls: tuple[ToolCall, ...] = ()
            if not last or stop_reason in ("max_steps", "tool_rule"):
                calls = (ToolCall(_id("call", rng), rng.choice(agent.tools)),)
            prompt = rng.randint(900, 4000) + 400 * index
            steps.append(
                Step(
                    step_id,
                    prompt,
                    rng.randint(15, 400),
                    rng.choice((0, 0, prompt // 2)),
                    (stop_reason if stop_reason != "cancelled" else "end_turn") if last else None,
                    calls,
                )
            )
        return tuple(steps)
