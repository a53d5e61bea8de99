"""Workloads beyond one run at a time: bursts, a million bulk runs, raw items, forgetting."""

from __future__ import annotations

import gc
import random
from collections.abc import Sequence
from typing import Any

from tests.fake_letta.constants import CANONICAL_STATUS, DEFAULT_STATUS_CYCLE, Timestamp
from tests.fake_letta.lifecycle import RunLifecycle
from tests.fake_letta.model import RawItem, Run, row_key
from tests.fake_letta.wire import dumps, to_us, uuid4_from_bits


class Workload(RunLifecycle):
    """Control API: many runs at once, and arbitrary list items."""

    def finish_burst(
        self,
        count: int,
        agents: Sequence[str],
        *,
        shared_fraction: float = 0.3,
        spread_s: float = 0.05,
        rng: random.Random | None = None,
    ) -> list[str]:
        """Create ``count`` finished runs at once, as a busy server does in a burst.

        ``shared_fraction`` of them share one ``created_at`` to the microsecond, the
        newest (ties at the head of the list); the others lie up to ``spread_s`` before
        it. Outcomes cycle through the default status cycle. Returns the ids.
        """
        rng = rng or random.Random()
        head = self._clock()
        shared = round(count * shared_fraction)
        ids = []
        for i in range(count):
            created = head if i < shared else head - rng.uniform(0.0, spread_s)
            run_id = self.create_run(agents[i % len(agents)], created_at=created)
            status, reason = DEFAULT_STATUS_CYCLE[i % len(DEFAULT_STATUS_CYCLE)]
            self.update_run(run_id, status=status, stop_reason=reason)
            ids.append(run_id)
        return ids

    def finish_with(
        self, agent_id: str, stop_reason: str, *, conversation_id: str | None = None
    ) -> str:
        """One run of the agent that stops with ``stop_reason`` under the status Letta
        maps it to (``StopReasonType.run_status``, §2.3): the way to produce the reasons
        0.16.8 seldom or never writes, such as Letta Cloud's ``insufficient_credits``
        (0.16.8's credit check always passes) or ``context_window_overflow_in_system_prompt``.
        Returns the run id."""
        status = CANONICAL_STATUS.get(stop_reason, "failed")
        run_type = "send_conversation_message" if conversation_id else "send_message"
        run_id = self.create_run(agent_id, conversation_id=conversation_id, run_type=run_type)
        self.update_run(run_id, status=status, stop_reason=stop_reason)
        return run_id

    def add_raw_item(self, obj: dict[str, Any], *, created_at: Timestamp | None = None) -> str:
        """Put an arbitrary (possibly invalid) JSON object into list results.

        Its position follows ``created_at`` (the keyword, else ``obj["created_at"]`` if it
        parses, else the head of the list: newest, i.e. first in ``desc`` order) and then
        ``obj["id"]`` if it is a string. List filters compare against the object's own
        fields, so ``{"status": 42}`` never matches ``statuses=...``. A string ``id``
        can be used as a cursor, like any row in the database. Returns a handle for
        :meth:`remove_raw_item`.
        """
        now = self._clock()
        with self._lock:
            raw = RawItem()
            raw.obj = obj
            raw.body = dumps(obj).encode()
            raw.handle = f"raw-{len(self._raw)}-{next(self._seq)}"
            raw.seq = next(self._seq)
            raw_id = obj.get("id")
            raw.sid = raw_id if isinstance(raw_id, str) else ""
            raw.us = self._raw_position(obj, created_at, now)
            raw.agent_id = obj.get("agent_id")
            raw.status = obj.get("status")
            raw.stop_reason = obj.get("stop_reason")
            raw.background = obj.get("background")
            raw.conversation_id = obj.get("conversation_id")
            self._raw[raw.handle] = raw
            if isinstance(raw_id, str):
                self._raw_by_id[raw_id] = raw
            self._insert_row(raw)
            return raw.handle

    def remove_raw_item(self, handle: str) -> None:
        """Remove an item added with :meth:`add_raw_item`."""
        with self._lock:
            self._remove_raw_locked(self._raw[handle])

    def _raw_position(self, obj: dict[str, Any], created_at: Timestamp | None, now: float) -> int:
        if created_at is not None:
            return to_us(created_at)
        value = obj.get("created_at")
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            try:
                return to_us(value)
            except (ValueError, OverflowError):
                pass
        # No usable timestamp: the head of the default (desc) listing.
        newest = max((row.us for row in self._rows[-1:]), default=to_us(now))
        return newest + 1

    def bulk_load(
        self,
        n: int,
        *,
        agents: int | Sequence[str] = 10,
        start: Timestamp | None = None,
        spacing_s: float = 0.01,
        status_cycle: Sequence[tuple[str, str | None]] = DEFAULT_STATUS_CYCLE,
        duration_s: float = 1.5,
        seed: int | None = None,
    ) -> list[str]:
        """Create ``n`` terminal runs fast (1,000,000 in a few seconds) and return their ids.

        Run ``i`` is created at ``start + i * spacing_s`` (default: so the newest is ``now``),
        belongs to agent ``i % len(agents)``, takes ``status_cycle[i % len]`` as
        ``(status, stop_reason)``, and completed ``duration_s`` (±50 %) later with its
        metrics already committed. Each run has 1–3 steps with token counts and a
        ``step_metrics`` row (the run's duration split evenly); the Step objects are
        built only when the run's ``/steps`` is first requested (or a step is added), so
        ``/usage``, ``/metrics`` and the truths never build them.
        """
        if n <= 0:
            return []
        rng = random.Random(seed)
        if isinstance(agents, int):
            agent_ids = [f"agent-{uuid4_from_bits(rng.getrandbits(128))}" for _ in range(agents)]
        else:
            agent_ids = list(agents)
        cycle = list(status_cycle)
        spacing_us = round(spacing_s * 1_000_000)
        now_us = to_us(self._clock())
        start_us = to_us(start) if start is not None else now_us - (n - 1) * spacing_us
        meta, meta_json = self._bulk_meta, self._bulk_meta_json
        base_dur_us = max(1, round(duration_s * 1_000_000))
        getrandbits = rng.getrandbits
        new_rows: list[Run] = []
        # A million new objects would trigger the cyclic GC over and over while creating
        # nothing cyclic; pausing it cuts the load time by more than half.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            with self._lock:
                seq = self._seq
                runs = self._runs
                for i in range(n):
                    run = Run()
                    rid = "run-" + uuid4_from_bits(getrandbits(128))
                    status, stop_reason = cycle[i % len(cycle)]
                    us = start_us + i * spacing_us
                    dur_us = base_dur_us // 2 + (getrandbits(20) * base_dur_us >> 20)
                    run.sid = rid
                    run.us = us
                    run.seq = next(seq)
                    run.agent_id = agent_ids[i % len(agent_ids)]
                    run.status = status
                    run.stop_reason = stop_reason
                    run.background = False
                    run.conversation_id = None
                    run.completed_us = us + dur_us
                    run.metadata = meta  # shared; _update_locked copies it before writing
                    run.meta_json = meta_json
                    run.callback_url = None
                    run.callback_sent_us = None
                    run.callback_status_code = None
                    run.callback_error = None
                    run.visible = True
                    run.has_metrics = True
                    run.run_start_ns = us * 1000
                    run.m_run_ns = dur_us * 1000
                    count = 1 + i % 3
                    run.m_num_steps = count
                    run.m_tools = None
                    run.pending = []
                    run.steps = []
                    run.lazy_steps = (count, 900 + i % 500, 20 + i % 80, dur_us * 1000 // count)
                    run.trace = None
                    run.j_get = None
                    run.j_list = None
                    if rid in runs:  # astronomically unlikely, but keep ids unique
                        continue
                    runs[rid] = run
                    new_rows.append(run)
                self._rows.extend(new_rows)
                self._rows.sort(key=row_key)  # Timsort: near-linear on these presorted runs
                self._rebuild_indexes()
        finally:
            if gc_was_enabled:
                gc.enable()
        return [run.sid for run in new_rows]

    def forget_before(self, created_before: Timestamp) -> int:
        """Hard-delete every visible *finished* run created before ``created_before`` (a
        soak keeps the fake's memory bounded this way; open runs and zombies stay).
        Returns how many went. Raw items stay."""
        cutoff = to_us(created_before)
        with self._lock:
            victims = [
                r
                for r in self._runs.values()
                if r.visible and r.us < cutoff and r.status not in ("created", "running")
            ]
            for run in victims:
                for step in run.steps:
                    self._steps_by_id.pop(step.data["id"], None)
                del self._runs[run.sid]
            gone = {id(run) for run in victims}
            self._rows = [row for row in self._rows if id(row) not in gone]
            self._rebuild_indexes()
        return len(victims)
