"""A state file written by the previous release still loads, and its work carries on.

`fixtures/state/c38e041.sqlite` was written by the exporter at commit c38e041 (main
before the per-page cursor check), `kill -9`ed in the middle of a `--backfill=1h` walk
of 400 finished runs (`fixtures/state/c38e041-runs.json`, plus 3 open ones) after it had
counted 11: it holds counted, settling and enriching runs, the walk's cursors and its
position. See fixtures/state/README.md for how it was made.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from exporter.core.listing.walk import Walk
from exporter.series import catalogue as m
from exporter.series.aggregates import Aggregates
from exporter.store.checkpoint import Checkpoint
from tests.fake_letta.fake import FakeLetta
from tests.harness import Exporter, expected, running, wait_polls

STATE = Path(__file__).parent / "fixtures" / "state"


def previous_state(tmp_path: Path) -> Path:
    path = tmp_path / "state.sqlite"
    shutil.copyfile(STATE / "c38e041.sqlite", path)
    return path


def test_the_previous_release_state_file_loads_in_place(tmp_path: Path) -> None:
    checkpoint = Checkpoint(previous_state(tmp_path))
    loaded = checkpoint.load()
    checkpoint.close()
    assert not loaded.fresh
    walk = Walk.from_json(json.loads(loaded.meta["scan"]))
    assert walk.first and walk.count and walk.cursors and walk.pos is not None
    aggregates = Aggregates()
    aggregates.load(loaded.series)
    counted = sum(value for _, value in aggregates.series(m.RUNS_FINISHED))
    assert counted == 11
    assert len(loaded.records) > 300


@pytest.mark.e2e
def test_the_exporter_resumes_the_previous_release_walk_and_counts_each_run_once(
    tmp_path: Path,
) -> None:
    runs = json.loads((STATE / "c38e041-runs.json").read_text())
    with FakeLetta() as fake:
        for run in runs:
            fake.create_run(run["agent_id"], run_id=run["id"], created_at=run["created_at"])
            if run["status"] == "running":
                fake.update_run(run["id"], status="running")
                continue
            fake.add_step(
                run["id"],
                model="openai/gpt-4o-mini",
                prompt_tokens=run["prompt_tokens"],
                completion_tokens=run["completion_tokens"],
            )
            fake.update_run(
                run["id"],
                status=run["status"],
                stop_reason=run["stop_reason"],
                completed_at=run["completed_at"],
            )
        truth = expected(fake.truth())
        assert sum(truth.values()) == 400
        with running(Exporter(fake.base_url, previous_state(tmp_path))) as exp:
            exp.wait_for(lambda: exp.finished() == truth, 60, "the totals to equal the truth")
            wait_polls(exp, 3)
            assert exp.finished() == truth
