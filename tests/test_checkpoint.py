"""The SQLite state file: round trip, refusal to discard foreign or newer files, locking."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from exporter import catalogue as m
from exporter.aggregates import Aggregates
from exporter.checkpoint import SCHEMA_VERSION, Checkpoint, CheckpointError
from exporter.tracker import Phase, RunRecord


def record(run_id: str, phase: Phase = Phase.OPEN) -> RunRecord:
    return RunRecord(id=run_id, agent_id="agent-a", created_ns=123, phase=phase, status="running")


def test_a_committed_cycle_reads_back_exactly(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    agg = Aggregates()
    agg.inc(m.RUNS_FINISHED, ("agent-a", "completed", "end_turn"), 3)
    agg.observe(m.RUN_DURATION, ("agent-a", "completed"), 1.5)
    cp = Checkpoint(path)
    assert cp.load().fresh
    cp.commit(
        changed=[record("run-1"), record("run-2", Phase.DONE)],
        removed=[],
        series=agg.take_dirty(),
        meta={"hwm_ns": "123", "scan": "null"},
        new_label_values={"agent": ["agent-a"]},
    )
    cp.commit(changed=[], removed=["run-2"], series=[], meta={}, new_label_values={})
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
