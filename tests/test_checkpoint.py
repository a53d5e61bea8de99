"""The SQLite state file: round trip, refusal to discard foreign or newer files, locking."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from exporter.core.changes import ChangeSet
from exporter.core.runs.record import Phase, RunRecord
from exporter.series import catalogue as m
from exporter.series.aggregates import Aggregates
from exporter.store.checkpoint import SCHEMA_VERSION, Checkpoint, CheckpointError


def record(run_id: str, phase: Phase = Phase.OPEN) -> RunRecord:
    return RunRecord(id=run_id, agent_id="agent-a", created_ns=123, phase=phase, status="running")


def test_a_committed_cycle_reads_back_exactly(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    agg = Aggregates()
    agg.inc(m.RUNS_FINISHED, ("agent-a", "completed", "end_turn"), 3)
    agg.add(m.RUN_DURATION, ("agent-a", "completed"), 1.5)
    cp = Checkpoint(path)
    assert cp.load().fresh
    cp.commit(
        ChangeSet(
            changed=[record("run-1"), record("run-2", Phase.DONE)],
            series=agg.take_changes(),
            meta={"hwm_ns": "123", "scan": "null"},
            new_label_values={"agent": ["agent-a"]},
        )
    )
    cp.commit(ChangeSet(removed=["run-2"]))
    cp.close()

    loaded = Checkpoint(path).load()
    assert not loaded.fresh
    assert [r.id for r in loaded.records] == ["run-1"]
    assert loaded.records[0] == record("run-1")
    assert loaded.meta["hwm_ns"] == "123"
    assert loaded.label_values == {"agent": ["agent-a"]}
    again = Aggregates()
    again.load(loaded.series)
    assert again.counter(m.RUNS_FINISHED, ("agent-a", "completed", "end_turn")) == 3
    hist = again.histograms[m.RUN_DURATION.name][("agent-a", "completed")]
    assert (hist.count, hist.sum) == (1, 1.5)


def test_a_file_that_is_not_sqlite_is_refused_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    path.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(CheckpointError, match="cannot be read.*kept"):
        Checkpoint(path)
    assert path.read_bytes().startswith(b"this is not")


def test_another_sqlite_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE users (id INTEGER)")
    with pytest.raises(CheckpointError, match="not a letta-exporter state file"):
        Checkpoint(path)


def test_a_state_file_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    Checkpoint(path).close()
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(CheckpointError, match="newer letta-exporter"):
        Checkpoint(path)


def test_a_second_process_on_the_same_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    first = Checkpoint(path)
    try:
        with pytest.raises(CheckpointError, match="in use"):
            Checkpoint(path)
    finally:
        first.close()


def test_a_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        Checkpoint(tmp_path / "nope" / "state.sqlite")


def test_the_span_outbox_is_written_with_the_count_and_settled_after_export(
    tmp_path: Path,
) -> None:
    cp = Checkpoint(tmp_path / "state.sqlite")
    spans = [{"name": "invoke_agent a"}, {"name": "chat m"}]
    cp.commit(ChangeSet(new_traces=[(f"run-{i}", spans) for i in range(5)]))
    due = cp.outbox_due(now_ns=0, limit=3)
    assert [e.run_id for e in due] == ["run-0", "run-1", "run-2"]
    assert due[0].span_count == 2 and due[0].attempts == 0
    # run-0 went out, run-1 failed (retry later), then room for only 2 entries.
    dropped = cp.outbox_settle(done=["run-0"], retry=[("run-1", 1, 10**12)], max_entries=2)
    assert dropped == 4  # run-1 and run-2 were the oldest of the four left: 2 spans each
    assert [e.run_id for e in cp.outbox_due(now_ns=10**13, limit=10)] == ["run-3", "run-4"]
    cp.close()
    assert Checkpoint(tmp_path / "state.sqlite").outbox_size() == 2


def test_a_retried_entry_waits_for_its_time(tmp_path: Path) -> None:
    cp = Checkpoint(tmp_path / "state.sqlite")
    cp.commit(ChangeSet(new_traces=[("run-a", [{}])]))
    cp.outbox_settle(done=[], retry=[("run-a", 3, 500)], max_entries=10)
    assert cp.outbox_due(now_ns=499, limit=10) == []
    assert cp.outbox_due(now_ns=500, limit=10)[0].attempts == 3
