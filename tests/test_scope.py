"""The project scope is judged from the project_id of the steps Letta returns."""

from __future__ import annotations

import logging

import pytest

from exporter.letta.models import Step
from exporter.poll.scope import ScopeCheck


def steps(*projects: str | None) -> list[Step]:
    return [Step(id=f"step-{i}", project_id=p) for i, p in enumerate(projects)]


def test_unscoped_has_no_verdict() -> None:
    check = ScopeCheck(None, None)
    check.observe(steps("proj-a"))
    assert check.verified is None


def test_steps_of_the_project_verify_it_and_a_foreign_one_warns_once_for_good(
    caplog: pytest.LogCaptureFixture,
) -> None:
    check = ScopeCheck("proj-a", None)
    assert check.verified is False
    check.observe(steps("proj-a", "proj-a"))
    assert check.verified is True
    with caplog.at_level(logging.WARNING, logger="exporter.poll.scope"):
        check.observe(steps("proj-a", "proj-b"))
        check.observe(steps("proj-c"))
        check.observe(steps("proj-a"))
    assert check.verified is False
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "ignores the project header" in caplog.text and "proj-b" in caplog.text


def test_steps_without_project_ids_leave_it_unverified() -> None:
    check = ScopeCheck("proj-a", None)
    check.observe(steps(None, None))
    check.observe([])
    assert check.verified is False


def test_with_only_the_slug_a_second_project_shows_the_scope_is_not_applied() -> None:
    check = ScopeCheck(None, "my-project")
    check.observe(steps("proj-a"))
    assert check.verified is True
    check.observe(steps("proj-b"))
    assert check.verified is False
