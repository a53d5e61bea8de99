"""The status page in a real headless Chromium, on the demo: it renders, each of its numbers
equals /metrics, and a screenshot is taken (the README's picture is made the same way,
`python -m tests.status_check`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import browser
from tests.demo_process import Demo
from tests.status_check import assert_renders, check_against_metrics, page_numbers


@pytest.mark.e2e
def test_the_status_page_shows_what_metrics_shows(tmp_path: Path) -> None:
    demo = Demo().start()
    try:
        demo.wait_for(
            lambda: (
                demo.value("letta_runs_finished_total") > 0
                and demo.value("letta_runs_awaiting_approval") == 1
                and demo.value("letta_runs_stale") == 1
                # Names of agents first seen after a read of the agents list follow
                # within 30 s; until then the page shows their ids.
                and all(
                    demo.value("letta_agent_info", agent_name=name) == 1
                    for name in ("support-desk", "research-assistant", "refunds-desk")
                )
            ),
            90,
            "counted runs, the waiting approval, the stuck run and the agents' names",
        )
        compared = check_against_metrics(demo, tmp_path)
        # Outcomes, agents, open runs, polling and endpoints: many numbers, all equal.
        assert compared >= 15
        html = browser.dom(demo.url + "/")
        numbers, text = page_numbers(html)
        assert_renders(html, text)
        for name in ("support-desk", "research-assistant", "refunds-desk"):
            assert name in text
        assert ("letta_runs_awaiting_approval", 1.0) in numbers
        shot = browser.screenshot(demo.url + "/", tmp_path / "status-page.png")
        data = shot.read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 20_000
    finally:
        demo.stop()
