"""The state file's row format: what earlier releases wrote must read back and re-encode
to the same bytes."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from exporter.core.runs.record import Enrichment, Phase, RunRecord
from exporter.core.runs.run_info import FetchedTrace
from exporter.store.rows import record_from_row, record_to_row

STATE_FILES = sorted((Path(__file__).parent / "fixtures" / "state").glob("*.sqlite"))

# Written by the release before the tracker split (commit 922eb79) for FULL_RECORD.
PINNED_ROW = (
    '["agent-a","enriching","failed","error",20,10,3,1,500,1,21,22,'
    '{"pending":["metrics","trace"],"attempts":2,"next_try_ns":7,"failed":["usage"],'
    '"usage":[300,30],"tokens":{"gpt-x":{"input":300,"output":30}},"steps":2,'
    '"step_ids":[["step-1","gpt-x"]],"num_steps":null,"tool_ids":["tool-1"],'
    '"tool_calls":{"send_message":2},"step_seconds":[["gpt-x",0.75]],'
    '"span_steps":[{"id":"step-1","model":"gpt-x"}],"step_error":"LLMError",'
    '"trace":[[{"name":"x"}],"abababababababababababababababab",412]},'
    'true,"conv-1","send_message","LLMError"]'
)

FULL_RECORD = RunRecord(
    id="run-1",
    agent_id="agent-a",
    created_ns=10,
    phase=Phase.ENRICHING,
    status="failed",
    stop_reason="error",
    completed_ns=20,
    duration_ns=10,
    ttft_ns=3,
    callback=True,
    callback_code=500,
    callback_error=True,
    terminal_seen_ns=21,
    last_seen_ns=22,
    enrich=Enrichment(
        pending=["metrics", "trace"],
        attempts=2,
        next_try_ns=7,
        failed=["usage"],
        usage=(300, 30),
        tokens={"gpt-x": {"input": 300, "output": 30}},
        steps=2,
        step_ids=[("step-1", "gpt-x")],
        tool_ids=["tool-1"],
        tool_calls={"send_message": 2},
        step_seconds=[("gpt-x", 0.75)],
        span_steps=[{"id": "step-1", "model": "gpt-x"}],
        trace=FetchedTrace([{"name": "x"}], "ab" * 16, 412, 0),
        step_error="LLMError",
    ),
    background=True,
    conversation_id="conv-1",
    run_type="send_message",
    error_type="LLMError",
)


def encode(record: RunRecord) -> str:
    return json.dumps(record_to_row(record), separators=(",", ":"))


def test_a_record_with_pending_enrichment_encodes_as_the_previous_release_did() -> None:
    assert encode(FULL_RECORD) == PINNED_ROW
    again = record_from_row("run-1", 10, json.loads(PINNED_ROW))
    assert again == FULL_RECORD


@pytest.mark.parametrize("path", STATE_FILES, ids=lambda p: p.name)
def test_every_row_of_a_previous_release_state_file_re_encodes_to_the_same_bytes(
    path: Path,
) -> None:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT id, created_ns, data FROM runs").fetchall()
    assert rows
    for run_id, created_ns, data in rows:
        assert encode(record_from_row(run_id, created_ns, json.loads(data))) == data
