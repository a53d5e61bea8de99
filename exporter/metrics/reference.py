"""The metric reference (docs/metrics.md), generated from the catalogue.

    python -m exporter.metrics.reference > docs/metrics.md

The catalogue is the single source of every metric; this module only renders it, plus a
short description of each label name so the reference says what the values are. A label
without a description is an error, so a new label cannot reach the docs unexplained.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Final

from exporter.core.runs import inconsistency as inc
from exporter.core.runs.record import ENDPOINTS as ENRICHMENT_ENDPOINTS
from exporter.letta.errors import POLL_ERROR_REASONS
from exporter.series import catalogue
from exporter.series.catalogue import SPAN_RESULTS, Kind, MetricSpec


def _values(values: Iterable[str]) -> str:
    return ", ".join(f"`{v}`" for v in values)


LABELS: Final[Mapping[str, str]] = {
    "agent": (
        "Agent id. At most `--agents.label-limit` distinct values; runs of further agents "
        "are recorded under `__other__` (see `letta_exporter_label_overflow_total`)."
    ),
    "status": (
        "Letta's run status: `completed`, `failed`, `cancelled` on finished runs; "
        "`created`, `running` on open runs. Unknown values from newer servers are kept, "
        "lowercased and reduced to `[a-z0-9_]`."
    ),
    "stop_reason": (
        "Letta's stop reason (`end_turn`, `max_steps`, `tool_rule`, `requires_approval`, "
        "`cancelled`, `error`, `llm_api_error`, `invalid_llm_response`, ...); `none` when "
        "the run has none. It can disagree with `status`: a streaming run that hit an LLM "
        "error can end `completed` with `llm_api_error`."
    ),
    "model": (
        "The model of the steps (the step's `model` field, e.g. `gpt-4o-mini`); `unknown` "
        "when only `/usage` was available. At most `--models.label-limit` values."
    ),
    "type": (
        f"Token type: {_values(('input', 'output', 'cached_input', 'cache_write', 'reasoning'))}"
        ". `input` includes `cached_input` and `cache_write`, `output` includes `reasoning`: "
        "do not add the types up."
    ),
    "agent_name": (
        "The agent's name from Letta's agents list, as Letta stores it (printable, at most "
        "128 characters). Only on `letta_agent_info`; join it onto per-agent series with "
        "`* on (agent) group_left (agent_name) letta_agent_info`."
    ),
    "error_type": (
        "Why a run failed: the failed step's error class (e.g. `llm_server_error` from "
        "`LLMServerError`), else the `error_type` or leading code of the run's "
        "`metadata.error` (e.g. `llm_error`, `internal_server_error`, `conflict`), in "
        "snake_case; `none` when Letta recorded neither. Never message text. At most 50 "
        "values."
    ),
    "run_type": (
        "The API path that created the run, from `metadata.run_type`: `send_message` "
        "(agents messages, sync or `streaming=true`), `send_message_streaming` (the "
        "deprecated `/messages/stream`), `send_message_async`, `send_conversation_message`, "
        "`openai_chat_completions`, `sleeptime_agent_send_message_async`; `none` when "
        "absent. At most 20 values."
    ),
    "background": "Whether the run ran in the background: `true`, `false`, `unknown`.",
    "tool": (
        "Tool name (the tool id when Letta cannot name it). At most `--tools.label-limit` values."
    ),
    "result": (
        "Callback result: `success` (2xx), `failure` (error or another status), `unknown` "
        "(nothing recorded before the run was counted). Span export result: "
        f"{_values(SPAN_RESULTS)}."
    ),
    "endpoint": (
        "The Letta API call: `runs_list`, `runs_active`, `run`, `run_usage`, `run_steps`, "
        "`run_metrics`, `run_trace`, `step_metrics`, `tool` on request metrics and invalid "
        "items; the "
        f"enrichment detail ({_values(ENRICHMENT_ENDPOINTS)}) on enrichment failures."
    ),
    "code": (
        "HTTP status code of the answer, or `timeout`, `connect_error`, `error` when there "
        "was none."
    ),
    "reason": (
        f"Why a poll failed ({_values(POLL_ERROR_REASONS)}), or why an open run was "
        "dropped (`expired`, `capacity`)."
    ),
    "label": "The capped label that overflowed: `agent`, `model` or `tool`.",
    "kind": (
        "The impossible state a run was seen in, one of a fixed set: "
        f"`{inc.STOP_REASON_WHILE_OPEN}` (created or running yet carrying a stop reason: its "
        "end was decided but never written), "
        f"`{inc.FINISHED_WITHOUT_STOP_REASON}` (completed or cancelled without a stop reason; "
        "a failed run without one is ordinary on 0.16.8 and not counted), "
        f"`{inc.FINISHED_WITHOUT_COMPLETED_AT}` (finished, still without `completed_at` when "
        "counted), "
        f"`{inc.REFUSED_WITHOUT_WAIT}` (a message refused with 409 for a pending approval "
        "while no approval is pending and no run open that the exporter can see: a cancelled "
        "or lost request blocks the agent or conversation). What to do about each: "
        "docs/runbook.md, LettaRunsInconsistent and LettaConversationDeadlocked."
    ),
    "version": "The exporter's version.",
    "param": (
        "The runs-list cursor parameter that lists older runs with `order=desc`: `before` "
        "(Letta 0.16.8, time-absolute cursors), `after` (cursors relative to the sort "
        "order), `unknown` until a page has shown it."
    ),
}
"""What the values of each label name are."""

_SECTIONS: Final = (
    ("Runs", "Counted once per finished run, or the live state of open runs."),
    ("The exporter and the Letta API", "How the exporter and its polls of Letta are doing."),
)

# Words with an underscore, flags and API paths read better as code; it also keeps
# `__other__` from rendering as bold.
_CODE_WORD: Final = re.compile(r"(?<![\w`/-])(--[a-z][\w.-]*|/[a-z][\w/{}]*|\w*_\w*)")


def series(spec: MetricSpec) -> tuple[str, ...]:
    """The sample names a metric family exposes (histograms: bucket, sum and count)."""
    if spec.kind is Kind.HISTOGRAM:
        return (f"{spec.name}_bucket", f"{spec.name}_sum", f"{spec.name}_count")
    return (spec.exposed_name,)


def section_of(spec: MetricSpec) -> int:
    """Index into the sections: 0 for run metrics, 1 for exporter and API health."""
    return 1 if spec.name == "letta_up" or spec.name.startswith("letta_exporter_") else 0


def _inline(text: str) -> str:
    return _CODE_WORD.sub(r"`\1`", text).replace("|", "\\|")


def _bound(value: float) -> str:
    return f"{value:g}"


def render(specs: Sequence[MetricSpec] = catalogue.ALL) -> str:
    """The whole reference as Markdown, metrics in catalogue order within each section."""
    unknown = sorted({label for spec in specs for label in spec.labels} - set(LABELS))
    if unknown:
        raise KeyError(f"labels without a description in exporter.reference.LABELS: {unknown}")
    lines = [
        "# Metrics reference",
        "",
        "<!-- Generated by `python -m exporter.metrics.reference > docs/metrics.md` from",
        "     exporter/series/catalogue.py; do not edit by hand. -->",
        "",
        f"Every metric letta-exporter serves on `/metrics` ({len(specs)} families), generated "
        "from `exporter/series/catalogue.py`. Counters and histograms of runs, and the exporter's "
        "own counters, are persisted in the state file and continue across restarts. "
        "Every series also carries the scrape target's `job` and `instance` labels.",
        "",
    ]
    for index, (title, intro) in enumerate(_SECTIONS):
        lines += [f"## {title}", "", intro, "", "| metric | type | labels | meaning |"]
        lines.append("|---|---|---|---|")
        for spec in specs:
            if section_of(spec) != index:
                continue
            labels = ", ".join(f"`{label}`" for label in spec.labels) or "—"
            lines.append(
                f"| `{spec.exposed_name}` | {spec.kind.value} | {labels} | {_inline(spec.help)} |"
            )
        lines.append("")
    lines += ["## Labels", "", "| label | values |", "|---|---|"]
    used = [label for label in LABELS if any(label in spec.labels for spec in specs)]
    lines += [f"| `{label}` | {LABELS[label]} |" for label in used]
    lines += ["", "## Histogram buckets", "", "Upper bounds of the classic buckets (`le`)."]
    lines += ["", "| histogram | series | buckets |", "|---|---|---|"]
    for spec in specs:
        if spec.kind is Kind.HISTOGRAM:
            names = ", ".join(f"`{name}`" for name in series(spec))
            bounds = ", ".join(_bound(b) for b in spec.buckets)
            lines.append(f"| `{spec.name}` | {names} | {bounds}, +Inf |")
    return "\n".join(lines) + "\n"


def main() -> None:
    """Print the reference to standard output."""
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
