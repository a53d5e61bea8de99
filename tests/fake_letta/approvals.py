"""Tool approvals: a thread that waits, the 409 a message gets meanwhile, the answer;
a conversation's request orphaned by a cancel (letta issue 3176)."""

from __future__ import annotations

from tests.fake_letta.constants import (
    PENDING_APPROVAL_ERROR,
    PENDING_APPROVAL_STREAM_ERROR,
    Timestamp,
)
from tests.fake_letta.lifecycle import RunLifecycle


class Approvals(RunLifecycle):
    """Control API: the approval round trip of one agent thread."""

    def request_approval(
        self,
        agent_id: str,
        *,
        conversation_id: str | None = None,
        created_at: Timestamp | None = None,
        completed_at: Timestamp | None = None,
    ) -> str:
        """The agent called a tool that requires approval: a new run ends
        ``completed``/``requires_approval`` and its thread (the agent's own messages, or
        the conversation) waits (fixtures ``runs/approval_left_pending``). Returns the run."""
        thread = (agent_id, conversation_id or "")
        if thread in self._pending_approvals:
            raise ValueError(f"{thread} already waits for an approval")
        run_id = self._thread_run(agent_id, conversation_id, created_at)
        self.update_run(
            run_id, status="completed", stop_reason="requires_approval", completed_at=completed_at
        )
        with self._lock:
            self._pending_approvals[thread] = run_id
        return run_id

    def answer_approval(
        self,
        agent_id: str,
        *,
        conversation_id: str | None = None,
        approve: bool = True,
        finish: bool = True,
    ) -> str:
        """Approve or deny the pending request: a **new** run continues the agent (the
        waiting run stays as it was); it ends ``completed``/``end_turn`` unless
        ``finish`` is False (then it stays ``created``, working, like a sync run).
        Returns the new run."""
        thread = (agent_id, conversation_id or "")
        with self._lock:
            waiting = self._pending_approvals.pop(thread, None)
            if waiting is None and self._orphaned_approvals.pop(thread, None) is None:
                raise ValueError(f"{thread} waits for no approval")
        # Approval and denial look the same in the runs: the agent reads the answer and
        # goes on in a new run (`approve` only documents the caller's intent).
        run_id = self._thread_run(agent_id, conversation_id, None)
        if finish:
            self.update_run(run_id, status="completed", stop_reason="end_turn")
        return run_id

    def send_message(self, agent_id: str, *, conversation_id: str | None = None) -> tuple[int, str]:
        """A normal message. While the thread waits for an approval (or keeps an orphaned
        one) Letta refuses it and leaves a ``failed`` run: with no stop reason on the
        agent's own (sync) thread, answered 409 (fixtures
        ``sync_pending_approval_conflict``); with ``error`` and an error object in a
        conversation, which streams (200 and an SSE error event with the 409's text). The
        approval still waits. Otherwise the run ends ``completed``/``end_turn``. Returns
        (409 for a refusal on either path, else 200; the run id)."""
        run_id = self._thread_run(agent_id, conversation_id, None)
        thread = (agent_id, conversation_id or "")
        with self._lock:
            refused = thread in self._pending_approvals or thread in self._orphaned_approvals
        if refused and conversation_id is None:
            self.update_run(run_id, status="failed", stop_reason=None, error=PENDING_APPROVAL_ERROR)
            return 409, run_id
        if refused:
            error = {"message_type": "error_message", "run_id": run_id}
            error.update(PENDING_APPROVAL_STREAM_ERROR)
            self.update_run(run_id, status="failed", stop_reason="error", error=error)
            return 409, run_id
        self.update_run(run_id, status="completed", stop_reason="end_turn")
        return 200, run_id

    def cancel_run(self, run_id: str) -> str:
        """``POST /v1/agents/{id}/messages/cancel`` for one run (§5.1 G): ``cancelled``
        with stop reason ``cancelled``, unless the run already has a stop reason other
        than ``requires_approval`` (then nothing changes and the answer is ``failed``).
        Cancelling the waiting run ends the wait on the agent's own thread; in a
        conversation 0.16.8 denies nothing (``cancel_run`` reads the agent's message list,
        letta issue 3176): the request stays pending there, orphaned."""
        with self._lock:
            run = self._run_or_raise(run_id)
            if run.stop_reason not in (None, "requires_approval"):
                return "failed"
            for thread, waiting in list(self._pending_approvals.items()):
                if waiting == run_id:
                    del self._pending_approvals[thread]
                    if thread[1]:
                        self._orphaned_approvals[thread] = run_id
        self.update_run(run_id, status="cancelled", stop_reason="cancelled")
        return "cancelled"

    def pending_approval(self, agent_id: str, conversation_id: str | None = None) -> str | None:
        """Ground truth: the run waiting for approval on that thread, if any."""
        with self._lock:
            return self._pending_approvals.get((agent_id, conversation_id or ""))

    def pending_approvals(self) -> dict[tuple[str, str], str]:
        """Ground truth: every waiting thread and its run."""
        with self._lock:
            return dict(self._pending_approvals)

    def orphaned_approvals(self) -> dict[tuple[str, str], str]:
        """Ground truth: threads that refuse messages for a request whose run was
        cancelled (deadlocked until answered), and that run."""
        with self._lock:
            return dict(self._orphaned_approvals)

    def _thread_run(
        self, agent_id: str, conversation_id: str | None, created_at: Timestamp | None
    ) -> str:
        # conversation_id is set only by the conversations streaming path (§5.1 B).
        if conversation_id is None:
            return self.create_run(agent_id, created_at=created_at)
        return self.create_run(
            agent_id,
            created_at=created_at,
            conversation_id=conversation_id,
            run_type="send_conversation_message",
        )
