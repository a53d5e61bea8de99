"""A fake Letta 0.16.8 runs API, served over real HTTP on loopback.

Tests and benchmarks of the exporter talk to this server exactly as they would talk to a
real Letta server: real sockets, real HTTP/1.1 (keep-alive included), and JSON bodies
that are byte-compatible with what FastAPI emits for Letta 0.16.8 (compact separators,
the same key order, the same timestamp formats).  Every shape here was built from the
captured responses in ``/work/shared/fixtures/letta-0.16.8/`` and every behaviour from
``/work/shared/letta-runs-api.md`` (§ numbers below refer to that document).

Main points reproduced:

* the runs list with all its query parameters, its validation errors (422 with ``detail``
  as one *string*, 400 for an unknown ``statuses`` value) and its swapped cursors (§4.2);
  a ``"conventional"`` mode provides time-based cursors for comparison, a
  ``"relative"`` one cursors relative to the sort order (Letta Cloud's documentation);
  unknown cursors restart the list or answer 404 (``unknown_cursor``), and
  :meth:`FakeLetta.set_semantics` changes all that while serving;
* bursts of finished runs sharing the newest timestamp (:meth:`FakeLetta.finish_burst`);
* keyset paging on ``(created_at, id)``: exact on Postgres, and on SQLite the literal
  "cursor cut to whole seconds, compared as a string" bug of §4.5;
* ``total_duration_ns`` only in list results, only after the metrics transaction
  (``metrics_delay``), ``ttft_ns`` always null, ``completed_at`` set once (§5.3);
* late commits (a run appears with an old ``created_at``), deletes by agent cascade,
  arbitrary invalid list items, and HTTP-level faults (5xx, 429, timeouts, resets,
  truncated / garbage / endless / huge bodies) aimed by path prefix or regex;
* the enrichment reads: ``/usage`` over the 50 newest steps only, ``/steps`` with the
  generic list's cursors (§4.6; ``before`` is not the adjacent page),
  ``GET /v1/tools/{id}`` and ``GET /v1/steps/{id}/metrics`` with the real path
  validation (422) and NoResultFound (404) bodies;
* ground truth for tests: :meth:`FakeLetta.truth`, ``token_truth``, ``step_count_truth``
  and ``tool_truth``.

The ``letta-0.16.8`` profile (``semantics="letta-0.16.8"``, ``backend="postgres"``) is
checked against a real 0.16.8 server by ``tests/test_realserver_fake_parity.py``. The other
profiles (``"conventional"`` and ``"relative"`` cursors, the cloud's behaviour, the SQLite
backend) model servers that cannot be run here: nothing checks them against a real one.

Run it in-process::

    with FakeLetta(semantics="letta-0.16.8", backend="postgres") as fake:
        run_id = fake.create_run("agent-...")
        httpx.get(fake.base_url + "/v1/runs/")

or as its own process (benchmarks)::

    python -m tests.fake_letta --port 0 --bulk 1000000
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import email.utils
import functools
import gc
import heapq
import itertools
import json
import math
import operator
import random
import re
import signal
import socket
import struct
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import EllipsisType
from typing import Any, Final, Literal
from urllib.parse import parse_qs, urlsplit

__all__ = [
    "FAULT_KINDS",
    "RUN_STATUSES",
    "STOP_REASONS",
    "TERMINAL_STATUSES",
    "TOOL_TYPES",
    "Backend",
    "FakeLetta",
    "Semantics",
    "Timestamp",
    "main",
]

Semantics = Literal["letta-0.16.8", "conventional", "relative"]
Backend = Literal["postgres", "sqlite"]
UnknownCursor = Literal["404", "ignore"]
Timestamp = float | datetime | str
"""Accepted wherever the control API takes a time: epoch seconds, a datetime (naive means
UTC) or an ISO-8601 string such as the fixtures' ``2026-11-23T12:01:42.556550Z``."""

# --------------------------------------------------------------------------------------
# Constants taken from the reference and the fixtures
# --------------------------------------------------------------------------------------

RUN_STATUSES: Final = ("created", "running", "completed", "failed", "cancelled")
TERMINAL_STATUSES: Final = frozenset({"completed", "failed", "cancelled"})
ACTIVE_STATUSES: Final = ("created", "running")
# Declaration order of StopReasonType matters: pydantic lists it in this order in the 422.
STOP_REASONS: Final = (
    "end_turn",
    "error",
    "llm_api_error",
    "invalid_llm_response",
    "invalid_tool_call",
    "max_steps",
    "max_tokens_exceeded",
    "no_tool_call",
    "tool_rule",
    "cancelled",
    "insufficient_credits",
    "requires_approval",
    "context_window_overflow_in_system_prompt",
)
FAULT_KINDS: Final = frozenset(
    {"408", "409", "500", "502", "503", "429", "timeout", "hang", "truncated", "reset"}
    | {"garbage", "endless", "huge"}
)

SERVER_VERSION: Final = "0.16.8"
DEFAULT_ORG_ID: Final = "org-00000000-0000-4000-8000-000000000000"
DEFAULT_USER_ID: Final = "user-00000000-0000-4000-8000-000000000000"
# The actor repr that the real server embeds in every NoResultFound message (errors/*.json).
_ACTOR_REPR: Final = (
    f"id='{DEFAULT_USER_ID}' organization_id='{DEFAULT_ORG_ID}' name='default_user' "
    "created_at=None updated_at=datetime.datetime(2026, 11, 23, 12, 0, 38, 297413, "
    "tzinfo=TzInfo(UTC)) is_deleted=False"
)
_TRACE_501_DETAIL: Final = (
    "OTEL traces require ClickHouse. Set LETTA_CLICKHOUSE_ENDPOINT and configure "
    "ClickHouse connection."
)
# The password middleware lets these through untouched (§1.2).
_AUTH_EXEMPT: Final = frozenset(
    {
        "/v1/health",
        "/v1/health/",
        "/v1/ready",
        "/v1/ready/",
        "/latest/health/",
        "/latest/ready",
        "/latest/ready/",
    }
)
_REQUEST_CONFIG_JSON: Final = (
    '{"use_assistant_message":true,"assistant_message_tool_name":"send_message",'
    '"assistant_message_tool_kwarg":"message","include_return_message_types":null}'
)
_USAGE_STEP_WINDOW: Final = 50  # step manager's default list limit (§3.5, §2.5)
# metadata.error of the run a message refused while an approval waits leaves (HTTP 409;
# fixtures runs/sync_pending_approval_conflict/run.json).
PENDING_APPROVAL_ERROR: Final = (
    "CONFLICT: Cannot send a new message: The agent is waiting for approval on a tool "
    "call. Please approve or deny the pending request before continuing."
)
_ACTIVE_ENDPOINT_LIMIT: Final = 100  # /v1/runs/active (§3.2)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_US: Final = timedelta(microseconds=1)


def _id_pattern(prefix: str) -> re.Pattern[str]:
    """The exact regex of Letta's ``raise_on_invalid_id`` for ``<prefix>-<uuid4>``."""
    return re.compile(
        "^" + prefix + "-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
    )


_RUN_ID_RE: Final = _id_pattern("run")
_USER_ID_RE: Final = _id_pattern("user")
# ToolId / StepId path parameters (letta/validators.py PATH_VALIDATORS).
_PATH_ID_RES: Final = {primitive: _id_pattern(primitive) for primitive in ("tool", "step")}
# letta.schemas.enums.ToolType, declaration order.
TOOL_TYPES: Final = (
    "custom",
    "letta_core",
    "letta_memory_core",
    "letta_multi_agent_core",
    "letta_sleeptime_core",
    "letta_voice_sleeptime_core",
    "letta_builtin",
    "letta_files_core",
    "external_langchain",
    "external_composio",
    "external_mcp",
)
_FUNCTION_RETURN_CHAR_LIMIT: Final = 50_000  # letta.constants; Tool.return_char_limit default
# The model every bulk-loaded step reports (handle; the Step's ``model`` is "fake-llm").
_BULK_MODEL: Final = "openai-proxy/fake-llm"
# pydantic's lax str -> int: optional sign, ASCII digits with single underscores, and an
# optional all-zero fraction ("1.0" is accepted, "1.5" is not).
_INT_RE: Final = re.compile(r"^[+-]?[0-9]+(?:_[0-9]+)*(?:\.0+)?$")
_BOOL_TRUE: Final = frozenset({"1", "on", "t", "true", "y", "yes"})
_BOOL_FALSE: Final = frozenset({"0", "off", "f", "false", "n", "no"})

_encode_str: Callable[[str], str] = json.encoder.encode_basestring


def _dumps(obj: Any) -> str:
    """Serialise like FastAPI's JSONResponse: compact separators, UTF-8 kept as is."""
    return json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _jv(value: Any) -> str:
    """JSON for one scalar value; a fast path for the common str/None/int cases."""
    if value is None:
        return "null"
    if isinstance(value, str):
        return _encode_str(value)
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    return _dumps(value)


# --------------------------------------------------------------------------------------
# Time helpers: everything is stored as integer microseconds since the epoch (UTC), so
# that formatting never suffers from float rounding and keys compare exactly.
# --------------------------------------------------------------------------------------


def _to_us(value: Timestamp) -> int:
    """Convert epoch seconds / datetime / ISO string to integer epoch microseconds."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:  # the server stores naive timestamps as UTC
            value = value.replace(tzinfo=UTC)
        return (value - _EPOCH) // _US
    return round(float(value) * 1_000_000)


@functools.lru_cache(maxsize=65536)
def _second_prefix(second: int) -> str:
    # Runs cluster in time, so caching the per-second part makes formatting much cheaper.
    return (_EPOCH + timedelta(seconds=second)).strftime("%Y-%m-%dT%H:%M:%S")


def _fmt_us(us: int, *, zulu: bool) -> str:
    """Format like pydantic: ISO-8601, microseconds only when non-zero, ``Z`` if aware."""
    second, fraction = divmod(us, 1_000_000)
    text = _second_prefix(second)
    if fraction:
        text = f"{text}.{fraction:06d}"
    return text + "Z" if zulu else text


def _sqlite_stored(us: int) -> str:
    """How SQLAlchemy stores a DateTime in SQLite: always with six fraction digits."""
    dt = _EPOCH + timedelta(microseconds=us)
    return dt.strftime("%Y-%m-%d %H:%M:%S.%f")


def _sqlite_cursor_value(us: int) -> str:
    """What ``run_manager_helper`` compares against on SQLite: ``strftime('%Y-%m-%d
    %H:%M:%S')`` of the cursor row, i.e. the timestamp cut to whole seconds."""
    dt = _EPOCH + timedelta(microseconds=us)
    return dt.strftime("%Y-%m-%d %H:%M:%S")


def _new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4()}"


def _uuid4_from_bits(bits: int) -> str:
    """A canonical uuid4 string from 128 random bits, ~4x faster than ``uuid.UUID``."""
    h = f"{bits:032x}"
    variant = "89ab"[int(h[16], 16) & 3]
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{variant}{h[17:20]}-{h[20:]}"


# --------------------------------------------------------------------------------------
# Stored rows
# --------------------------------------------------------------------------------------

_UNHASHABLE: Final = object()  # index bucket for raw items whose field is e.g. a list


def _bucket(value: Any) -> Any:
    if value is None or value.__class__ is str:  # the overwhelmingly common case
        return value
    try:
        hash(value)
    except TypeError:
        return _UNHASHABLE
    return value


class _Row:
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


class _Run(_Row):
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
    steps: list[_Step]
    # Bulk runs keep their steps as (count, prompt, completion, step_ns) until /steps (or
    # a write) needs real Step objects with ids; /usage and the truths read the tuple.
    lazy_steps: tuple[int, int, int, int] | None
    trace: list[dict[str, Any]] | None
    j_get: bytes | None  # cached GET /v1/runs/{id} body (total_duration_ns null)
    j_list: bytes | None  # cached list item (total_duration_ns from run_metrics)


class _Raw(_Row):
    """An arbitrary JSON object injected into list results (``add_raw_item``)."""

    __slots__ = ("body", "handle", "obj")

    obj: dict[str, Any]
    body: bytes
    handle: str


_Timings = tuple[int | None, int | None, int | None]  # (llm_request_ns, tool_execution_ns, step_ns)


@dataclass(slots=True)
class _Step:
    us: int
    seq: int
    data: dict[str, Any]
    tool_ids: tuple[str, ...]
    # The step_metrics row, or None when the step has none (/v1/steps/{id}/metrics 404s).
    timings: _Timings | None = None


_key: Callable[[_Row], tuple[int, str, int]] = operator.attrgetter("us", "sid", "seq")
_pg_key: Callable[[_Row], tuple[int, str]] = operator.attrgetter("us", "sid")


def _sqlite_key(row: _Row) -> tuple[str, str]:
    return (_sqlite_stored(row.us), row.sid)


@dataclass(slots=True)
class _Fault:
    kind: str
    remaining: int
    path_prefix: str
    retry_after: float | int | str | None
    delay: float | None
    size: int
    path_regex: re.Pattern[str] | None = None  # when set, replaces path_prefix
    retry_after_ms: int | None = None

    def matches(self, path: str) -> bool:
        if self.path_regex is not None:
            return self.path_regex.search(path) is not None
        return path.startswith(self.path_prefix)


@dataclass(slots=True)
class _Resp:
    status: int
    body: bytes = b""
    content_type: str | None = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


def _json_resp(status: int, obj: Any) -> _Resp:
    return _Resp(status, _dumps(obj).encode())


def _detail(status: int, detail: str) -> _Resp:
    return _json_resp(status, {"detail": detail})


