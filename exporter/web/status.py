"""The status page at `/`: what the exporter has counted, for the person who opens the port.

Built only from the last published snapshot and an hour of samples of it (history.py):
it never calls Letta, and shows no setting, so no secret. Each number that /metrics also
shows carries `data-metric` (the series it sums, e.g.
`letta_runs_finished_total{status="failed"}`) and `data-value` (the exact sum), which the
browser test compares with /metrics.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable, Hashable, Iterable
from datetime import UTC, datetime
from html import escape
from typing import Final, TypeVar

from exporter import __version__
from exporter.metrics.snapshot import Snapshot
from exporter.series import catalogue as m
from exporter.series.catalogue import MetricSpec
from exporter.web.charts import Series, lines, stacked_bars
from exporter.web.history import HOUR_S, History, Totals, totals_of

REFRESH_S: Final = 10
TOP_AGENTS: Final = 10
_OUTCOME_COLOURS: Final = {
    "completed": "#2e9e5b",
    "failed": "#d64541",
    "cancelled": "#8c8c8c",
}
_OTHER_COLOUR: Final = "#e0a030"
_Key = TypeVar("_Key", bound=Hashable)

_STYLE: Final = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#222}
header{background:#1f2a44;color:#fff;padding:10px 20px;display:flex;gap:24px;align-items:baseline}
header h1{font-size:18px;margin:0}header a{color:#cfe0ff}
main{padding:12px 20px;display:grid;gap:14px;
grid-template-columns:repeat(auto-fill,minmax(560px,1fr))}
section{background:#fff;border:1px solid #dde;border-radius:6px;padding:10px 14px}
h2{font-size:14px;margin:0 0 8px;color:#445}
.cards{grid-column:1/-1;display:flex;gap:12px;flex-wrap:wrap}
.card{background:#fff;border:1px solid #dde;border-radius:6px;padding:8px 14px;min-width:120px}
.card b{display:block;font-size:24px}.card small{color:#667;font-size:12px}
.bad b{color:#d64541}.warn b{color:#c07000}.good b{color:#2e9e5b}
table{border-collapse:collapse;width:100%}td,th{padding:2px 6px;text-align:left}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}tr:nth-child(even){background:#f4f5f8}
.axis,.legend{font-size:10px;fill:#667}.muted{color:#889}
"""


