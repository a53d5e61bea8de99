"""A state file written by the previous release, resumed by the cycle in-process.

`fixtures/state/c38e041.sqlite` (see its README) was left by a `kill -9` in the middle of
a backfill walk of the runs in `c38e041-runs.json`, with 11 of them counted. The e2e test
in test_state_compat.py resumes it in a real process; this one resumes it through the
cycle rig, in milliseconds: every run ends up counted exactly once.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.cycle_rig import MODEL, CycleRig, open_rig

STATE = Path(__file__).parent / "fixtures" / "state"
FINISHED = "letta_runs_finished_total"
# The newest observation the state file's records hold (epoch s): the kill came then, and
# the rig's clock resumes a few seconds later (not earlier: the state's grace periods
# would run on the clock of a process that had not yet made them).
KILLED_AT = 1795833478.9
# No enrichment for runs it finds now (the 400 runs would cost 1200 requests); those the
# state file holds mid-enrichment still fetch what it says they wait for.
QUICK = {
    "letta_page_size": 50,
    "enrich_steps": False,
    "enrich_usage": False,
    "enrich_metrics": False,
}


def load_runs(rig: CycleRig) -> None:
    """The runs the state file was written against, into the rig's Letta."""
    for run in json.loads((STATE / "c38e041-runs.json").read_text()):
        rig.letta.create_run(run["agent_id"], run_id=run["id"], created_at=run["created_at"])
        if run["status"] == "running":
            rig.letta.update_run(run["id"], status="running")
            continue
        rig.letta.add_step(
            run["id"],
            model=MODEL,
            prompt_tokens=run["prompt_tokens"],
            completion_tokens=run["completion_tokens"],
        )
        rig.letta.update_run(
            run["id"],
            status=run["status"],
            stop_reason=run["stop_reason"],
            completed_at=run["completed_at"],
        )


async def test_the_previous_release_walk_resumes_and_counts_each_run_once(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state.sqlite"
    shutil.copyfile(STATE / "c38e041.sqlite", state)
    async with open_rig(tmp_path, state=state, start=KILLED_AT + 5, **QUICK) as rig:
        assert rig.metrics().value(FINISHED) == 11  # what it had counted
        load_runs(rig)
        truth = rig.letta.truth()
        assert sum(truth.values()) == 400
        await rig.cycles(4, every=15)
        samples = rig.metrics()
        for (agent, status, stop_reason), runs in truth.items():
            counted = samples.value(FINISHED, agent=agent, status=status, stop_reason=stop_reason)
            assert counted == runs, (agent, status, stop_reason)
        assert samples.value(FINISHED) == 400
        assert samples.value("letta_runs_in_progress") == 3
        await rig.cycles(2, every=15)
        assert rig.metrics().value(FINISHED) == 400
