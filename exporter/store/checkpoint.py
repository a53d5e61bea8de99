"""Durable state in one SQLite file: run records, walk position, aggregates, label sets.

Everything a cycle changed is written in one transaction, so after any crash (even
`kill -9` mid-cycle) the file holds the state at the end of the last committed cycle:
the next cycle redoes the lost work, and dedupe by run id keeps it from counting twice.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from exporter.core.changes import ChangeSet
from exporter.core.runs.record import RunRecord
from exporter.series.aggregates import Labels
from exporter.store.rows import record_from_row, record_to_row

SCHEMA_VERSION: Final = 1
APPLICATION_ID: Final = 0x4C455850  # "LEXP": tells our files from other SQLite files

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, created_ns INTEGER NOT NULL, data TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS series (
    metric TEXT NOT NULL, labels TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (metric, labels)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tool_names (id TEXT PRIMARY KEY, name TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS span_outbox (
    seq INTEGER PRIMARY KEY, run_id TEXT NOT NULL UNIQUE, spans TEXT NOT NULL,
    span_count INTEGER NOT NULL, attempts INTEGER NOT NULL, next_try_ns INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS label_values (
    label TEXT NOT NULL, value TEXT NOT NULL, seq INTEGER NOT NULL,
    PRIMARY KEY (label, value)
) WITHOUT ROWID;
"""


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One counted run's spans waiting to be exported (JSON of `exporter.traces.codec`)."""

    run_id: str
    spans_json: str
    span_count: int
    attempts: int


class CheckpointError(Exception):
    """The state file cannot be used; the message says why and what to do."""


class StateLocationError(CheckpointError):
    """The state file's place is the problem, not its content: a missing or unwritable
    directory, or a file another exporter holds. Fixed by `--state.path` or the volume."""


@dataclass(slots=True)
class Loaded:
    """Everything read back at start-up."""

    records: list[RunRecord] = field(default_factory=list)
    series: list[tuple[str, Labels, str]] = field(default_factory=list)
    meta: dict[str, str] = field(default_factory=dict)
    label_values: dict[str, list[str]] = field(default_factory=dict)
    tool_names: dict[str, str] = field(default_factory=dict)

    @property
    def fresh(self) -> bool:
        """True when no cycle was ever committed (a first start).

        Every commit writes the `scan` key, also one that saw no run yet: runs that
        appear after such a cycle are new, not history to skip.
        """
        return "hwm_ns" not in self.meta and "scan" not in self.meta and not self.records


