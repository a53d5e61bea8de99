"""The Grafana dashboards: well-formed, templated, and conformant with the catalogue.

Conformance: every metric a dashboard or rule selects is served by the exporter (a name
from `exporter/series/catalogue.py`, a recording rule of `alerts/letta-runs.rules.yml`, or a
series Prometheus makes itself), every label a query uses exists on what it selects, and
every catalogue metric is on a dashboard unless `NOT_ON_DASHBOARDS` says why not. This is
what keeps panels from silently going empty when a metric is renamed (the OpenLIT/GenAI
mixin failure: dashboards querying names the emitter no longer serves).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml

from exporter.metrics.reference import series
from exporter.series import catalogue
from exporter.series.catalogue import Kind, MetricSpec
from tests.dashboard_files import (
    DASHBOARD_FILES,
    DASHBOARDS,
    RULES,
    dashboard_targets,
    load_dashboard,
    panels,
)
from tests.fake_letta.constants import STOP_REASONS

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}

# Catalogue metrics deliberately on no dashboard, with the reason. Empty today: every
# metric has a panel.
NOT_ON_DASHBOARDS: dict[str, str] = {}

# Series Prometheus itself adds to every target, which dashboards and rules may use.
PROMETHEUS_SERIES: dict[str, tuple[str, ...]] = {"up": ()}

# Labels every scraped series carries (target labels), whatever the exporter serves.
TARGET_LABELS = frozenset({"job", "instance"})


# ------------------------------------------------------------------ PromQL selectors


@dataclass
class Selector:
    """One vector selector of a PromQL expression: metric name and label matchers."""

    name: str
    matchers: dict[str, tuple[str, str]] = field(default_factory=dict)


@dataclass
class Parsed:
    """What a PromQL expression selects and which labels it groups by."""

    selectors: list[Selector]
    grouping: set[str]


_TOKEN = re.compile(
    r"""
      (?P<ws>\s+)
    | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
    | (?P<range>\[[^\]]*\])
    | (?P<number>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?(?:ms|[smhdwy])*)
    | (?P<var>\$\{?\w+\}?)
    | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
    | (?P<op>=~|!~|!=|==|>=|<=|[-+*/%^=<>{}(),@])
    """,
    re.VERBOSE,
)
# Keywords that are followed by a parenthesised list of label names.
_LABEL_LIST_KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
_KEYWORDS = _LABEL_LIST_KEYWORDS | {"bool", "and", "or", "unless", "offset", "atan2", "inf", "nan"}


def _tokens(expr: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(expr):
        match = _TOKEN.match(expr, pos)
        if match is None:
            raise ValueError(f"cannot tokenise {expr[pos:]!r} in {expr!r}")
        kind = match.lastgroup
        assert kind is not None
        if kind != "ws":
            out.append((kind, match.group()))
        pos = match.end()
    return out


def _unquote(token: str) -> str:
    if token.startswith("`"):
        return token[1:-1]
    return str(json.loads(token)) if token.startswith('"') else token[1:-1]


def parse_promql(expr: str) -> Parsed:
    """The vector selectors and grouping labels of `expr`.

    Not a full parser: enough to tell metric names from functions, keywords and label
    lists, which is all conformance needs. Grafana variables may be left in (`$job`).
    """
    tokens = _tokens(expr)
    selectors: list[Selector] = []
    grouping: set[str] = set()
    i = 0

    def matchers_at(start: int) -> tuple[dict[str, tuple[str, str]], int]:
        found: dict[str, tuple[str, str]] = {}
        j = start + 1
        while tokens[j][1] != "}":
            if tokens[j][1] == ",":
                j += 1
                continue
            label, op, value = tokens[j][1], tokens[j + 1][1], tokens[j + 2]
            assert value[0] == "string", f"matcher value must be a string in {expr!r}"
            found[label] = (op, _unquote(value[1]))
            j += 3
        return found, j + 1

    while i < len(tokens):
        kind, text = tokens[i]
        nxt = tokens[i + 1][1] if i + 1 < len(tokens) else ""
        if kind == "ident" and text.lower() in _KEYWORDS:
            if text.lower() in _LABEL_LIST_KEYWORDS and nxt == "(":
                j = i + 2
                while tokens[j][1] != ")":
                    if tokens[j][0] == "ident":
                        grouping.add(tokens[j][1])
                    j += 1
                i = j + 1
                continue
            i += 1
        elif kind == "ident" and (nxt == "(" or nxt.lower() in ("by", "without")):
            i += 1  # a function or an aggregation (`sum by (x) (...)`), not a metric
        elif kind == "ident":
            selector = Selector(text)
            if nxt == "{":
                selector.matchers, i = matchers_at(i + 1)
            else:
                i += 1
            selectors.append(selector)
        elif text == "{":
            found, i = matchers_at(i)
            name_matcher = found.pop("__name__", ("=", ""))
            selectors.append(Selector(name_matcher[1], found))
        else:
            i += 1
    return Parsed(selectors, grouping)


# ------------------------------------------------------------------ dashboards


def variable_queries(dashboard: dict[str, Any]) -> list[str]:
    """The PromQL inside the `label_values(...)` variable queries."""
    out = []
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            match = re.fullmatch(r"label_values\((.+),\s*\w+\)", var["query"])
            assert match, f"variable {var['name']}: unexpected query {var['query']!r}"
            out.append(match.group(1))
    return out


def catalogue_series() -> dict[str, MetricSpec]:
    """Every sample name the exporter can expose, mapped to its metric family."""
    return {name: spec for spec in catalogue.ALL for name in series(spec)}


def recording_rules() -> dict[str, str]:
    """Recording rule name -> expression, from the shipped rules file."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["record"]: rule["expr"] for g in groups for rule in g["rules"] if "record" in rule}


