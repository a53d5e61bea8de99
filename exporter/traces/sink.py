"""Where finished runs' spans go: a bounded queue in front of an OTLP (or console) exporter.

Built for a poll loop that must never wait on a trace backend:

- `SpanSink.submit` is non-blocking; when the queue is full the spans are dropped (and
  reported), so a slow or dead collector costs traces, never metrics.
- `SpanSink.flush` exports what is queued in a worker thread (the OTLP exporters block,
  and retry with backoff up to their timeout) and reports, per submission key, what went
  out and what failed. Failed submissions are *not* re-queued: the caller (the shipper)
  keeps them in the span outbox and submits them again later, with the same ids.
- Every outcome is counted through `on_result(result, spans)` with result one of
  "exported", "failed", "dropped" (`letta_exporter_spans_exported_total{result}`).

`exporter.traces.otel_environment` builds one from the standard `OTEL_*` variables.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from exporter.series.catalogue import SPAN_RESULTS

log = logging.getLogger(__name__)

EXPORTED, FAILED, DROPPED = SPAN_RESULTS

DEFAULT_MAX_QUEUE: Final = 2048
DEFAULT_MAX_EXPORT_BATCH: Final = 512
"""Spans per export request, the SDK's BatchSpanProcessor default; a run's spans are
never split across requests (one run, one outcome)."""

ResultCallback = Callable[[str, int], None]
"""`on_result(result, spans)`: result is one of `SPAN_RESULTS`, spans how many it concerns."""


@dataclass(frozen=True, slots=True)
class FlushReport:
    """What one flush did, by submission key (submissions without a key are counted only)."""

    exported: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()
    failed_spans: int = 0

    @property
    def ok(self) -> bool:
        """True when nothing failed."""
        return self.failed_spans == 0


@dataclass(frozen=True, slots=True)
class _Submission:
    key: str | None
    spans: tuple[ReadableSpan, ...]


class SpanSink:
    """A bounded, non-blocking queue of span batches in front of a blocking `SpanExporter`.

    Call `submit` per run, then `await flush()`; `shutdown()` on exit (after a last
    flush: queued spans are dropped, and reported as such, at shutdown).
    """

    def __init__(
        self,
        exporter: SpanExporter,
        *,
        max_queue: int = DEFAULT_MAX_QUEUE,
        max_export_batch: int = DEFAULT_MAX_EXPORT_BATCH,
        on_result: ResultCallback | None = None,
    ) -> None:
        if max_queue < 1 or max_export_batch < 1:
            raise ValueError("max_queue and max_export_batch must be positive")
        self._exporter = exporter
        self._max_queue = max_queue
        self._max_export_batch = max_export_batch
        self._on_result = on_result
        self._queue: deque[_Submission] = deque()
        self._queued_spans = 0
        # submit() may be called from another thread than the loop awaiting flush().
        self._lock = threading.Lock()
        self._flushing = asyncio.Lock()
        self._closed = False

    def submit(self, spans: Sequence[ReadableSpan], key: str | None = None) -> bool:
        """Queue one run's spans for the next flush; never blocks.

        All or nothing: when they do not fit (or the sink is shut down) none are queued,
        `on_result("dropped", n)` is called and False returned. `key` (e.g. the run id)
        names the submission in the `FlushReport`.
        """
        batch = _Submission(key, tuple(spans))
        with self._lock:
            fits = not self._closed and self._queued_spans + len(batch.spans) <= self._max_queue
            if fits:
                self._queue.append(batch)
                self._queued_spans += len(batch.spans)
        if not fits:
            self._report(DROPPED, len(batch.spans))
        return fits

    async def flush(self) -> FlushReport:
        """Export everything queued, in a worker thread, and say which submissions failed.

        Submissions are packed whole into requests of at most `max_export_batch` spans (a
        larger one goes alone); a request's outcome applies to every submission in it.
        Failed submissions leave the queue: the caller resubmits them when it retries.
        """
        async with self._flushing:  # one flush at a time keeps the outcomes unambiguous
            with self._lock:
                pending = list(self._queue)
                self._queue.clear()
                self._queued_spans = 0
            exported: list[str] = []
            failed: list[str] = []
            failed_spans = 0
            for chunk in self._chunks(pending):
                spans = [span for batch in chunk for span in batch.spans]
                ok = True
                if spans:
                    ok = await asyncio.to_thread(self._export, spans)
                    self._report(EXPORTED if ok else FAILED, len(spans))
                keys = [batch.key for batch in chunk if batch.key is not None]
                if ok:
                    exported.extend(keys)
                else:
                    failed.extend(keys)
                    failed_spans += len(spans)
            return FlushReport(tuple(exported), tuple(failed), failed_spans)

    def shutdown(self) -> None:
        """Drop what is still queued (reported as dropped) and shut the exporter down."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            abandoned = self._queued_spans
            self._queue.clear()
            self._queued_spans = 0
        if abandoned:
            self._report(DROPPED, abandoned)
        try:
            self._exporter.shutdown()
        except Exception:  # shutting down must not raise into the caller's exit path
            log.exception("span exporter shutdown failed")

    def _chunks(self, pending: list[_Submission]) -> list[list[_Submission]]:
        chunks: list[list[_Submission]] = []
        current: list[_Submission] = []
        size = 0
        for batch in pending:
            if current and size + len(batch.spans) > self._max_export_batch:
                chunks.append(current)
                current, size = [], 0
            current.append(batch)
            size += len(batch.spans)
        if current:
            chunks.append(current)
        return chunks

    def _export(self, spans: list[ReadableSpan]) -> bool:
        # Runs in a worker thread. Exporters report failure by result, but a broken one
        # may raise: that is a failed export too, never an exception in the poll loop.
        try:
            return self._exporter.export(spans) is SpanExportResult.SUCCESS
        except Exception:
            log.exception("span export raised")
            return False

    def _report(self, result: str, spans: int) -> None:
        if self._on_result is None:
            return
        try:
            self._on_result(result, spans)
        except Exception:  # a metrics callback bug must not break tracing
            log.exception("span result callback failed")