class Checkpoint:
    """Owns the SQLite connection; one exporter process per file (locked exclusively)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._check_writable()
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, timeout=0.5)
            self._check_and_init()
        except sqlite3.DatabaseError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise StateLocationError(
                    f"state file {self.path} is in use by another letta-exporter process"
                ) from None
            raise CheckpointError(self._describe(exc)) from None

    def _check_writable(self) -> None:
        # SQLite would open an unwritable file read-only and fail only at the first
        # commit, and its "unable to open database file" names no cause: ask the OS here.
        directory = self.path.parent
        if not directory.exists():
            raise StateLocationError(f"state directory {directory} does not exist")
        try:
            # The WAL and shared-memory files are created next to the state file.
            with tempfile.TemporaryFile(dir=directory):
                pass
        except OSError as exc:
            raise StateLocationError(
                f"state directory {directory} is not writable ({exc.strerror})"
            ) from None
        if self.path.exists():
            try:
                with self.path.open("r+b"):
                    pass
            except OSError as exc:
                raise StateLocationError(
                    f"state file {self.path} is not writable ({exc.strerror})"
                ) from None

    def _describe(self, exc: sqlite3.DatabaseError) -> str:
        text = str(exc)
        return (
            f"state file {self.path} cannot be read ({text}); it is kept as it is: "
            "move it away to start fresh, or point --state.path elsewhere"
        )

    def _check_and_init(self) -> None:
        db = self._db
        app_id = db.execute("PRAGMA application_id").fetchone()[0]
        version = db.execute("PRAGMA user_version").fetchone()[0]
        tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if app_id not in (0, APPLICATION_ID) or (app_id == 0 and tables):
            raise CheckpointError(
                f"state file {self.path} is not a letta-exporter state file; refusing to "
                "overwrite it: point --state.path elsewhere"
            )
        if version > SCHEMA_VERSION:
            raise CheckpointError(
                f"state file {self.path} was written by a newer letta-exporter (schema "
                f"{version}, this one knows {SCHEMA_VERSION}); upgrade the exporter or "
                "move the file away"
            )
        if app_id == APPLICATION_ID:
            result = db.execute("PRAGMA quick_check").fetchone()[0]
            if result != "ok":
                raise CheckpointError(
                    f"state file {self.path} is corrupt ({result}); it is kept as it is: "
                    "move it away to start fresh"
                )
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        # Held for the life of the process: a second exporter on the same file fails fast.
        db.execute("PRAGMA locking_mode=EXCLUSIVE")
        db.execute("BEGIN IMMEDIATE")
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                db.execute(statement)
        db.execute(f"PRAGMA application_id={APPLICATION_ID}")
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        db.execute("COMMIT")

    def load(self) -> Loaded:
        """Read the whole state (records, series, meta, admitted label values)."""
        try:
            db = self._db
            records = [
                record_from_row(run_id, created_ns, json.loads(data))
                for run_id, created_ns, data in db.execute("SELECT id, created_ns, data FROM runs")
            ]
            series = [
                (metric, tuple(json.loads(labels)), value)
                for metric, labels, value in db.execute("SELECT metric, labels, value FROM series")
            ]
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
            label_values: dict[str, list[str]] = {}
            for label, value in db.execute("SELECT label, value FROM label_values ORDER BY seq"):
                label_values.setdefault(label, []).append(value)
            tool_names = dict(db.execute("SELECT id, name FROM tool_names").fetchall())
        except (sqlite3.DatabaseError, ValueError, KeyError, IndexError) as exc:
            raise CheckpointError(
                f"state file {self.path} has unreadable content ({exc}); it is kept as it "
                "is: move it away to start fresh"
            ) from None
        return Loaded(records, series, meta, label_values, tool_names)

    def commit(self, changes: ChangeSet) -> None:
        """Write one cycle's changes atomically; a run's spans enter the outbox in the
        same transaction that counts it."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("DELETE FROM runs WHERE id = ?", ((i,) for i in changes.removed))
            db.executemany(
                "INSERT OR REPLACE INTO runs (id, created_ns, data) VALUES (?, ?, ?)",
                (
                    (r.id, r.created_ns, json.dumps(record_to_row(r), separators=(",", ":")))
                    for r in changes.changed
                ),
            )
            db.executemany(
                "INSERT OR REPLACE INTO series (metric, labels, value) VALUES (?, ?, ?)",
                ((name, json.dumps(list(labels)), value) for name, labels, value in changes.series),
            )
            db.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", changes.meta.items()
            )
            seq = db.execute("SELECT coalesce(max(seq), 0) FROM label_values").fetchone()[0]
            for label, values in changes.new_label_values.items():
                for value in values:
                    seq += 1
                    db.execute(
                        "INSERT OR IGNORE INTO label_values (label, value, seq) VALUES (?, ?, ?)",
                        (label, value, seq),
                    )
            db.executemany(
                "INSERT OR REPLACE INTO tool_names (id, name) VALUES (?, ?)",
                changes.new_tool_names.items(),
            )
            db.executemany(
                "INSERT OR REPLACE INTO span_outbox "
                "(run_id, spans, span_count, attempts, next_try_ns) VALUES (?, ?, ?, 0, 0)",
                (
                    (run_id, json.dumps(spans, separators=(",", ":")), len(spans))
                    for run_id, spans in changes.new_traces
                ),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def outbox_due(self, now_ns: int, limit: int) -> list[OutboxEntry]:
        """Entries whose (next) export attempt is due, oldest first."""
        rows = self._db.execute(
            "SELECT run_id, spans, span_count, attempts FROM span_outbox "
            "WHERE next_try_ns <= ? ORDER BY seq LIMIT ?",
            (now_ns, limit),
        )
        return [OutboxEntry(*row) for row in rows]

    def outbox_size(self) -> int:
        """Runs whose spans wait in the outbox."""
        return int(self._db.execute("SELECT count(*) FROM span_outbox").fetchone()[0])

    def outbox_settle(
        self, *, done: Iterable[str], retry: Iterable[tuple[str, int, int]], max_entries: int
    ) -> int:
        """Remove exported (or abandoned) entries, reschedule failed ones as
        (run_id, attempts, next_try_ns), and drop the oldest beyond `max_entries`.
        Returns how many spans were dropped for room."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("DELETE FROM span_outbox WHERE run_id = ?", ((i,) for i in done))
            db.executemany(
                "UPDATE span_outbox SET attempts = ?, next_try_ns = ? WHERE run_id = ?",
                ((attempts, next_try, run_id) for run_id, attempts, next_try in retry),
            )
            excess = db.execute("SELECT count(*) FROM span_outbox").fetchone()[0] - max_entries
            dropped = 0
            if excess > 0:
                oldest = "SELECT seq FROM span_outbox ORDER BY seq LIMIT ?"
                dropped = db.execute(
                    f"SELECT coalesce(sum(span_count), 0) FROM span_outbox WHERE seq IN ({oldest})",
                    (excess,),
                ).fetchone()[0]
                db.execute(f"DELETE FROM span_outbox WHERE seq IN ({oldest})", (excess,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return int(dropped)

    def close(self) -> None:
        """Close the file, releasing the lock."""
        self._db.close()
