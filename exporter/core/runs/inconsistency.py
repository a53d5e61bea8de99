"""Runs seen in a state Letta should never leave them in (`letta_runs_inconsistent_total`).

A fixed, small set of kinds, each counted at most once per run and never instead of the
run's own count (docs/metrics.md says what each means and what to do):

- `stop_reason_while_open`: created or running, yet carrying a stop reason: the end of
  the run was decided but its terminal status never written (lettactl issue 170; a run
  `running` + `requires_approval` on Letta Cloud). Counted when first seen so.
- `finished_without_stop_reason`: completed or cancelled without a stop reason (letta
  issue 3109). A `failed` run without one is ordinary on 0.16.8 (a sync request that
  raised) and is not counted.
- `finished_without_completed_at`: terminal, yet still without `completed_at` when
  counted (Letta writes it with the first terminal status; letta issue 3109).
- `refused_without_wait`: a message Letta refused (409, an approval pending) on an agent
  or conversation where no approval is pending and no run is open that the exporter can
  see: the request it waits for was cancelled or lost (letta issue 3176).
"""

from __future__ import annotations

from typing import Final

from exporter.letta.models import OPEN_STATUSES

STOP_REASON_WHILE_OPEN: Final = "stop_reason_while_open"
FINISHED_WITHOUT_STOP_REASON: Final = "finished_without_stop_reason"
FINISHED_WITHOUT_COMPLETED_AT: Final = "finished_without_completed_at"
REFUSED_WITHOUT_WAIT: Final = "refused_without_wait"

KINDS: Final = (
    STOP_REASON_WHILE_OPEN,
    FINISHED_WITHOUT_STOP_REASON,
    FINISHED_WITHOUT_COMPLETED_AT,
    REFUSED_WITHOUT_WAIT,
)
"""Every `kind` label value, so the label is bounded by construction."""

# Statuses a stop reason must come with (failed may lack one: see the module docstring).
_NEED_STOP_REASON: Final = frozenset({"completed", "cancelled"})


def open_with_stop_reason(status: str, stop_reason: str | None) -> bool:
    """A run Letta still lists as created or running that already has a stop reason."""
    return status in OPEN_STATUSES and stop_reason is not None


def finished_kinds(status: str, stop_reason: str | None, has_completed_at: bool) -> list[str]:
    """The impossible states a run being counted (so terminal) is in."""
    kinds = []
    if status in _NEED_STOP_REASON and stop_reason is None:
        kinds.append(FINISHED_WITHOUT_STOP_REASON)
    if not has_completed_at:
        kinds.append(FINISHED_WITHOUT_COMPLETED_AT)
    return kinds
