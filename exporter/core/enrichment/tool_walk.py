"""The tools of many finished runs from one walk down every run's messages.

`GET /v1/messages/` lists the messages of every run, newest first by their insert
sequence. One walk per cycle, from the head down, gives the tool calls of every run whose
messages it passed, for a few requests instead of one or more per run. Pure rules: the
poller fetches the pages; this module plans how far to walk, groups what each page
holds, and says which runs are complete.

When a run's calls are all read (a run is *covered*): the walk starts after the run was
seen finished, so every message of it is at or below the head; a message is inserted
before its run ends, so an unread message (below every message read) was inserted before
the run of any message read had ended. A run created after a known run that completed
(status completed, whose message the walk read) has none of its messages below: it is
covered. The walk reads down until every planned run is covered, or the list ends, or the
page budget is spent; runs left uncovered take the per-run path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final

from exporter.core.runs.record import RunRecord
from exporter.letta.messages import ListedMessage
from exporter.units import NS_PER_S

MAX_WALK_PAGES: Final = 50
PAGE_LIMIT: Final = 1000
# Clock reads of the same server, but a run's end and its last insert are separate writes.
END_SLACK_NS: Final = 1 * NS_PER_S
# The walk reads a little below the oldest planned run: the run that bounds it is older.
PLAN_SLACK_NS: Final = 10 * NS_PER_S

CompletedAt = Callable[[str], int | None]
"""When a run the exporter knows ended (completed_at, epoch ns), if it completed."""


@dataclass(frozen=True, slots=True)
class WalkPlan:
    """Which runs one walk aims to serve (newest first) and how many pages it may read."""

    runs: tuple[RunRecord, ...]
    budget: int


@dataclass(slots=True)
class MessageRate:
    """Messages per second across every run, learnt from the last walk that read some."""

    per_s: float | None = None

    def learn(self, messages: int, newest_ns: int | None, oldest_ns: int | None) -> None:
        """Update from one walk: `messages` distinct messages dated from oldest to newest."""
        if messages < 2 or newest_ns is None or oldest_ns is None or newest_ns <= oldest_ns:
            return
        self.per_s = messages / ((newest_ns - oldest_ns) / NS_PER_S)


def plan_walk(
    wanting: Iterable[RunRecord],
    now: int,
    rate: MessageRate,
    *,
    page_limit: int = PAGE_LIMIT,
    max_pages: int = MAX_WALK_PAGES,
) -> WalkPlan | None:
    """The walk worth making for these runs, or None when asking per run is cheaper.

    Each run served saves at least one request (`/metrics`, or its messages); a walk
    reaching a run created `age` seconds ago costs about 1 + rate x age / page_limit
    pages. The plan serves the newest runs for which the walk costs no more than they
    would, and may not read more pages than it serves runs.
    """
    runs = sorted(wanting, key=lambda r: r.created_ns, reverse=True)
    if not runs:
        return None
    if rate.per_s is None:
        return WalkPlan(tuple(runs), min(len(runs), max_pages))
    served = 0
    for k, record in enumerate(runs, start=1):
        age_s = max(0, now - record.created_ns + PLAN_SLACK_NS) / NS_PER_S
        pages = 1 + int(rate.per_s * age_s / page_limit)
        if pages > max_pages:
            break
        if pages <= k:
            served = k
    if served == 0:
        return None
    return WalkPlan(tuple(runs[:served]), served)


@dataclass(slots=True)
class ToolWalk:
    """One walk's reading: tool calls grouped by the planned runs, and how far it got."""

    plan: WalkPlan
    completed_at: CompletedAt
    calls: dict[str, dict[str, str]] = field(default_factory=dict)
    """Run id → {call key → tool name}: a call read twice counts once."""
    pages: int = 0
    ended: bool = False
    """The list ran out: every message was read."""
    bound_ns: int | None = None
    """Every unread message was inserted before this (the earliest end of a completed
    run whose message was read)."""
    _seen: set[str] = field(default_factory=set)
    _newest_first: bool | None = None
    """The server's page order, once a page's two ends had different dates."""
    _other_end: str | None = None
    """The cursor to try when the last one repeated its page (the order was a guess)."""
    _newest_ns: int | None = None
    _oldest_ns: int | None = None

    def __post_init__(self) -> None:
        self.calls = {record.id: {} for record in self.plan.runs}

    def take(self, page: list[ListedMessage]) -> str | None:
        """Read one page; returns the cursor of the next one, None when the walk is done."""
        self.pages += 1
        if not page:
            self.ended = True
            return None
        fresh = [m for m in page if m.id not in self._seen]
        if not fresh:
            # The page repeated itself: the guessed end was the newest. Try the other
            # end once, else stop where the walk is.
            cursor, self._other_end = self._other_end, None
            return cursor if self.pages < self.plan.budget else None
        for message in fresh:
            self._seen.add(message.id)
            self._read(message)
        if self._all_covered() or self.pages >= self.plan.budget:
            return None
        return self._oldest_end(page)

    def served(self) -> dict[str, dict[str, int]]:
        """Calls per tool name of each planned run the walk covered."""
        out: dict[str, dict[str, int]] = {}
        for record in self.plan.runs:
            if not self._covers(record):
                continue
            by_name: dict[str, int] = {}
            for name in self.calls[record.id].values():
                by_name[name] = by_name.get(name, 0) + 1
            out[record.id] = by_name
        return out

    def learn(self, rate: MessageRate) -> None:
        """Tell `rate` how dense the messages were."""
        rate.learn(len(self._seen), self._newest_ns, self._oldest_ns)

    def _read(self, message: ListedMessage) -> None:
        date = message.date_ns
        if date is not None:
            self._newest_ns = date if self._newest_ns is None else max(self._newest_ns, date)
            self._oldest_ns = date if self._oldest_ns is None else min(self._oldest_ns, date)
        run_id = message.run_id
        if run_id is None:
            return
        calls = self.calls.get(run_id)
        if calls is not None:
            for key, name in message.calls:
                calls.setdefault(key, name)
        ended = self.completed_at(run_id)
        if ended is not None and (self.bound_ns is None or ended < self.bound_ns):
            self.bound_ns = ended

    def _oldest_end(self, page: list[ListedMessage]) -> str:
        """The page's oldest message, the next cursor: 0.16.8 returns a desc page in
        ascending order, other servers newest first. The dates of its two ends tell;
        when they are equal, the order last seen (or 0.16.8's), the other end kept in
        case the guess repeats the page."""
        first, last = page[0], page[-1]
        if None not in (first.date_ns, last.date_ns) and first.date_ns != last.date_ns:
            self._newest_first = (first.date_ns or 0) > (last.date_ns or 0)
        oldest, other = (last, first) if self._newest_first else (first, last)
        self._other_end = other.id if other.id != oldest.id else None
        return oldest.id

    def _covers(self, record: RunRecord) -> bool:
        if self.ended:
            return True
        return self.bound_ns is not None and record.created_ns > self.bound_ns + END_SLACK_NS

    def _all_covered(self) -> bool:
        return all(self._covers(record) for record in self.plan.runs)
