"""The run model: the rows of the runs table (runs and raw items), steps and sort keys."""

from __future__ import annotations

import bisect
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from tests.fake_letta.wire import sqlite_stored

_UNHASHABLE: Final = object()  # index bucket for raw items whose field is e.g. a list


def bucket(value: Any) -> Any:
    if value is None or value.__class__ is str:  # the overwhelmingly common case
        return value
    try:
        hash(value)
    except TypeError:
        return _UNHASHABLE
    return value


class Row:
    """Anything that sits in the sorted runs table: a real run or a raw list item.

    ``us``/``sid`` are the sort key (created_at, id); ``seq`` only breaks ties between raw
    items that share both, so that every key is unique and bisect is exact.
    """

    __slots__ = (
        "agent_id",
        "background",
        "conversation_id",
        "seq",
        "sid",
        "status",
        "stop_reason",
        "us",
    )

    us: int
    sid: str
    seq: int
    agent_id: Any
    status: Any
    stop_reason: Any
    background: Any
    conversation_id: Any


class Run(Row):
    """One run plus its run_metrics row, steps and trace rows."""

    __slots__ = (
        "callback_error",
        "callback_sent_us",
        "callback_status_code",
        "callback_url",
        "completed_us",
        "has_metrics",
        "j_get",
        "j_list",
        "lazy_steps",
        "m_num_steps",
        "m_run_ns",
        "m_tools",
        "meta_json",
        "metadata",
        "pending",
        "run_start_ns",
        "steps",
        "trace",
        "visible",
    )

    completed_us: int | None
    metadata: dict[str, Any]
    meta_json: str
    callback_url: str | None
    callback_sent_us: int | None
    callback_status_code: int | None
    callback_error: str | None
    visible: bool
    has_metrics: bool
    run_start_ns: int
    # run_metrics as currently committed ...
    m_run_ns: int | None
    m_num_steps: int
    m_tools: list[str] | None
    # ... and the metrics transactions still "in flight": (visible_at, terminal, run_ns,
    # num_steps, tools_used), applied in order once the clock reaches visible_at.
    pending: list[tuple[float, bool, int | None, int, list[str] | None]]
    steps: list[Step]
    # Bulk runs keep their steps as (count, prompt, completion, step_ns) until /steps (or
    # a write) needs real Step objects with ids; /usage and the truths read the tuple.
    lazy_steps: tuple[int, int, int, int] | None
    trace: list[dict[str, Any]] | None
    j_get: bytes | None  # cached GET /v1/runs/{id} body (total_duration_ns null)
    j_list: bytes | None  # cached list item (total_duration_ns from run_metrics)


class RawItem(Row):
    """An arbitrary JSON object injected into list results (``add_raw_item``)."""

    __slots__ = ("body", "handle", "obj")

    obj: dict[str, Any]
    body: bytes
    handle: str


Timings = tuple[int | None, int | None, int | None]  # (llm_request_ns, tool_execution_ns, step_ns)


@dataclass(slots=True)
class Step:
    us: int
    seq: int
    data: dict[str, Any]
    tool_ids: tuple[str, ...]
    # The step_metrics row, or None when the step has none (/v1/steps/{id}/metrics 404s).
    timings: Timings | None = None
    # Materialised from a bulk run's summary when first read: not a message writer.
    bulk: bool = False


row_key: Callable[[Row], tuple[int, str, int]] = operator.attrgetter("us", "sid", "seq")
pg_key: Callable[[Row], tuple[int, str]] = operator.attrgetter("us", "sid")


def sqlite_key(row: Row) -> tuple[str, str]:
    return (sqlite_stored(row.us), row.sid)


def remove_sorted(rows: list[Row], row: Row) -> None:
    index = bisect.bisect_left(rows, row_key(row), key=row_key)
    if index < len(rows) and rows[index] is row:
        del rows[index]
        return
    rows.remove(row)  # defensive; keys are unique so this is never reached


def lazy_tokens(spec: tuple[int, int, int, int]) -> list[tuple[int, int]]:
    """``(prompt_tokens, completion_tokens)`` of each step of a bulk run, oldest first:
    the one place that defines them, for /steps, /usage and the truths alike."""
    count, prompt, completion, _ = spec
    return [(prompt + 50 * index, completion) for index in range(count)]


def lazy_totals(spec: tuple[int, int, int, int]) -> tuple[int, int]:
    """``sum(lazy_tokens(spec))`` per field in closed form: truth over a million bulk runs
    should not build three million tuples."""
    count, prompt, completion, _ = spec
    return count * prompt + 25 * count * (count - 1), count * completion


def step_model(handle: str) -> str:
    """The Step's ``model`` field for a model handle: the part after the provider."""
    return handle.partition("/")[2] or handle
