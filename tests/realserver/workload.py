"""Drive a real Letta server through every run creation path and outcome.

Each *lane* is a short story on its own agents (so lanes never wait on one another's
agent locks); lanes run on a few threads at once, so several runs are in flight together.
The fake LLM's directives (``[[...]]``, see ``fake_llm``) choose each run's outcome; the
database, not this module, says what each run ended as.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.realserver.stack import Stack
from tests.realserver.truth import Truth, read_truth

TERMINAL = frozenset({"completed", "failed", "cancelled"})
REQUEST_TIMEOUT_S = 300.0  # a step can take seconds on a loaded 2-core machine
RUN_WAIT_S = 300.0


class WorkloadError(AssertionError):
    """The server did not do what a lane needed (not an exporter problem)."""


@dataclass
class Hooks:
    """Points where the test synchronises with the exporter (default: none)."""

    # Called with an agent id before it is deleted (after its runs finished), e.g. to wait
    # until the exporter counted them; the truth of those runs is recorded just before.
    before_delete_finished: Callable[[str], None] = lambda agent: None
    # Called with (agent id, run id) while that run is in flight, before its agent is deleted.
    before_delete_in_flight: Callable[[str, str], None] = lambda agent, run: None


@dataclass
class Workload:
    """The driver; ``removed`` holds the truth of finished runs deleted along their agent."""

    stack: Stack
    hooks: Hooks = field(default_factory=Hooks)
    removed: Truth = field(default_factory=Truth)
    deleted_in_flight: list[str] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)  # every agent created: id -> name
    log: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.http = httpx.Client(base_url=self.stack.letta_url, timeout=REQUEST_TIMEOUT_S)
        self.callback_ok = f"{self.stack.llm.url}/callbacks/200"
        self.callback_bad = f"{self.stack.llm.url}/callbacks/500"

    def close(self) -> None:
        self.http.close()

    def note(self, text: str) -> None:
        with self._lock:
            self.log.append(f"{time.strftime('%H:%M:%S')} {text}")

    # ---------------------------------------------------------------- server calls

    def agent(self, name: str, **extra: Any) -> str:
        body = {
            "name": name,
            "model": self.stack.model_handle,
            "embedding": "openai/text-embedding-3-small",
            **extra,
        }
        response = self.http.post("/v1/agents/", json=body)
        _expect(response, 200, f"create agent {name}")
        agent_id: str = response.json()["id"]
        with self._lock:
            self.names[agent_id] = name
        return agent_id

    def sync(self, agent: str, text: str, **extra: Any) -> httpx.Response:
        body = {"messages": [{"role": "user", "content": text}], **extra}
        return self.http.post(f"/v1/agents/{agent}/messages", json=body)

    def approve(self, agent: str, tool_call_id: str, approve: bool) -> httpx.Response:
        approval = {"type": "approval", "tool_call_id": tool_call_id, "approve": approve}
        if not approve:
            approval["reason"] = "not now"
        body = {"messages": [{"type": "approval", "approvals": [approval]}]}
        return self.http.post(f"/v1/agents/{agent}/messages", json=body)

    def stream(
        self, agent: str, text: str, *, background: bool = False, leave_after: int = 0, **extra: Any
    ) -> str | None:
        """Send a streaming message; read it to the end (or hang up after `leave_after`
        events). Returns the run id seen in the events."""
        body = {
            "messages": [{"role": "user", "content": text}],
            "stream_tokens": False,
            "background": background,
            **extra,
        }
        run_id = None
        events = 0
        with self.http.stream("POST", f"/v1/agents/{agent}/messages/stream", json=body) as resp:
            if resp.status_code != 200:
                resp.read()
                raise WorkloadError(f"stream {resp.status_code}: {resp.text[:300]}")
            for line in resp.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                event = json.loads(line[6:])
                run_id = run_id or event.get("run_id")
                events += 1
                if leave_after and events >= leave_after and run_id:
                    break  # closing the response hangs up on the server
        return run_id

    def send_async(self, agent: str, text: str, **extra: Any) -> str:
        body = {"messages": [{"role": "user", "content": text}], **extra}
        response = self.http.post(f"/v1/agents/{agent}/messages/async", json=body)
        _expect(response, 200, "async message")
        run_id: str = response.json()["id"]
        return run_id

    def conversation(self, agent: str) -> str:
        response = self.http.post("/v1/conversations/", params={"agent_id": agent}, json={})
        _expect(response, 200, f"create a conversation of {agent}")
        conversation_id: str = response.json()["id"]
        return conversation_id

    def converse(self, conversation: str, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Send to a conversation (it streams) and read to the end: the events."""
        body = {"messages": messages, "stream_tokens": False}
        events = []
        path = f"/v1/conversations/{conversation}/messages"
        with self.http.stream("POST", path, json=body) as resp:
            if resp.status_code != 200:
                resp.read()
                raise WorkloadError(f"conversation {resp.status_code}: {resp.text[:300]}")
            for line in resp.iter_lines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    events.append(json.loads(line[6:]))
        return events

    def cancel(self, agent: str, run_id: str) -> None:
        response = self.http.post(f"/v1/agents/{agent}/messages/cancel", json={"run_ids": [run_id]})
        _expect(response, 200, f"cancel {run_id}")

    def run(self, run_id: str) -> dict[str, Any]:
        response = self.http.get(f"/v1/runs/{run_id}")
        _expect(response, 200, f"get {run_id}")
        body: dict[str, Any] = response.json()
        return body

    def wait_terminal(self, run_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + RUN_WAIT_S
        while time.monotonic() < deadline:
            run = self.run(run_id)
            if run["status"] in TERMINAL:
                return run
            time.sleep(0.3)
        raise WorkloadError(f"{run_id} did not finish in {RUN_WAIT_S:.0f} s")

    def wait_steps(self, run_id: str, count: int) -> None:
        deadline = time.monotonic() + RUN_WAIT_S
        while time.monotonic() < deadline:
            response = self.http.get(f"/v1/runs/{run_id}/steps")
            if response.status_code == 200 and len(response.json()) >= count:
                return
            time.sleep(0.2)
        raise WorkloadError(f"{run_id} did not reach {count} steps")

    def wait_agent_idle(self, agent: str) -> None:
        deadline = time.monotonic() + RUN_WAIT_S
        while time.monotonic() < deadline:
            response = self.http.get("/v1/runs/", params={"agent_id": agent, "active": "true"})
            _expect(response, 200, "active runs")
            if not response.json():
                return
            time.sleep(0.3)
        raise WorkloadError(f"runs of {agent} did not finish")

    def delete_agent(self, agent: str) -> None:
        response = self.http.delete(f"/v1/agents/{agent}")
        _expect(response, 200, f"delete {agent}")

    # ---------------------------------------------------------------- lanes

    def lane_sync(self) -> None:
        agent = self.agent("sync")
        self.sync(agent, "hello [[]]")  # end_turn
        self.sync(agent, "use tools [[tools=2]]")  # multi-step tools
        self.sync(agent, "forever [[loop]]", max_steps=3)  # max_steps
        self.sync(agent, "boom [[fail=500]]")  # failed / null
        self.sync(agent, "bad request [[fail=400]]")

    def lane_tool_rule(self) -> None:
        rule = [{"type": "exit_loop", "tool_name": "conversation_search"}]
        agent = self.agent("exit-loop", tool_rules=rule)
        self.sync(agent, "search then stop [[tools=5]]")  # tool_rule

    def lane_stream_errors(self) -> None:
        agent = self.agent("stream")
        self.stream(agent, "hello [[tools=1]]")
        for directive in ("fail=500", "fail=429", "malformed", "empty", "length"):
            self.stream(agent, f"trouble [[{directive}]]")
        self.stream(agent, "late error [[tools=3 fail=500 after=2]]")

    def lane_async(self) -> None:
        agent = self.agent("async")
        runs = [
            self.send_async(agent, "hi [[]]", callback_url=self.callback_ok),
            self.send_async(agent, "tools [[tools=1]]", callback_url=self.callback_bad),
        ]
        for run_id in runs:
            self.wait_terminal(run_id)
        self.wait_terminal(
            self.send_async(agent, "boom [[fail=500]]", callback_url=self.callback_ok)
        )

    def lane_background(self) -> None:
        agent = self.agent("background")
        self.stream(agent, "hello [[tools=1]]", background=True)
        run_id = self.stream(agent, "slow [[tools=2 delay=1]]", background=True, leave_after=1)
        if run_id is None:
            raise WorkloadError("background stream showed no run id")
        self.wait_terminal(run_id)
        self.stream(agent, "left early, foreground [[tools=1 delay=1]]", leave_after=1)
        self.wait_agent_idle(agent)

    def lane_approvals(self) -> None:
        rule = [{"type": "requires_approval", "tool_name": "conversation_search"}]
        for decision in (True, False):
            agent = self.agent(f"approval-{decision}", tool_rules=rule)
            call_id = _approval_call_id(self.sync(agent, "may I [[tools=1]]"))
            self.sync(agent, "while pending [[]]")  # HTTP 409, a failed run
            self.approve(agent, call_id, decision)  # a new run
        # Nobody answers this one: it still waits when the campaign ends.
        _approval_call_id(
            self.sync(self.agent("approval-pending", tool_rules=rule), "may I [[tools=1]]")
        )
        agent = self.agent("approval-cancelled", tool_rules=rule)
        response = self.sync(agent, "may I [[tools=1]]")
        _approval_call_id(response)
        # Cancelled at once: the run turns completed -> cancelled within the exporter's
        # grace period, so it is counted as cancelled.
        self.cancel(agent, _run_id_of(response))

    def lane_cancel(self) -> None:
        agent = self.agent("cancel")
        run_id = self.send_async(agent, "long [[loop delay=1]]", max_steps=30)
        self.wait_steps(run_id, 1)
        self.cancel(agent, run_id)
        self.wait_terminal(run_id)

    def lane_deleted_after(self) -> None:
        agent = self.agent("deleted-after")
        self.sync(agent, "hello [[tools=1]]")
        self.sync(agent, "boom [[fail=500]]")
        self.hooks.before_delete_finished(agent)
        with self._lock:
            self.removed = self.removed + read_truth_of(self.stack, [agent])
        self.delete_agent(agent)

    def lane_deleted_during(self) -> None:
        agent = self.agent("deleted-during")
        run_id = self.send_async(agent, "long [[loop delay=1]]", max_steps=30)
        self.wait_steps(run_id, 1)
        self.hooks.before_delete_in_flight(agent, run_id)
        self.delete_agent(agent)
        with self._lock:
            self.deleted_in_flight.append(run_id)

    def lane_conversation_deadlock(self) -> tuple[str, str, str]:
        """Letta issue 3176 on 0.16.8: cancelling a conversation's approval request leaves
        it pending there, and the next message is refused (a 200 stream whose error event
        carries the 409 CONFLICT; the run ends failed/error). Not in LANES: the caller
        answers it. The refused message follows the cancel at once, as a user's would.
        Returns (agent, conversation, the request's tool call id)."""
        rule = [{"type": "requires_approval", "tool_name": "conversation_search"}]
        agent = self.agent("conversation-deadlock", tool_rules=rule)
        conversation = self.conversation(agent)
        asked = self.converse(conversation, [{"role": "user", "content": "may I [[tools=1]]"}])
        [request] = [e for e in asked if e.get("message_type") == "approval_request_message"]
        self.cancel(agent, request["run_id"])
        refused = self.converse(conversation, [{"role": "user", "content": "hello? [[]]"}])
        if not any("waiting for approval" in str(e.get("message")) for e in refused):
            raise WorkloadError(f"the message was not refused: {refused}")
        call_id: str = request["tool_call"]["tool_call_id"]
        return agent, conversation, call_id

    def lane_context_overflow(self) -> str:
        """An agent whose context window (100 tokens) is smaller than its system prompt:
        two streams end completed/context_window_overflow_in_system_prompt, a sync
        message failed with no stop reason (CONTEXT_WINDOW_EXCEEDED, HTTP 400). Not in
        LANES. Returns the agent."""
        agent = self.agent("context-overflow", context_window_limit=100)
        for _ in range(2):
            self.stream(agent, "hello [[]]")
        response = self.sync(agent, "hello [[]]")
        if response.status_code != 400 or "CONTEXT_WINDOW_EXCEEDED" not in response.text:
            raise WorkloadError(f"no overflow: {response.status_code} {response.text[:300]}")
        return agent

    def deny_in_conversation(self, conversation: str, call_id: str) -> None:
        approval = {
            "type": "approval",
            "tool_call_id": call_id,
            "approve": False,
            "reason": "stale",
        }
        self.converse(conversation, [{"type": "approval", "approvals": [approval]}])

    LANES = (
        "lane_sync",
        "lane_tool_rule",
        "lane_stream_errors",
        "lane_async",
        "lane_background",
        "lane_approvals",
        "lane_cancel",
        "lane_deleted_after",
        "lane_deleted_during",
    )

    def drive(self, concurrency: int = 3, lanes: tuple[str, ...] = LANES) -> None:
        """Run the lanes, `concurrency` at a time; raise the first lane failure."""
        with ThreadPoolExecutor(concurrency, thread_name_prefix="lane") as pool:
            futures = {name: pool.submit(self._timed, name) for name in lanes}
            for name, future in futures.items():
                try:
                    future.result()
                except Exception as exc:
                    raise WorkloadError(f"{name} failed: {exc!r}\n" + "\n".join(self.log)) from exc

    def _timed(self, name: str) -> None:
        started = time.monotonic()
        getattr(self, name)()
        self.note(f"{name} done in {time.monotonic() - started:.1f} s")


def read_truth_of(stack: Stack, agents: list[str] | None = None) -> Truth:
    conn = stack.db()
    try:
        return read_truth(conn, agents)
    finally:
        conn.close()


def _expect(response: httpx.Response, code: int, what: str) -> None:
    if response.status_code != code:
        raise WorkloadError(f"{what}: HTTP {response.status_code} {response.text[:300]}")


def _approval_call_id(response: httpx.Response) -> str:
    _expect(response, 200, "message needing approval")
    for message in response.json()["messages"]:
        if message.get("message_type") == "approval_request_message":
            call_id: str = message["tool_call"]["tool_call_id"]
            return call_id
    raise WorkloadError(f"no approval request in {response.text[:500]}")


def _run_id_of(response: httpx.Response) -> str:
    for message in response.json()["messages"]:
        if message.get("run_id"):
            run_id: str = message["run_id"]
            return run_id
    raise WorkloadError("no run id in the response")
