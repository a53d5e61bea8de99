"""The Prometheus rules: valid, unit-tested by promtool, every alert tested both ways.

`promtool test rules` runs alerts/letta-runs.test.yml; the checks below make sure that
file keeps covering the rules: each alert has a case where it fires (labels and every
annotation asserted) and one where it stays silent, and each recording rule is evaluated
by a promql_expr_test. Annotations point at sections of docs/runbook.md that exist.
"""

from __future__ import annotations

import re
import subprocess
from typing import Any

import yaml

from tests.rules_sync import ROOT, RULE_TESTS, RULES, runbook_url, with_runbook_urls
from tests.tools import require_tool

RUNBOOK = ROOT / "docs" / "runbook.md"
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


def _runbook_sections() -> set[str]:
    """The anchors of docs/runbook.md's `## ` sections."""
    return {
        _github_anchor(line[3:])
        for line in RUNBOOK.read_text().splitlines()
        if line.startswith("## ")
    }


def test_every_runbook_url_points_at_its_section_of_the_runbook() -> None:
    sections = _runbook_sections()
    for name, rule in _alerts().items():
        url = rule["annotations"]["runbook_url"]
        # One base for all, pyproject.toml's [project.urls] Runbook.
        assert url == runbook_url(name), f"{name}: run `python -m tests.rules_sync`"
        anchor = url.partition("#")[2]
        assert anchor in sections, f"{name}: docs/runbook.md has no section '## {name}'"


def test_the_rule_tests_expect_the_same_runbook_urls() -> None:
    text = RULE_TESTS.read_text()
    assert "runbook_url" in text
    assert with_runbook_urls(text) == text, "run `python -m tests.rules_sync`"


def test_the_runbook_index_lists_every_alert_and_only_alerts_have_sections() -> None:
    alerts = set(_alerts())
    # Index rows: | [LettaX](#lettax) | severity | fires when | for |
    rows = re.findall(r"^\| \[(\w+)\]\(#([\w-]+)\) \| (\w+) \|", RUNBOOK.read_text(), re.M)
    listed = {name for name, _, _ in rows}
    assert listed == alerts, (
        f"not in the index: {sorted(alerts - listed)}; no such alert: {sorted(listed - alerts)}"
    )
    assert len(rows) == len(listed), "an alert is listed twice"
    for name, anchor, severity in rows:
        assert anchor == name.lower(), name
        assert severity == _alerts()[name]["labels"]["severity"], name
    assert _runbook_sections() == {name.lower() for name in alerts}


def test_the_runbook_url_rewrite_follows_the_alert_names() -> None:
    text = (
        "      - alert: LettaA\n"
        "          runbook_url: https://old.example/runbook.md#x\n"
        "      - record: letta:b\n"
        "      - alertname: LettaC\n"
        "              runbook_url: old\n"
    )
    assert with_runbook_urls(text) == (
        "      - alert: LettaA\n"
        f"          runbook_url: {runbook_url('LettaA')}\n"
        "      - record: letta:b\n"
        "      - alertname: LettaC\n"
        f"              runbook_url: {runbook_url('LettaC')}\n"
    )


def test_the_slo_objective_is_set_in_exactly_one_rule() -> None:
    text = RULES.read_text()
    objective = [r for r in _rules() if r.get("record") == "letta:run_success:objective"]
    assert len(objective) == 1
    assert re.fullmatch(r"vector\(0\.\d+\)", objective[0]["expr"].strip())
    # No rule repeats the number: burn rates and alerts read the recorded objective.
    number = objective[0]["expr"].strip()[len("vector(") : -1]
    assert text.count(number) == 1
