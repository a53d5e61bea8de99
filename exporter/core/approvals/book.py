"""Which agents (and conversations) wait for a person's approval, and since when.

Pure, no I/O: the tracker feeds it every run it observes. Letta 0.16.8 (letta-runs-api.md
§5) keeps one pending approval per thread, a thread being an agent's own message list or
one of its conversations (`conversation_id`):

- a run that stops `requires_approval` starts a wait (its last message is the request);
- approving or denying sends a message that becomes a **new** run on the same thread; so
  does anything else the server accepted, hence a newer run that ended answers the wait;
- cancelling turns the waiting run itself `cancelled`: the wait is over;
- a normal message sent meanwhile is refused with HTTP 409 and leaves a `failed` run with
  no stop reason whose `metadata.error` says so: it answers nothing, the wait goes on.
  An ordinary failed run without a stop reason (a sync LLM 500) got past the server's
  pending-approval check, so it was an approval answer: it ends the wait.

Runs come newest first, so the run that answered a wait is often seen before the wait
itself: each thread remembers the newest run that answered (`answered_ns`), and a
`requires_approval` run not newer than that is history.

A refused run with no wait before it that the book can see (the request was cancelled
but Letta kept it pending, letta issue 3176, or it was lost) is *unexplained*: it is
counted once as `refused_without_wait`, and its thread stays *deadlocked* until a newer
run is accepted there. A `requires_approval` run older than the refusal, seen later in
the same walk, explains it, unless a run answered that request before the refusal.

A refusal explained by a wait that then turns out cancelled is judged again, because the
usual sequence (cancel, then a message at once) lists the refusal, newest first, before
the cancel in the same walk: it came after the cancel, hence is unexplained, when the
cancel's time (the list's `total_duration_ns` is rewritten by it) is older than the
refusal, or, that time unknown, when no observation after the refusal's first still
showed the request waiting.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

APPROVAL_STOP_REASON: Final = "requires_approval"
# Words of the 409 body Letta 0.16.8 stores as the refused run's metadata.error:
# "CONFLICT: Cannot send a new message: The agent is waiting for approval on a tool
# call. ..." (fixtures runs/sync_pending_approval_conflict). Were it an error object (as
# streaming paths store errors; not captured), its message and code are searched too.
_REFUSAL_MARKERS: Final = ("waiting for approval", "pending_approval", "pending approval")

Thread = tuple[str, str]
"""(agent id, conversation id or "" for the agent's own messages)."""


# The sync path leaves no stop reason on a refused run; streaming paths (conversations
# stream by default) raise the refusal inside the stream and write `error` with an error
# object (letta/services/streaming_service.py, 0.16.8).
_REFUSAL_STOP_REASONS: Final = (None, "error")


def refused_for_pending_approval(status: str, stop_reason: str | None, metadata: Any) -> bool:
    """True for the failed run Letta leaves when it refuses a message (409) because an
    approval is pending."""
    if (
        status != "failed"
        or stop_reason not in _REFUSAL_STOP_REASONS
        or not isinstance(metadata, Mapping)
    ):
        return False
    error = metadata.get("error")
    if isinstance(error, Mapping):
        text = " ".join(str(v) for v in error.values() if isinstance(v, str | Mapping))
    elif isinstance(error, str):
        text = error
    else:
        return False
    lowered = text.lower()
    return any(marker in lowered for marker in _REFUSAL_MARKERS)


@dataclass(slots=True)
class Wait:
    """One pending approval: the run that asked, when it asked, when last observed."""

    run_id: str
    created_ns: int
    since_ns: int
    seen_ns: int = 0


@dataclass(frozen=True, slots=True)
class _Explained:
    """A refusal a wait explained: when it was created, when the book first saw it."""

    created_ns: int
    seen_ns: int


@dataclass(slots=True)
class _ThreadState:
    wait: Wait | None = None
    answered_ns: int | None = None
    # Accepted runs newer than the wait still working on it (the agent is busy, nobody
    # is waiting for a person): id -> created_ns.
    working: dict[str, int] = field(default_factory=dict)
    # The newest refused run no wait explains, while no newer run was accepted: the
    # thread is deadlocked.
    refused_ns: int | None = None


@dataclass(frozen=True, slots=True)
class ApprovalWait:
    """One pending approval as the book holds it: its thread, the waiting run and since
    when (no label applied; `exporter.core.views.ApprovalWaitView` is the gauges' view)."""

    agent_id: str
    conversation_id: str
    run_id: str
    since_ns: int


class ApprovalBook:
    """Pending approvals per thread; persisted as one JSON document."""

    def __init__(self) -> None:
        self._threads: dict[Thread, _ThreadState] = {}
        self._by_run: dict[str, Thread] = {}  # waiting run id -> its thread
        # Refused runs no wait explains, not yet decided: run id -> (thread, created_ns).
        self._refusals: dict[str, tuple[Thread, int]] = {}
        # Refused runs explained or counted, kept while walks list them again: run id ->
        # created_ns (so a re-read neither recounts one nor mistakes it for new).
        self._settled_refusals: dict[str, int] = {}
        # Refusals each request explained, judged again if it turns out cancelled:
        # request run id -> refused run id -> when. Not persisted: after a restart the
        # walks list those refusals again and a wait restored (never seen) explains none.
        self._explained: dict[str, dict[str, _Explained]] = {}
        self.dirty = False

    def observe(
        self,
        *,
        run_id: str,
        agent_id: str,
        conversation_id: str | None,
        created_ns: int,
        status: str,
        stop_reason: str | None,
        terminal: bool,
        completed_ns: int | None,
        refused: bool,
        now: int,
        floor_ns: int = 0,
        ended_ns: int | None = None,
    ) -> None:
        """Apply one observation of a run. `floor_ns`: runs created before it are outside
        the window walks re-read, so an unknown wait there may be long answered.
        `ended_ns`: when a cancelled run was cancelled, if known."""
        key = (agent_id, conversation_id or "")
        state = self._threads.get(key)
        waiting_run = run_id in self._by_run
        if stop_reason == APPROVAL_STOP_REASON and status != "cancelled":
            if state is not None:
                self._explain(key, state, run_id, created_ns, now)
            if waiting_run:
                assert state is not None and state.wait is not None
                state.wait.seen_ns = now
                return
            if created_ns < floor_ns:
                return
            if state is None:
                state = self._threads[key] = _ThreadState()
            if state.answered_ns is not None and created_ns <= state.answered_ns:
                return  # a newer run already answered it
            if state.wait is not None and created_ns <= state.wait.created_ns:
                return
            self._start(key, state, Wait(run_id, created_ns, completed_ns or created_ns, now))
            return
        if waiting_run:
            # The waiting run itself changed (cancelled): nothing waits any more.
            assert state is not None
            self._end_wait(key, state, cancelled=status == "cancelled", ended_ns=ended_ns)
            return
        if refused:
            if state is None:
                state = self._threads[key] = _ThreadState()
            state.working.pop(run_id, None)
            if run_id in self._refusals or run_id in self._settled_refusals:
                return
            wait = state.wait
            if wait is not None and wait.created_ns < created_ns:
                self._settled_refusals[run_id] = created_ns
                explained = self._explained.setdefault(wait.run_id, {})
                explained[run_id] = _Explained(created_ns, now)
            else:
                self._unexplained(key, state, run_id, created_ns)
            return
        if state is None:
            if not terminal:
                return
            state = self._threads[key] = _ThreadState()
        if not terminal:
            wait = state.wait
            if wait is not None and created_ns > wait.created_ns and run_id not in state.working:
                # Not persisted: the next cycle observes open runs again.
                state.working[run_id] = created_ns
            return
        state.working.pop(run_id, None)
        self._answer(key, state, created_ns)

    def answered(
        self,
        run_id: str,
        agent_id: str,
        conversation_id: str | None,
        created_ns: int,
        *,
        cancelled: bool = False,
        ended_ns: int | None = None,
    ) -> None:
        """Fast path of observe() for a run that ended `completed` or `cancelled` with
        any stop reason but `requires_approval` (most runs): it answers its thread.
        `ended_ns`: when a cancelled run was cancelled, if known."""
        key = (agent_id, conversation_id or "")
        state = self._threads.get(key)
        if state is None:
            self._threads[key] = _ThreadState(answered_ns=created_ns)
            self.dirty = True
            return
        if run_id in self._by_run:
            self._end_wait(key, state, cancelled=cancelled, ended_ns=ended_ns)
        elif run_id in state.working or state.wait is not None:
            state.working.pop(run_id, None)
            self._answer(key, state, created_ns)
        elif state.answered_ns is None or created_ns > state.answered_ns:
            state.answered_ns = created_ns
            if state.refused_ns is not None and created_ns > state.refused_ns:
                state.refused_ns = None  # accepted after the refusal: not deadlocked
            self.dirty = True

    def vanished(self, run_id: str) -> None:
        """A run answered 404 (deleted, or its agent was): a wait on it is over, and a
        continuation it was no longer keeps its thread busy."""
        key = self._by_run.get(run_id)
        if key is not None:
            state = self._threads[key]
            assert state.wait is not None
            self._answer(key, state, state.wait.created_ns)
            return
        for state in self._threads.values():
            if state.working.pop(run_id, None) is not None:
                return

    def take_unexplained(self, listed_until_ns: int) -> list[str]:
        """Agent ids of refused runs no wait explains, created before `listed_until_ns`
        (a walk listed every older run since), each returned once."""
        agents = []
        for run_id, ((agent, _), created) in list(self._refusals.items()):
            if created < listed_until_ns:
                del self._refusals[run_id]
                self._settled_refusals[run_id] = created
                agents.append(agent)
        return agents

    def deadlocks(self) -> Iterator[tuple[Thread, int]]:
        """Threads whose newest refusal no wait explains and no later run was accepted,
        with the refusal's created_ns."""
        for key, state in self._threads.items():
            if state.refused_ns is not None and state.wait is None:
                yield key, state.refused_ns

    def due_refresh(self, since: int) -> list[str]:
        """Waiting runs not observed since `since` (fallen out of the re-walked window):
        only fetching them shows a cancel."""
        return [
            s.wait.run_id
            for s in self._threads.values()
            if s.wait is not None and s.wait.seen_ns < since
        ]

    def waits(self, *, working_after_ns: int = 0) -> Iterator[ApprovalWait]:
        """Pending approvals; a thread with an accepted run newer than `working_after_ns`
        still working is busy, not waiting."""
        for (agent, conversation), state in self._threads.items():
            wait = state.wait
            if wait is None:
                continue
            if any(created > working_after_ns for created in state.working.values()):
                continue
            yield ApprovalWait(agent, conversation, wait.run_id, wait.since_ns)

    def prune(self, floor_ns: int, deadlock_floor_ns: int = 0) -> None:
        """Forget answers no walk can contradict any more (older than the window), and
        deadlocks older than `deadlock_floor_ns` (the agent may be long gone)."""
        # Working runs exist only next to a wait (cleared with it), so they need no pruning;
        # a zombie among them stops hiding the wait once stale (see waits()).
        for key, state in list(self._threads.items()):
            if state.refused_ns is not None and state.refused_ns < deadlock_floor_ns:
                state.refused_ns = None
                self.dirty = True
            if (
                state.wait is None
                and state.refused_ns is None
                and (state.answered_ns is None or state.answered_ns < floor_ns)
            ):
                del self._threads[key]
                self.dirty = True
        for run_id, (_, created) in list(self._refusals.items()):
            if created < floor_ns:
                del self._refusals[run_id]
        for run_id, created in list(self._settled_refusals.items()):
            if created < floor_ns:
                del self._settled_refusals[run_id]
        for request_id, explained in list(self._explained.items()):
            if request_id not in self._by_run and all(
                e.created_ns < floor_ns for e in explained.values()
            ):
                del self._explained[request_id]

    def _start(self, key: Thread, state: _ThreadState, wait: Wait) -> None:
        if state.wait is not None:
            self._by_run.pop(state.wait.run_id, None)
        state.wait = wait
        state.working = {r: c for r, c in state.working.items() if c > wait.created_ns}
        self._by_run[wait.run_id] = key
        self.dirty = True

    def _unexplained(self, key: Thread, state: _ThreadState, run_id: str, created: int) -> None:
        self._refusals[run_id] = (key, created)
        accepted_since = state.answered_ns is not None and state.answered_ns > created
        if not accepted_since and (state.refused_ns is None or created > state.refused_ns):
            state.refused_ns = created
            self.dirty = True

    def _explain(
        self, key: Thread, state: _ThreadState, request_id: str, request_ns: int, now: int
    ) -> None:
        """A request for approval created at `request_ns`, seen waiting at `now`, explains
        the thread's later refusals, unless a run answered it before them."""
        answered = state.answered_ns

        def explained(refused_ns: int) -> bool:
            if refused_ns <= request_ns:
                return False
            return answered is None or not request_ns <= answered < refused_ns

        for run_id, (thread, created) in list(self._refusals.items()):
            if thread == key and explained(created):
                del self._refusals[run_id]
                self._settled_refusals[run_id] = created
                self._explained.setdefault(request_id, {})[run_id] = _Explained(created, now)
        if state.refused_ns is not None and explained(state.refused_ns):
            state.refused_ns = None
            self.dirty = True

    def _end_wait(
        self, key: Thread, state: _ThreadState, *, cancelled: bool, ended_ns: int | None
    ) -> None:
        """The waiting run itself ended otherwise (cancelled, or a late write): nothing
        waits any more; a cancel leaves unexplained the refusals that came after it."""
        wait = state.wait
        assert wait is not None
        self._answer(key, state, wait.created_ns)
        explained = self._explained.pop(wait.run_id, {})
        if not cancelled:
            return
        for run_id, refusal in explained.items():
            if ended_ns is not None:
                after_cancel = refusal.created_ns > ended_ns
            else:
                # Seen waiting again once the refusal was listed: the cancel came after.
                after_cancel = wait.seen_ns < refusal.seen_ns
            if after_cancel and self._settled_refusals.pop(run_id, None) is not None:
                self._unexplained(key, state, run_id, refusal.created_ns)

    def _answer(self, key: Thread, state: _ThreadState, created_ns: int) -> None:
        if state.refused_ns is not None and created_ns > state.refused_ns:
            state.refused_ns = None
            self.dirty = True
        if state.answered_ns is None or created_ns > state.answered_ns:
            state.answered_ns = created_ns
            self.dirty = True
        wait = state.wait
        if wait is not None and created_ns >= wait.created_ns:
            self._by_run.pop(wait.run_id, None)
            state.wait = None
            state.working.clear()
            self.dirty = True

    # ---- persistence -----------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """Persistable form: per thread [agent, conversation, answered_ns, wait or null,
        refused_ns] (the last one only while deadlocked)."""
        threads = []
        for (agent, conversation), state in self._threads.items():
            wait = state.wait
            row: list[Any] = [
                agent,
                conversation,
                state.answered_ns,
                [wait.run_id, wait.created_ns, wait.since_ns] if wait is not None else None,
            ]
            if state.refused_ns is not None:
                row.append(state.refused_ns)
            threads.append(row)
        return {"version": 1, "threads": threads}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ApprovalBook:
        """Inverse of to_json (working runs are seen again by the next cycle)."""
        book = cls()
        for agent, conversation, answered, wait, *rest in data.get("threads", ()):
            state = _ThreadState(answered_ns=int(answered) if answered is not None else None)
            if rest and rest[0] is not None:
                state.refused_ns = int(rest[0])
            key = (str(agent), str(conversation))
            book._threads[key] = state
            if wait is not None:
                state.wait = Wait(str(wait[0]), int(wait[1]), int(wait[2]))
                book._by_run[state.wait.run_id] = key
        return book
