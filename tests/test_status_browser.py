"""The status page in a real headless Chromium, on the demo: it renders, each of its numbers
equals /metrics, and a screenshot is taken (the README's picture is made the same way,
`python -m tests.status_check`)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests import browser
from tests.demo_process import Demo
from tests.status_check import assert_renders, check_against_metrics, page_numbers

AGENTS_SHOWN = ("support-desk", "research-assistant", "refunds-desk")


def finished_by_name(demo: Demo) -> Counter[str]:
    """Finished runs on /metrics by agent name ("" for an agent not named yet)."""
    samples = demo.samples()
    names = {
        dict(labels)["agent"]: dict(labels)["agent_name"]
        for (name, labels), _ in samples.items()
        if name == "letta_agent_info"
    }
    finished: Counter[str] = Counter()
    for (name, labels), value in samples.items():
        if name == "letta_runs_finished_total":
            finished[names.get(dict(labels).get("agent", ""), "")] += value
    return finished


@pytest.mark.e2e
def test_the_status_page_shows_what_metrics_shows(tmp_path: Path) -> None:
    demo = Demo().start()
    try:
        demo.wait_for(
            lambda: (
                demo.value("letta_runs_finished_total") > 0
                and demo.value("letta_runs_awaiting_approval") == 1
                and demo.value("letta_runs_stale") == 1
                # The top agents table lists agents with finished runs, by name once the
                # agents list was read (at most every 30 s for new agents): refunds-desk
                # only has the run that waits for approval, counted after its grace period.
                and all(finished_by_name(demo)[name] > 0 for name in AGENTS_SHOWN)
            ),
            90,
            "counted runs, the waiting approval, the stuck run and the agents by name",
        )
        compared = check_against_metrics(demo, tmp_path)
        # Outcomes, agents, open runs, polling and endpoints: many numbers, all equal.
        assert compared >= 15
        html = browser.dom(demo.url + "/")
        numbers, text = page_numbers(html)
        assert_renders(html, text)
        for name in AGENTS_SHOWN:
            assert name in text
        assert ("letta_runs_awaiting_approval", 1.0) in numbers
        shot = browser.screenshot(demo.url + "/", tmp_path / "status-page.png")
        data = shot.read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 20_000
    finally:
        demo.stop()
