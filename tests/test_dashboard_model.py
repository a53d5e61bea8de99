"""Every dashboard as Grafana's own model and PromQL parser read it.

Grafana's model: `grafana-foundation-sdk` (pinned in pyproject.toml to the Grafana 11.6
release) is generated from Grafana's schemas; a dashboard is decoded and encoded again
and every key it drops is one Grafana's schema lacks (a typo, or a field that panel kind
does not have and Grafana never shows). PromQL: `promql-parser` (the Rust parser of the
Prometheus query language) parses each query once the variables are replaced by values
as Grafana would. And every variable a dashboard defines is used somewhere.

A real Grafana server cannot be installed from the registries this project uses; these
checks stand in for loading the dashboards into one. The checks read every file in
dashboards/ and every panel, rows and collapsed ones included.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import promql_parser
import pytest
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models.dashboard import Dashboard

from tests.roundtrip import generic, lost_in_round_trip

DASHBOARDS = Path(__file__).parents[1] / "dashboards"
DASHBOARD_FILES = sorted(DASHBOARDS.glob("*.json"))

# Keys Grafana writes that its schema (and so the model) does not have, with the reason
# they stay. Anything else the model drops fails the test.
NOT_IN_GRAFANAS_SCHEMA = {
    "templating.list[].definition": (
        "Grafana's query editor writes the query's display text here on every export "
        "(dashboards/README.md: edit in Grafana, then export); the query itself is `query`"
    ),
}

# What Grafana puts in place of its built-in variables (values of the kind it renders).
BUILT_IN_VARIABLES = {
    "__rate_interval": "1m0s",
    "__interval": "15s",
    "__interval_ms": "15000",
    "__range": "21600s",
    "__range_s": "21600",
    "__range_ms": "21600000",
}

# $name, ${name}, ${name:format}, [[name]]: Grafana's ways of naming a variable.
# `$1` in label_replace is a regex group: Grafana leaves a name it has no variable for as
# it is, and no variable name starts with a digit.
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$([A-Za-z_]\w*)|\[\[(\w+)(?::\w+)?\]\]")

register_default_plugins()


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def grafana_round_trip(dashboard: dict[str, Any]) -> dict[str, Any]:
    """The dashboard decoded into Grafana's model and encoded again."""
    encoded: dict[str, Any] = json.loads(
        json.dumps(Dashboard.from_json(dashboard), cls=JSONEncoder)
    )
    return encoded


def unknown_to_grafana(dashboard: dict[str, Any]) -> list[str]:
    """Keys and values of `dashboard` that Grafana's model does not keep."""
    lost = lost_in_round_trip(dashboard, grafana_round_trip(dashboard))
    return [path for path in lost if generic(path) not in NOT_IN_GRAFANAS_SCHEMA]


def _variable_value(variable: dict[str, Any]) -> str:
    """What Grafana substitutes for `variable` when every value is selected."""
    kind = variable["type"]
    if kind == "datasource":
        return "prometheus"
    if kind == "interval":
        return "1m"
    if kind in ("custom", "constant", "textbox"):
        options = [o["value"] for o in variable.get("options", []) if o.get("value")]
        return str(options[0] if options else variable.get("query", "")).split(",")[0]
    return str(variable.get("allValue") or ".*")


def substitute(expr: str, dashboard: dict[str, Any]) -> str:
    """`expr` with every variable replaced; an undefined variable raises KeyError."""
    values = {v["name"]: _variable_value(v) for v in dashboard["templating"]["list"]}
    values |= BUILT_IN_VARIABLES

    def value(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group)
        if name not in values:
            raise KeyError(f"undefined variable ${name} in {expr!r}")
        return values[name]

    return _VARIABLE.sub(value, expr)


def queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every panel target and every `label_values` variable query."""
    for panel in _panels(dashboard):
        for target in panel.get("targets", []):
            yield f"panel {panel.get('title')!r} {target.get('refId')}", target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            text = query["query"] if isinstance(query, dict) else query
            match = re.fullmatch(r"label_values\((.+),\s*\w+\)", text)
            assert match, f"variable {variable['name']}: not a label_values() query: {text!r}"
            yield f"variable {variable['name']}", match.group(1)


def unused_variables(dashboard: dict[str, Any]) -> set[str]:
    """Variables no panel, query, title or other variable refers to."""
    unused = set()
    for variable in dashboard["templating"]["list"]:
        others = [v for v in dashboard["templating"]["list"] if v is not variable]
        rest = json.dumps({**dashboard, "templating": {"list": others}})
        named = {next(g for g in m.groups() if g) for m in _VARIABLE.finditer(rest)}
        if variable["name"] not in named:
            unused.add(variable["name"])
    return unused


@pytest.fixture(params=DASHBOARD_FILES, ids=lambda path: path.name)
def dashboard(request: pytest.FixtureRequest) -> dict[str, Any]:
    return _load(request.param)


def test_both_dashboards_are_checked() -> None:
    assert {p.name for p in DASHBOARD_FILES} >= {"letta-runs.json", "letta-exporter.json"}


def test_the_dashboard_has_no_key_grafanas_model_lacks(dashboard: dict[str, Any]) -> None:
    lost = unknown_to_grafana(dashboard)
    assert not lost, "not in Grafana's dashboard schema:\n" + "\n".join(lost)


def test_every_panel_and_query_is_of_a_kind_the_model_knows(dashboard: dict[str, Any]) -> None:
    # Otherwise the round trip passes options and targets through unread.
    runtime = cogruntime.Runtime()
    for panel in _panels(dashboard):
        if panel["type"] == "row":
            continue
        assert runtime.panelcfg_config(panel["type"]) is not None, panel["type"]
        assert panel["datasource"]["type"] in runtime.dataquery_variants, panel["title"]


def test_every_query_parses_as_promql(dashboard: dict[str, Any]) -> None:
    problems = []
    for where, expr in queries(dashboard):
        try:
            promql_parser.parse(substitute(expr, dashboard))
        except (KeyError, ValueError) as error:
            problems.append(f"{where}: {error}")
    assert not problems, "\n".join(problems)


def test_every_variable_is_used(dashboard: dict[str, Any]) -> None:
    assert not unused_variables(dashboard)


# The checks themselves: each catches what it is for.


def test_the_model_reports_keys_a_panel_kind_does_not_have() -> None:
    dash = _load(DASHBOARDS / "letta-exporter.json")
    row = next(i for i, p in enumerate(dash["panels"]) if p["type"] == "row")
    graph = next(i for i, p in enumerate(dash["panels"]) if p["type"] == "timeseries")
    dash["panels"][row]["description"] = "rows have none"
    dash["panels"][graph]["targets"][0]["legendFormt"] = "{{job}}"
    dash["panels"][graph]["fieldConfig"]["defaults"]["custom"]["lineWidht"] = 2
    dash["panels"][graph]["options"]["tooltipp"] = {"mode": "multi"}
    dash["templating"]["list"][0]["defintion"] = "prometheus"
    assert set(unknown_to_grafana(dash)) == {
        f"panels[{row}].description",
        f"panels[{graph}].targets[0].legendFormt",
        f"panels[{graph}].fieldConfig.defaults.custom.lineWidht",
        f"panels[{graph}].options.tooltipp",
        "templating.list[0].defintion",
    }


def test_variables_are_substituted_and_undefined_ones_reported() -> None:
    dash = {"templating": {"list": [{"name": "job", "type": "query", "allValue": ".*"}]}}
    assert substitute('rate(x{job=~"$job"}[$__rate_interval])', dash) == (
        'rate(x{job=~".*"}[1m0s])'
    )
    with pytest.raises(KeyError, match=r"\$agnet"):
        substitute('x{agent=~"${agnet}"}', dash)
    with pytest.raises(ValueError):
        promql_parser.parse(substitute('sum(rate(x{job=~"$job"}[5m])', dash))


def test_a_variable_nothing_refers_to_is_reported() -> None:
    dash = {
        "templating": {
            "list": [{"name": "job", "type": "query"}, {"name": "instance", "type": "query"}]
        },
        "panels": [{"targets": [{"expr": 'up{job=~"$job"}'}]}],
    }
    assert unused_variables(dash) == {"instance"}
