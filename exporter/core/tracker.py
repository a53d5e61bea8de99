"""Wires the core's parts together; holds no rules of its own.

runs        RunBook: observations and the run lifecycle (exporter.core.runs.lifecycle)
enrichment  EnrichmentQueue: finished runs waiting for details
counter     RunCounter: finished runs into samples (and traces)
tool_names  ToolNames: the tool-name cache
labels      CountLabels: the capped labels
"""

from __future__ import annotations

from collections.abc import Callable

from exporter.core.changes import ChangeSet
from exporter.core.counting.counter import CountLabels, RunCounter
from exporter.core.counting.labels import CappedLabel
from exporter.core.counting.pricing import PriceTable
from exporter.core.counting.run_info import TraceBuilder
from exporter.core.enrichment.queue import EnrichmentQueue
from exporter.core.enrichment.tool_names import ToolNames
from exporter.core.options import TrackerOptions
from exporter.core.runs.lifecycle import RunBook
from exporter.core.runs.record import endpoints_for
from exporter.series.aggregates import Aggregates


class Tracker:
    """The core of the exporter, built from its options; one per process."""

    def __init__(
        self,
        options: TrackerOptions,
        aggregates: Aggregates,
        agent_label: CappedLabel,
        *,
        agent_allowed: Callable[[str], bool] = lambda agent_id: True,
        model_label: CappedLabel | None = None,
        tool_label: CappedLabel | None = None,
        error_type_label: CappedLabel | None = None,
        run_type_label: CappedLabel | None = None,
        prices: PriceTable | None = None,
        tool_names: dict[str, str] | None = None,
        build_trace: TraceBuilder | None = None,
    ) -> None:
        self.aggregates = aggregates
        given = {
            "model": model_label,
            "tool": tool_label,
            "error_type": error_type_label,
            "run_type": run_type_label,
        }
        self.labels = CountLabels(agent_label, **{k: v for k, v in given.items() if v})
        self.tool_names = ToolNames(tool_names)
        self.counter = RunCounter(
            aggregates, self.labels, self.tool_names, prices=prices, build_trace=build_trace
        )
        endpoints = endpoints_for(options.enrich, traces=build_trace is not None)
        self.runs = RunBook(options, self.counter, endpoints=endpoints, agent_allowed=agent_allowed)
        self.enrichment = EnrichmentQueue(self.runs, endpoints)

    def take_changes(self) -> ChangeSet:
        """Everything changed since the last call, for `Checkpoint.commit`."""
        changed, removed = self.runs.records.take_changes()
        return ChangeSet(
            changed=changed,
            removed=removed,
            series=self.aggregates.take_dirty(),
            meta=self.runs.take_meta(),
            new_label_values=self.labels.take_new(),
            new_tool_names=self.tool_names.take_new(),
            new_traces=self.counter.take_new_traces(),
        )
