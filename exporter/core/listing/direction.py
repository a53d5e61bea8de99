"""Which list-cursor parameter walks towards older runs, judged from the pages themselves.

Pure logic, no I/O. With `order=desc`, `before=X` lists older runs on Letta 0.16.8
(swapped cursors) and on servers whose cursors are absolute in time; `after=X` does on
servers whose cursors are relative to the sort order (what Letta Cloud documents). No
answer is trusted blindly: every page asked with a cursor is classified against the
cursor's key, and a page that is not clearly older makes the pager ask the other
parameter once and keep the better answer (`better`). The parameter in force changes at
the first evidence while undecided, and later only after `FLIP_AFTER` consecutive pieces
of contrary evidence, so a single odd answer cannot make it flap.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from exporter.letta.models import CursorParam
from exporter.units import NS_PER_S

Key = tuple[int, str]
"""The list's sort key: (created_at in epoch ns, run id)."""

FLIP_AFTER: Final = 2


class Answer(IntEnum):
    """What a page asked with cursor X says about the parameter used; higher is better."""

    NOT_OLDER = 0
    """Its newest row is not older than X: the parameter walks newer, or X is lost and
    the list restarted from the head (then both parameters answer like this)."""
    EMPTY = 1
    """Nothing: no older runs, or no newer ones (X is the newest run)."""
    SAME_SECOND = 2
    """Older than X, but every row in X's own second: on a server that compares cursors
    at whole seconds the newer direction answers like this too."""
    OLDER = 3
    """Older than X and reaching an older second: only the older direction does that."""


def classify(keys: list[Key], cursor: Key) -> Answer:
    """Judge a newest-first page against the key of the cursor it was asked with."""
    if not keys:
        return Answer.EMPTY
    if keys[0] >= cursor:
        return Answer.NOT_OLDER
    if keys[-1][0] // NS_PER_S < cursor[0] // NS_PER_S:
        return Answer.OLDER
    return Answer.SAME_SECOND


def other(param: CursorParam) -> CursorParam:
    """The other cursor parameter."""
    return "after" if param == "before" else "before"


@dataclass(slots=True)
class CursorDirection:
    """The cursor parameter in force on one server and how sure the walk is of it."""

    param: CursorParam = "before"  # right on 0.16.8, the open-source server
    decided: bool = False
    switches: int = 0
    _contrary: int = 0

    @property
    def label(self) -> str:
        """`before`, `after`, or `unknown` while no page has shown which walks older."""
        return self.param if self.decided else "unknown"

    def evidence(self, older: CursorParam) -> bool:
        """A page showed that `older` lists older runs; True when the label changed.

        `switches` counts only changes of a decided parameter (a server that changed
        semantics), not the first decision.
        """
        if older == self.param:
            self._contrary = 0
            changed = not self.decided
            self.decided = True
            return changed
        self._contrary += 1
        if self.decided and self._contrary < FLIP_AFTER:
            return False
        if self.decided:
            self.switches += 1
        self.param = older
        self.decided = True
        self._contrary = 0
        return True
