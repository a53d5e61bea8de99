"""The dashboard and rule files, read by tests/test_dashboards.py and test_prometheus_e2e.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parents[1]
DASHBOARDS = ROOT / "dashboards"
RULES = ROOT / "alerts" / "letta-runs.rules.yml"
DASHBOARD_FILES = {"letta-runs.json": "letta-runs", "letta-exporter.json": "letta-exporter"}


def load_dashboard(name: str) -> dict[str, Any]:
    """One dashboard file, parsed."""
    data: dict[str, Any] = json.loads((DASHBOARDS / name).read_text())
    return data


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows included, also those nested in collapsed rows."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def dashboard_targets(dashboard: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(panel, target) for every query target of the dashboard."""
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            yield panel, target