def _not_found(model: str, ident: str) -> _Resp:
    """The real NoResultFound text, e.g. errors/run_unknown_404.json."""
    return _detail(
        404,
        f"{model} not found with id='['{ident}']', access level in ['read'] "
        f"for actor='{_ACTOR_REPR}'",
    )


class _HTTPError(Exception):
    """Raised inside route code; carries the finished response."""

    def __init__(self, resp: _Resp) -> None:
        super().__init__(resp.status)
        self.resp = resp


# --------------------------------------------------------------------------------------
# Query validation, FastAPI/pydantic style (§1.3: 422 with ``detail`` as one string)
# --------------------------------------------------------------------------------------


def _expected(values: Sequence[str]) -> str:
    quoted = [f"'{v}'" for v in values]
    if len(quoted) == 1:
        return quoted[0]
    return ", ".join(quoted[:-1]) + " or " + quoted[-1]


class _Query:
    """Reads query parameters the way FastAPI does and collects pydantic-style errors.

    Scalars take the *last* occurrence (Starlette's multidict), lists take all of them.
    Errors are collected in parameter declaration order, like FastAPI does.
    """

    def __init__(self, raw: Mapping[str, list[str]]) -> None:
        self.raw = raw
        self.errors: list[dict[str, Any]] = []

    def get_str(self, name: str) -> str | None:
        values = self.raw.get(name)
        return values[-1] if values else None

    def get_list(self, name: str) -> list[str] | None:
        values = self.raw.get(name)
        return list(values) if values else None

    def get_bool(self, name: str, default: bool | None) -> bool | None:
        value = self.get_str(name)
        if value is None:
            return default
        lowered = value.lower()
        if lowered in _BOOL_TRUE:
            return True
        if lowered in _BOOL_FALSE:
            return False
        self.errors.append(
            {
                "type": "bool_parsing",
                "loc": ("query", name),
                "msg": "Input should be a valid boolean, unable to interpret input",
                "input": value,
            }
        )
        return default

    def get_int(
        self, name: str, default: int, *, ge: int | None = None, le: int | None = None
    ) -> int:
        value = self.get_str(name)
        if value is None:
            return default
        text = value.strip()
        if not _INT_RE.match(text):
            self.errors.append(
                {
                    "type": "int_parsing",
                    "loc": ("query", name),
                    "msg": "Input should be a valid integer, unable to parse string as an integer",
                    "input": value,
                }
            )
            return default
        number = int(text.split(".", 1)[0].replace("_", ""))
        if ge is not None and number < ge:
            self.errors.append(
                {
                    "type": "greater_than_equal",
                    "loc": ("query", name),
                    "msg": f"Input should be greater than or equal to {ge}",
                    "input": value,
                    "ctx": {"ge": ge},
                }
            )
            return default
        if le is not None and number > le:
            self.errors.append(
                {
                    "type": "less_than_equal",
                    "loc": ("query", name),
                    "msg": f"Input should be less than or equal to {le}",
                    "input": value,
                    "ctx": {"le": le},
                }
            )
            return default
        return number

    def get_choice(
        self, name: str, allowed: Sequence[str], default: str | None, *, enum: bool = False
    ) -> str | None:
        value = self.get_str(name)
        if value is None:
            return default
        if value in allowed:
            return value
        expected = _expected(allowed)
        self.errors.append(
            {
                "type": "enum" if enum else "literal_error",
                "loc": ("query", name),
                "msg": f"Input should be {expected}",
                "input": value,
                "ctx": {"expected": expected},
            }
        )
        return default

    def raise_if_invalid(self) -> None:
        if self.errors:
            # FastAPI's handler in Letta's app.py: detail is str(exc.errors()).
            raise _HTTPError(_json_resp(422, {"trace_id": "", "detail": str(self.errors)}))


# --------------------------------------------------------------------------------------
# The fake
# --------------------------------------------------------------------------------------

_INSTANCE_IDS: Final = itertools.count(1)

_DEFAULT_STATUS_CYCLE: Final[tuple[tuple[str, str | None], ...]] = (
    ("completed", "end_turn"),
    ("completed", "end_turn"),
    ("completed", "max_steps"),
    ("failed", "llm_api_error"),
    ("completed", "requires_approval"),
    ("cancelled", "cancelled"),
    ("failed", None),
    ("completed", "tool_rule"),
)


