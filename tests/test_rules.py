"""The Prometheus rules: valid, unit-tested by promtool, every alert tested both ways.

`promtool test rules` runs alerts/letta-runs.test.yml; the checks below make sure that
file keeps covering the rules: each alert has a case where it fires (labels and every
annotation asserted) and one where it stays silent, and each recording rule is evaluated
by a promql_expr_test. Annotations point at sections of docs/runbook.md that exist.
"""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import yaml

from tests.tools import require_tool

ROOT = Path(__file__).parents[1]
RULES = ROOT / "alerts" / "letta-runs.rules.yml"
RULE_TESTS = ROOT / "alerts" / "letta-runs.test.yml"
RUNBOOK = ROOT / "docs" / "runbook.md"
# The repository address is declared once, in pyproject.toml; every rule must use it.
REPOSITORY = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Repository"]
RUNBOOK_URL = f"{REPOSITORY}/blob/main/docs/runbook.md"
SEVERITIES = {"critical", "warning", "info"}
ANNOTATIONS = {"summary", "description", "runbook_url"}


def _rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def _alerts() -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for rule in _rules() if "alert" in rule}


def _tests() -> list[dict[str, Any]]:
    tests: list[dict[str, Any]] = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    return tests


def _github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = require_tool("promtool", "prometheus")
    return subprocess.run(
        [promtool, *args], capture_output=True, text=True, timeout=120, check=False, cwd=ROOT
    )


def test_promtool_check_rules() -> None:
    result = _promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_test_rules() -> None:
    result = _promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_unit_tests_load_the_shipped_rules() -> None:
    rule_files = yaml.safe_load(RULE_TESTS.read_text())["rule_files"]
    assert [(RULE_TESTS.parent / f).resolve() for f in rule_files] == [RULES.resolve()]


def test_every_alert_has_a_firing_case_asserted_in_full_and_a_silent_case() -> None:
    alerts = _alerts()
    firing: set[str] = set()
    silent: set[str] = set()
    for test in _tests():
        for case in test.get("alert_rule_test", []):
            name = case["alertname"]
            assert name in alerts, f"test for unknown alert {name}"
            expected = case.get("exp_alerts") or []
            if not expected:
                silent.add(name)
                continue
            firing.add(name)
            rule = alerts[name]
            for alert in expected:
                # Labels: the rule's own labels must all be asserted, severity included.
                assert rule["labels"].items() <= alert["exp_labels"].items(), name
                assert set(alert["exp_annotations"]) == set(rule["annotations"]), name
    assert not set(alerts) - firing, f"alerts never tested firing: {set(alerts) - firing}"
    assert not set(alerts) - silent, f"alerts never tested silent: {set(alerts) - silent}"


def test_every_recording_rule_is_checked_by_an_expression_test() -> None:
    records = {rule["record"] for rule in _rules() if "record" in rule}
    tested_text = yaml.safe_dump([t.get("promql_expr_test", []) for t in _tests()])
    untested = {name for name in records if name not in tested_text}
    assert not untested, f"recording rules no promql_expr_test evaluates: {sorted(untested)}"


def test_alerts_are_named_mixin_style_with_severity_and_annotations() -> None:
    for name, rule in _alerts().items():
        assert re.fullmatch(r"Letta(?:[A-Z][A-Za-z0-9]*)+", name), name
        assert rule["labels"]["severity"] in SEVERITIES, name
        assert set(rule["annotations"]) == ANNOTATIONS, name
        description = rule["annotations"]["description"]
        assert "{{ $labels." in description or "{{ $value" in description, name
        assert "for" in rule, f"{name}: no `for`, a single bad evaluation would alert"


def test_every_runbook_url_points_at_a_section_of_the_runbook() -> None:
    headings = {
        _github_anchor(line[3:])
        for line in RUNBOOK.read_text().splitlines()
        if line.startswith("## ")
    }
    for name, rule in _alerts().items():
        base, _, anchor = rule["annotations"]["runbook_url"].partition("#")
        assert base == RUNBOOK_URL, name
        assert anchor == name.lower(), name
        assert anchor in headings, f"{name}: docs/runbook.md has no section '## {name}'"


def test_the_slo_objective_is_set_in_exactly_one_rule() -> None:
    text = RULES.read_text()
    objective = [r for r in _rules() if r.get("record") == "letta:run_success:objective"]
    assert len(objective) == 1
    assert re.fullmatch(r"vector\(0\.\d+\)", objective[0]["expr"].strip())
    # No rule repeats the number: burn rates and alerts read the recorded objective.
    number = objective[0]["expr"].strip()[len("vector(") : -1]
    assert text.count(number) == 1
