"""Runs of the exporter's model at known times, for the tracker and enrichment tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from exporter.letta.models import Run, to_epoch_ns

T0 = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
S = 1_000_000_000


def at(seconds: float) -> int:
    return to_epoch_ns(T0) + int(seconds * S)


def make_run(n: int, status: str = "completed", **fields: Any) -> Run:
    created = fields.pop("created", 0.0)
    data: dict[str, Any] = {
        "id": f"run-{n:08d}-0000-4000-8000-000000000000",
        "agent_id": fields.pop("agent", "agent-a"),
        "status": status,
        "created_at": T0 + timedelta(seconds=created),
        "stop_reason": "end_turn" if status == "completed" else None,
    }
    if status not in ("created", "running"):
        data["completed_at"] = (T0 + timedelta(seconds=created + 2)).replace(tzinfo=None)
    data.update(fields)
    return Run.model_validate(data)
