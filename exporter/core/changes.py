"""One cycle's changes, handed to the checkpoint in one piece."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from exporter.core.runs.record import RunRecord
from exporter.series.aggregates import Labels


@dataclass(slots=True)
class ChangeSet:
    """Everything a cycle changed; the checkpoint writes it in one transaction, so a
    run's spans enter the outbox in the same commit that counts it."""

    changed: list[RunRecord] = field(default_factory=list)
    """Run records added or changed."""
    removed: list[str] = field(default_factory=list)
    """Ids of run records forgotten."""
    series: list[tuple[str, Labels, str]] = field(default_factory=list)
    """Aggregate series that changed, as (metric, labels, encoded value)."""
    meta: dict[str, str] = field(default_factory=dict)
    new_label_values: dict[str, list[str]] = field(default_factory=dict)
    """Values admitted by each capped label, in admission order."""
    new_tool_names: dict[str, str] = field(default_factory=dict)
    new_traces: list[tuple[str, list[dict[str, Any]]]] = field(default_factory=list)
    """(run id, spans) of the runs counted, for the span outbox."""