class FakeLetta:
    """A thread-safe in-memory Letta runs store plus an HTTP server in front of it.

    Args:
        semantics: ``"letta-0.16.8"`` reproduces the swapped runs-list cursors of §4.2
            (``before`` = next page in both orders, ``after`` = the rows before X in the
            current order, taken from the start of the list). ``"conventional"`` gives
            time-based cursors: ``after=X`` = rows newer than X, ``before=X`` = rows older
            than X, always the ``limit`` rows adjacent to X. So ``asc`` + ``after`` and
            ``desc`` + ``before`` are the next page, ``asc`` + ``before`` and ``desc`` +
            ``after`` the previous page, and §4.3 holds: ``desc`` + ``before`` walks
            backwards under both semantics, and the probe ``order=asc&limit=1&after=A``
            answers ``[B]``. ``"relative"`` gives cursors relative to the sort order,
            as the cloud SDK documents them and the steps list behaves (§4.6, §9):
            ``after`` = the next page, ``before`` = the previous page, in either order, and
            an unknown cursor is 404. There ``desc`` + ``before`` walks *newer*.
            :meth:`set_semantics` changes it while serving (a server upgraded between
            two polls).
        unknown_cursor: what a cursor that names no visible run does: ``"ignore"``
            restarts the list from the head (§4.4), ``"404"`` answers 404 (§4.6).
            Default: ``"404"`` for ``"relative"``, else ``"ignore"``.
        backend: ``"postgres"`` compares ``(created_at, id)`` exactly. ``"sqlite"``
            reproduces §4.5: the cursor's timestamp is cut to whole seconds and compared
            as a string with the stored microsecond strings, and timestamps serialise
            naive (no ``Z``), as they do on a SQLite-backed server.
        password: secure mode (§1.2). Every request except health/ready needs
            ``Authorization: Bearer <password>`` or ``X-BARE-PASSWORD: password
            <password>``, else 401 ``{"detail":"Unauthorized"}``.
        require_user_id: validate the ``user_id`` header when present (400 unless it
            matches ``user-<uuid4>``), as the real ``get_headers`` dependency does.
        cloud: the Letta Cloud profile (assumed, not captured: the cloud's source is not
            public). ``/v1/runs/{id}/metrics`` is absent (404 ``Not Found``, in no
            version of the SDK's api.md; ``serves_run_metrics`` turns it back on), and
            :meth:`set_request_budget` models its undocumented rate limit. ``password`` is
            the API key and only ``Authorization: Bearer`` is
            accepted; runs created with a ``project_id`` belong to that project, and a
            request with ``X-Project-Id`` sees only its project's runs (lists, GET, every
            sub-route, step metrics), while one without the header sees them all. Steps
            carry their run's ``project_id`` (as letta-client's ``Step`` documents).
            ``honour_project_header = False`` models a server that ignores the header.
            Every request's ``X-Project-Id`` is logged in :attr:`project_headers`.
        clock: wall-clock source in epoch seconds (default ``time.time``); drives default
            ``created_at``/``completed_at`` values and the visibility of metrics.
        host, port: where to listen; port 0 picks a free ephemeral port.
    """

    def __init__(
        self,
        *,
        semantics: Semantics = "letta-0.16.8",
        backend: Backend = "postgres",
        unknown_cursor: UnknownCursor | None = None,
        password: str | None = None,
        require_user_id: bool = True,
        clock: Callable[[], float] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        cloud: bool = False,
    ) -> None:
        if backend not in ("postgres", "sqlite"):
            raise ValueError(f"unknown backend {backend!r}")
        # Prefix of every thread this instance starts, so tests can check for leftovers.
        self.name = f"fake-letta-{next(_INSTANCE_IDS)}"
        self.semantics: Semantics = semantics
        self.unknown_cursor: UnknownCursor = "ignore"
        self.backend: Backend = backend
        self.password = password
        self.require_user_id = require_user_id
        self.cloud = cloud
        self.honour_project_header = True
        self._run_projects: dict[str, str] = {}  # run id -> project id (cloud profile)
        self._project_headers: list[str | None] = []
        self._scope = threading.local()  # the X-Project-Id of the request being served
        self._clock: Callable[[], float] = clock or time.time
        self._host = host
        self._port = port
        # Aware created_at serialises with "Z" on Postgres; SQLite hands back naive values.
        self._zulu = backend == "postgres"

        self._lock = threading.Lock()
        self.set_semantics(semantics, unknown_cursor)
        self._seq = itertools.count()
        self._runs: dict[str, _Run] = {}  # every run, visible or not
        self._rows: list[_Row] = []  # visible runs + raw items, sorted by _key
        self._by_status: dict[Any, list[_Row]] = {}
        self._by_agent: dict[Any, list[_Row]] = {}
        self._raw: dict[str, _Raw] = {}  # handle -> raw item
        self._raw_by_id: dict[str, _Raw] = {}  # raw items with a string "id" (cursorable)
        self._steps_by_id: dict[str, tuple[_Run, _Step]] = {}
        self._tools: dict[str, dict[str, Any]] = {}  # tool id -> Tool JSON (org-wide)
        self._agents: dict[str, tuple[int, dict[str, Any]]] = {}  # id -> (created us, JSON)
        self._faults: list[_Fault] = []
        self._budget: tuple[float, float] | None = None
        self._budget_tokens = 0.0
        self._budget_at = 0.0
        self.throttled = 0  # requests answered 429 for exceeding the budget
        # Letta Cloud's SDK documents no /v1/runs/{id}/metrics: the profile lacks it.
        self.serves_run_metrics = not cloud
        self._requests: list[tuple[str, str, dict[str, list[str]], int]] = []
        # Bulk-loaded runs share one metadata dict (copied before any write) and its JSON.
        self._bulk_meta: dict[str, Any] = {"run_type": "send_message"}
        self._bulk_meta_json = _dumps(self._bulk_meta)
        # (agent_id, conversation_id or "") -> the run waiting for approval there.
        self._pending_approvals: dict[tuple[str, str], str] = {}

        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FakeLetta:
        """Bind the listening socket and serve in a daemon thread. Returns ``self``."""
        if self._server is not None:
            return self
        self._stopping.clear()
        server = _Server((self._host, self._port), _Handler, self)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{self.name}-serve",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, release hung/slow/endless requests, close every socket."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()  # wakes "hang", "timeout" and "endless" handlers
        server.shutdown()
        server.close_all_connections()
        server.join_connection_threads(timeout=5.0)
        server.server_close()
        if thread is not None:
            thread.join(timeout=5.0)
        self._server = None
        self._thread = None

    def __enter__(self) -> FakeLetta:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound TCP port (only while started)."""
        if self._server is None:
            raise RuntimeError("FakeLetta is not started")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (no trailing slash)."""
        return f"http://{self._host}:{self.port}"

    # ------------------------------------------------------------------ request log

    @property
    def requests(self) -> list[tuple[str, str, dict[str, list[str]], int]]:
        """A copy of ``(method, path, query, status_code)`` for every request served.

        ``query`` maps each parameter to all its values. ``status_code`` is 0 for
        faults that never deliver a response in time (``hang``, ``reset``, ``timeout``).
        """
        with self._lock:
            return list(self._requests)

    def reset_requests(self) -> None:
        """Forget the request log."""
        with self._lock:
            self._requests.clear()
            self._project_headers.clear()

    @property
    def project_headers(self) -> list[str | None]:
        """The ``X-Project-Id`` of every request (None when absent); cloud profile only."""
        with self._lock:
            return list(self._project_headers)

    def _record(self, method: str, path: str, query: dict[str, list[str]], status: int) -> None:
        with self._lock:
            self._requests.append((method, path, query, status))

    def set_semantics(
        self, semantics: Semantics, unknown_cursor: UnknownCursor | None = None
    ) -> None:
        """Change the list-cursor semantics from the next request on (see the class)."""
        if semantics not in ("letta-0.16.8", "conventional", "relative"):
            raise ValueError(f"unknown semantics {semantics!r}")
        if unknown_cursor not in (None, "404", "ignore"):
            raise ValueError(f"unknown unknown_cursor {unknown_cursor!r}")
        default: UnknownCursor = "404" if semantics == "relative" else "ignore"
        with self._lock:
            self.semantics = semantics
            self.unknown_cursor = unknown_cursor or default

    # ------------------------------------------------------------------ control API: runs

    def create_run(
        self,
        agent_id: str | None = None,
        *,
        status: str = "created",
        created_at: Timestamp | None = None,
        background: bool = False,
        run_type: str = "send_message",
        conversation_id: str | None = None,
        callback_url: str | None = None,
        visible: bool = True,
        run_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        has_metrics: bool = True,
        project_id: str | None = None,
    ) -> str:
        """Insert a run, as ``RunManager.create_run`` does, and return its ``run-<uuid4>`` id.

        Args:
            agent_id: owner; a fresh ``agent-<uuid4>`` if omitted.
            status: initial status; a terminal one is applied like a first terminal
                ``update_run`` (sets ``completed_at`` and ``run_ns``).
            created_at: the sort key; defaults to the clock. It never changes later.
            run_type: ``metadata.run_type``. ``send_message_async`` also gets
                ``"lettuce": null`` like the real async path.
            visible: ``False`` models a late commit: the run is invisible everywhere
                (lists, cursors, 404 on GET) until :meth:`commit`, and keeps its old
                ``created_at``.
            metadata: extra keys merged over ``{"run_type": ...}``.
            has_metrics: ``False`` models a run older than the ``run_metrics`` table
                (``/metrics`` is 404 and the list's ``total_duration_ns`` stays null).
            project_id: the Cloud project the run's agent belongs to (cloud profile).
        """
        now = self._clock()
        with self._lock:
            rid = run_id or _new_id("run")
            if rid in self._runs:
                raise ValueError(f"duplicate run id {rid}")
            run = _Run()
            run.sid = rid
            run.us = _to_us(created_at) if created_at is not None else _to_us(now)
            run.seq = next(self._seq)
            run.agent_id = agent_id or _new_id("agent")
            run.status = "created" if status in TERMINAL_STATUSES else status
            run.stop_reason = None
            run.background = background
            run.conversation_id = conversation_id
            run.completed_us = None
            meta: dict[str, Any] = {"run_type": run_type}
            if run_type == "send_message_async":
                meta["lettuce"] = None
            if metadata:
                meta.update(metadata)
            run.metadata = meta
            run.meta_json = _dumps(meta)
            run.callback_url = callback_url
            run.callback_sent_us = None
            run.callback_status_code = None
            run.callback_error = None
            run.visible = visible
            run.has_metrics = has_metrics
            run.run_start_ns = run.us * 1000
            run.m_run_ns = None
            run.m_num_steps = 0
            run.m_tools = None
            run.pending = []
            run.steps = []
            run.lazy_steps = None
            run.trace = None
            run.j_get = None
            run.j_list = None
            self._runs[rid] = run
            if project_id is not None:
                self._run_projects[rid] = project_id
            if visible:
                self._insert_row(run)
            if status in TERMINAL_STATUSES:
                self._update_locked(run, now, status=status)
            return rid

    def finish_burst(
        self,
        count: int,
        agents: Sequence[str],
        *,
        shared_fraction: float = 0.3,
        spread_s: float = 0.05,
        rng: random.Random | None = None,
    ) -> list[str]:
        """Create ``count`` finished runs at once, as a busy server does in a burst.

        ``shared_fraction`` of them share one ``created_at`` to the microsecond, the
        newest (ties at the head of the list); the others lie up to ``spread_s`` before
        it. Outcomes cycle through the default status cycle. Returns the ids.
        """
        rng = rng or random.Random()
        head = self._clock()
        shared = round(count * shared_fraction)
        ids = []
        for i in range(count):
            created = head if i < shared else head - rng.uniform(0.0, spread_s)
            run_id = self.create_run(agents[i % len(agents)], created_at=created)
            status, reason = _DEFAULT_STATUS_CYCLE[i % len(_DEFAULT_STATUS_CYCLE)]
            self.update_run(run_id, status=status, stop_reason=reason)
            ids.append(run_id)
        return ids

    def commit(self, run_id: str) -> None:
        """Make a ``visible=False`` run visible (it keeps its original ``created_at``)."""
        with self._lock:
            run = self._run_or_raise(run_id)
            if not run.visible:
                run.visible = True
                self._insert_row(run)

    def update_run(
        self,
        run_id: str,
        *,
        status: str,
        stop_reason: str | None | EllipsisType = ...,
        completed_at: Timestamp | None = None,
        run_ns: int | None = None,
        metrics_delay: float = 0.0,
        error: str | Mapping[str, Any] | None = None,
    ) -> None:
        """Apply ``RunManager.update_run_by_id_async`` semantics (§5.1).

        Any status/stop-reason string is accepted (no transition is rejected, unknown
        values such as ``"paused"`` included). On a terminal status (completed, failed,
        cancelled): ``completed_at`` is set only if still empty (from the clock unless
        given), and ``run_ns`` is recomputed every time (default: clock − created_at).
        Every update also refreshes ``num_steps`` (capped at 50) and ``tools_used``; that
        metrics transaction becomes visible ``metrics_delay`` seconds later, which is
        when the list starts showing ``total_duration_ns``.

        Args:
            stop_reason: ``...`` (default) leaves it unchanged; ``None`` clears it.
            error: merged into ``metadata["error"]`` (a string or an error object).
        """
        now = self._clock()
        with self._lock:
            run = self._run_or_raise(run_id)
            self._update_locked(
                run,
                now,
                status=status,
                stop_reason=stop_reason,
                completed_at=completed_at,
                run_ns=run_ns,
                metrics_delay=metrics_delay,
                error=error,
            )

    def _update_locked(
        self,
        run: _Run,
        now: float,
        *,
        status: str,
        stop_reason: str | None | EllipsisType = ...,
        completed_at: Timestamp | None = None,
        run_ns: int | None = None,
        metrics_delay: float = 0.0,
        error: str | Mapping[str, Any] | None = None,
    ) -> None:
        old_status = run.status
        run.status = status
        if stop_reason is not ...:
            run.stop_reason = stop_reason
        terminal = status in TERMINAL_STATUSES
        if terminal and run.completed_us is None:
            run.completed_us = _to_us(completed_at) if completed_at is not None else _to_us(now)
        if error is not None:
            if run.metadata is self._bulk_meta:
                run.metadata = dict(run.metadata)  # copy-on-write for bulk runs
            run.metadata["error"] = dict(error) if isinstance(error, Mapping) else error
            run.meta_json = _dumps(run.metadata)
        if old_status != status and run.visible:
            self._reindex(run, "status", self._by_status, old_status)
        # The separate run_metrics transaction (§5.1): run_ns only on terminal writes.
        if terminal:
            new_run_ns = run_ns if run_ns is not None else (_to_us(now) - run.us) * 1000
        else:
            new_run_ns = None
        num_steps, tools = self._step_summary(run)
        run.pending.append((now + metrics_delay, terminal, new_run_ns, num_steps, tools))
        run.pending.sort(key=operator.itemgetter(0))
        self._promote(run, now)
        run.j_get = run.j_list = None

    def set_callback(
        self,
        run_id: str,
        status_code: int | None = None,
        error: str | None = None,
        *,
        sent_at: Timestamp | None = None,
    ) -> None:
        """Record the async callback attempt: fills ``callback_sent_at`` (clock unless
        given), ``callback_status_code`` and ``callback_error``."""
        now = self._clock()
        with self._lock:
            run = self._run_or_raise(run_id)
            run.callback_sent_us = _to_us(sent_at) if sent_at is not None else _to_us(now)
            run.callback_status_code = status_code
            run.callback_error = error
            run.j_get = run.j_list = None

    def delete_run(self, run_id: str) -> bool:
        """Hard-delete one run with its steps and metrics. Returns False if unknown."""
        with self._lock:
            run = self._runs.get(run_id)
            if run is None:
                return False
            self._delete_locked(run)
            return True

    def add_agent(self, name: str, *, agent_id: str | None = None) -> str:
        """Create an agent for ``GET /v1/agents/`` (shaped on ``agents/alpha.json``) and
        return its id. Runs need no agent: this only gives an id a name in the list."""
        agent_id = agent_id or f"agent-{uuid.uuid4()}"
        with self._lock:
            created_us = int(self._clock() * 1_000_000)
            body = dict(_AGENT_TEMPLATE, id=agent_id, name=name)
            body["created_at"] = _fmt_us(created_us, zulu=self._zulu)
            self._agents[agent_id] = (created_us, body)
        return agent_id

    def delete_agent(self, agent_id: str) -> int:
        """Delete an agent: its runs (visible or not), steps and metrics vanish by
        cascade (§3.9), and so do raw items carrying that ``agent_id``. Returns the
        number of runs removed."""
        with self._lock:
            self._agents.pop(agent_id, None)
            victims = [run for run in self._runs.values() if run.agent_id == agent_id]
            for run in victims:
                self._delete_locked(run)
            for raw in [r for r in self._raw.values() if r.agent_id == agent_id]:
                self._remove_raw_locked(raw)
            return len(victims)

    def _delete_locked(self, run: _Run) -> None:
        if run.visible:
            self._remove_row(run)
        for step in run.steps:
            self._steps_by_id.pop(step.data["id"], None)
        self._run_projects.pop(run.sid, None)
        del self._runs[run.sid]

    # ------------------------------------------------------------------ control API: approvals

    def request_approval(
        self,
        agent_id: str,
        *,
        conversation_id: str | None = None,
        created_at: Timestamp | None = None,
        completed_at: Timestamp | None = None,
    ) -> str:
        """The agent called a tool that requires approval: a new run ends
        ``completed``/``requires_approval`` and its thread (the agent's own messages, or
        the conversation) waits (fixtures ``runs/approval_left_pending``). Returns the run."""
        thread = (agent_id, conversation_id or "")
        if thread in self._pending_approvals:
            raise ValueError(f"{thread} already waits for an approval")
        run_id = self._thread_run(agent_id, conversation_id, created_at)
        self.update_run(
            run_id, status="completed", stop_reason="requires_approval", completed_at=completed_at
        )
        with self._lock:
            self._pending_approvals[thread] = run_id
        return run_id

    def answer_approval(
        self,
        agent_id: str,
        *,
        conversation_id: str | None = None,
        approve: bool = True,
        finish: bool = True,
    ) -> str:
        """Approve or deny the pending request: a **new** run continues the agent (the
        waiting run stays as it was); it ends ``completed``/``end_turn`` unless
        ``finish`` is False (then it stays ``created``, working, like a sync run).
        Returns the new run."""
        thread = (agent_id, conversation_id or "")
        with self._lock:
            if self._pending_approvals.pop(thread, None) is None:
                raise ValueError(f"{thread} waits for no approval")
        # Approval and denial look the same in the runs: the agent reads the answer and
        # goes on in a new run (`approve` only documents the caller's intent).
        run_id = self._thread_run(agent_id, conversation_id, None)
        if finish:
            self.update_run(run_id, status="completed", stop_reason="end_turn")
        return run_id

    def send_message(self, agent_id: str, *, conversation_id: str | None = None) -> tuple[int, str]:
        """A normal message. While the thread waits for an approval Letta answers 409 and
        leaves a ``failed`` run with no stop reason (fixtures
        ``sync_pending_approval_conflict``); the approval still waits. Otherwise the run
        ends ``completed``/``end_turn``. Returns (HTTP status, run id)."""
        run_id = self._thread_run(agent_id, conversation_id, None)
        with self._lock:
            refused = (agent_id, conversation_id or "") in self._pending_approvals
        if refused:
            self.update_run(run_id, status="failed", stop_reason=None, error=PENDING_APPROVAL_ERROR)
            return 409, run_id
        self.update_run(run_id, status="completed", stop_reason="end_turn")
        return 200, run_id

    def cancel_run(self, run_id: str) -> str:
        """``POST /v1/agents/{id}/messages/cancel`` for one run (§5.1 G): ``cancelled``
        with stop reason ``cancelled``, unless the run already has a stop reason other
        than ``requires_approval`` (then nothing changes and the answer is ``failed``).
        Cancelling the waiting run ends the wait."""
        with self._lock:
            run = self._run_or_raise(run_id)
            if run.stop_reason not in (None, "requires_approval"):
                return "failed"
            for thread, waiting in list(self._pending_approvals.items()):
                if waiting == run_id:
                    del self._pending_approvals[thread]
        self.update_run(run_id, status="cancelled", stop_reason="cancelled")
        return "cancelled"

    def pending_approval(self, agent_id: str, conversation_id: str | None = None) -> str | None:
        """Ground truth: the run waiting for approval on that thread, if any."""
        with self._lock:
            return self._pending_approvals.get((agent_id, conversation_id or ""))

    def pending_approvals(self) -> dict[tuple[str, str], str]:
        """Ground truth: every waiting thread and its run."""
        with self._lock:
            return dict(self._pending_approvals)

    def _thread_run(
        self, agent_id: str, conversation_id: str | None, created_at: Timestamp | None
    ) -> str:
        # conversation_id is set only by the conversations streaming path (§5.1 B).
        if conversation_id is None:
            return self.create_run(agent_id, created_at=created_at)
        return self.create_run(
            agent_id,
            created_at=created_at,
            conversation_id=conversation_id,
            run_type="send_conversation_message",
        )

    # ------------------------------------------------------------------ control API: steps

    def add_step(
        self,
        run_id: str,
        *,
        model: str = "openai-proxy/fake-llm",
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        cached_input_tokens: int | None = None,
        cache_write_tokens: int | None = None,
        reasoning_tokens: int | None = None,
        status: str = "success",
        stop_reason: str | None = None,
        trace_id: str | None = None,
        tool_ids: Iterable[str] = (),
        step_id: str | None = None,
        step_ns: int | None = None,
        llm_request_ns: int | None = None,
        tool_execution_ns: int | None = None,
        **overrides: Any,
    ) -> str:
        """Append a step to a run (shape of ``runs/*/steps.json``) and return its id.

        ``model`` is the handle (``provider/model``); the step's ``model`` field is the
        part after the slash, as Letta reports it. The ``*_details`` objects are derived
        the way Letta fills them (``cached_tokens`` and ``cache_read_tokens`` both carry
        the cached count). ``tool_ids`` feed ``run_metrics.tools_used`` at the next
        :meth:`update_run`; they need not be registered with :meth:`add_tool` (an
        unregistered id answers 404 on ``/v1/tools/{id}``, like a deleted tool).
        ``overrides`` replace any other Step field verbatim (e.g. ``error_type``,
        ``error_data``, ``provider_name``, ``context_window_limit``).

        ``step_ns``, ``llm_request_ns`` and ``tool_execution_ns`` (durations in ns) make
        a ``step_metrics`` row served by ``GET /v1/steps/{id}/metrics``; with none of
        them the step has no row and that route answers 404.
        """
        now = self._clock()
        with self._lock:
            run = self._run_or_raise(run_id)
            self._materialise_lazy_steps(run)
            sid = step_id or _new_id("step")
            data = _step_dict(
                sid,
                run,
                model=model,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                cached_input_tokens=cached_input_tokens,
                cache_write_tokens=cache_write_tokens,
                reasoning_tokens=reasoning_tokens,
                status=status,
                stop_reason=stop_reason,
                trace_id=trace_id,
            )
            unknown = set(overrides) - set(data)
            if unknown:
                raise TypeError(f"unknown Step fields: {sorted(unknown)}")
            data["project_id"] = self._run_projects.get(run.sid)
            data.update(overrides)
            timings: _Timings | None = (llm_request_ns, tool_execution_ns, step_ns)
            if timings == (None, None, None):
                timings = None
            step = _Step(
                us=_to_us(now),
                seq=next(self._seq),
                data=data,
                tool_ids=tuple(tool_ids),
                timings=timings,
            )
            run.steps.append(step)
            self._steps_by_id[sid] = (run, step)
            return sid

    def update_step(self, step_id: str, **fields: Any) -> None:
        """Change fields of an existing step, e.g. a ``pending`` step that finished:
        ``update_step(sid, status="success", prompt_tokens=10, completion_tokens=5)``.
        ``total_tokens`` follows prompt + completion unless given explicitly.

        ``step_ns``, ``llm_request_ns`` and ``tool_execution_ns`` update the step's
        ``step_metrics`` row (creating it if needed), the way Letta records the row at
        step start and fills the durations at step end."""
        with self._lock:
            entry = self._steps_by_id.get(step_id)
            if entry is None:
                raise KeyError(step_id)
            step = entry[1]
            timing_fields = {k: fields.pop(k) for k in _TIMING_FIELDS if k in fields}
            if timing_fields:
                llm, tool, total = step.timings or (None, None, None)
                step.timings = (
                    timing_fields.get("llm_request_ns", llm),
                    timing_fields.get("tool_execution_ns", tool),
                    timing_fields.get("step_ns", total),
                )
            if not fields:
                return
            data = step.data
            unknown = set(fields) - set(data)
            if unknown:
                raise TypeError(f"unknown Step fields: {sorted(unknown)}")
            data.update(fields)
            if "total_tokens" not in fields:
                data["total_tokens"] = data["prompt_tokens"] + data["completion_tokens"]

    def set_trace(self, run_id: str, rows: list[dict[str, Any]]) -> None:
        """Give the run span rows (§7.3 dicts, already in ``Timestamp`` order). From then
        on ``/trace`` answers 200 with them instead of 501 (no ClickHouse)."""
        with self._lock:
            self._run_or_raise(run_id).trace = [dict(row) for row in rows]

    # ------------------------------------------------------------------ control API: tools

    def add_tool(self, name: str, *, tool_id: str | None = None, tool_type: str = "custom") -> str:
        """Register a tool served by ``GET /v1/tools/{tool_id}`` and return its id
        (``tool-<uuid4>`` unless given).

        The body has the 18 keys of a real ``Tool`` in their order (``agents/alpha.json``
        ``tools``). Built-in types (``letta_*``) look like the fixtures' core tools (no
        source code, the type as the only tag); a ``custom`` tool gets a stub Python
        source and JSON schema, as one created through the API would have.

        Raises:
            ValueError: ``tool_id`` is not ``tool-<uuid4>`` (the real route could never
                serve it: its path validator answers 422), is already registered, or
                ``tool_type`` is not a ``ToolType`` value.
        """
        if tool_type not in TOOL_TYPES:
            raise ValueError(f"unknown tool_type {tool_type!r}; expected one of {TOOL_TYPES}")
        tid = tool_id or _new_id("tool")
        if not _valid_path_id(tid, "tool"):
            raise ValueError(f"tool id {tid!r} is not tool-<uuid4>")
        with self._lock:
            if tid in self._tools:
                raise ValueError(f"duplicate tool id {tid}")
            self._tools[tid] = _tool_dict(tid, name, tool_type)
        return tid

    def delete_tool(self, tool_id: str) -> bool:
        """Forget a tool: ``/v1/tools/{id}`` answers 404 from then on, while run metrics
        that name it keep the id. Returns False if it was not registered."""
        with self._lock:
            return self._tools.pop(tool_id, None) is not None

    # ------------------------------------------------------------------ control API: raw items

    def add_raw_item(self, obj: dict[str, Any], *, created_at: Timestamp | None = None) -> str:
        """Put an arbitrary (possibly invalid) JSON object into list results.

        Its position follows ``created_at`` (the keyword, else ``obj["created_at"]`` if it
        parses, else the head of the list: newest, i.e. first in ``desc`` order) and then
        ``obj["id"]`` if it is a string. List filters compare against the object's own
        fields, so ``{"status": 42}`` never matches ``statuses=...``. A string ``id``
        can be used as a cursor, like any row in the database. Returns a handle for
        :meth:`remove_raw_item`.
        """
        now = self._clock()
        with self._lock:
            raw = _Raw()
            raw.obj = obj
            raw.body = _dumps(obj).encode()
            raw.handle = f"raw-{len(self._raw)}-{next(self._seq)}"
            raw.seq = next(self._seq)
            raw_id = obj.get("id")
            raw.sid = raw_id if isinstance(raw_id, str) else ""
            raw.us = self._raw_position(obj, created_at, now)
            raw.agent_id = obj.get("agent_id")
            raw.status = obj.get("status")
            raw.stop_reason = obj.get("stop_reason")
            raw.background = obj.get("background")
            raw.conversation_id = obj.get("conversation_id")
            self._raw[raw.handle] = raw
            if isinstance(raw_id, str):
                self._raw_by_id[raw_id] = raw
            self._insert_row(raw)
            return raw.handle

    def remove_raw_item(self, handle: str) -> None:
        """Remove an item added with :meth:`add_raw_item`."""
        with self._lock:
            self._remove_raw_locked(self._raw[handle])

    def _remove_raw_locked(self, raw: _Raw) -> None:
        self._remove_row(raw)
        del self._raw[raw.handle]
        if self._raw_by_id.get(raw.sid) is raw:
            del self._raw_by_id[raw.sid]

    def _raw_position(self, obj: dict[str, Any], created_at: Timestamp | None, now: float) -> int:
        if created_at is not None:
            return _to_us(created_at)
        value = obj.get("created_at")
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            try:
                return _to_us(value)
            except (ValueError, OverflowError):
                pass
        # No usable timestamp: the head of the default (desc) listing.
        newest = max((row.us for row in self._rows[-1:]), default=_to_us(now))
        return newest + 1

    # ------------------------------------------------------------------ control API: faults

    def inject(
        self,
        kind: str,
        *,
        times: int = 1,
        path_prefix: str = "/v1/runs",
        retry_after: float | int | str | None = None,
        delay: float | None = None,
        size: int = 50_000_000,
        path_regex: str | None = None,
        retry_after_ms: int | None = None,
    ) -> None:
        """Make the next ``times`` requests whose path starts with ``path_prefix`` fail.

        With ``path_regex``, the fault instead targets requests whose path matches it
        (``re.search`` on the path without the query string), e.g. ``r"/usage$"`` for
        every run's usage or ``r"^/v1/tools/"`` for tool lookups; ``path_prefix`` is then
        ignored.

        Kinds: ``"408"``, ``"409"`` (0.16.8's answer to a database lock conflict),
        ``"500"``, ``"502"``, ``"503"``, ``"429"`` (``Retry-After`` header when
        ``retry_after`` is given, ``retry-after-ms`` with ``retry_after_ms``);
        ``"timeout"`` (wait ``delay`` s, default 30, then answer normally: the client
        should give up first); ``"hang"`` (never answer until :meth:`stop`);
        ``"truncated"`` (the real response with the full Content-Length
        but only half the body, then close); ``"reset"`` (TCP RST, no answer);
        ``"garbage"`` (200 ``application/json`` that is not JSON); ``"endless"`` (200
        chunked JSON-looking bytes until the client goes away); ``"huge"`` (200 valid JSON
        array of about ``size`` bytes). Faults queue in order; the server survives all.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {sorted(FAULT_KINDS)}")
        if times < 1:
            raise ValueError("times must be >= 1")
        pattern = re.compile(path_regex) if path_regex is not None else None  # fail early
        with self._lock:
            self._faults.append(
                _Fault(kind, times, path_prefix, retry_after, delay, size, pattern, retry_after_ms)
            )

    def set_request_budget(self, per_s: float | None, *, burst: float = 1.0) -> None:
        """Answer 429 with ``retry-after-ms`` (the wait for the next token) to requests
        beyond ``per_s`` a second, a bucket of ``burst`` requests; None lifts the budget.
        How a shared API that publishes no limit answers a client that is too fast."""
        with self._lock:
            self._budget = (per_s, burst) if per_s is not None else None
            self._budget_tokens = burst
            self._budget_at = time.monotonic()

    def _over_budget(self) -> int | None:
        """None when the request fits the budget (taking a token), else the wait in ms."""
        if self._budget is None:
            return None
        with self._lock:
            if self._budget is None:
                return None
            per_s, burst = self._budget
            now = time.monotonic()
            self._budget_tokens = min(burst, self._budget_tokens + (now - self._budget_at) * per_s)
            self._budget_at = now
            if self._budget_tokens >= 1.0:
                self._budget_tokens -= 1.0
                return None
            self.throttled += 1
            return max(1, math.ceil((1.0 - self._budget_tokens) / per_s * 1000))

    def clear_faults(self) -> None:
        """Drop every fault not yet consumed."""
        with self._lock:
            self._faults.clear()

    def _take_fault(self, path: str) -> _Fault | None:
        if not self._faults:
            # Checked before taking the lock: with no faults armed (every benchmark) the
            # request threads would otherwise contend on the store lock one extra time.
            return None
        with self._lock:
            for fault in self._faults:
                if fault.matches(path):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    # ------------------------------------------------------------------ inspection

    def truth(self, project_id: str | None = None) -> Counter[tuple[str, str, str | None]]:
        """Count ``(agent_id, status, stop_reason)`` over visible terminal runs (status
        completed/failed/cancelled, or any status once ``completed_at`` is set), of one
        project when ``project_id`` is given. This is what a perfect exporter would have
        counted."""
        with self._lock:
            return Counter(
                (run.agent_id, run.status, run.stop_reason)
                for run in self._finished_locked(project_id)
            )

    def token_truth(self, project_id: str | None = None) -> Counter[tuple[str, str, str]]:
        """Token totals by ``(agent_id, model, type)`` over the runs :meth:`truth` counts,
        summed over *all* steps of each run (not the 50 that ``/usage`` sees).

        ``model`` is the Step's ``model`` field as ``/steps`` serves it (``gpt-4o-mini``,
        not the handle); ``type`` is ``input`` (prompt_tokens), ``output``
        (completion_tokens), ``cached_input`` (cached_input_tokens), ``cache_write``
        (cache_write_tokens) or ``reasoning`` (reasoning_tokens). Zero and null values
        make no entry. Bulk runs are read from their lazy description, not materialised.
        ``project_id`` limits it to one project's runs.
        """
        out: Counter[tuple[str, str, str]] = Counter()
        bulk: dict[str, list[int]] = {}  # agent -> [input, output] of its lazy bulk runs
        with self._lock:
            for run in self._finished_locked(project_id):
                agent = run.agent_id
                if run.lazy_steps is not None:
                    prompt, completion = _lazy_totals(run.lazy_steps)
                    acc = bulk.get(agent) or bulk.setdefault(agent, [0, 0])
                    acc[0] += prompt
                    acc[1] += completion
                    continue
                for step in run.steps:
                    data = step.data
                    model = data["model"]
                    for kind, field in _TOKEN_TYPES:
                        value = data[field]
                        if value:
                            out[(agent, model, kind)] += value
        bulk_model = _step_model(_BULK_MODEL)
        for agent, (prompt, completion) in bulk.items():
            out[(agent, bulk_model, "input")] += prompt
            out[(agent, bulk_model, "output")] += completion
        return +out  # drops entries that summed to zero

    def step_count_truth(self) -> dict[str, int]:
        """``run_id -> number of steps`` (all of them, no 50 cap) over the runs
        :meth:`truth` counts."""
        with self._lock:
            return {
                run.sid: run.lazy_steps[0] if run.lazy_steps is not None else len(run.steps)
                for run in self._finished_locked()
            }

    def tool_truth(self) -> Counter[tuple[str, str]]:
        """Tool use by ``(agent_id, tool)`` over the runs :meth:`truth` counts: every
        distinct id in the run's ``tools_used`` as ``/v1/runs/{id}/metrics`` serves it
        right now (so nothing for runs without a metrics row, and only committed metrics
        transactions), once per run, named by its registered name or, when
        ``/v1/tools/{id}`` would not answer 200, by the id itself."""
        now = self._clock()
        out: Counter[tuple[str, str]] = Counter()
        with self._lock:
            for run in self._finished_locked():
                if not run.has_metrics:
                    continue
                if run.pending:
                    self._promote(run, now)
                for tool_id in dict.fromkeys(run.m_tools or ()):
                    tool = self._tools.get(tool_id)
                    out[(run.agent_id, tool["name"] if tool is not None else tool_id)] += 1
        return out

    def _finished_locked(self, project_id: str | None = None) -> Iterator[_Run]:
        """Visible runs that are terminal, or were once (``completed_at`` is set)."""
        for run in self._runs.values():
            if project_id is not None and self._run_projects.get(run.sid) != project_id:
                continue
            if run.visible and (run.status in TERMINAL_STATUSES or run.completed_us is not None):
                yield run

    def runs(self) -> list[dict[str, Any]]:
        """Every visible run as the list endpoint would show it right now (newest first;
        raw items excluded)."""
        now = self._clock()
        with self._lock:
            visible = [row for row in reversed(self._rows) if isinstance(row, _Run)]
            return [json.loads(self._list_bytes(run, now)) for run in visible]

    def get(self, run_id: str) -> dict[str, Any] | None:
        """One run as the list endpoint would show it (so with ``total_duration_ns`` once
        visible), including runs not committed yet; ``None`` if unknown."""
        now = self._clock()
        with self._lock:
            run = self._runs.get(run_id)
            return None if run is None else json.loads(self._list_bytes(run, now))

    def __len__(self) -> int:
        with self._lock:
            return sum(1 for run in self._runs.values() if run.visible)

    # ------------------------------------------------------------------ bulk load

    def bulk_load(
        self,
        n: int,
        *,
        agents: int | Sequence[str] = 10,
        start: Timestamp | None = None,
        spacing_s: float = 0.01,
        status_cycle: Sequence[tuple[str, str | None]] = _DEFAULT_STATUS_CYCLE,
        duration_s: float = 1.5,
        seed: int | None = None,
    ) -> list[str]:
        """Create ``n`` terminal runs fast (1,000,000 in a few seconds) and return their ids.

        Run ``i`` is created at ``start + i * spacing_s`` (default: so the newest is ``now``),
        belongs to agent ``i % len(agents)``, takes ``status_cycle[i % len]`` as
        ``(status, stop_reason)``, and completed ``duration_s`` (±50 %) later with its
        metrics already committed. Each run has 1–3 steps with token counts and a
        ``step_metrics`` row (the run's duration split evenly); the Step objects are
        built only when the run's ``/steps`` is first requested (or a step is added), so
        ``/usage``, ``/metrics`` and the truths never build them.
        """
        if n <= 0:
            return []
        rng = random.Random(seed)
        if isinstance(agents, int):
            agent_ids = [f"agent-{_uuid4_from_bits(rng.getrandbits(128))}" for _ in range(agents)]
        else:
            agent_ids = list(agents)
        cycle = list(status_cycle)
        spacing_us = round(spacing_s * 1_000_000)
        now_us = _to_us(self._clock())
        start_us = _to_us(start) if start is not None else now_us - (n - 1) * spacing_us
        meta, meta_json = self._bulk_meta, self._bulk_meta_json
        base_dur_us = max(1, round(duration_s * 1_000_000))
        getrandbits = rng.getrandbits
        new_rows: list[_Run] = []
        # A million new objects would trigger the cyclic GC over and over while creating
        # nothing cyclic; pausing it cuts the load time by more than half.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            with self._lock:
                seq = self._seq
                runs = self._runs
                for i in range(n):
                    run = _Run()
                    rid = "run-" + _uuid4_from_bits(getrandbits(128))
                    status, stop_reason = cycle[i % len(cycle)]
                    us = start_us + i * spacing_us
                    dur_us = base_dur_us // 2 + (getrandbits(20) * base_dur_us >> 20)
                    run.sid = rid
                    run.us = us
                    run.seq = next(seq)
                    run.agent_id = agent_ids[i % len(agent_ids)]
                    run.status = status
                    run.stop_reason = stop_reason
                    run.background = False
                    run.conversation_id = None
                    run.completed_us = us + dur_us
                    run.metadata = meta  # shared; _update_locked copies it before writing
                    run.meta_json = meta_json
                    run.callback_url = None
                    run.callback_sent_us = None
                    run.callback_status_code = None
                    run.callback_error = None
                    run.visible = True
                    run.has_metrics = True
                    run.run_start_ns = us * 1000
                    run.m_run_ns = dur_us * 1000
                    count = 1 + i % 3
                    run.m_num_steps = count
                    run.m_tools = None
                    run.pending = []
                    run.steps = []
                    run.lazy_steps = (count, 900 + i % 500, 20 + i % 80, dur_us * 1000 // count)
                    run.trace = None
                    run.j_get = None
                    run.j_list = None
                    if rid in runs:  # astronomically unlikely, but keep ids unique
                        continue
                    runs[rid] = run
                    new_rows.append(run)
                self._rows.extend(new_rows)
                self._rows.sort(key=_key)  # Timsort: near-linear on these presorted runs
                self._rebuild_indexes()
        finally:
            if gc_was_enabled:
                gc.enable()
        return [run.sid for run in new_rows]

    def forget_before(self, created_before: Timestamp) -> int:
        """Hard-delete every visible *finished* run created before ``created_before`` (a
        soak keeps the fake's memory bounded this way; open runs and zombies stay).
        Returns how many went. Raw items stay."""
        cutoff = _to_us(created_before)
        with self._lock:
            victims = [
                r
                for r in self._runs.values()
                if r.visible and r.us < cutoff and r.status not in ("created", "running")
            ]
            for run in victims:
                for step in run.steps:
                    self._steps_by_id.pop(step.data["id"], None)
                del self._runs[run.sid]
            gone = {id(run) for run in victims}
            self._rows = [row for row in self._rows if id(row) not in gone]
            self._rebuild_indexes()
        return len(victims)

    # ------------------------------------------------------------------ internals: table

    def _run_or_raise(self, run_id: str) -> _Run:
        run = self._runs.get(run_id)
        if run is None:
            raise KeyError(run_id)
        return run

    def _insert_row(self, row: _Row) -> None:
        bisect.insort(self._rows, row, key=_key)
        bisect.insort(self._by_status.setdefault(_bucket(row.status), []), row, key=_key)
        bisect.insort(self._by_agent.setdefault(_bucket(row.agent_id), []), row, key=_key)

    def _remove_row(self, row: _Row) -> None:
        _remove_sorted(self._rows, row)
        _remove_sorted(self._by_status[_bucket(row.status)], row)
        _remove_sorted(self._by_agent[_bucket(row.agent_id)], row)

    def _reindex(self, row: _Row, field: str, index: dict[Any, list[_Row]], old: Any) -> None:
        _remove_sorted(index[_bucket(old)], row)
        bisect.insort(index.setdefault(_bucket(getattr(row, field)), []), row, key=_key)

    def _rebuild_indexes(self) -> None:
        by_status: dict[Any, list[_Row]] = {}
        by_agent: dict[Any, list[_Row]] = {}
        for row in self._rows:  # already sorted, so every bucket comes out sorted too
            by_status.setdefault(_bucket(row.status), []).append(row)
            by_agent.setdefault(_bucket(row.agent_id), []).append(row)
        self._by_status = by_status
        self._by_agent = by_agent

    def _step_summary(self, run: _Run) -> tuple[int, list[str] | None]:
        """num_steps and tools_used as the metrics refresh computes them: over the (at
        most) 50 newest steps."""
        if run.lazy_steps is not None:
            return min(run.lazy_steps[0], _USAGE_STEP_WINDOW), None
        window = run.steps[-_USAGE_STEP_WINDOW:]
        tools: list[str] = []
        for step in window:
            for tool_id in step.tool_ids:
                if tool_id not in tools:
                    tools.append(tool_id)
        return len(window), tools or None

    def _promote(self, run: _Run, now: float) -> None:
        """Apply the metrics transactions whose commit time has come."""
        changed = False
        while run.pending and run.pending[0][0] <= now:
            _, terminal, run_ns, num_steps, tools = run.pending.pop(0)
            if terminal:
                run.m_run_ns = run_ns
            run.m_num_steps = num_steps
            run.m_tools = tools
            changed = True
        if changed:
            run.j_list = None

    def _materialise_lazy_steps(self, run: _Run) -> None:
        if run.lazy_steps is None:
            return
        spec = run.lazy_steps
        run.lazy_steps = None
        step_ns = spec[3]
        # Shares of the step's time, so that llm + tool <= step as in a real step.
        timings: _Timings = (step_ns * 3 // 4, step_ns // 8, step_ns)
        last = spec[0] - 1
        for index, (prompt, completion) in enumerate(_lazy_tokens(spec)):
            sid = _new_id("step")
            data = _step_dict(
                sid,
                run,
                model=_BULK_MODEL,
                prompt_tokens=prompt,
                completion_tokens=completion,
                cached_input_tokens=None,
                cache_write_tokens=None,
                reasoning_tokens=None,
                status="success",
                stop_reason=run.stop_reason if index == last else None,
                trace_id=None,
            )
            step = _Step(
                us=run.us + 1000 * (index + 1),
                seq=next(self._seq),
                data=data,
                tool_ids=(),
                timings=timings,
            )
            run.steps.append(step)
            self._steps_by_id[sid] = (run, step)

    # ------------------------------------------------------------------ internals: JSON

    def _encode_run(self, run: _Run, total_duration_ns: int | None) -> bytes:
        """The Run JSON (17 keys in the fixtures' order, compact like FastAPI), built from
        an f-string template: json.dumps of the nested dict costs several times more and
        a million runs add up."""
        completed = run.completed_us
        sent = run.callback_sent_us
        completed_json = "null" if completed is None else f'"{_fmt_us(completed, zulu=False)}"'
        sent_json = "null" if sent is None else f'"{_fmt_us(sent, zulu=False)}"'
        return (
            f'{{"id":{_encode_str(run.sid)},"status":{_jv(run.status)},'
            f'"created_at":"{_fmt_us(run.us, zulu=self._zulu)}","completed_at":{completed_json},'
            f'"agent_id":{_jv(run.agent_id)},"conversation_id":{_jv(run.conversation_id)},'
            f'"base_template_id":null,"background":{_jv(run.background)},'
            f'"metadata":{run.meta_json},"request_config":{_REQUEST_CONFIG_JSON},'
            f'"stop_reason":{_jv(run.stop_reason)},"callback_url":{_jv(run.callback_url)},'
            f'"callback_sent_at":{sent_json},'
            f'"callback_status_code":{_jv(run.callback_status_code)},'
            f'"callback_error":{_jv(run.callback_error)},'
            f'"ttft_ns":null,"total_duration_ns":{_jv(total_duration_ns)}}}'
        ).encode()

    def _get_bytes(self, run: _Run) -> bytes:
        # GET /v1/runs/{id} never fills total_duration_ns in 0.16.8 (§3.3).
        if run.j_get is None:
            run.j_get = self._encode_run(run, None)
        return run.j_get

    def _list_bytes(self, run: _Run, now: float) -> bytes:
        if run.pending:
            self._promote(run, now)
        if run.j_list is None:
            duration = run.m_run_ns if run.has_metrics else None
            run.j_list = self._encode_run(run, duration)
        return run.j_list

    def _row_bytes(self, row: _Row, now: float) -> bytes:
        if isinstance(row, _Run):
            return self._list_bytes(row, now)
        assert isinstance(row, _Raw)
        return row.body

    def _metrics_dict(self, run: _Run) -> dict[str, Any]:
        return {
            "id": run.sid,
            "organization_id": DEFAULT_ORG_ID,
            "agent_id": run.agent_id,
            "project_id": self._run_projects.get(run.sid),
            "run_start_ns": run.run_start_ns,
            "run_ns": run.m_run_ns,
            "num_steps": run.m_num_steps,
            "tools_used": run.m_tools,
            "template_id": None,
            "base_template_id": None,
        }

    # ------------------------------------------------------------------ internals: listing

    def _lookup_cursor(self, cursor_id: str) -> _Row | None:
        """The cursor row is read by id only: no organisation, agent or status filter
        (§4.4). Missing (unknown, deleted, not committed yet) means "ignore the cursor"."""
        run = self._runs.get(cursor_id)
        if run is not None:
            return run if run.visible else None
        return self._raw_by_id.get(cursor_id)

    def _boundary(self, cursor: _Row, forward: bool) -> int:
        """Index into ``self._rows`` where Letta's ``_cursor_filter`` flips.

        ``forward`` keeps rows with ``(created_at, id) > cursor``, i.e. ``rows[i:]``; else
        rows with ``< cursor``, i.e. ``rows[:i]``.
        """
        if self.backend == "sqlite":
            # run_manager_helper on SQLite: cursor value = strftime("%Y-%m-%d %H:%M:%S"),
            # compared *as a string* with the stored "YYYY-MM-DD HH:MM:SS.ffffff" values:
            #   col > ref OR (col == ref AND id > ref_id)   (forward; mirrored backward)
            # which is the tuple comparison (stored, id) > (ref, ref_id). Stored strings are
            # fixed-width, so this predicate is monotone along the sort order and bisect on
            # the string key finds exactly the rows the SQL would return.
            target: tuple[Any, ...] = (_sqlite_cursor_value(cursor.us), cursor.sid)
            key: Callable[[_Row], tuple[Any, ...]] = _sqlite_key
        else:
            target = (cursor.us, cursor.sid)
            key = _pg_key
        if forward:
            return bisect.bisect_right(self._rows, target, key=key)
        return bisect.bisect_left(self._rows, target, key=key)

    def _list_locked(
        self,
        *,
        agent_ids: list[str] | None,
        statuses: Sequence[str] | None,
        background: bool | None,
        stop_reason: str | None,
        conversation_id: str | None,
        before: str | None,
        after: str | None,
        limit: int,
        ascending: bool,
        now: float,
    ) -> list[bytes]:
        rows = self._rows
        lo, hi = 0, len(rows)
        from_tail = False
        if self.semantics == "letta-0.16.8":
            # _apply_pagination_async: after -> forward=not ascending, before ->
            # forward=ascending. That is the swap of commit 5fddf94ac (§4.2).
            after_forward, before_forward = not ascending, ascending
        elif self.semantics == "relative":
            # Cursors relative to the sort order, as the cloud SDK documents and the steps
            # list does (§4.6, §9): after = next page, before = previous page.
            after_forward, before_forward = ascending, not ascending
        else:
            after_forward, before_forward = True, False  # newer than / older than X
        after_row = self._lookup_cursor(after) if after else None
        before_row = self._lookup_cursor(before) if before else None
        if self.unknown_cursor == "404":
            # Cursor-checking servers answer 404 to an unknown cursor (§4.6) instead of
            # silently restarting the list.
            for cursor_id, row in ((after, after_row), (before, before_row)):
                if cursor_id and row is None:
                    raise _HTTPError(_not_found("Run", cursor_id))
        for cursor, forward in ((after_row, after_forward), (before_row, before_forward)):
            if cursor is None:
                continue
            if forward:
                lo = max(lo, self._boundary(cursor, True))
            else:
                hi = min(hi, self._boundary(cursor, False))
        if self.semantics == "relative" and before_row is not None and after_row is None:
            from_tail = True  # the previous page: the `limit` rows just before X
        if self.semantics == "conventional" and (before_row is None) != (after_row is None):
            # A previous page (asc+before, desc+after) is the `limit` rows adjacent to
            # the cursor, not the head of the list: walk towards the cursor, then flip.
            from_tail = (before_row is not None) if ascending else (after_row is not None)
        if lo >= hi:
            return []

        # Pick the narrowest index that covers the filters, then re-check everything.
        sources: list[list[_Row]]
        if agent_ids:
            sources = [self._by_agent.get(a, []) for a in dict.fromkeys(agent_ids)]
        elif statuses is not None:
            sources = [self._by_status.get(s, []) for s in dict.fromkeys(statuses)]
        else:
            sources = [rows]
        lo_key = _key(rows[lo])
        hi_key = _key(rows[hi]) if hi < len(rows) else None
        descending_walk = not ascending
        if from_tail:
            descending_walk = not descending_walk
        iterators: list[Iterator[_Row]] = []
        for src in sources:
            if src is rows:
                a, b = lo, hi
            else:
                a = bisect.bisect_left(src, lo_key, key=_key)
                b = len(src) if hi_key is None else bisect.bisect_left(src, hi_key, key=_key)
            if a >= b:
                continue
            indices = range(b - 1, a - 1, -1) if descending_walk else range(a, b)
            iterators.append(map(src.__getitem__, indices))
        if not iterators:
            return []
        merged: Iterable[_Row] = (
            iterators[0]
            if len(iterators) == 1
            else heapq.merge(*iterators, key=_key, reverse=descending_walk)
        )
        agent_set = set(agent_ids) if agent_ids else None
        status_set = set(statuses) if statuses is not None else None
        scope = self._request_project()
        picked: list[_Row] = []
        for row in merged:
            if scope is not None and self._run_projects.get(row.sid) != scope:
                continue
            if agent_set is not None and _bucket(row.agent_id) not in agent_set:
                continue
            if status_set is not None and _bucket(row.status) not in status_set:
                continue
            if background is not None and row.background is not background:
                continue
            if stop_reason is not None and row.stop_reason != stop_reason:
                continue
            if conversation_id is not None and row.conversation_id != conversation_id:
                continue
            picked.append(row)
            if len(picked) >= limit:
                break
        if from_tail:
            picked.reverse()
        return [self._row_bytes(row, now) for row in picked]

    # ------------------------------------------------------------------ HTTP dispatch

    def _dispatch(
        self,
        method: str,
        raw_path: str,
        raw_query: str,
        headers: Message,
        host: str,
        query: dict[str, list[str]] | None = None,
    ) -> _Resp:
        """Route one request. Order mirrors the real app: password middleware, routing
        (redirect_slashes, 404/405), the ``user_id`` dependency, query validation, then
        the handler's own checks (run id format, lookups). ``query`` is ``raw_query``
        already parsed, when the caller has it."""
        if query is None:
            query = parse_qs(raw_query, keep_blank_values=True)
        exempt = raw_path in _AUTH_EXEMPT
        if self.cloud:
            project = headers.get("x-project-id")
            with self._lock:
                self._project_headers.append(project)
            self._scope.project = project if self.honour_project_header else None
        if self.password is not None and not exempt and not self._authorised(headers):
            return _detail(401, "Unauthorized")
        path = raw_path
        if path.startswith("/latest/"):  # the same routers are mounted under /latest
            path = "/v1/" + path[len("/latest/") :]
        match = _match_route(path)
        if match is None:
            # Starlette's redirect_slashes: try the other form of the trailing slash.
            alt = path[:-1] if path.endswith("/") else path + "/"
            if len(alt) > 1 and _match_route(alt) is not None:
                alt_raw = raw_path[:-1] if raw_path.endswith("/") else raw_path + "/"
                location = f"http://{host}{alt_raw}" + (f"?{raw_query}" if raw_query else "")
                return _Resp(307, b"", None, (("location", location),))
            return _detail(404, "Not Found")
        route, run_id = match
        allowed = _ROUTE_METHODS[route]
        if method not in allowed:
            return _Resp(
                405,
                b'{"detail":"Method Not Allowed"}',
                headers=(("allow", ", ".join(sorted(allowed))),),
            )
        try:
            if route != "health":
                self._check_user_header(headers)
            return self._route(route, method, run_id, _Query(query))
        except _HTTPError as exc:
            return exc.resp

    def _authorised(self, headers: Message) -> bool:
        assert self.password is not None
        bearer = headers.get("authorization")
        if bearer is not None and bearer == f"Bearer {self.password}":
            return True
        if self.cloud:
            return False  # API keys go in Authorization only
        bare = headers.get("x-bare-password")
        return bare is not None and bare == f"password {self.password}"

    def _request_project(self) -> str | None:
        """The project the request being served is scoped to (cloud profile), else None."""
        return getattr(self._scope, "project", None) if self.cloud else None

    def _in_scope(self, run: _Run) -> bool:
        scope = self._request_project()
        return scope is None or self._run_projects.get(run.sid) == scope

    def _check_user_header(self, headers: Message) -> None:
        # The header is literally "user_id" (underscore). A well-formed unknown id
        # silently becomes the default user, so only the format can fail (§1.2).
        user_id = headers.get("user_id")
        if self.require_user_id and user_id is not None and not _USER_ID_RE.match(user_id):
            raise _HTTPError(
                _detail(
                    400,
                    f"INVALID_ARGUMENT: Invalid user ID format: {user_id}. "
                    "Expected format: 'user-<uuid4>'",
                )
            )

    def _route(self, route: str, method: str, run_id: str | None, q: _Query) -> _Resp:
        if route == "health":
            return _json_resp(200, {"version": SERVER_VERSION, "status": "ok"})
        if route == "list":
            return self._route_list(q)
        if route == "active":
            return self._route_active(q)
        if route == "agents":
            return self._route_agents(q)
        assert run_id is not None
        if route == "tool":
            return self._route_tool(run_id)
        if route == "step_metrics":
            return self._route_step_metrics(run_id)
        if route == "trace":
            limit = q.get_int("limit", 1000, ge=1, le=5000)
            q.raise_if_invalid()
            _check_run_id(run_id)
            with self._lock:
                run = self._visible_run(run_id)
                rows = run.trace if run is not None else None
                if rows is None:
                    # No ClickHouse configured: 501 before any lookup (errors/run_trace_unknown).
                    return _detail(501, _TRACE_501_DETAIL)
                return _json_resp(200, rows[:limit])
        if route == "steps":
            return self._route_steps(run_id, q)
        if route == "messages":
            return self._route_messages(run_id, q)
        if route == "metrics" and not self.serves_run_metrics:
            return _detail(404, "Not Found")  # no such route: the router's own 404
        _check_run_id(run_id)
        now = self._clock()
        with self._lock:
            if route == "run" and method == "DELETE":
                self._run_for_route(run_id)
                # 0.16.8 calls a RunManager method that does not exist (§3.9).
                return _detail(500, "An unknown error occurred")
            if route == "run":
                run = self._run_for_route(run_id)
                if run.pending:
                    self._promote(run, now)
                return _Resp(200, self._get_bytes(run))
            if route == "usage":
                run = self._run_for_route(run_id)
                if run.lazy_steps is not None:  # bulk run: no need to build its Steps
                    pairs = _lazy_tokens(run.lazy_steps)[-_USAGE_STEP_WINDOW:]
                    prompt = sum(p for p, _ in pairs)
                    completion = sum(c for _, c in pairs)
                    total = prompt + completion
                else:
                    window = run.steps[-_USAGE_STEP_WINDOW:]  # newest 50 only (§3.5)
                    prompt = sum(s.data["prompt_tokens"] for s in window)
                    completion = sum(s.data["completion_tokens"] for s in window)
                    total = sum(s.data["total_tokens"] for s in window)
                return _json_resp(
                    200,
                    {
                        "completion_tokens": completion,
                        "prompt_tokens": prompt,
                        "total_tokens": total,
                        "prompt_tokens_details": None,
                        "completion_tokens_details": None,
                    },
                )
            if route == "metrics":
                maybe_run = self._visible_run(run_id)
                if maybe_run is None or not maybe_run.has_metrics:
                    return _not_found("RunMetrics", run_id)
                if maybe_run.pending:
                    self._promote(maybe_run, now)
                return _json_resp(200, self._metrics_dict(maybe_run))
        raise AssertionError(f"unrouted {route}")

    def _route_messages(self, run_id: str, q: _Query) -> _Resp:
        """A tool call message and its return per tool id of each step, oldest first;
        ``before``/``after`` are absolute on the message sequence, unknown ones 404 (§3.4)."""
        limit = q.get_int("limit", 100)
        order = q.get_choice("order", ("asc", "desc"), "asc")
        q.get_choice("order_by", ("created_at",), "created_at")
        before, after = q.get_str("before"), q.get_str("after")
        q.raise_if_invalid()
        _check_run_id(run_id)
        with self._lock:
            messages = self._messages_locked(self._run_for_route(run_id))
        index = {m["id"]: i for i, m in enumerate(messages)}
        low, high = 0, len(messages)
        for cursor, is_after in ((after, True), (before, False)):
            if cursor is None:
                continue
            if cursor not in index:
                return _not_found("Message", cursor)
            if is_after:
                low = max(low, index[cursor] + 1)
            else:
                high = min(high, index[cursor])
        window = messages[low:high]
        page = window[:limit] if order == "asc" else list(reversed(window))[:limit]
        return _json_resp(200, page)

    def _messages_locked(self, run: _Run) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for step in run.steps:
            for n, tool_id in enumerate(step.tool_ids):
                tool = self._tools.get(tool_id)
                name = tool["name"] if tool is not None else tool_id
                call_id = f"call_{step.data['id'][-12:]}{n:04d}"
                call = {"name": name, "arguments": "{}", "tool_call_id": call_id}
                common = {
                    "date": step.data.get("created_at"),
                    "step_id": step.data["id"],
                    "run_id": run.sid,
                    "otid": None,
                    "sender_id": None,
                    "is_err": None,
                    "seq_id": None,
                    "name": None,
                }
                out.append(
                    {
                        "id": f"message-{step.data['id'][5:]}-{2 * n:04d}",
                        "message_type": "tool_call_message",
                        "tool_call": call,
                        "tool_calls": [call],
                        **common,
                    }
                )
                out.append(
                    {
                        "id": f"message-{step.data['id'][5:]}-{2 * n + 1:04d}",
                        "message_type": "tool_return_message",
                        "tool_return": "ok",
                        "status": "success",
                        "tool_call_id": call_id,
                        **common,
                        "name": name,
                    }
                )
        return out

    def tool_call_truth(self) -> tuple[Counter[tuple[str, str]], Counter[tuple[str, str]]]:
        """What the runs' messages show: (runs that called each tool, calls of each tool)
        by ``(agent_id, tool name)``, over the runs :meth:`truth` counts."""
        runs: Counter[tuple[str, str]] = Counter()
        calls: Counter[tuple[str, str]] = Counter()
        with self._lock:
            for run in self._finished_locked():
                names = [
                    call["tool_call"]["name"]
                    for call in self._messages_locked(run)
                    if call["message_type"] == "tool_call_message"
                ]
                for name in names:
                    calls[(run.agent_id, name)] += 1
                for name in dict.fromkeys(names):
                    runs[(run.agent_id, name)] += 1
        return runs, calls

    def _route_agents(self, q: _Query) -> _Resp:
        # list_agents: order-relative cursors on (created_at, id), default limit 50,
        # newest first. A client that is not letta-client 1.x and sends no
        # include_relationships gets every relationship (memory blocks, tools, ...).
        before, after = q.get_str("before"), q.get_str("after")
        limit = q.get_int("limit", 50)
        order = q.get_choice("order", ("asc", "desc"), "desc")
        bare = q.get_list("include_relationships") is not None
        q.raise_if_invalid()
        with self._lock:
            rows = sorted(
                ((created, agent_id, body) for agent_id, (created, body) in self._agents.items()),
                reverse=order == "desc",
            )
            keys = {agent_id: index for index, (_, agent_id, _) in enumerate(rows)}
            # An unknown cursor is ignored, as the real lookup finds no row to compare.
            if after is not None and after in keys:
                rows = rows[keys[after] + 1 :]
            if before is not None and before in keys:
                rows = rows[: keys[before]]
            page = [body if not bare else _bare_agent(body) for _, _, body in rows[:limit]]
        return _json_resp(200, page)

    def _route_tool(self, tool_id: str) -> _Resp:
        # ToolId path validator first (422), then ToolManager.get_tool_by_id_async, whose
        # ORM read raises NoResultFound -> 404 (the route's own "is None" check is dead).
        _check_path_id("tool_id", "tool", tool_id)
        with self._lock:
            tool = self._tools.get(tool_id)
            if tool is None:
                return _not_found("Tool", tool_id)
            return _json_resp(200, tool)

    def _route_step_metrics(self, step_id: str) -> _Resp:
        # StepId path validator (422), then StepMetrics ORM read: 404 both for an unknown
        # step and for a step without a step_metrics row.
        _check_path_id("step_id", "step", step_id)
        with self._lock:
            run, step = self._steps_by_id.get(step_id) or (None, None)
            if run is None or step is None or not run.visible or step.timings is None:
                return _not_found("StepMetrics", step_id)
            if not self._in_scope(run):
                return _not_found("StepMetrics", step_id)
            return _json_resp(200, _step_metrics_dict(step_id, run, step.timings))

    def _visible_run(self, run_id: str) -> _Run | None:
        run = self._runs.get(run_id)
        return run if run is not None and run.visible and self._in_scope(run) else None

    def _run_for_route(self, run_id: str) -> _Run:
        run = self._visible_run(run_id)
        if run is None:
            raise _HTTPError(_not_found("Run", run_id))
        return run

    def _route_list(self, q: _Query) -> _Resp:
        agent_id = q.get_str("agent_id")
        agent_ids = q.get_list("agent_ids")
        statuses = q.get_list("statuses")
        background = q.get_bool("background", None)
        stop_reason = q.get_choice("stop_reason", STOP_REASONS, None, enum=True)
        conversation_id = q.get_str("conversation_id")
        before = q.get_str("before")
        after = q.get_str("after")
        limit = q.get_int("limit", 100, ge=1, le=1000)
        order = q.get_choice("order", ("asc", "desc"), "desc")
        q.get_choice("order_by", ("created_at",), "created_at")
        active = q.get_bool("active", False)
        ascending_flag = q.get_bool("ascending", False)
        q.raise_if_invalid()
        if statuses is not None:
            for value in statuses:
                if value not in RUN_STATUSES:  # RunStatus(value) raising ValueError -> 400
                    return _detail(400, f"{value!r} is not a valid RunStatus")
        elif active:
            statuses = list(ACTIVE_STATUSES)  # active only applies without statuses
        ascending = True if ascending_flag else order == "asc"  # ascending overrides order
        if agent_id:
            agent_ids = [agent_id]  # agent_id replaces agent_ids
        now = self._clock()
        with self._lock:
            parts = self._list_locked(
                agent_ids=agent_ids,
                statuses=statuses,
                background=background,
                stop_reason=stop_reason,
                conversation_id=conversation_id,
                before=before,
                after=after,
                limit=min(limit, 1000),
                ascending=ascending,
                now=now,
            )
        return _Resp(200, b"[" + b",".join(parts) + b"]")

    def _route_active(self, q: _Query) -> _Resp:
        agent_id = q.get_str("agent_id")
        background = q.get_bool("background", None)
        q.raise_if_invalid()
        now = self._clock()
        with self._lock:
            parts = self._list_locked(
                agent_ids=[agent_id] if agent_id else None,
                statuses=list(ACTIVE_STATUSES),
                background=background,
                stop_reason=None,
                conversation_id=None,
                before=None,
                after=None,
                limit=_ACTIVE_ENDPOINT_LIMIT,
                ascending=False,
                now=now,
            )
        return _Resp(200, b"[" + b",".join(parts) + b"]")

    def _route_steps(self, run_id: str, q: _Query) -> _Resp:
        before = q.get_str("before")
        after = q.get_str("after")
        limit = q.get_int("limit", 100)
        order = q.get_choice("order", ("asc", "desc"), "desc")
        q.get_choice("order_by", ("created_at",), "created_at")
        q.raise_if_invalid()
        _check_run_id(run_id)
        with self._lock:
            run = self._run_for_route(run_id)
            self._materialise_lazy_steps(run)
            cursors: dict[str, _Step] = {}
            for name, cursor_id in (("before", before), ("after", after)):
                if cursor_id:
                    entry = self._steps_by_id.get(cursor_id)
                    if entry is None:
                        return _detail(404, f"No Step found with id {cursor_id}")
                    cursors[name] = entry[1]
            both = "before" in cursors and "after" in cursors
            if both and cursors["before"].us < cursors["after"].us:
                return _detail(400, "'before' reference must be later than 'after' reference")
            steps = sorted(run.steps, key=lambda s: (s.us, s.seq))
            ascending = order == "asc"
            if not ascending:
                steps.reverse()
            # SqlalchemyBase.list_async, checked against a real 0.16.8 server
            # (tests/test_realserver_fake_parity.py): after = the next page; before = the
            # rows before X in this order, taken from the *start* of the list (not the
            # page adjacent to X); both = the rows between them (after < key < before in
            # either order), 2 x limit fetched and the middle `limit` kept.
            position = {id(s): i for i, s in enumerate(steps)}
            lo, hi = 0, len(steps)
            if both and not ascending:
                lo = _step_boundary(steps, cursors["before"], position, ascending, after=True)
                hi = _step_boundary(steps, cursors["after"], position, ascending, after=False)
            else:
                if "after" in cursors:
                    lo = _step_boundary(steps, cursors["after"], position, ascending, after=True)
                if "before" in cursors:
                    hi = _step_boundary(steps, cursors["before"], position, ascending, after=False)
            window = steps[lo:hi]
            if limit <= 0:
                window = []
            elif both:
                window = window[: 2 * limit]
                if len(window) > limit:
                    start = max(0, len(window) // 2 - limit // 2)
                    window = window[start : start + limit]
            else:
                window = window[:limit]
            return _json_resp(200, [s.data for s in window])


_TIMING_FIELDS: Final = ("llm_request_ns", "tool_execution_ns", "step_ns")


def _step_boundary(
    steps: list[_Step],
    cursor: _Step,
    position: dict[int, int],
    ascending: bool,
    *,
    after: bool,
) -> int:
    """Index in ``steps`` (already in output order) just past / at the cursor."""
    if id(cursor) in position:
        index = position[id(cursor)]
        return index + 1 if after else index
    # A step of another run: compare keys, as the SQL does.
    key = (cursor.us, cursor.seq)

    def beyond(step: _Step) -> bool:
        step_key = (step.us, step.seq)
        return step_key > key if ascending else step_key < key

    for index, step in enumerate(steps):
        if beyond(step):
            return index
    return len(steps)


def _valid_path_id(value: str, primitive: str) -> bool:
    """What Letta's ``PATH_VALIDATORS[primitive]`` accepts: exactly ``<primitive>-<uuid4>``
    (fixed length, so a trailing newline that ``$`` would allow is refused too)."""
    pattern = _PATH_ID_RES[primitive]
    return len(value) == len(primitive) + 37 and pattern.match(value) is not None


def _check_path_id(param: str, primitive: str, value: str) -> None:
    """Path validation of ``ToolId``/``StepId`` parameters (``letta/validators.py``).

    pydantic reports a too-short, too-long or non-matching id; Letta's
    ``custom_request_validation_handler`` (``app.py``) rewrites all three into the same
    ``string_pattern_mismatch`` with a simplified message, keeps ``detail`` as the repr of
    the error list, and adds ``examples`` (from the validator factory, which has no
    ``examples`` attribute, hence the fixed placeholder uuid).
    """
    if _valid_path_id(value, primitive):
        return
    error = {
        "type": "string_pattern_mismatch",
        "loc": ("path", param),
        "msg": f"String should match pattern '{primitive}-{{uuid4}}'",
        "input": value,
        "ctx": {"pattern": _PATH_ID_RES[primitive].pattern},
    }
    raise _HTTPError(
        _json_resp(
            422,
            {
                "trace_id": "",
                "detail": repr([error]),
                "examples": [f"{primitive}-123e4567-e89b-42d3-8456-426614174000"],
            },
        )
    )


def _check_run_id(run_id: str) -> None:
    if not _RUN_ID_RE.match(run_id):
        raise _HTTPError(
            _detail(
                400,
                f"INVALID_ARGUMENT: Invalid run ID format: {run_id}. "
                "Expected format: 'run-<uuid4>'",
            )
        )


def _remove_sorted(rows: list[_Row], row: _Row) -> None:
    index = bisect.bisect_left(rows, _key(row), key=_key)
    if index < len(rows) and rows[index] is row:
        del rows[index]
        return
    rows.remove(row)  # defensive; keys are unique so this is never reached


_TOKEN_TYPES: Final = (
    ("input", "prompt_tokens"),
    ("output", "completion_tokens"),
    ("cached_input", "cached_input_tokens"),
    ("cache_write", "cache_write_tokens"),
    ("reasoning", "reasoning_tokens"),
)


def _lazy_tokens(spec: tuple[int, int, int, int]) -> list[tuple[int, int]]:
    """``(prompt_tokens, completion_tokens)`` of each step of a bulk run, oldest first:
    the one place that defines them, for /steps, /usage and the truths alike."""
    count, prompt, completion, _ = spec
    return [(prompt + 50 * index, completion) for index in range(count)]


def _lazy_totals(spec: tuple[int, int, int, int]) -> tuple[int, int]:
    """``sum(_lazy_tokens(spec))`` per field in closed form: truth over a million bulk runs
    should not build three million tuples."""
    count, prompt, completion, _ = spec
    return count * prompt + 25 * count * (count - 1), count * completion


def _step_model(handle: str) -> str:
    """The Step's ``model`` field for a model handle: the part after the provider."""
    return handle.partition("/")[2] or handle


def _tool_dict(tool_id: str, name: str, tool_type: str) -> dict[str, Any]:
    """A Tool as ``GET /v1/tools/{id}`` returns it: the 18 keys of the fixtures' tools in
    ``letta.schemas.tool.Tool`` declaration order."""
    builtin = tool_type.startswith("letta_")
    description = f"{name} (fake {tool_type} tool)."
    return {
        "id": tool_id,
        "tool_type": tool_type,
        "description": description,
        "source_type": "python",
        "name": name,
        "tags": [tool_type] if builtin else [],
        # Built-ins have no stored source (their schema comes from the module); custom
        # tools carry what the client uploaded.
        "source_code": None if builtin else f"def {name}() -> str:\n    return 'ok'\n",
        "json_schema": {
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": {}, "required": []},
        },
        "args_json_schema": None,
        "return_char_limit": _FUNCTION_RETURN_CHAR_LIMIT,
        "pip_requirements": None,
        "npm_requirements": None,
        "default_requires_approval": None,
        "enable_parallel_execution": False,  # schema default; only some built-ins are True
        "created_by_id": DEFAULT_USER_ID,
        "last_updated_by_id": DEFAULT_USER_ID,
        "metadata_": {},
        "project_id": None,
    }


def _step_metrics_dict(step_id: str, run: _Run, timings: _Timings) -> dict[str, Any]:
    """``letta.schemas.step_metrics.StepMetrics`` in declaration order (13 keys).

    ``StepManager.record_step_metrics_async`` writes only the three durations plus ids,
    so ``step_start_ns`` and ``llm_request_start_ns`` (ORM columns that the agent loop
    tracks in memory) are always null as served by 0.16.8; so are the provider and the
    cloud-only template/project ids on a self-hosted server.
    """
    llm_request_ns, tool_execution_ns, step_ns = timings
    return {
        "id": step_id,
        "organization_id": DEFAULT_ORG_ID,
        "provider_id": None,
        "run_id": run.sid,
        "agent_id": run.agent_id,
        "step_start_ns": None,
        "llm_request_start_ns": None,
        "llm_request_ns": llm_request_ns,
        "tool_execution_ns": tool_execution_ns,
        "step_ns": step_ns,
        "base_template_id": None,
        "template_id": None,
        "project_id": None,
    }


def _step_dict(
    step_id: str,
    run: _Run,
    *,
    model: str,
    prompt_tokens: int,
    completion_tokens: int,
    cached_input_tokens: int | None,
    cache_write_tokens: int | None,
    reasoning_tokens: int | None,
    status: str,
    stop_reason: str | None,
    trace_id: str | None,
) -> dict[str, Any]:
    """A Step as ``/v1/runs/{id}/steps`` returns it (31 keys, fixture key order)."""
    provider = model.partition("/")[0]
    has_cache = bool(cached_input_tokens) or bool(cache_write_tokens)
    return {
        "id": step_id,
        "origin": None,
        "organization_id": DEFAULT_ORG_ID,
        "provider_id": None,
        "run_id": run.sid,
        "agent_id": run.agent_id,
        "provider_name": "openai" if provider.startswith("openai") else provider,
        "provider_category": "base",
        "model": _step_model(model),
        "model_handle": model,
        "model_endpoint": "https://api.openai.com/v1",
        "context_window_limit": 30000,
        "completion_tokens": completion_tokens,
        "prompt_tokens": prompt_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "cached_input_tokens": cached_input_tokens,
        "cache_write_tokens": cache_write_tokens,
        "reasoning_tokens": reasoning_tokens,
        "completion_tokens_details": (
            {"reasoning_tokens": reasoning_tokens} if reasoning_tokens is not None else None
        ),
        "prompt_tokens_details": (
            {
                "cached_tokens": cached_input_tokens or 0,
                "cache_read_tokens": cached_input_tokens or 0,
                "cache_creation_tokens": cache_write_tokens or 0,
            }
            if has_cache
            else None
        ),
        "stop_reason": stop_reason,
        "tags": [],
        "tid": None,
        "trace_id": trace_id,
        "request_id": None,
        "messages": [],
        "feedback": None,
        "project_id": None,
        "error_type": None,
        "error_data": None,
        "status": status,
    }


# Route table. "active" must win over "{run_id}" (declared first in runs.py).
_ROUTE_METHODS: Final[dict[str, frozenset[str]]] = {
    "health": frozenset({"GET"}),
    "list": frozenset({"GET"}),
    "active": frozenset({"GET"}),
    "run": frozenset({"GET", "DELETE"}),
    "messages": frozenset({"GET"}),
    "usage": frozenset({"GET"}),
    "metrics": frozenset({"GET"}),
    "steps": frozenset({"GET"}),
    "trace": frozenset({"GET"}),
    # Only the read an exporter makes; the real tools router also has PATCH and DELETE
    # on /{tool_id} (and list/count routes that the fake does not model).
    "tool": frozenset({"GET"}),
    "step_metrics": frozenset({"GET"}),
    # Only the list an exporter reads; the real agents router has many more routes.
    "agents": frozenset({"GET"}),
}
_SUBROUTES: Final = frozenset({"messages", "usage", "metrics", "steps", "trace"})


def _load_agent_template() -> dict[str, Any]:
    path = Path(__file__).parent / "fixtures" / "letta-0.16.8" / "agents" / "alpha.json"
    return dict(json.loads(path.read_text()))


_AGENT_TEMPLATE: Final = _load_agent_template()
_RELATIONSHIPS: Final = {
    "tags": [],
    "tools": [],
    "sources": [],
    "blocks": [],
    "identity_ids": [],
    "identities": [],
    "multi_agent_group": None,
    "managed_group": None,
    "tool_exec_environment_variables": [],
    "secrets": [],
}


def _bare_agent(body: dict[str, Any]) -> dict[str, Any]:
    """An agent without relationships, as with ``include_relationships`` given."""
    bare = dict(body, **_RELATIONSHIPS)
    bare["memory"] = dict(body["memory"], blocks=[], file_blocks=[])
    return bare


def _match_route(path: str) -> tuple[str, str | None] | None:
    """``(route, path id)`` for a path under ``/v1``; None when nothing matches (404)."""
    if path == "/v1/health/":
        return "health", None
    if path == "/v1/runs/":
        return "list", None
    if path == "/v1/runs/active":
        return "active", None
    if path == "/v1/agents/":
        return "agents", None
    if path.startswith("/v1/tools/"):  # tools router: GET /{tool_id}
        rest = path[len("/v1/tools/") :]
        return ("tool", rest) if rest and "/" not in rest else None
    if path.startswith("/v1/steps/"):  # steps router: GET /{step_id}/metrics
        parts = path[len("/v1/steps/") :].split("/")
        if len(parts) == 2 and parts[0] and parts[1] == "metrics":
            return "step_metrics", parts[0]
        return None
    if not path.startswith("/v1/runs/"):
        return None
    parts = path[len("/v1/runs/") :].split("/")
    if len(parts) == 1 and parts[0]:
        return "run", parts[0]
    if len(parts) == 2 and parts[0] and parts[1] in _SUBROUTES:
        return parts[1], parts[0]
    return None


# --------------------------------------------------------------------------------------
# HTTP server
# --------------------------------------------------------------------------------------

_date_cache: tuple[int, str] = (0, "")


def _http_date() -> str:
    """The ``Date`` header value, formatted once per second rather than per response."""
    global _date_cache
    now = int(time.time())
    second, text = _date_cache
    if second != now:
        text = email.utils.formatdate(now, usegmt=True)
        _date_cache = (now, text)
    return text


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer that keeps track of its connections so stop() can end them.

    Keep-alive handler threads otherwise sit in ``readline`` forever; shutting their
    sockets down makes them return, so no thread or socket outlives ``stop()``.
    """

    daemon_threads = True
    block_on_close = False
    request_queue_size = 128  # benchmarks open many connections at once

    def __init__(self, address: tuple[str, int], handler: type[_Handler], fake: FakeLetta) -> None:
        super().__init__(address, handler)
        self.fake = fake
        self._conn_lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._conn_threads: set[threading.Thread] = set()
        self._reset_sockets: set[socket.socket] = set()

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self._serve_connection,
            args=(request, client_address),
            name=f"{self.fake.name}-conn",
            daemon=True,
        )
        with self._conn_lock:
            self._connections.add(request)
            # Threads stay listed until they are dead (a thread that removed itself could
            # still be running when stop() looks), so prune finished ones here instead.
            self._conn_threads = {t for t in self._conn_threads if t.is_alive()}
            self._conn_threads.add(thread)
        thread.start()

    def _serve_connection(self, request: socket.socket, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            with self._conn_lock:
                self._connections.discard(request)
            self.shutdown_request(request)

    def mark_for_reset(self, sock: socket.socket) -> None:
        # Linger 0 + close without a prior FIN makes the kernel send a RST.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with self._conn_lock:
            self._reset_sockets.add(sock)

    def shutdown_request(self, request: Any) -> None:
        with self._conn_lock:
            reset = request in self._reset_sockets
            self._reset_sockets.discard(request)
        if reset:
            self.close_request(request)
        else:
            super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up mid-response (faults, timeouts) are expected: stay quiet.
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError | ValueError):
            return
        super().handle_error(request, client_address)

    def close_all_connections(self) -> None:
        with self._conn_lock:
            sockets = list(self._connections)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def join_connection_threads(self, timeout: float) -> None:
        # Called after shutdown(): no new connection threads can appear any more.
        deadline = time.monotonic() + timeout
        with self._conn_lock:
            threads = list(self._conn_threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without TCP_NODELAY, Nagle + delayed ACK
        # add ~40 ms to every small response (uvicorn sets it too).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def version_string(self) -> str:
        return "uvicorn"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # tests and benchmarks do not want one line per request on stderr

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    # ------------------------------------------------------------------

    def _handle(self, method: str) -> None:
        fake = self.server.fake
        try:
            length = int(self.headers.get("content-length") or 0)
            if length > 0:
                self.rfile.read(length)  # drain the body so keep-alive stays in sync
            split = urlsplit(self.path)
            path, raw_query = split.path, split.query
            query = parse_qs(raw_query, keep_blank_values=True)
            wait_ms = fake._over_budget()
            if wait_ms is not None:
                fake._record(method, path, query, 429)
                throttled = _FAULT_RESPONSES["429"]
                self._send(_Resp(429, throttled.body, headers=(("retry-after-ms", str(wait_ms)),)))
                return
            fault = fake._take_fault(path)
            if fault is not None and self._serve_fault(fault, method, path, raw_query, query):
                return
            resp = self._compute(method, path, raw_query, query)
            if fault is None or fault.kind != "timeout":
                fake._record(method, path, query, resp.status)
            self._send(resp)
        except OSError:
            self.close_connection = True  # the client went away; nothing left to do

    def _compute(
        self,
        method: str,
        path: str,
        raw_query: str,
        query: dict[str, list[str]] | None = None,
    ) -> _Resp:
        fake = self.server.fake
        host = self.headers.get("host") or f"{fake._host}:{fake.port}"
        try:
            # The query dict is only read by the routes, never changed, so one parse
            # serves both the request log and the dispatch.
            return fake._dispatch(method, path, raw_query, self.headers, host, query)
        except Exception:  # a bug in the fake must not take the server down
            return _detail(500, "An unknown error occurred")

    def _send(self, resp: _Resp, body: bytes | None = None) -> None:
        # The same bytes as send_response/send_header/end_headers plus a body write, but
        # in one sendall: two small writes cost a second syscall and a second segment
        # per response, the largest share of the fake's CPU per request.
        payload = resp.body if body is None else body
        status = resp.status
        reason = self.responses[status][0] if status in self.responses else ""
        lines = [
            f"{self.protocol_version} {status} {reason}",
            f"Server: {self.version_string()}",
            f"Date: {_http_date()}",
        ]
        if resp.content_type is not None:
            lines.append(f"content-type: {resp.content_type}")
        lines.append(f"content-length: {len(resp.body)}")
        lines.extend(f"{name}: {value}" for name, value in resp.headers)
        lines.append("\r\n")
        self.log_request(status)
        self.wfile.write("\r\n".join(lines).encode("latin-1", "strict") + payload)

    def _serve_fault(
        self,
        fault: _Fault,
        method: str,
        path: str,
        raw_query: str,
        query: dict[str, list[str]],
    ) -> bool:
        """Answer according to ``fault``. Returns False when the request should then be
        answered normally (``timeout`` that ran out its delay)."""
        fake = self.server.fake
        stopping = fake._stopping
        kind = fault.kind
        if kind in _FAULT_RESPONSES:
            resp = _FAULT_RESPONSES[kind]
            extra: tuple[tuple[str, str], ...] = ()
            if fault.retry_after is not None:
                extra += (("retry-after", str(fault.retry_after)),)
            if fault.retry_after_ms is not None:
                extra += (("retry-after-ms", str(fault.retry_after_ms)),)
            resp = _Resp(resp.status, resp.body, resp.content_type, extra)
            fake._record(method, path, query, resp.status)
            self._send(resp)
            return True
        if kind == "timeout":
            fake._record(method, path, query, 0)
            delay = 30.0 if fault.delay is None else fault.delay
            if stopping.wait(delay):
                self.close_connection = True
                return True
            return False  # answer normally, long after the client gave up
        if kind == "hang":
            fake._record(method, path, query, 0)
            stopping.wait()
            self.close_connection = True
            return True
        if kind == "reset":
            fake._record(method, path, query, 0)
            self.server.mark_for_reset(self.connection)
            self.close_connection = True
            return True
        if kind == "garbage":
            fake._record(method, path, query, 200)
            self._send(_Resp(200, b"<!DOCTYPE html><html><body>not json {[</body></html>"))
            return True
        self.close_connection = True
        if kind == "truncated":
            resp = self._compute(method, path, raw_query)
            fake._record(method, path, query, resp.status)
            self._send(resp, body=resp.body[: len(resp.body) // 2])
            return True
        if kind == "endless":
            fake._record(method, path, query, 200)
            self._send_endless(stopping)
            return True
        if kind == "huge":
            fake._record(method, path, query, 200)
            self._send_huge(fault.size)
            return True
        raise AssertionError(kind)

    def _send_endless(self, stopping: threading.Event) -> None:
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        self.wfile.write(b"1\r\n[\r\n")
        item = _SAMPLE_RUN + b","
        chunk = item * 64
        frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
        # Runs until the client disconnects (write raises) or stop() shuts the socket.
        while not stopping.is_set():
            self.wfile.write(frame)

    def _send_huge(self, size: int) -> None:
        item = _SAMPLE_RUN
        count = max(1, (size - 2) // (len(item) + 1))
        total = 2 + count * len(item) + (count - 1)
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(total))
        self.end_headers()
        self.wfile.write(b"[" + item)
        batch = 1000
        block = (b"," + item) * batch
        remaining = count - 1
        while remaining >= batch:
            self.wfile.write(block)
            remaining -= batch
        self.wfile.write((b"," + item) * remaining + b"]")


_FAULT_RESPONSES: Final[dict[str, _Resp]] = {
    "500": _Resp(500, b'{"detail":"An unknown error occurred"}'),
    "502": _Resp(
        502,
        b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
        b"<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n",
        "text/html",
    ),
    "503": _Resp(503, b'{"detail":"Service temporarily unavailable"}'),
    "429": _Resp(429, b'{"detail":"Too Many Requests"}'),
    "408": _Resp(408, b'{"detail":"Request Timeout"}'),
    "409": _Resp(409, b'{"detail":"Database lock conflict, please retry"}'),
}

# One realistic Run used as filler by the "endless" and "huge" faults.
_SAMPLE_RUN: Final = (
    b'{"id":"run-9721adf5-473f-445b-8263-3318cd6e7a1b","status":"completed",'
    b'"created_at":"2026-11-23T12:00:40.780790Z","completed_at":"2026-11-23T12:00:41.423574",'
    b'"agent_id":"agent-4d0e970e-e87f-4399-be4e-e59a14d631e3","conversation_id":null,'
    b'"base_template_id":null,"background":false,"metadata":{"run_type":"send_message"},'
    b'"request_config":' + _REQUEST_CONFIG_JSON.encode() + b',"stop_reason":"end_turn",'
    b'"callback_url":null,"callback_sent_at":null,"callback_status_code":null,'
    b'"callback_error":null,"ttft_ns":null,"total_duration_ns":713351168}'
)


# --------------------------------------------------------------------------------------
# CLI: python -m tests.fake_letta --port 0 --bulk 1000000
# --------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Serve a fake Letta in this process until SIGTERM/SIGINT.

    Prints ``READY http://127.0.0.1:PORT`` on stdout once the socket accepts requests.
    """
    parser = argparse.ArgumentParser(prog="python -m tests.fake_letta", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--bulk", type=int, default=0, help="number of terminal runs to preload")
    parser.add_argument("--agents", type=int, default=10, help="agents the bulk runs belong to")
    parser.add_argument("--spacing-s", type=float, default=0.01, help="created_at spacing")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--semantics",
        choices=("letta-0.16.8", "conventional", "relative"),
        default="letta-0.16.8",
    )
    parser.add_argument("--backend", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument(
        "--unknown-cursor", choices=("404", "ignore"), default=None, help="see FakeLetta"
    )
    parser.add_argument("--password", default=None, help="enable secure mode (§1.2)")
    args = parser.parse_args(argv)

    fake = FakeLetta(
        semantics=args.semantics,
        backend=args.backend,
        unknown_cursor=args.unknown_cursor,
        password=args.password,
        host=args.host,
        port=args.port,
    )
    if args.bulk:
        started = time.perf_counter()
        fake.bulk_load(args.bulk, agents=args.agents, spacing_s=args.spacing_s, seed=args.seed)
        elapsed = time.perf_counter() - started
        print(f"loaded {args.bulk} runs in {elapsed:.2f} s", file=sys.stderr, flush=True)

    stop = threading.Event()

    def _on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    fake.start()
    print(f"READY {fake.base_url}", flush=True)
    try:
        while not stop.wait(0.2):  # short waits so the signal handler gets to run
            pass
    finally:
        fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
