"""Every metric the exporter serves: name, type, help, labels and buckets.

This is the single source the collector, the golden test, the docs, the dashboards and
the alert rules are checked against. Names follow Prometheus conventions: base units,
`_total` on counters (added by the exposition for counter families).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Final


class Kind(Enum):
    COUNTER = "counter"
    GAUGE = "gauge"
    HISTOGRAM = "histogram"


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One metric family. `name` is the family name without the `_total` suffix."""

    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()

    @property
    def exposed_name(self) -> str:
        """The name as it appears in the text exposition (counters get `_total`)."""
        return f"{self.name}_total" if self.kind is Kind.COUNTER else self.name


# Runs last from well under a second (a failed sync call) to many minutes (long tool
# loops); TTFT and API latency are much shorter.
RUN_DURATION_BUCKETS: Final = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
TTFT_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)
API_LATENCY_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

RUNS_FINISHED: Final = MetricSpec(
    "letta_runs_finished",
    Kind.COUNTER,
    "Runs that reached a terminal state, counted once each after a short grace period.",
    ("agent", "status", "stop_reason"),
)
RUNS_FAILED: Final = MetricSpec(
    "letta_runs_failed",
    Kind.COUNTER,
    "Finished runs that failed (status failed, or a failing stop reason on a completed "
    "run) by error type: the failed step's error class, else the type or code in the "
    "run's metadata.error, normalised to snake_case; none when Letta recorded neither.",
    ("agent", "error_type"),
)
RUNS_FINISHED_BY_PATH: Final = MetricSpec(
    "letta_runs_finished_by_path",
    Kind.COUNTER,
    "Runs that reached a terminal state by the API path that created them: run_type from "
    "metadata.run_type (send_message, send_message_async, ...) and background (true, "
    "false, unknown). No agent label: a few series for any number of agents.",
    ("run_type", "background"),
)
RUN_DURATION: Final = MetricSpec(
    "letta_run_duration_seconds",
    Kind.HISTOGRAM,
    "Wall-clock duration of finished runs (total_duration_ns, else completed_at - created_at).",
    ("agent", "status"),
    RUN_DURATION_BUCKETS,
)
RUN_TTFT: Final = MetricSpec(
    "letta_run_time_to_first_token_seconds",
    Kind.HISTOGRAM,
    "Time to first token of finished runs: Letta's ttft_ns, else the trace's "
    "time_to_first_token_ms event (streaming runs, traces on); never estimated.",
    ("agent",),
    TTFT_BUCKETS,
)
RUN_CALLBACKS: Final = MetricSpec(
    "letta_run_callbacks",
    Kind.COUNTER,
    "Completion callbacks of finished runs by result: success, failure, or unknown "
    "(none recorded before the run was counted).",
    ("agent", "result"),
)
RUNS_DELETED: Final = MetricSpec(
    "letta_runs_deleted",
    Kind.COUNTER,
    "Followed runs that disappeared (404) before they finished, e.g. their agent was deleted.",
    ("agent",),
)
RUNS_INCONSISTENT: Final = MetricSpec(
    "letta_runs_inconsistent",
    Kind.COUNTER,
    "Runs seen in a state Letta should never leave them in, once per run and kind: "
    "stop_reason_while_open, finished_without_stop_reason, finished_without_completed_at, "
    "refused_without_wait (docs/metrics.md). The run is counted as usual besides.",
    ("agent", "kind"),
)
RUNS_IN_PROGRESS: Final = MetricSpec(
    "letta_runs_in_progress",
    Kind.GAUGE,
    "Runs currently created or running, younger than the stale threshold.",
    ("agent", "status"),
)
RUNS_STALE: Final = MetricSpec(
    "letta_runs_stale",
    Kind.GAUGE,
    "Runs still created or running after the stale threshold (likely zombies).",
    ("agent", "status"),
)
OLDEST_IN_PROGRESS: Final = MetricSpec(
    "letta_run_oldest_in_progress_created_timestamp_seconds",
    Kind.GAUGE,
    "Creation time of the oldest run in progress (not stale), per agent.",
    ("agent",),
)
RUNS_AWAITING_APPROVAL: Final = MetricSpec(
    "letta_runs_awaiting_approval",
    Kind.GAUGE,
    "Pending tool-call approvals: runs that stopped with requires_approval and that no "
    "later run on the same agent or conversation answered and nobody cancelled.",
    ("agent",),
)
OLDEST_AWAITING_APPROVAL: Final = MetricSpec(
    "letta_run_oldest_awaiting_approval_timestamp_seconds",
    Kind.GAUGE,
    "When the oldest pending approval was requested (the waiting run's completed_at), per agent.",
    ("agent",),
)
THREADS_DEADLOCKED: Final = MetricSpec(
    "letta_conversations_deadlocked",
    Kind.GAUGE,
    "Threads of an agent (its own messages, or one of its conversations) whose newest "
    "message Letta refused with 409 for a pending approval while the exporter sees no "
    "approval pending and no run open on them: every new message is refused until the "
    "orphaned approval is answered.",
    ("agent",),
)

