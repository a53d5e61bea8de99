"""The runs list and its cursor profiles: Letta 0.16.8's swapped cursors (§4.2), time-based
(``conventional``) and order-relative (``relative``) ones, on Postgres or SQLite keys.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from tests.fake_letta.constants import Semantics, UnknownCursor
from tests.fake_letta.model import Row, bucket, pg_key, row_key, sqlite_key
from tests.fake_letta.responses import RouteError, not_found
from tests.fake_letta.store import RunStore
from tests.fake_letta.wire import sqlite_cursor_value


class RunListing(RunStore):
    """The runs list, paged by the current cursor semantics."""

    def set_semantics(
        self, semantics: Semantics, unknown_cursor: UnknownCursor | None = None
    ) -> None:
        """Change the list-cursor semantics from the next request on (see the class)."""
        if semantics not in ("letta-0.16.8", "conventional", "relative"):
            raise ValueError(f"unknown semantics {semantics!r}")
        if unknown_cursor not in (None, "404", "ignore"):
            raise ValueError(f"unknown unknown_cursor {unknown_cursor!r}")
        default: UnknownCursor = "404" if semantics == "relative" else "ignore"
        with self._lock:
            self.semantics = semantics
            self.unknown_cursor = unknown_cursor or default

    def _lookup_cursor(self, cursor_id: str) -> Row | None:
        """The cursor row is read by id only: no organisation, agent or status filter
        (§4.4). Missing (unknown, deleted, not committed yet) means "ignore the cursor"."""
        run = self._runs.get(cursor_id)
        if run is not None:
            return run if run.visible else None
        return self._raw_by_id.get(cursor_id)

    def _boundary(self, cursor: Row, forward: bool) -> int:
        """Index into ``self._rows`` where Letta's ``_cursor_filter`` flips.

        ``forward`` keeps rows with ``(created_at, id) > cursor``, i.e. ``rows[i:]``; else
        rows with ``< cursor``, i.e. ``rows[:i]``.
        """
        if self.backend == "sqlite":
            # run_manager_helper on SQLite: cursor value = strftime("%Y-%m-%d %H:%M:%S"),
            # compared *as a string* with the stored "YYYY-MM-DD HH:MM:SS.ffffff" values:
            #   col > ref OR (col == ref AND id > ref_id)   (forward; mirrored backward)
            # which is the tuple comparison (stored, id) > (ref, ref_id). Stored strings are
            # fixed-width, so this predicate is monotone along the sort order and bisect on
            # the string key finds exactly the rows the SQL would return.
            target: tuple[Any, ...] = (sqlite_cursor_value(cursor.us), cursor.sid)
            key: Callable[[Row], tuple[Any, ...]] = sqlite_key
        else:
            target = (cursor.us, cursor.sid)
            key = pg_key
        if forward:
            return bisect.bisect_right(self._rows, target, key=key)
        return bisect.bisect_left(self._rows, target, key=key)

    def _list_locked(
        self,
        *,
        agent_ids: list[str] | None,
        statuses: Sequence[str] | None,
        background: bool | None,
        stop_reason: str | None,
        conversation_id: str | None,
        before: str | None,
        after: str | None,
        limit: int,
        ascending: bool,
        now: float,
    ) -> list[bytes]:
        rows = self._rows
        lo, hi = 0, len(rows)
        from_tail = False
        if self.semantics == "letta-0.16.8":
            # _apply_pagination_async: after -> forward=not ascending, before ->
            # forward=ascending. That is the swap of commit 5fddf94ac (§4.2).
            after_forward, before_forward = not ascending, ascending
        elif self.semantics == "relative":
            # Cursors relative to the sort order, as the cloud SDK documents and the steps
            # list does (§4.6, §9): after = next page, before = previous page.
            after_forward, before_forward = ascending, not ascending
        else:
            after_forward, before_forward = True, False  # newer than / older than X
        after_row = self._lookup_cursor(after) if after else None
        before_row = self._lookup_cursor(before) if before else None
        if self.unknown_cursor == "404":
            # Cursor-checking servers answer 404 to an unknown cursor (§4.6) instead of
            # silently restarting the list.
            for cursor_id, row in ((after, after_row), (before, before_row)):
                if cursor_id and row is None:
                    raise RouteError(not_found("Run", cursor_id))
        for cursor, forward in ((after_row, after_forward), (before_row, before_forward)):
            if cursor is None:
                continue
            if forward:
                lo = max(lo, self._boundary(cursor, True))
            else:
                hi = min(hi, self._boundary(cursor, False))
        if self.semantics == "relative" and before_row is not None and after_row is None:
            from_tail = True  # the previous page: the `limit` rows just before X
        if self.semantics == "conventional" and (before_row is None) != (after_row is None):
            # A previous page (asc+before, desc+after) is the `limit` rows adjacent to
            # the cursor, not the head of the list: walk towards the cursor, then flip.
            from_tail = (before_row is not None) if ascending else (after_row is not None)
        if lo >= hi:
            return []

        # Pick the narrowest index that covers the filters, then re-check everything.
        sources: list[list[Row]]
        if agent_ids:
            sources = [self._by_agent.get(a, []) for a in dict.fromkeys(agent_ids)]
        elif statuses is not None:
            sources = [self._by_status.get(s, []) for s in dict.fromkeys(statuses)]
        else:
            sources = [rows]
        lo_key = row_key(rows[lo])
        hi_key = row_key(rows[hi]) if hi < len(rows) else None
        descending_walk = not ascending
        if from_tail:
            descending_walk = not descending_walk
        iterators: list[Iterator[Row]] = []
        for src in sources:
            if src is rows:
                a, b = lo, hi
            else:
                a = bisect.bisect_left(src, lo_key, key=row_key)
                b = len(src) if hi_key is None else bisect.bisect_left(src, hi_key, key=row_key)
            if a >= b:
                continue
            indices = range(b - 1, a - 1, -1) if descending_walk else range(a, b)
            iterators.append(map(src.__getitem__, indices))
        if not iterators:
            return []
        merged: Iterable[Row] = (
            iterators[0]
            if len(iterators) == 1
            else heapq.merge(*iterators, key=row_key, reverse=descending_walk)
        )
        agent_set = set(agent_ids) if agent_ids else None
        status_set = set(statuses) if statuses is not None else None
        scope = self._request_project()
        picked: list[Row] = []
        for row in merged:
            if scope is not None and self._run_projects.get(row.sid) != scope:
                continue
            if agent_set is not None and bucket(row.agent_id) not in agent_set:
                continue
            if status_set is not None and bucket(row.status) not in status_set:
                continue
            if background is not None and row.background is not background:
                continue
            if stop_reason is not None and row.stop_reason != stop_reason:
                continue
            if conversation_id is not None and row.conversation_id != conversation_id:
                continue
            picked.append(row)
            if len(picked) >= limit:
                break
        if from_tail:
            picked.reverse()
        return [self._row_bytes(row, now) for row in picked]