class StatusPage:
    """Keeps the latest snapshot and an hour of samples; renders the page on request."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._history = History()
        self._snapshot = Snapshot()
        self._lock = threading.Lock()

    def publish(self, snapshot: Snapshot) -> None:
        """Take the snapshot /metrics now shows (called after each committed cycle)."""
        now = self._clock()
        self.show(snapshot)
        # Summing every series costs with many agents: only for the samples kept.
        if self._history.due(now):
            self._history.record(totals_of(snapshot, now))

    def show(self, snapshot: Snapshot) -> None:
        """Take the snapshot /metrics now shows without sampling it: the last cycle's,
        with readings that changed since."""
        with self._lock:
            self._snapshot = snapshot

    def render(self) -> bytes:
        """The page as HTML."""
        with self._lock:
            snap = self._snapshot
        now = self._clock()
        latest = totals_of(snap, now)
        samples = [*self._history.samples(), latest]
        since = self._history.at(now - HOUR_S) or samples[0]
        return _Page(snap, latest, since, samples, now).html()


def _metric(name: str, **labels: str) -> str:
    inner = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    return f"{name}{{{inner}}}" if inner else name


def _num(value: float, metric: str | None = None, shown: str | None = None) -> str:
    text = shown if shown is not None else f"{value:,.0f}" if value == int(value) else f"{value:g}"
    if metric is None:
        return escape(text)
    return f'<span data-metric="{escape(metric)}" data-value="{value!r}">{escape(text)}</span>'


def _count(value: float, metric: str | None = None) -> str:
    """A right-aligned table cell with a number."""
    return f'<td class="n">{_num(value, metric)}</td>'


def _ago(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _rows(rows: Iterable[Iterable[str]]) -> str:
    """Table rows from rows of ready-made cells."""
    return "".join("<tr>" + "".join(cells) + "</tr>" for cells in rows)


class _Page:
    def __init__(
        self,
        snap: Snapshot,
        latest: Totals,
        since: Totals,
        samples: list[Totals],
        now: float,
    ) -> None:
        self.snap = snap
        self.latest = latest
        self.since = since
        self.samples = samples
        self.endpoints = dict(snap.readings.endpoints_up)
        self.now = now
        self.names = dict(snap.agent_info)

    def window(self) -> str:
        span = self.now - self.since.at_s
        if span >= HOUR_S - 60:
            return "last hour"
        return f"last {max(1, round(span / 60))} min"

    def since_start(self) -> str:
        return "" if self.window() == "last hour" else " (since the exporter started)"

    def html(self) -> bytes:
        body = "".join(
            [
                self.header(),
                "<main>",
                self.cards(),
                self.charts(),
                self.outcomes(),
                self.failures(),
                self.agents(),
                self.health(),
                "</main>",
            ]
        )
        return (
            "<!doctype html><html lang=en><head><meta charset=utf-8>"
            f'<meta http-equiv="refresh" content="{REFRESH_S}">'
            '<meta name="viewport" content="width=device-width">'
            f"<title>letta-exporter</title><style>{_STYLE}</style></head>"
            f"<body>{body}</body></html>"
        ).encode()

    def header(self) -> str:
        health = self.snap.health
        up = "Letta answering" if health.up else "Letta not answering"
        colour = "#2e9e5b" if health.up else "#d64541"
        return (
            f"<header><h1>letta-exporter {escape(__version__)}</h1>"
            f'<span style="background:{colour};padding:2px 8px;border-radius:4px">'
            f"{_num(float(health.up), m.UP.exposed_name, up)}</span>"
            '<span><a href="metrics">/metrics</a> · <a href="healthz">/healthz</a> · '
            '<a href="readyz">/readyz</a></span>'
            f'<span class="muted">refreshes every {REFRESH_S} s</span></header>'
        )

    def cards(self) -> str:
        by_status_now = self.latest.finished_by_status()
        by_status_then = self.since.finished_by_status()
        finished = max(0, sum(by_status_now.values()) - sum(by_status_then.values()))
        failing = max(0, sum(self.latest.failed.values()) - sum(self.since.failed.values()))
        share = f" ({100 * failing / finished:.0f} %)" if finished else ""
        health = self.snap.health
        last = health.last_success_s
        cards = [
            ("", _num(finished), f"runs finished, {self.window()}{self.since_start()}"),
            ("bad" if failing else "good", _num(failing) + share, "of them failing"),
            (
                "",
                _num(self.latest.in_progress, m.RUNS_IN_PROGRESS.exposed_name),
                "runs in progress",
            ),
            (
                "warn" if self.latest.stale else "",
                _num(self.latest.stale, m.RUNS_STALE.exposed_name),
                "stale (open too long)",
            ),
            (
                "warn" if self.latest.awaiting else "",
                _num(self.latest.awaiting, m.RUNS_AWAITING_APPROVAL.exposed_name),
                "awaiting approval",
            ),
            (
                "",
                _num(
                    self.snap.counting_lag_s,
                    m.COUNTING_LAG.exposed_name,
                    _duration(self.snap.counting_lag_s),
                ),
                "counting lag",
            ),
            (
                "good" if health.up else "bad",
                _num(last, m.LAST_POLL_SUCCESS.exposed_name, _ago(self.now - last))
                if last is not None
                else "never",
                "last good poll",
            ),
        ]
        return (
            '<div class="cards">'
            + "".join(
                f'<div class="card {kind}"><b>{value}</b><small>{escape(label)}</small></div>'
                for kind, value, label in cards
            )
            + "</div>"
        )

    def charts(self) -> str:
        minutes = 60
        statuses = sorted({s for t in self.samples for (s, _) in t.finished})
        per_status: dict[str, list[float | None]] = {s: [0.0] * minutes for s in statuses}
        # What each sample added since the one before it, in the minute it was taken.
        for before, after in itertools.pairwise(self.samples):
            slot = minutes - 1 - int((self.now - after.at_s) // 60)
            if not 0 <= slot < minutes:
                continue
            then, now = before.finished_by_status(), after.finished_by_status()
            for status in statuses:
                added = max(0, now[status] - then[status])
                per_status[status][slot] = (per_status[status][slot] or 0) + added
        bars = stacked_bars(
            "Runs finished per minute",
            [Series(s, _OUTCOME_COLOURS.get(s, _OTHER_COLOUR), per_status[s]) for s in statuses],
        )
        recent = [t for t in self.samples if self.now - t.at_s <= HOUR_S]
        ages = [self.now - t.at_s for t in recent]
        open_runs = lines(
            "Open runs",
            [
                Series("in progress", "#3b73c4", [t.in_progress for t in recent]),
                Series("stale", "#c07000", [t.stale for t in recent]),
                Series("awaiting approval", "#8e44ad", [t.awaiting for t in recent]),
            ],
            HOUR_S,
            ages,
        )
        return (
            f"<section><h2>Runs finished per minute, last hour</h2>{bars}</section>"
            f"<section><h2>Open runs, last hour</h2>{open_runs}</section>"
        )

    def outcomes(self) -> str:
        return self.by_labels(
            "Runs by outcome",
            m.RUNS_FINISHED,
            ("status", "stop_reason"),
            self.latest.finished,
            self.since.finished,
            lambda key: key,
        )

    def failures(self) -> str:
        return self.by_labels(
            "Failures by error type",
            m.RUNS_FAILED,
            ("error_type",),
            self.latest.failed,
            self.since.failed,
            lambda error_type: (error_type,),
            empty='<tr><td colspan=3 class="muted">no failed run counted</td></tr>',
        )

    def by_labels(
        self,
        title: str,
        spec: MetricSpec,
        labels: tuple[str, ...],
        now: Counter[_Key],
        then: Counter[_Key],
        label_values: Callable[[_Key], tuple[str, ...]],
        *,
        empty: str = "",
    ) -> str:
        """One counter's totals by `labels` (a key's `label_values`), most first, and what the
        window added to each."""
        rows = [
            (
                "".join(f"<td>{escape(value)}</td>" for value in label_values(key)),
                _count(max(0, total - then[key])),
                _count(
                    total,
                    _metric(spec.exposed_name, **dict(zip(labels, label_values(key), strict=True))),
                ),
            )
            for key, total in sorted(now.items(), key=lambda kv: -kv[1])
        ]
        return self.table(title, [label.replace("_", " ") for label in labels], rows, empty=empty)

    def agents(self) -> str:
        finished = self.latest.finished_by_agent
        failed = self.latest.failed_by_agent
        recent = finished.copy()
        recent.subtract(self.since.finished_by_agent)
        rows = [
            (
                f"<td>{escape(self.names.get(agent, agent))}</td>",
                _count(max(0, recent[agent])),
                _count(total, _metric(m.RUNS_FINISHED.exposed_name, agent=agent)),
                _count(failed[agent], _metric(m.RUNS_FAILED.exposed_name, agent=agent)),
            )
            for agent, total in finished.most_common(TOP_AGENTS)
        ]
        return self.table("Top agents", ["agent"], rows, more=["failing"])

    def table(
        self,
        title: str,
        keys: list[str],
        rows: Iterable[Iterable[str]],
        *,
        more: list[str] | None = None,
        empty: str = "",
    ) -> str:
        """A section with a table: `keys` columns, then the window's and the total
        counts and `more` count columns; `empty` stands for no rows."""
        heads = "".join(f"<th>{key}</th>" for key in keys) + "".join(
            f'<th class="n">{head}</th>' for head in [escape(self.window()), "total", *(more or [])]
        )
        return (
            f"<section><h2>{title}</h2><table><tr>{heads}</tr>"
            f"{_rows(rows) or empty}</table></section>"
        )

    def health(self) -> str:
        health = self.snap.health
        rows = [
            (
                f"<td>{escape(name)}</td>",
                "<td>"
                + _num(
                    float(up),
                    _metric(m.ENDPOINT_UP.exposed_name, endpoint=name),
                    "served" if up else "not served",
                )
                + "</td>",
            )
            for name, up in sorted(self.endpoints.items())
        ]
        facts = [
            ("poll cycles", _num(self.snap.aggregates.counter(m.POLLS), m.POLLS.exposed_name)),
            ("last poll took", _duration(health.poll_duration_s)),
            ("runs followed", _num(self.snap.followed, m.FOLLOWED_RUNS.exposed_name)),
            (
                "enrichment backlog",
                _num(self.snap.enrichment_backlog, m.ENRICHMENT_BACKLOG.exposed_name),
            ),
            (
                "last good poll",
                datetime.fromtimestamp(health.last_success_s, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
                if health.last_success_s
                else "never",
            ),
        ]
        fact_rows = [(f"<td>{escape(k)}</td>", f"<td>{v}</td>") for k, v in facts]
        empty = '<tr><td colspan=2 class="muted">no run detail fetched yet</td></tr>'
        return (
            "<section><h2>Polling</h2><table>"
            f"{_rows(fact_rows)}</table><h2>Letta endpoints</h2><table>"
            f"{_rows(rows) or empty}</table></section>"
        )