RUN_TOKENS: Final = MetricSpec(
    "letta_run_tokens",
    Kind.COUNTER,
    "Tokens of finished runs by model and type (input includes cached_input and "
    "cache_write; output includes reasoning), from the run's steps, else from /usage.",
    ("agent", "model", "type"),
)
RUN_STEPS: Final = MetricSpec(
    "letta_run_steps",
    Kind.HISTOGRAM,
    "Steps per finished run (all steps from /steps; /metrics' num_steps, capped at 50, "
    "when /steps is off).",
    ("agent",),
    (1, 2, 3, 5, 8, 13, 20, 30, 50, 75, 100, 200),
)
STEP_DURATION: Final = MetricSpec(
    "letta_step_duration_seconds",
    Kind.HISTOGRAM,
    "Duration of the steps of finished runs (needs --enrich.step-timings).",
    ("agent", "model"),
    (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120),
)
RUN_TOOL_CALLS: Final = MetricSpec(
    "letta_run_tool_calls",
    Kind.COUNTER,
    "Finished runs that called each tool (Letta reports the set of tools a run used, "
    "not how often).",
    ("agent", "tool"),
)
RUN_TOOL_INVOCATIONS: Final = MetricSpec(
    "letta_run_tool_invocations",
    Kind.COUNTER,
    "Tool calls of finished runs, each call counted, read from messages (one walk over "
    "every run's, else the run's own where /metrics is not served; runs whose tools came "
    "from /metrics are not in it; letta_run_tool_calls_total counts runs per tool).",
    ("agent", "tool"),
)
RUN_COST: Final = MetricSpec(
    "letta_run_cost_usd",
    Kind.COUNTER,
    "Estimated cost of finished runs in US dollars, from the price file (absent without).",
    ("agent", "model"),
)
AGENT_INFO: Final = MetricSpec(
    "letta_agent_info",
    Kind.GAUGE,
    "Always 1 per agent with a known name, for joins in queries: "
    "`* on (agent) group_left (agent_name) letta_agent_info` (off with --agents.names=false).",
    ("agent", "agent_name"),
)
UP: Final = MetricSpec(
    "letta_up", Kind.GAUGE, "1 if the last poll of the Letta API succeeded, else 0."
)
BUILD_INFO: Final = MetricSpec(
    "letta_exporter_build_info",
    Kind.GAUGE,
    "Always 1; the exporter version as a label.",
    ("version",),
)
LAST_POLL_SUCCESS: Final = MetricSpec(
    "letta_exporter_last_poll_success_timestamp_seconds",
    Kind.GAUGE,
    "Unix time of the end of the last successful poll cycle.",
)
POLL_DURATION: Final = MetricSpec(
    "letta_exporter_poll_duration_seconds",
    Kind.GAUGE,
    "Duration of the last poll cycle.",
)
POLL_BACKOFF: Final = MetricSpec(
    "letta_exporter_poll_backoff_seconds",
    Kind.GAUGE,
    "Seconds the poll loop waits after the last cycle because it failed (the poll "
    "interval, doubling with each further failure up to 5 minutes); 0 while polls succeed.",
)
POLLS: Final = MetricSpec(
    "letta_exporter_polls",
    Kind.COUNTER,
    "Poll cycles run, successful or not.",
)
POLL_ERRORS: Final = MetricSpec(
    "letta_exporter_poll_errors",
    Kind.COUNTER,
    "Poll cycles that failed, by reason (timeout, connect, http_429, http_5xx, http_4xx, "
    "auth, bad_response, too_large).",
    ("reason",),
)
API_REQUESTS: Final = MetricSpec(
    "letta_exporter_api_requests",
    Kind.COUNTER,
    "HTTP requests to the Letta API by endpoint and status code (or timeout/connect_error).",
    ("endpoint", "code"),
)
API_REQUEST_DURATION: Final = MetricSpec(
    "letta_exporter_api_request_duration_seconds",
    Kind.HISTOGRAM,
    "Latency of HTTP requests to the Letta API.",
    ("endpoint",),
    API_LATENCY_BUCKETS,
)
REQUESTS_POSTPONED: Final = MetricSpec(
    "letta_exporter_requests_postponed",
    Kind.COUNTER,
    "Requests to Letta not sent or not retried because Letta asked (Retry-After) to wait "
    "past the request's deadline; the work is done after that wait.",
    ("endpoint",),
)
REQUEST_RATE_LIMIT: Final = MetricSpec(
    "letta_exporter_request_rate_limit",
    Kind.GAUGE,
    "Requests per second to Letta in force: --letta.rate-limit, lowered to what Letta "
    "accepts while more than about 9 % of answers are 429 and raised step by step after; "
    "absent while nothing caps them (--letta.rate-limit=0 and no recent congestion).",
)
ENDPOINT_UP: Final = MetricSpec(
    "letta_exporter_endpoint_up",
    Kind.GAUGE,
    "0 while an enrichment endpoint is not served by Letta (404/405/501 for runs that "
    "exist) and is not asked; 1 otherwise. Re-checked every few minutes.",
    ("endpoint",),
)
# Followed = open or settling (`Phase`); the name is the one served since 0.1.0.
FOLLOWED_RUNS: Final = MetricSpec(
    "letta_exporter_open_runs",
    Kind.GAUGE,
    "Runs the exporter is following (open, stale, or finished but not yet counted).",
)
INVALID_ITEMS: Final = MetricSpec(
    "letta_exporter_invalid_items",
    Kind.COUNTER,
    "Items of an API response that could not be parsed and were skipped.",
    ("endpoint",),
)
LABEL_OVERFLOW: Final = MetricSpec(
    "letta_exporter_label_overflow",
    Kind.COUNTER,
    "Runs whose label value was replaced by __other__ because the label cap was reached.",
    ("label",),
)
CURSOR_LOST: Final = MetricSpec(
    "letta_exporter_cursor_lost",
    Kind.COUNTER,
    "Pages where Letta ignored the cursor (its run was deleted) and restarted the list.",
)
PAGINATION_STALLS: Final = MetricSpec(
    "letta_exporter_pagination_stalls",
    Kind.COUNTER,
    "Pages that made no progress; the walk stopped for this cycle instead of looping.",
)
LIST_CURSOR_INFO: Final = MetricSpec(
    "letta_exporter_list_cursor_info",
    Kind.GAUGE,
    "1 for the runs-list cursor parameter that lists older runs on this server (before, "
    "after), or unknown while no page has shown it; 0 for the others.",
    ("param",),
)
CURSOR_DIRECTION_SWITCHES: Final = MetricSpec(
    "letta_exporter_cursor_direction_switches",
    Kind.COUNTER,
    "Times the list cursor parameter in force changed after it was decided (the server's "
    "cursor semantics changed).",
)
COUNTING_LAG: Final = MetricSpec(
    "letta_exporter_counting_lag_seconds",
    Kind.GAUGE,
    "Age of the oldest finished run not yet counted (since its completed_at; while "
    "discovery is behind, since the newest moment it had seen everything); 0 when none.",
)
LATE_RUNS: Final = MetricSpec(
    "letta_exporter_late_runs",
    Kind.COUNTER,
    "Runs first seen with a created_at older than runs already seen (late commits).",
)
CHANGED_AFTER_COUNT: Final = MetricSpec(
    "letta_exporter_runs_changed_after_count",
    Kind.COUNTER,
    "Runs whose status or stop reason changed after they were counted (not recounted).",
)
OPEN_RUNS_DROPPED: Final = MetricSpec(
    "letta_exporter_open_runs_dropped",
    Kind.COUNTER,
    "Open runs no longer followed: expired (older than the forget horizon) or capacity.",
    ("reason",),
)
ENRICHMENT_FAILURES: Final = MetricSpec(
    "letta_exporter_enrichment_failures",
    Kind.COUNTER,
    "Runs counted without an endpoint's detail after its fetch failed for good "
    "(404, or every retry failed).",
    ("endpoint",),
)
ENRICHMENT_BACKLOG: Final = MetricSpec(
    "letta_exporter_enrichment_backlog",
    Kind.GAUGE,
    "Finished runs waiting for their usage/steps/metrics/trace before being counted.",
)
SPANS_EXPORTED: Final = MetricSpec(
    "letta_exporter_spans_exported",
    Kind.COUNTER,
    "Spans of finished runs by export outcome: exported; failed (an attempt failed, the "
    "run's spans are retried); dropped (given up: outbox full, or too large to queue).",
    ("result",),
)
SPAN_RESULTS: Final = ("exported", "failed", "dropped")
"""The `result` values of `letta_exporter_spans_exported_total`."""
SPANS_PENDING: Final = MetricSpec(
    "letta_exporter_spans_pending_runs",
    Kind.GAUGE,
    "Counted runs whose spans wait in the outbox for export (0 when tracing is off).",
)
BACKFILL_REMAINING: Final = MetricSpec(
    "letta_exporter_backfill_remaining_seconds",
    Kind.GAUGE,
    "Span of run creation times still to be walked by backfill or catch-up (0 when idle).",
)
WEB_CONFIG_RELOAD_OK: Final = MetricSpec(
    "letta_exporter_web_config_last_reload_successful",
    Kind.GAUGE,
    "0 when a changed --web.config.file (or a certificate, key or CA file it names) "
    "failed to load and the previous configuration still serves; else 1.",
)
SCOPE_VERIFIED: Final = MetricSpec(
    "letta_exporter_scope_verified",
    Kind.GAUGE,
    "1 once the steps Letta returned showed that it applies --letta.project-id (or "
    "--letta.project); 0 until then, or for good once a step of another project was seen "
    "(the server ignores the header and other projects' runs are counted). Absent without "
    "a project.",
)

