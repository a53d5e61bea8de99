"""Parsing real Letta 0.16.8 payloads and the odd ones a newer server may send."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from exporter.letta.models import Run, to_epoch_ns
from tests.conftest import FIXTURES, load_fixture


def test_every_captured_run_parses() -> None:
    files = sorted(FIXTURES.glob("runs/*/run.json")) + sorted(FIXTURES.glob("list/*.json"))
    parsed = 0
    for path in files:
        body = load_fixture(str(Path(path).relative_to(FIXTURES)))
        for item in body if isinstance(body, list) else [body]:
            Run.model_validate(item)
            parsed += 1
    assert parsed > 100


def test_naive_completed_at_is_read_as_utc() -> None:
    run = Run.model_validate(load_fixture("list/runs_order_desc.json")[0])
    assert run.created_at.tzinfo is not None
    assert run.completed_at is not None and run.completed_at.tzinfo is None
    aware = run.completed_at.replace(tzinfo=UTC)
    assert to_epoch_ns(run.completed_at) == to_epoch_ns(aware)


def test_epoch_ns_keeps_microseconds() -> None:
    value = datetime(2026, 11, 23, 12, 1, 42, 556550, tzinfo=UTC)
    assert to_epoch_ns(value) == 1_795_435_302_556_550_000


def test_unknown_fields_and_enum_values_are_kept_not_rejected() -> None:
    item = dict(load_fixture("list/runs_order_desc.json")[0])
    item.update(status="paused", stop_reason="quota_exhausted", brand_new_field={"x": 1})
    run = Run.model_validate(item)
    assert (run.status, run.stop_reason) == ("paused", "quota_exhausted")


def test_terminal_is_judged_by_status_then_by_completion_marks() -> None:
    base = dict(load_fixture("list/runs_order_desc.json")[0])
    open_unknown = {**base, "status": "paused", "stop_reason": None, "completed_at": None}
    assert not Run.model_validate(open_unknown).is_terminal
    assert Run.model_validate({**open_unknown, "stop_reason": "end_turn"}).is_terminal
    assert not Run.model_validate({**base, "status": "running"}).is_terminal
    assert Run.model_validate({**base, "status": "failed", "stop_reason": None}).is_terminal
