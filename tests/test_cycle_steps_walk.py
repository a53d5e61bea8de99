"""Tokens and steps of many finished runs from one `GET /v1/steps/` walk per cycle where
Letta serves it (the cloud profile), in process (see tests/cycle_rig.py); 0.16.8 answers
400, and its runs take their steps per run."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from exporter.poll import step_walk
from tests.cycle_rig import MODEL, CycleRig, open_rig

STEPS_LIST = r"^/v1/steps/$"
RUN_STEPS = r"^/v1/runs/[^/]+/steps$"
TOKENS = "letta_run_tokens_total"
STEP_COUNT = "letta_run_steps_sum"


def cloud(rig: CycleRig) -> None:
    rig.letta.cloud = True
    rig.letta.serves_run_metrics = False
    rig.letta.serves_steps_list = True


def finish(rig: CycleRig, n: int, *, steps: int = 0) -> str:
    run_id = rig.letta.create_run(f"agent-{n % 3}", created_at=rig.now - 3)
    for _ in range(steps or 1 + n % 3):
        rig.letta.add_step(
            run_id,
            model=MODEL,
            prompt_tokens=100 + n,
            completion_tokens=7,
            cached_input_tokens=n % 2 or None,
        )
    rig.letta.update_run(run_id, status="completed", stop_reason="end_turn")
    return run_id


def tokens(rig: CycleRig) -> Counter[tuple[str, str, str]]:
    out: Counter[tuple[str, str, str]] = Counter()
    for labels, value in rig.metrics().series(TOKENS).items():
        have = dict(labels)
        out[(have["agent"], have["model"], have["type"])] += int(value)
    return out


async def test_cloud_runs_take_tokens_and_steps_from_one_walk(tmp_path: Path) -> None:
    async with open_rig(tmp_path, runs_grace_period=5) as rig:
        cloud(rig)
        await rig.cycle()
        for cycle in range(5):
            for i in range(10):
                finish(rig, 10 * cycle + i)
            rig.advance(15)
            await rig.cycle()
        await rig.cycles(3, every=15)
        assert rig.metrics().value("letta_runs_finished_total") == 50
        assert tokens(rig) == rig.letta.token_truth()
        assert rig.metrics().value(STEP_COUNT) == sum(rig.letta.step_count_truth().values())
        assert rig.letta.count_requests(RUN_STEPS) == 0
        assert rig.letta.count_requests(STEPS_LIST) == 5, "a page a cycle"


async def test_on_0_16_8_the_steps_list_is_asked_once_then_every_five_minutes(
    tmp_path: Path,
) -> None:
    async with open_rig(tmp_path, runs_grace_period=5) as rig:
        await rig.cycle()
        for cycle in range(4):
            for i in range(3):
                finish(rig, 3 * cycle + i)
            rig.advance(15)
            await rig.cycle()
        await rig.cycles(2, every=15)
        assert rig.letta.count_requests(STEPS_LIST) == 1
        assert rig.letta.count_requests(RUN_STEPS) == 12
        assert tokens(rig) == rig.letta.token_truth()
        rig.advance(300)
        finish(rig, 99)
        await rig.cycles(2, every=15)
        assert rig.letta.count_requests(STEPS_LIST) == 2


async def test_a_pending_step_defers_its_run_to_the_next_walk(tmp_path: Path) -> None:
    async with open_rig(tmp_path, runs_grace_period=5) as rig:
        cloud(rig)
        await rig.cycle()
        run_id = rig.letta.create_run("agent-a", created_at=rig.now - 3)
        pending = rig.letta.add_step(run_id, model=MODEL, status="pending")
        rig.letta.update_run(run_id, status="completed", stop_reason="end_turn")
        finish(rig, 2)
        rig.advance(15)
        await rig.cycle()  # seen finished
        rig.advance(6)
        await rig.cycle()  # past the grace period: the walk
        assert rig.metrics().value("letta_runs_finished_total") == 1
        rig.letta.update_step(pending, status="success", prompt_tokens=500, completion_tokens=9)
        rig.advance(3)
        await rig.cycle()
        assert rig.metrics().value("letta_runs_finished_total") == 2
        assert tokens(rig) == rig.letta.token_truth()
        assert rig.letta.count_requests(RUN_STEPS) == 0


async def test_runs_straddling_pages_are_exact_and_a_walk_cut_short_gives_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(step_walk, "PAGE_LIMIT", 3)
    async with open_rig(tmp_path, runs_grace_period=5) as rig:
        cloud(rig)
        await rig.cycle()
        for i in range(6):
            finish(rig, i, steps=2)  # 12 steps: 5 pages, and the budget is 6 runs' worth
        rig.advance(15)
        await rig.cycles(2, every=15)
        assert rig.letta.count_requests(RUN_STEPS) == 0
        long_run = finish(rig, 7, steps=40)  # 14 pages for one run: cut short
        rig.advance(15)
        await rig.cycles(2, every=15)
        assert rig.letta.count_requests(f"^/v1/runs/{long_run}/steps$") == 1, "per run"
        assert rig.metrics().value("letta_runs_finished_total") == 7
        assert tokens(rig) == rig.letta.token_truth()
        assert rig.metrics().value(STEP_COUNT) == 6 * 2 + 40


async def test_after_a_walk_cut_short_the_next_plans_aim_at_fewer_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(step_walk, "PAGE_LIMIT", 3)
    async with open_rig(tmp_path, runs_grace_period=5) as rig:
        cloud(rig)
        await rig.cycle()
        for i in range(3):
            finish(rig, i, steps=20)  # 60 steps: 20 pages, 3 pages of budget
        rig.advance(15)
        await rig.cycles(2, every=15)
        walked = rig.letta.count_requests(STEPS_LIST)
        assert walked == 3, "cut short: the runs asked per run"
        for cycle in range(3):
            for i in range(3):
                finish(rig, 10 * cycle + i, steps=20)
            rig.advance(15)
            await rig.cycles(2, every=15)
        # Dense steps: a walk would not pay for 3 runs; not one more page is wasted.
        assert rig.letta.count_requests(STEPS_LIST) == walked
        assert tokens(rig) == rig.letta.token_truth()