ALL: Final[tuple[MetricSpec, ...]] = (
    RUNS_FINISHED,
    RUNS_FAILED,
    RUNS_FINISHED_BY_PATH,
    RUN_DURATION,
    RUN_TTFT,
    RUN_CALLBACKS,
    RUNS_DELETED,
    RUNS_INCONSISTENT,
    RUN_TOKENS,
    RUN_STEPS,
    STEP_DURATION,
    RUN_TOOL_CALLS,
    RUN_TOOL_INVOCATIONS,
    RUN_COST,
    RUNS_IN_PROGRESS,
    RUNS_STALE,
    OLDEST_IN_PROGRESS,
    AGENT_INFO,
    RUNS_AWAITING_APPROVAL,
    OLDEST_AWAITING_APPROVAL,
    THREADS_DEADLOCKED,
    UP,
    BUILD_INFO,
    LAST_POLL_SUCCESS,
    POLL_DURATION,
    POLL_BACKOFF,
    POLLS,
    POLL_ERRORS,
    API_REQUESTS,
    API_REQUEST_DURATION,
    REQUESTS_POSTPONED,
    REQUEST_RATE_LIMIT,
    ENDPOINT_UP,
    FOLLOWED_RUNS,
    INVALID_ITEMS,
    LABEL_OVERFLOW,
    CURSOR_LOST,
    PAGINATION_STALLS,
    LIST_CURSOR_INFO,
    CURSOR_DIRECTION_SWITCHES,
    COUNTING_LAG,
    LATE_RUNS,
    CHANGED_AFTER_COUNT,
    OPEN_RUNS_DROPPED,
    ENRICHMENT_FAILURES,
    ENRICHMENT_BACKLOG,
    BACKFILL_REMAINING,
    SPANS_EXPORTED,
    SPANS_PENDING,
    WEB_CONFIG_RELOAD_OK,
    SCOPE_VERIFIED,
)
BY_NAME: Final = {spec.name: spec for spec in ALL}
