"""Failures by error type: identifiers and codes only, one name per cause."""

from __future__ import annotations

from typing import Any

import pytest

from exporter.core.labels import OTHER, CappedLabel
from exporter.core.options import TrackerOptions
from exporter.core.runs.errors import error_type_from_metadata, normalise_error_type
from exporter.core.tracker import Tracker
from exporter.letta.models import Run, Step, is_failure
from exporter.series import catalogue as m
from exporter.series.aggregates import Aggregates
from tests.conftest import FIXTURES, load_fixture

S = 1_000_000_000


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("LLMServerError", "llm_server_error"),
        ("LLMEmptyResponseError", "llm_empty_response_error"),
        ("llm_error", "llm_error"),
        ("INTERNAL_SERVER_ERROR", "internal_server_error"),
        ("HTTPError", "http_error"),
        ("an error occurred", None),
        ("x" * 65, None),
        ("", None),
        (42, None),
    ],
)
def test_only_identifiers_become_error_types(value: object, expected: str | None) -> None:
    assert normalise_error_type(value) == expected


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        (
            {"error": {"error_type": "llm_rate_limit", "message": "Rate limit exceeded"}},
            "llm_rate_limit",
        ),
        (
            {"error": "INTERNAL_SERVER_ERROR: OpenAI API error: {'message': 'x'}"},
            "internal_server_error",
        ),
        # Free text with a colon is not a code: nothing of it becomes a value.
        ({"error": "Rate limited: retry later"}, None),
        ({"error": "customer 4711: card declined"}, None),
        ({"error": {"error_type": "something went wrong"}}, None),
        ({"error": None}, None),
        ({}, None),
        (None, None),
    ],
)
def test_error_type_from_metadata(metadata: Any, expected: str | None) -> None:
    assert error_type_from_metadata(metadata) == expected


def counted_fixture_runs(*, steps: bool) -> Tracker:
    """Every captured run counted, with or without its /steps."""
    aggregates = Aggregates()
    enrich = ("steps",) if steps else ()
    tracker = Tracker(
        TrackerOptions(grace_ns=0, enrich=enrich), aggregates, CappedLabel("agent", 100)
    )
    for directory in sorted((FIXTURES / "runs").iterdir()):
        if not (directory / "run.json").exists():
            continue
        run = Run.model_validate(load_fixture(f"runs/{directory.name}/run.json"))
        now = run.created_ns + 3600 * S
        tracker.runs.observe(run, now)
        if steps:
            record = tracker.runs.records[run.id]
            fetched = [
                Step.model_validate(s) for s in load_fixture(f"runs/{directory.name}/steps.json")
            ]
            tracker.enrichment.answered_steps(record, fetched)
    return tracker


def by_error_type(tracker: Tracker) -> dict[str, float]:
    totals: dict[str, float] = {}
    for (_, error_type), value in tracker.aggregates.series(m.RUNS_FAILED):
        totals[error_type] = totals.get(error_type, 0) + value
    return totals


@pytest.mark.parametrize("steps", [True, False])
def test_failures_by_error_type_add_up_to_the_failing_runs(steps: bool) -> None:
    tracker = counted_fixture_runs(steps=steps)
    failing = sum(
        value
        for (_, status, stop_reason), value in tracker.aggregates.series(m.RUNS_FINISHED)
        if is_failure(status, None if stop_reason == "none" else stop_reason)
    )
    assert failing == sum(by_error_type(tracker).values()) == 9


def test_the_failed_step_names_the_cause_alike_on_every_path() -> None:
    # Sync, async and stream LLM 500s: one error type, from the failed step's class.
    assert by_error_type(counted_fixture_runs(steps=True)) == {
        "llm_server_error": 5,
        "llm_rate_limit_error": 1,
        "llm_empty_response_error": 1,
        "conflict": 1,  # a message refused while an approval waited: no step, the code
        "none": 1,  # completed / max_tokens_exceeded: Letta recorded no error
    }


def test_without_steps_the_metadata_names_the_cause() -> None:
    assert by_error_type(counted_fixture_runs(steps=False)) == {
        "internal_server_error": 2,  # sync and async LLM 500: the string's leading code
        "llm_error": 2,  # streams: the error object's type
        "llm_rate_limit": 1,
        "llm_empty_response": 1,
        "conflict": 1,
        "none": 2,  # completed with llm_api_error / max_tokens_exceeded, no error object
    }


def test_error_types_are_capped() -> None:
    aggregates = Aggregates()
    tracker = Tracker(
        TrackerOptions(grace_ns=0),
        aggregates,
        CappedLabel("agent", 10),
        error_type_label=CappedLabel(
            "error_type", 2, on_overflow=lambda n: aggregates.inc(m.LABEL_OVERFLOW, (n,))
        ),
    )
    for n in range(4):
        run = Run.model_validate(
            {
                "id": f"run-{n:08d}-0000-4000-8000-000000000000",
                "agent_id": "agent-a",
                "status": "failed",
                "created_at": "2026-11-23T12:00:00Z",
                "completed_at": "2026-11-23T12:00:01Z",
                "metadata": {"error": {"error_type": f"kind_{n}"}},
            }
        )
        tracker.runs.observe(run, run.created_ns + 3600 * S)
    assert by_error_type(tracker) == {"kind_0": 1, "kind_1": 1, OTHER: 2}
    assert dict(aggregates.series(m.LABEL_OVERFLOW)) == {("error_type",): 2}


def test_runs_by_path_carry_no_agent_label() -> None:
    tracker = counted_fixture_runs(steps=False)
    paths = dict(tracker.aggregates.series(m.RUNS_FINISHED_BY_PATH))
    assert paths == {
        ("send_message", "false"): 10,
        ("send_message_async", "true"): 6,
        ("send_message_streaming", "false"): 11,
        ("send_message_streaming", "true"): 2,
    }
    assert sum(paths.values()) == sum(v for _, v in tracker.aggregates.series(m.RUNS_FINISHED))
