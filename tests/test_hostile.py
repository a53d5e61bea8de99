"""A hostile or broken Letta server costs bounded time and memory, never the exporter.

Each case ends with a clear log line and a metric, and `/metrics` keeps answering while
it lasts: a body over the size cap, an endless body, a server that never answers, a list
that returns the same page whatever the cursor, and thousands of agents and models.
How fast `/metrics` answers meanwhile and how much memory the exporter holds are
measured in tests/benchmarks/bench_hostile.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fake_letta.fake import FakeLetta
from tests.harness import expected, exporter_on, wait_polls
from tests.hostile import (
    LABEL_CAP_FLAGS,
    LIST_FAULT_FLAGS,
    LIST_FAULTS,
    SAME_PAGE_FLAGS,
    finish,
    finish_many_agents,
    same_page_runs,
    same_page_server,
)

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(("kind", "reason", "log_words"), LIST_FAULTS)
def test_oversized_endless_or_silent_answers_are_bounded(
    kind: str, reason: str, log_words: str, tmp_path: Path
) -> None:
    with FakeLetta() as fake, exporter_on(fake.base_url, tmp_path, *LIST_FAULT_FLAGS) as exp:
        finish(fake, "agent-a")
        exp.wait_for(lambda: exp.finished() == expected(fake.truth()))
        fake.inject(kind, times=3, path_regex=r"^/v1/runs/$", size=50_000_000)
        finish(fake, "agent-a")
        exp.wait_for(
            lambda: exp.value("letta_exporter_poll_errors_total", reason=reason) >= 1,
            timeout=60,
            what=f"a {reason} poll error",
        )
        # /metrics keeps answering (within the harness's 5 s) while Letta misbehaves.
        assert "letta_exporter_poll_errors_total" in exp.metrics_text()
        assert any(log_words in line for line in exp.logs), "\n".join(exp.logs[-20:])
        # Once the faults are spent, the run that finished meanwhile is counted.
        exp.wait_for(lambda: exp.finished() == expected(fake.truth()), timeout=90)


def test_a_list_that_repeats_the_same_page_forever_ends_each_walk(tmp_path: Path) -> None:
    with (
        same_page_server(same_page_runs(5)) as url,
        exporter_on(url, tmp_path, *SAME_PAGE_FLAGS) as exp,
    ):
        exp.wait_for(
            lambda: (
                exp.value("letta_exporter_pagination_stalls_total")
                + exp.value("letta_exporter_cursor_lost_total")
                >= 3
            ),
            what="repeated pages to be noticed",
        )
        wait_polls(exp, 4)
        # Each run of the page counted once, however often the page came back.
        assert sum(exp.finished().values()) == 5
        warnings = ("a runs page made no progress", "Letta no longer knows the list cursor")
        assert any(words in line for line in exp.logs for words in warnings)


def test_thousands_of_agents_and_models_stay_within_the_label_caps(tmp_path: Path) -> None:
    with FakeLetta() as fake, exporter_on(fake.base_url, tmp_path, *LABEL_CAP_FLAGS) as exp:
        finish_many_agents(fake, 1500)
        exp.wait_for(
            lambda: sum(exp.finished().values()) == 1500, timeout=180, what="1500 runs counted"
        )
        samples = exp.samples()
        agents = {dict(lb).get("agent") for n, lb in samples if n == "letta_runs_finished_total"}
        models = {dict(lb).get("model") for n, lb in samples if n == "letta_run_tokens_total"}
        assert len(agents) <= 21 and "__other__" in agents
        assert len(models) <= 11 and "__other__" in models
        assert exp.value("letta_exporter_label_overflow_total", label="agent") > 0
        assert exp.value("letta_exporter_label_overflow_total", label="model") > 0
        # Nothing lost to the caps: the overflow bucket holds the rest.
        assert sum(exp.finished().values()) == 1500
        assert exp.value("letta_run_tokens_total") == 1500 * 3
