"""What is derived from alerts/letta-runs.rules.yml, and the command that derives it.

Every alert's runbook_url is the runbook's address (`Runbook` in pyproject.toml's
[project.urls]) plus "#" and the alert's name in lower case, the anchor of its section in
docs/runbook.md; the PrometheusRule of deploy/kubernetes/components/prometheusrule/ is the
rules file's groups, comments kept. After adding or changing an alert, or the address, run

    python -m tests.rules_sync

which writes the runbook_urls into the rules and their promtool tests and regenerates the
PrometheusRule. tests/test_rules.py and tests/test_deploy.py fail until then.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).parents[1]
RULES = ROOT / "alerts" / "letta-runs.rules.yml"
RULE_TESTS = ROOT / "alerts" / "letta-runs.test.yml"
PROMETHEUS_RULE = (
    ROOT / "deploy" / "kubernetes" / "components" / "prometheusrule" / "prometheusrule.yaml"
)
RUNBOOK_BASE: str = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"][
    "Runbook"
]

# The line naming an alert (`- alert: X` in rules, `alertname: X` in promtool tests) and
# the runbook_url lines that belong to the alert named last before them.
_ALERT_NAME = re.compile(r"^\s*(?:- )?(?:alert|alertname): (?P<name>\S+)\s*$")
_RUNBOOK_URL = re.compile(r"^(?P<key>\s*runbook_url: ).*$")

_RULE_HEADER = """\
# GENERATED from alerts/letta-runs.rules.yml by `python -m tests.rules_sync`; do not edit.
# tests/test_deploy.py fails when the two differ. The Prometheus Operator loads
# PrometheusRules by label (spec.ruleSelector); add the label yours wants, e.g.
# `release: <helm release>` for kube-prometheus-stack.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: letta-exporter
  labels:
    app.kubernetes.io/name: letta-exporter
    app.kubernetes.io/component: exporter
spec:
"""


def runbook_url(alert: str) -> str:
    """Where the runbook explains `alert`."""
    return f"{RUNBOOK_BASE}#{alert.lower()}"


def with_runbook_urls(text: str) -> str:
    """`text` (a rules or promtool test file) with each runbook_url that of its alert."""
    alert = None
    lines = []
    for line in text.splitlines(keepends=True):
        if named := _ALERT_NAME.match(line):
            alert = named["name"]
        elif (url := _RUNBOOK_URL.match(line)) and alert is not None:
            line = f"{url['key']}{runbook_url(alert)}\n"
        lines.append(line)
    return "".join(lines)


def render_prometheus_rule() -> str:
    """alerts/letta-runs.rules.yml's groups (comments kept) under a PrometheusRule's spec."""
    lines = RULES.read_text().splitlines()
    start = lines.index("groups:")
    body = [f"  {line}" if line.strip() else "" for line in lines[start:]]
    return _RULE_HEADER + "\n".join(body) + "\n"


def main() -> None:
    for path in (RULES, RULE_TESTS):
        path.write_text(with_runbook_urls(path.read_text()))
    PROMETHEUS_RULE.write_text(render_prometheus_rule())
    for path in (RULES, RULE_TESTS, PROMETHEUS_RULE):
        print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