def alerting_rules() -> dict[str, dict[str, Any]]:
    """Alert name -> rule, from the shipped rules file."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["alert"]: rule for g in groups for rule in g["rules"] if "alert" in rule}


def labels_of(name: str) -> frozenset[str] | None:
    """The labels a selected series can carry, or None for an unknown name."""
    served = catalogue_series()
    if name in served:
        spec = served[name]
        extra = {"le"} if spec.kind is Kind.HISTOGRAM and name.endswith("_bucket") else set()
        return TARGET_LABELS | set(spec.labels) | extra
    if name in PROMETHEUS_SERIES:
        return TARGET_LABELS | set(PROMETHEUS_SERIES[name])
    return None


# `label_replace(v, "dst", "replacement", "src", "regex")`: the tail naming the label made.
_LABEL_REPLACE_TAIL = re.compile(r'"(\w+)",\s*"[^"]*",\s*"\w+",\s*"[^"]*"\)')


def check_expr(expr: str, where: str, recorded: dict[str, str]) -> list[str]:
    """Problems with the names and labels `expr` uses; empty when it conforms."""
    problems = []
    parsed = parse_promql(expr)
    # Labels label_replace makes exist on what it returns.
    known_labels: set[str] = set(TARGET_LABELS) | set(_LABEL_REPLACE_TAIL.findall(expr))
    for selector in parsed.selectors:
        if ":" in selector.name:
            # Recording rules: defined in the shipped file; their labels are not checked.
            if selector.name not in recorded:
                problems.append(f"{where}: recording rule {selector.name} is not defined")
            known_labels |= set(selector.matchers) | parsed.grouping
            continue
        labels = labels_of(selector.name)
        if labels is None:
            problems.append(f"{where}: {selector.name} is not in the catalogue")
            continue
        known_labels |= labels
        unknown = set(selector.matchers) - labels
        if unknown:
            problems.append(f"{where}: {selector.name} has no label(s) {sorted(unknown)}")
    unknown_grouping = parsed.grouping - known_labels
    if unknown_grouping:
        problems.append(f"{where}: groups by unknown label(s) {sorted(unknown_grouping)}")
    return problems


@pytest.fixture(params=sorted(DASHBOARD_FILES))
def dashboard(request: pytest.FixtureRequest) -> dict[str, Any]:
    return load_dashboard(request.param)


def test_the_dashboards_are_grafana_10_json_with_a_stable_uid_and_tags() -> None:
    for file, uid in DASHBOARD_FILES.items():
        dash = load_dashboard(file)
        assert dash["uid"] == uid, file
        assert dash["schemaVersion"] >= 38, file
        assert dash["tags"] and "letta" in dash["tags"], file
        assert dash["title"].startswith("Letta / "), file
        # id null: Grafana assigns its own on import/provisioning.
        assert dash["id"] is None, file
    titles = [load_dashboard(f)["title"] for f in DASHBOARD_FILES]
    assert len(set(titles)) == len(titles)


def test_variables_datasource_job_instance_and_agent(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["job"]["query"] == "label_values(letta_up, job)"
    assert variables["instance"]["query"] == 'label_values(letta_up{job=~"$job"}, instance)'
    expected = {"datasource", "job", "instance"}
    if dashboard["uid"] == "letta-runs":
        agent = variables["agent"]
        assert "letta_runs_finished_total" in agent["query"]
        assert agent["multi"] and agent["includeAll"]
        expected.add("agent")
    assert set(variables) == expected
    for name in expected - {"datasource"}:
        var = variables[name]
        assert var["datasource"] == DATASOURCE, name
        # ".*" rather than Grafana's default of every value OR-ed into one huge regex.
        assert var["allValue"] == ".*", name


def test_every_panel_and_target_uses_the_datasource_variable(dashboard: dict[str, Any]) -> None:
    for panel in panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel.get("datasource") == DATASOURCE, panel["title"]
        assert panel["targets"], f"{panel['title']}: no query"
        for target in panel["targets"]:
            assert target.get("datasource") == DATASOURCE, panel["title"]


def test_panels_have_unique_ids_titles_descriptions_and_do_not_overlap(
    dashboard: dict[str, Any],
) -> None:
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids))
    cells: dict[tuple[int, int], str] = {}
    for panel in panels(dashboard):
        assert panel["title"]
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]
        if panel["type"] != "row":
            assert panel.get("description"), f"{panel['title']}: say what the panel shows"
            ref_ids = [t["refId"] for t in panel["targets"]]
            assert len(ref_ids) == len(set(ref_ids)), panel["title"]


def test_no_query_names_a_job_and_every_selector_is_filtered_by_the_variables(
    dashboard: dict[str, Any],
) -> None:
    text = json.dumps(dashboard)
    assert not re.search(r'job\s*(=|!=|=~|!~)\s*\\"(?!\$job)', text), "hard-coded job"
    has_agent_variable = any(v["name"] == "agent" for v in dashboard["templating"]["list"])
    for panel, target in dashboard_targets(dashboard):
        for selector in parse_promql(target["expr"]).selectors:
            where = f"{panel['title']}: {selector.name}"
            assert selector.matchers.get("job") == ("=~", "$job"), where
            assert selector.matchers.get("instance") == ("=~", "$instance"), where
            labels = labels_of(selector.name) or frozenset()
            if "agent" in labels:
                assert has_agent_variable, f"{where}: per-agent metric without $agent"
                assert selector.matchers.get("agent") == ("=~", "$agent"), where


def test_every_name_and_label_in_dashboards_and_rules_is_served() -> None:
    recorded = recording_rules()
    problems = []
    for file in DASHBOARD_FILES:
        dash = load_dashboard(file)
        for panel, target in dashboard_targets(dash):
            problems += check_expr(target["expr"], f"{file} / {panel['title']}", recorded)
        for query in variable_queries(dash):
            problems += check_expr(query, f"{file} / variable", recorded)
    for name, expr in recorded.items():
        problems += check_expr(expr, f"rule {name}", recorded)
    for name, rule in alerting_rules().items():
        problems += check_expr(rule["expr"], f"alert {name}", recorded)
    assert not problems, "\n".join(problems)


def test_every_catalogue_metric_is_on_a_dashboard_or_excused() -> None:
    used: set[str] = set()
    for file in DASHBOARD_FILES:
        for _, target in dashboard_targets(load_dashboard(file)):
            used |= {s.name for s in parse_promql(target["expr"]).selectors}
    served = catalogue_series()
    on_dashboards = {served[name].name for name in used if name in served}
    missing = {spec.name for spec in catalogue.ALL} - on_dashboards - set(NOT_ON_DASHBOARDS)
    assert not missing, f"catalogue metrics on no dashboard: {sorted(missing)}"
    stale = set(NOT_ON_DASHBOARDS) & on_dashboards
    assert not stale, f"NOT_ON_DASHBOARDS lists metrics that are on a dashboard: {stale}"
    assert set(NOT_ON_DASHBOARDS) <= {spec.name for spec in catalogue.ALL}
    assert all(reason.strip() for reason in NOT_ON_DASHBOARDS.values())


def test_stop_reasons_are_grouped_by_what_to_do_each_in_one_group_on_every_panel() -> None:
    action = re.compile(r'"action",\s*"([^"]+)",\s*"stop_reason",\s*"([^"]+)"\)')
    reasons = {*STOP_REASONS, "none"}  # letta-client 1.12.1's StopReasonType, and no reason
    grouped = [
        (title, action.findall(target["expr"]))
        for file in DASHBOARD_FILES
        for panel, target in dashboard_targets(load_dashboard(file))
        if (title := panel["title"]) and '"action"' in target["expr"]
    ]
    assert {title for title, _ in grouped} == {"Stop reasons by what to do", "Runs by what to do"}
    for title, groups in grouped:
        assert groups == grouped[0][1], f"{title} groups the reasons differently"
        members = [reason for _, regex in groups for reason in regex.split("|")]
        assert sorted(members) == sorted(reasons), title
        assert [name for name, _ in groups] == [
            "done",
            "needs a human",
            "hit a limit",
            "failed",
            "billing",
        ]


def test_the_selector_parser_tells_metrics_from_functions_keywords_and_labels() -> None:
    parsed = parse_promql(
        "histogram_quantile(0.95, sum by (le, status) (rate(letta_run_duration_seconds_bucket"
        '{job=~"$job", status!="failed"}[$__rate_interval] offset 5m)))\n/ on (job) group_left'
        ' () letta:run_success:objective > bool 1e3 and {__name__="up"} or vector(0)'
    )
    assert [s.name for s in parsed.selectors] == [
        "letta_run_duration_seconds_bucket",
        "letta:run_success:objective",
        "up",
    ]
    assert parsed.selectors[0].matchers == {"job": ("=~", "$job"), "status": ("!=", "failed")}
    assert parsed.grouping == {"le", "status", "job"}


def test_provisioning_loads_the_dashboards_and_a_prometheus_datasource() -> None:
    provisioning = DASHBOARDS / "provisioning"
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    assert datasources["apiVersion"] == 1
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "${PROMETHEUS_URL}"
    providers = yaml.safe_load((provisioning / "dashboards" / "letta.yml").read_text())
    assert providers["apiVersion"] == 1
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    path = provider["options"]["path"]
    readme = (DASHBOARDS / "README.md").read_text()
    # The README's docker command mounts exactly what the provisioning files expect.
    assert f'"$PWD/dashboards:{path}:ro"' in readme
    assert '"$PWD/dashboards/provisioning:/etc/grafana/provisioning:ro"' in readme
    assert "PROMETHEUS_URL=" in readme
