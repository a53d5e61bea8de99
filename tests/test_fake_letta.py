"""Proof that tests/fake_letta.py reproduces the real Letta 0.16.8 runs API.

Most checks replay the captured responses in the fixtures directory: the 29 real runs are
loaded into a fake with their real ids, timestamps, steps and metrics, and then the fake
must return the same JSON for the same URLs (list filters, pagination walks, single-run
endpoints, error bodies). The rest covers behaviours the fixtures cannot show directly
(SQLite cursor bug, late commits, deletes, metrics delay, fault injection).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pydantic
import pytest

from tests.fake_letta.constants import Backend, Semantics
from tests.fake_letta.fake import FakeLetta

REPO_ROOT = Path(__file__).resolve().parent.parent


def _fixture_dir() -> Path:
    for candidate in (
        os.environ.get("LETTA_FIXTURES"),
        str(Path(__file__).parent / "fixtures" / "letta-0.16.8"),
        "/work/shared/fixtures/letta-0.16.8",
    ):
        if candidate and (Path(candidate) / "index.json").is_file():
            return Path(candidate)
    raise FileNotFoundError("Letta 0.16.8 fixtures not found (tests/fixtures/letta-0.16.8)")


FIXTURES = _fixture_dir()
INDEX: list[dict[str, Any]] = json.loads((FIXTURES / "index.json").read_text())
SCENARIOS: dict[str, dict[str, Any]] = json.loads((FIXTURES / "scenarios.json").read_text())[
    "scenarios"
]
USER_ID_UNKNOWN = "user-3f1c2a4b-9d8e-4f70-8a6b-1c2d3e4f5a6b"
STEP_PARAMS = frozenset(
    {
        "prompt_tokens",
        "completion_tokens",
        "cached_input_tokens",
        "cache_write_tokens",
        "reasoning_tokens",
        "status",
        "stop_reason",
        "trace_id",
    }
)


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def index_entry(name: str) -> dict[str, Any]:
    return next(entry for entry in INDEX if entry["file"] == name)


def load_fixture_world(fake: FakeLetta) -> None:
    """Recreate the 29 captured runs with their steps, metrics and callbacks."""
    by_run_id = {scenario["run_id"]: name for name, scenario in SCENARIOS.items()}
    for run in reversed(fixture("list/runs_order_desc.json")):  # oldest first
        metadata = dict(run["metadata"])
        fake.create_run(
            run["agent_id"],
            run_id=run["id"],
            created_at=run["created_at"],
            background=run["background"],
            run_type=metadata.pop("run_type"),
            conversation_id=run["conversation_id"],
            callback_url=run["callback_url"],
            metadata=metadata,
        )
        scenario = by_run_id[run["id"]]
        tools = fixture(f"runs/{scenario}/metrics.json")["tools_used"] or []
        for position, step in enumerate(reversed(fixture(f"runs/{scenario}/steps.json"))):
            params = {key: step[key] for key in STEP_PARAMS}
            skip = STEP_PARAMS | {"id", "run_id", "agent_id", "model", "model_handle"}
            overrides = {key: value for key, value in step.items() if key not in skip}
            fake.add_step(
                run["id"],
                model=step["model_handle"],
                step_id=step["id"],
                tool_ids=tools if position == 0 else (),
                **params,
                **overrides,
            )
        fake.update_run(
            run["id"],
            status=run["status"],
            stop_reason=run["stop_reason"],
            completed_at=run["completed_at"],
            run_ns=run["total_duration_ns"],
        )
        if run["callback_sent_at"] is not None:
            fake.set_callback(
                run["id"],
                run["callback_status_code"],
                run["callback_error"],
                sent_at=run["callback_sent_at"],
            )


class ManualClock:
    """A clock the test moves by hand."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


_SHARED: set[str] = set()  # thread-name prefixes of module-scoped fakes


def fake_threads(prefix: str = "fake-letta-") -> list[threading.Thread]:
    """Live threads started by FakeLetta instances, minus those of shared fakes."""
    return [
        thread
        for thread in threading.enumerate()
        if thread.name.startswith(prefix)
        and not any(thread.name.startswith(shared + "-") for shared in _SHARED)
    ]


@pytest.fixture(autouse=True)
def no_leftover_threads() -> Iterator[None]:
    """Every test must leave no server or connection thread of its own fakes behind."""
    yield
    assert fake_threads() == []


@pytest.fixture(scope="module")
def world() -> Iterator[FakeLetta]:
    """The captured fixture world, served read-only for the whole module."""
    with FakeLetta(semantics="letta-0.16.8", backend="postgres") as fake:
        _SHARED.add(fake.name)
        load_fixture_world(fake)
        yield fake
    _SHARED.discard(fake.name)
    assert fake_threads(fake.name + "-") == []


@pytest.fixture(scope="module")
def client(world: FakeLetta) -> Iterator[httpx.Client]:
    with connect(world.base_url, timeout=5.0) as http:
        yield http


@pytest.fixture
def fake() -> Iterator[FakeLetta]:
    with FakeLetta() as instance:
        yield instance


@pytest.fixture
def http(fake: FakeLetta) -> Iterator[httpx.Client]:
    with connect(fake.base_url, timeout=5.0) as session:
        yield session


@functools.cache
def _tls_context() -> ssl.SSLContext:
    return ssl.create_default_context()


def connect(base_url: str, timeout: float = 5.0) -> httpx.Client:
    """An httpx client for a fake. Sharing one TLS context (never used on plain http)
    saves the ~40 ms httpx spends loading CA certificates for every new client."""
    return httpx.Client(base_url=base_url, timeout=timeout, verify=_tls_context())


def ids_of(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()]


# --------------------------------------------------------------------------------------
# Captured responses, replayed
# --------------------------------------------------------------------------------------

LIST_FIXTURES = [
    entry
    for entry in INDEX
    if entry["file"].startswith(("list/", "pagination/"))
    and entry["file"] != "pagination/summary.json"
]


@pytest.mark.parametrize("entry", LIST_FIXTURES, ids=lambda e: e["file"])
def test_list_responses_equal_fixtures(client: httpx.Client, entry: dict[str, Any]) -> None:
    response = client.get(entry["url"])
    assert response.status_code == entry["status"]
    assert response.json() == fixture(entry["file"])


def test_list_bytes_are_fastapi_compact_json(client: httpx.Client) -> None:
    response = client.get("/v1/runs/", params={"order": "desc"})
    expected = fixture("list/runs_order_desc.json")
    assert response.headers["content-type"] == "application/json"
    compact = json.dumps(expected, ensure_ascii=False, separators=(",", ":")).encode()
    assert response.content == compact  # same key order, separators and timestamp text
    assert all(len(run) == 17 for run in response.json())


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_single_run_endpoints_equal_fixtures(client: httpx.Client, scenario: str) -> None:
    run_id = SCENARIOS[scenario]["run_id"]
    run = client.get(f"/v1/runs/{run_id}")
    assert run.json() == fixture(f"runs/{scenario}/run.json")
    assert run.json()["total_duration_ns"] is None  # GET one never has it (§3.3)
    assert client.get(f"/v1/runs/{run_id}/usage").json() == fixture(f"runs/{scenario}/usage.json")
    assert client.get(f"/v1/runs/{run_id}/steps").json() == fixture(f"runs/{scenario}/steps.json")
    metrics = client.get(f"/v1/runs/{run_id}/metrics").json()
    expected = fixture(f"runs/{scenario}/metrics.json")
    assert list(metrics) == list(expected)
    # run_start_ns is taken a few ms after created_at by the real server; the fake uses
    # created_at itself, so only its type is comparable.
    assert isinstance(metrics.pop("run_start_ns"), int)
    expected.pop("run_start_ns")
    assert metrics == expected


@pytest.mark.parametrize(
    "name",
    [
        "runs/sync_multi_step/steps_order_asc.json",
        "runs/sync_multi_step/steps_limit1.json",
        "runs/sync_multi_step/trace.json",
        "runs/sync_end_turn/trace.json",
    ],
)
def test_step_and_trace_variants_equal_fixtures(client: httpx.Client, name: str) -> None:
    entry = index_entry(name)
    response = client.get(entry["url"])
    assert response.status_code == entry["status"]
    assert response.json() == fixture(name)


ERROR_FIXTURES = [entry for entry in INDEX if entry["file"].startswith("errors/")]
ERROR_HEADERS = {
    "errors/list_malformed_user_id_header.json": {"user_id": "nobody"},
    "errors/list_unknown_user_id_header.json": {"user_id": USER_ID_UNKNOWN},
    "errors/list_bearer_ignored_when_not_secure.json": {"authorization": "Bearer nope"},
}


@pytest.mark.parametrize("entry", ERROR_FIXTURES, ids=lambda e: e["file"])
def test_error_bodies_equal_fixtures(client: httpx.Client, entry: dict[str, Any]) -> None:
    response = client.get(entry["url"], headers=ERROR_HEADERS.get(entry["file"], {}))
    assert response.status_code == entry["status"]
    assert response.json() == fixture(entry["file"])
    body = response.json()
    if response.status_code == 422:
        assert list(body) == ["trace_id", "detail"] and isinstance(body["detail"], str)
    elif response.status_code in (400, 404, 501):
        assert list(body) == ["detail"]


def test_pagination_walks_equal_summary(client: httpx.Client) -> None:
    summary = fixture("pagination/summary.json")
    assert ids_of(client.get("/v1/runs/", params={"limit": 1000})) == summary["all_ids_desc"]
    for name, walk in summary["walks"].items():
        assert len(walk["pages"]) == walk["n_requests"], name
        for page in walk["pages"]:
            got = ids_of(client.get("/v1/runs/", params=page["query"]))
            assert got == page["ids"], (name, page["query"])


@pytest.mark.parametrize(
    "entry",
    [e for e in INDEX if e["file"].startswith("auth/")],
    ids=lambda e: e["file"],
)
def test_password_mode_equals_fixtures(entry: dict[str, Any]) -> None:
    headers = {
        "auth/list_bearer_ok.json": {"authorization": "Bearer s3cret"},
        "auth/list_wrong_bearer_401.json": {"authorization": "Bearer wrong"},
        "auth/list_x_bare_password_ok.json": {"x-bare-password": "password s3cret"},
    }.get(entry["file"], {})
    with FakeLetta(password="s3cret") as secure:
        load_fixture_world(secure)
        with connect(secure.base_url) as http:
            response = http.get(entry["url"], headers=headers)
    assert response.status_code == entry["status"]
    assert response.json() == fixture(entry["file"])


# --------------------------------------------------------------------------------------
# Cursor semantics
# --------------------------------------------------------------------------------------


def make_ten_rows(fake: FakeLetta) -> list[str]:
    """Rows 0 (oldest) … 9 (newest) with shared timestamps, as in §4.2."""
    run_ids = sorted(f"run-{uuid.uuid4()}" for _ in range(10))
    stamps = [0.0, 0.0, 1.0, 1.0, 1.0, 2.5, 2.5, 3.0, 3.0, 3.0]
    for run_id, offset in zip(run_ids, stamps, strict=True):
        fake.create_run(
            "agent-4d0e970e-e87f-4399-be4e-e59a14d631e3",
            run_id=run_id,
            created_at=1_800_000_000.0 + offset,
            status="completed",
        )
    return run_ids


def rows_for(http: httpx.Client, run_ids: list[str], **params: Any) -> list[int]:
    for key in ("before", "after"):
        if key in params:
            params[key] = run_ids[params[key]]
    return [run_ids.index(i) for i in ids_of(http.get("/v1/runs/", params=params))]


def test_ten_row_example_letta_semantics(fake: FakeLetta, http: httpx.Client) -> None:
    rows = make_ten_rows(fake)
    assert rows_for(http, rows, order="asc", limit=3) == [0, 1, 2]
    assert rows_for(http, rows, order="asc", limit=3, after=2) == [0, 1]
    assert rows_for(http, rows, order="asc", limit=3, before=2) == [3, 4, 5]
    assert rows_for(http, rows, order="desc", limit=3) == [9, 8, 7]
    assert rows_for(http, rows, order="desc", limit=3, before=7) == [6, 5, 4]
    assert rows_for(http, rows, order="desc", limit=3, after=7) == [9, 8]
    # "after" starts from the head of the list, not next to the cursor
    assert rows_for(http, rows, order="asc", limit=3, after=7) == [0, 1, 2]
    # the probe of §4.3: [A, B] = asc limit 2, then asc&limit=1&after=A gives []
    assert rows_for(http, rows, order="asc", limit=1, after=0) == []
    assert rows_for(http, rows, order="asc", limit=1, before=0) == [1]
    # both cursors: both conditions apply
    assert rows_for(http, rows, order="asc", limit=10, before=2, after=7) == [3, 4, 5, 6]


def test_ten_row_example_conventional_semantics() -> None:
    with FakeLetta(semantics="conventional") as fake, connect(fake.base_url) as http:
        rows = make_ten_rows(fake)
        assert rows_for(http, rows, order="asc", limit=3) == [0, 1, 2]
        assert rows_for(http, rows, order="asc", limit=3, after=2) == [3, 4, 5]  # next page
        assert rows_for(http, rows, order="asc", limit=3, before=2) == [0, 1]
        assert rows_for(http, rows, order="desc", limit=3, before=7) == [6, 5, 4]  # next page
        assert rows_for(http, rows, order="desc", limit=3, after=7) == [9, 8]
        # previous pages are the rows adjacent to the cursor, not the head of the list
        assert rows_for(http, rows, order="asc", limit=3, before=7) == [4, 5, 6]
        assert rows_for(http, rows, order="desc", limit=3, after=2) == [5, 4, 3]
        assert rows_for(http, rows, order="asc", limit=10, after=2, before=7) == [3, 4, 5, 6]
        assert rows_for(http, rows, order="desc", limit=10, after=2, before=7) == [6, 5, 4, 3]
        # the probe of §4.3: [A, B] = asc limit 2, then asc&limit=1&after=A gives [B]
        assert rows_for(http, rows, order="asc", limit=1, after=0) == [1]


def test_desc_before_walk_is_semantics_proof() -> None:
    options: tuple[Semantics, ...] = ("letta-0.16.8", "conventional")
    for semantics in options:
        with FakeLetta(semantics=semantics) as fake, connect(fake.base_url) as http:
            rows = make_ten_rows(fake)
            walked: list[int] = []
            params: dict[str, Any] = {"order": "desc", "limit": 4}
            while page := rows_for(http, rows, **params):
                walked += page
                params["before"] = page[-1]
            assert walked == list(range(9, -1, -1)), semantics


def test_unknown_malformed_and_deleted_cursor_restart_from_head(
    fake: FakeLetta, http: httpx.Client
) -> None:
    rows = make_ten_rows(fake)
    head_desc = rows_for(http, rows, limit=3)
    head_asc = rows_for(http, rows, limit=3, order="asc")
    for cursor in ("run-00000000-0000-4000-8000-000000000000", "not-a-run-id"):
        for param in ("before", "after"):
            got = [
                rows.index(i)
                for i in ids_of(http.get("/v1/runs/", params={param: cursor, "limit": 3}))
            ]
            assert got == head_desc
    fake.delete_run(rows[5])
    restarted = ids_of(
        http.get("/v1/runs/", params={"order": "asc", "before": rows[5], "limit": 3})
    )
    assert [rows.index(i) for i in restarted] == head_asc  # silently restarted (§4.4)


def test_sqlite_backend_skips_and_repeats_within_the_cursor_second() -> None:
    second = 1_800_000_000
    layout = {
        "p2": second - 1 + 0.2,
        "p6": second - 1 + 0.6,
        "c1": second + 0.1,
        "c3": second + 0.3,
        "c5": second + 0.5,
        "c7": second + 0.7,
        "c9": second + 0.9,
        "n4": second + 1 + 0.4,
        "n8": second + 1 + 0.8,
    }
    results: dict[str, dict[str, list[str]]] = {}
    backends: tuple[Backend, ...] = ("postgres", "sqlite")
    for backend in backends:
        with FakeLetta(backend=backend) as fake, connect(fake.base_url) as http:
            names = {
                fake.create_run(created_at=ts, status="completed"): name
                for name, ts in layout.items()
            }
            cursor = next(run_id for run_id, name in names.items() if name == "c5")

            def names_of(**params: Any) -> list[str]:
                return [names[i] for i in ids_of(http.get("/v1/runs/", params=params))]  # noqa: B023

            results[backend] = {
                "desc_before": names_of(order="desc", before=cursor, limit=20),
                "asc_before": names_of(order="asc", before=cursor, limit=20),
                "created_at": [http.get("/v1/runs/", params={"limit": 1}).json()[0]["created_at"]],
            }
            # With `limit` or more runs in one second, asc + before=<last> never moves on.
            first = names_of(order="asc", limit=2)
            last = next(r for r, n in names.items() if n == first[-1])
            results[backend]["asc_next"] = names_of(order="asc", limit=2, before=last)
    pg, lite = results["postgres"], results["sqlite"]
    assert pg["desc_before"] == ["c3", "c1", "p6", "p2"]
    assert lite["desc_before"] == ["p6", "p2"]  # rows earlier in the cursor's second skipped
    assert pg["asc_before"] == ["c7", "c9", "n4", "n8"]
    assert lite["asc_before"] == ["c1", "c3", "c5", "c7", "c9", "n4", "n8"]  # whole second again
    assert pg["asc_next"] == ["c1", "c3"]
    assert lite["asc_next"] == ["p2", "p6"]  # the same page again: the loop of §4.5
    assert pg["created_at"][0].endswith("Z")
    assert not lite["created_at"][0].endswith("Z")  # SQLite returns naive timestamps


# --------------------------------------------------------------------------------------
# Routing, validation
# --------------------------------------------------------------------------------------


def test_redirects_to_trailing_slash_and_keeps_query(
    client: httpx.Client, world: FakeLetta
) -> None:
    response = client.get("/v1/runs?limit=2&order=asc")
    assert response.status_code == 307
    assert response.content == b""
    assert response.headers["location"] == f"{world.base_url}/v1/runs/?limit=2&order=asc"
    followed = client.get("/v1/runs?limit=2&order=asc", follow_redirects=True)
    assert followed.json() == fixture("pagination/asc_limit2_after_page1.json")
    assert client.get("/v1/health").status_code == 307
    assert client.get("/v1/health/").json() == fixture("server/health.json")
    assert client.get("/v1/nothing").status_code == 404
    assert client.post("/v1/runs/").status_code == 405
    assert client.get("/latest/runs/?limit=1").json() == fixture("auth/list_bearer_ok.json")


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "1.5"},
        {"limit": "1.0"},
        {"limit": " 7 "},
        {"limit": "1_000"},
        {"limit": "-3"},
        {"limit": "1001"},
        {"limit": ""},
        {"active": "yes"},
        {"active": "TRUE"},
        {"active": "2"},
        {"background": "off"},
        {"ascending": "maybe"},
        {"order": "ASC"},
        {"stop_reason": "end_turn"},
        {"stop_reason": "paused"},
        {"order_by": "created_at"},
    ],
)
def test_query_validation_matches_pydantic(client: httpx.Client, params: dict[str, str]) -> None:
    from typing import Annotated, Literal

    stop_reasons = Literal[
        "end_turn", "error", "llm_api_error", "invalid_llm_response", "invalid_tool_call",
        "max_steps", "max_tokens_exceeded", "no_tool_call", "tool_rule", "cancelled",
        "insufficient_credits", "requires_approval", "context_window_overflow_in_system_prompt",
    ]  # fmt: skip
    types: dict[str, Any] = {
        "limit": Annotated[int, pydantic.Field(ge=1, le=1000)],
        "active": bool,
        "background": bool,
        "ascending": bool,
        "order": Literal["asc", "desc"],
        "order_by": Literal["created_at"],
        "stop_reason": stop_reasons,
    }
    ((name, value),) = params.items()
    try:
        pydantic.TypeAdapter(types[name]).validate_python(value)
        expected: list[dict[str, Any]] = []
    except pydantic.ValidationError as exc:
        expected = exc.errors(include_url=False)
        for error in expected:
            error["loc"] = ("query", name)
            if error["type"] == "literal_error" and name == "stop_reason":
                error["type"] = "enum"  # StopReasonType is an Enum, not a Literal
    response = client.get("/v1/runs/", params=params)
    if expected:
        assert response.status_code == 422
        assert response.json() == {"trace_id": "", "detail": str(expected)}
    else:
        assert response.status_code == 200


def test_list_filters(client: httpx.Client) -> None:
    every = fixture("list/runs_order_desc.json")
    gamma = "agent-2be3999f-6e8a-4a56-a3ab-a3730e499899"
    alpha = "agent-4d0e970e-e87f-4399-be4e-e59a14d631e3"
    both = ids_of(client.get("/v1/runs/", params={"agent_ids": [gamma, alpha]}))
    assert both == [r["id"] for r in every if r["agent_id"] in (gamma, alpha)]
    # agent_id replaces agent_ids
    only = ids_of(client.get("/v1/runs/", params={"agent_ids": [alpha], "agent_id": gamma}))
    assert only == [r["id"] for r in every if r["agent_id"] == gamma]
    # ascending=true overrides order=desc
    asc = ids_of(client.get("/v1/runs/", params={"ascending": "true", "order": "desc"}))
    assert asc == [r["id"] for r in reversed(every)]
    # filters combine with cursors; the cursor may belong to another agent
    cancelled = ids_of(
        client.get("/v1/runs/", params={"statuses": "cancelled", "stop_reason": "cancelled"})
    )
    assert cancelled == [r["id"] for r in every if r["status"] == "cancelled"]
    page = ids_of(client.get("/v1/runs/", params={"agent_id": alpha, "before": every[1]["id"]}))
    assert page == [r["id"] for r in every[2:] if r["agent_id"] == alpha]
    assert client.get("/v1/runs/", params={"conversation_id": "conv-x"}).json() == []


# --------------------------------------------------------------------------------------
# Lifecycle behaviours
# --------------------------------------------------------------------------------------


def test_total_duration_only_in_list_and_only_after_metrics_delay() -> None:
    clock = ManualClock()
    with FakeLetta(clock=clock) as fake, connect(fake.base_url) as http:
        run_id = fake.create_run("agent-4d0e970e-e87f-4399-be4e-e59a14d631e3")
        clock.now += 2.0
        fake.update_run(run_id, status="completed", stop_reason="end_turn", metrics_delay=1.5)
        listed = http.get("/v1/runs/").json()[0]
        assert listed["status"] == "completed" and listed["completed_at"] is not None
        assert listed["total_duration_ns"] is None
        assert http.get(f"/v1/runs/{run_id}/metrics").json()["run_ns"] is None
        assert http.get(f"/v1/runs/{run_id}/metrics").json()["num_steps"] == 0
        clock.now += 1.5
        assert http.get("/v1/runs/").json()[0]["total_duration_ns"] == 2_000_000_000
        assert http.get(f"/v1/runs/{run_id}/metrics").json()["run_ns"] == 2_000_000_000
        single = http.get(f"/v1/runs/{run_id}").json()
        assert single["total_duration_ns"] is None and single["ttft_ns"] is None
        assert fake.get(run_id)["total_duration_ns"] == 2_000_000_000  # type: ignore[index]


def test_update_run_mimics_run_manager() -> None:
    clock = ManualClock()
    with FakeLetta(clock=clock) as fake, connect(fake.base_url) as http:
        run_id = fake.create_run("agent-a", created_at=clock.now - 1.0)
        fake.update_run(run_id, status="running")
        assert http.get(f"/v1/runs/{run_id}").json()["completed_at"] is None
        fake.update_run(run_id, status="completed", stop_reason="requires_approval")
        first = http.get(f"/v1/runs/{run_id}").json()
        assert first["completed_at"] == "2027-01-15T08:00:00"  # naive, no fraction at .000000
        assert first["created_at"] == "2027-01-15T07:59:59Z"
        clock.now += 5.0
        fake.update_run(run_id, status="cancelled", stop_reason="cancelled")  # cancel later
        second = fake.get(run_id)
        assert second is not None
        assert (second["status"], second["stop_reason"]) == ("cancelled", "cancelled")
        assert second["completed_at"] == first["completed_at"]  # first terminal write only
        assert second["total_duration_ns"] == 6_000_000_000  # recomputed on every write
        fake.update_run(run_id, status="paused", stop_reason="weird_reason", error="boom")
        third = http.get(f"/v1/runs/{run_id}").json()
        assert (third["status"], third["stop_reason"]) == ("paused", "weird_reason")
        assert third["metadata"] == {"run_type": "send_message", "error": "boom"}
        fake.update_run(run_id, status="failed")  # stop_reason left unchanged
        assert fake.get(run_id)["stop_reason"] == "weird_reason"  # type: ignore[index]
        fake.set_callback(run_id, 500, "callback failed")
        fourth = http.get(f"/v1/runs/{run_id}").json()
        assert fourth["callback_sent_at"] == "2027-01-15T08:00:05"
        assert (fourth["callback_status_code"], fourth["callback_error"]) == (
            500,
            "callback failed",
        )
        assert fake.truth() == {("agent-a", "failed", "weird_reason"): 1}


def test_late_commit_appears_behind_the_watermark(fake: FakeLetta, http: httpx.Client) -> None:
    now = time.time()
    old = fake.create_run("agent-a", created_at=now - 60)
    late = fake.create_run("agent-a", created_at=now - 30, visible=False, status="completed")
    new = fake.create_run("agent-a", created_at=now)
    assert ids_of(http.get("/v1/runs/")) == [new, old]
    assert http.get(f"/v1/runs/{late}").status_code == 404
    assert http.get(f"/v1/runs/{late}/metrics").status_code == 404
    # an uncommitted run is no cursor either: the list restarts from the head
    assert ids_of(http.get("/v1/runs/", params={"before": late})) == [new, old]
    assert fake.truth() == {}
    fake.commit(late)
    assert ids_of(http.get("/v1/runs/")) == [new, late, old]
    assert ids_of(http.get("/v1/runs/", params={"before": new, "limit": 1})) == [late]
    assert fake.truth() == {("agent-a", "completed", None): 1}


def test_delete_agent_cascades(fake: FakeLetta, http: httpx.Client) -> None:
    doomed = [fake.create_run("agent-doomed", status="completed") for _ in range(3)]
    kept = fake.create_run("agent-kept", status="failed")
    step = fake.add_step(doomed[0], prompt_tokens=5)
    assert fake.delete_agent("agent-doomed") == 3
    assert ids_of(http.get("/v1/runs/")) == [kept]
    for run_id in doomed:
        assert http.get(f"/v1/runs/{run_id}").status_code == 404
        assert http.get(f"/v1/runs/{run_id}/usage").status_code == 404
    assert http.get(f"/v1/runs/{kept}/steps", params={"after": step}).status_code == 404
    assert fake.truth() == {("agent-kept", "failed", None): 1}
    assert [run["id"] for run in fake.runs()] == [kept]
    # DELETE /v1/runs/{id} is broken in 0.16.8: 500 and nothing deleted (§3.9)
    assert http.delete(f"/v1/runs/{kept}").status_code == 500
    assert http.get(f"/v1/runs/{kept}").status_code == 200


def test_raw_items_keep_their_place(fake: FakeLetta, http: httpx.Client) -> None:
    now = time.time()
    older = fake.create_run("agent-a", created_at=now - 10, status="completed")
    newer = fake.create_run("agent-a", created_at=now, status="completed")
    fake.add_raw_item({"created_at": _iso(now - 5), "status": "completed"})  # no id
    fake.add_raw_item({"id": "run-bad", "created_at": _iso(now - 2), "status": 42})
    fake.add_raw_item({"surprise": True})  # no created_at: head of the list
    body = http.get("/v1/runs/").json()
    assert [item.get("id", item.get("surprise")) for item in body] == [
        True,
        newer,
        "run-bad",
        None,
        older,
    ]
    # filters apply to the raw object's own fields; a string id works as a cursor
    assert ids_of(
        http.get("/v1/runs/", params={"statuses": "completed", "agent_id": "agent-a"})
    ) == [newer, older]
    after_bad = http.get("/v1/runs/", params={"before": "run-bad"}).json()
    assert [item.get("id") for item in after_bad] == [None, older]
    assert fake.truth() == {("agent-a", "completed", None): 2}


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1e6):06d}Z"


def test_active_runs(fake: FakeLetta, http: httpx.Client) -> None:
    created = fake.create_run("agent-a", background=True)
    running = fake.create_run("agent-b")
    fake.update_run(running, status="running")
    fake.create_run("agent-a", status="completed")
    assert ids_of(http.get("/v1/runs/active")) == [running, created]
    assert ids_of(http.get("/v1/runs/active", params={"background": "true"})) == [created]
    assert ids_of(http.get("/v1/runs/", params={"active": "true"})) == [running, created]
    assert ids_of(http.get("/v1/runs/", params={"statuses": ["running"]})) == [running]
    assert http.get("/v1/runs/active", params={"background": "maybe"}).status_code == 422


def test_steps_usage_metrics_and_trace(fake: FakeLetta, http: httpx.Client) -> None:
    run_id = fake.create_run("agent-a", status="running")
    step_ids = [
        fake.add_step(
            run_id, prompt_tokens=100 + i, completion_tokens=10, tool_ids=[f"tool-{i % 2}"]
        )
        for i in range(55)
    ]
    usage = http.get(f"/v1/runs/{run_id}/usage").json()
    newest = range(5, 55)  # only the 50 newest steps count (§3.5)
    assert usage == {
        "completion_tokens": 500,
        "prompt_tokens": sum(100 + i for i in newest),
        "total_tokens": sum(110 + i for i in newest),
        "prompt_tokens_details": None,
        "completion_tokens_details": None,
    }
    assert http.get(f"/v1/runs/{run_id}/metrics").json()["num_steps"] == 0  # not refreshed yet
    fake.update_run(run_id, status="completed", stop_reason="end_turn")
    metrics = http.get(f"/v1/runs/{run_id}/metrics").json()
    assert metrics["num_steps"] == 50 and metrics["tools_used"] == ["tool-1", "tool-0"]
    steps = http.get(f"/v1/runs/{run_id}/steps").json()
    assert [s["id"] for s in steps] == step_ids[::-1]  # default order desc, limit 100
    assert set(steps[0]) == set(fixture("runs/sync_multi_step/steps.json")[0])
    assert steps[0]["model"] == "fake-llm" and steps[0]["model_handle"] == "openai-proxy/fake-llm"
    page = http.get(f"/v1/runs/{run_id}/steps", params={"limit": 3, "after": step_ids[50]}).json()
    assert [s["id"] for s in page] == step_ids[49:46:-1]  # desc + after = next (older) page
    page = http.get(f"/v1/runs/{run_id}/steps", params={"limit": 3, "before": step_ids[50]}).json()
    # before = the rows newer than X, newest first, from the start (not the adjacent page)
    assert [s["id"] for s in page] == step_ids[:50:-1][:3]
    page = http.get(
        f"/v1/runs/{run_id}/steps", params={"order": "asc", "limit": 2, "after": step_ids[0]}
    ).json()
    assert [s["id"] for s in page] == step_ids[1:3]
    missing = "step-00000000-0000-4000-8000-000000000000"
    unknown = http.get(f"/v1/runs/{run_id}/steps", params={"after": missing})
    assert unknown.status_code == 404 and unknown.json() == {
        "detail": f"No Step found with id {missing}"
    }
    fake.update_step(step_ids[0], status="failed", prompt_tokens=1, completion_tokens=1)
    assert http.get(f"/v1/runs/{run_id}/steps").json()[-1]["total_tokens"] == 2
    # trace: 501 without ClickHouse, the stored rows once there are some
    assert http.get(f"/v1/runs/{run_id}/trace").status_code == 501
    spans = [{"SpanName": "agent_step", "Duration": i} for i in range(4)]
    fake.set_trace(run_id, spans)
    assert http.get(f"/v1/runs/{run_id}/trace", params={"limit": 2}).json() == spans[:2]
    assert http.get(f"/v1/runs/{run_id}/trace", params={"limit": 5001}).status_code == 422


# --------------------------------------------------------------------------------------
# Fault injection
# --------------------------------------------------------------------------------------


def test_status_faults_then_recovery(fake: FakeLetta, http: httpx.Client) -> None:
    fake.create_run("agent-a", status="completed")
    fake.inject("500")
    fake.inject("502")
    fake.inject("503")
    fake.inject("429", retry_after=7, times=2)
    assert http.get("/v1/runs/").json() == {"detail": "An unknown error occurred"}
    bad_gateway = http.get("/v1/runs/")
    assert bad_gateway.status_code == 502 and bad_gateway.headers["content-type"] == "text/html"
    assert http.get("/v1/runs/").status_code == 503
    for _ in range(2):
        limited = http.get("/v1/runs/")
        assert limited.status_code == 429 and limited.headers["retry-after"] == "7"
    assert http.get("/v1/runs/").status_code == 200
    fake.inject("500", path_prefix="/v1/runs/active")
    assert http.get("/v1/runs/").status_code == 200  # prefix does not match
    assert http.get("/v1/runs/active").status_code == 500
    assert [r[3] for r in fake.requests] == [500, 502, 503, 429, 429, 200, 200, 500]
    fake.reset_requests()
    assert fake.requests == []


def test_timeout_and_hang_faults(fake: FakeLetta) -> None:
    fake.inject("timeout", delay=3.0)
    fake.inject("hang")
    with connect(fake.base_url, timeout=0.3) as http:
        for _ in range(2):
            started = time.monotonic()
            with pytest.raises(httpx.ReadTimeout):
                http.get("/v1/runs/")
            assert time.monotonic() - started < 2.0
        assert http.get("/v1/runs/").status_code == 200
    assert [r[3] for r in fake.requests] == [0, 0, 200]


def test_body_faults(fake: FakeLetta, http: httpx.Client) -> None:
    for _ in range(5):
        fake.create_run("agent-a", status="completed")
    fake.inject("truncated")
    with pytest.raises(httpx.RemoteProtocolError):
        http.get("/v1/runs/")
    fake.inject("reset")
    with pytest.raises(httpx.TransportError):
        http.get("/v1/runs/")
    fake.inject("garbage")
    garbage = http.get("/v1/runs/")
    assert garbage.status_code == 200 and garbage.headers["content-type"] == "application/json"
    with pytest.raises(json.JSONDecodeError):
        garbage.json()
    fake.inject("huge", size=3_000_000)
    huge = http.get("/v1/runs/")
    assert 2_990_000 < len(huge.content) <= 3_000_000
    assert isinstance(huge.json(), list) and len(huge.json()[0]) == 17
    assert len(ids_of(http.get("/v1/runs/"))) == 5


def test_endless_fault_streams_until_the_client_leaves(fake: FakeLetta, http: httpx.Client) -> None:
    fake.inject("endless")
    received = 0
    with http.stream("GET", "/v1/runs/") as response:
        assert response.headers["transfer-encoding"] == "chunked"
        for chunk in response.iter_bytes():
            received += len(chunk)
            if received > 2_000_000:
                break
    assert received > 2_000_000
    assert http.get("/v1/health/").status_code == 200


def test_faults_never_kill_the_server(fake: FakeLetta) -> None:
    for kind in ("reset", "truncated", "garbage", "500", "endless"):
        fake.inject(kind)
        with connect(fake.base_url, timeout=1.0) as http:
            try:
                with http.stream("GET", "/v1/runs/") as response:
                    for _ in response.iter_bytes():
                        break
            except httpx.TransportError:
                pass
    with pytest.raises(ValueError):
        fake.inject("meteor")
    with connect(fake.base_url) as http:
        assert http.get("/v1/runs/").status_code == 200


# --------------------------------------------------------------------------------------
# Scale, hygiene, CLI
# --------------------------------------------------------------------------------------


def test_bulk_load_is_fast_and_pages_cleanly() -> None:
    with FakeLetta() as fake, connect(fake.base_url, timeout=10.0) as http:
        started = time.perf_counter()
        run_ids = fake.bulk_load(100_000, agents=7, seed=1)
        assert time.perf_counter() - started < 5.0  # ~0.6 s here; 1M takes ~9 s
        assert len(fake) == 100_000 and sum(fake.truth().values()) == 100_000
        walked: list[str] = []
        params: dict[str, Any] = {"limit": 1000}
        for _ in range(3):
            page = ids_of(http.get("/v1/runs/", params=params))
            walked += page
            params["before"] = page[-1]
        assert walked == run_ids[::-1][:3000]
        started = time.perf_counter()
        http.get("/v1/runs/", params={"limit": 1000})  # cached bytes, joined
        assert time.perf_counter() - started < 0.5
        usage = http.get(f"/v1/runs/{run_ids[0]}/usage").json()
        assert usage["total_tokens"] > 0
        steps = http.get(f"/v1/runs/{run_ids[0]}/steps").json()
        assert sum(s["total_tokens"] for s in steps) == usage["total_tokens"]
        started = time.perf_counter()
        tokens = fake.token_truth()
        counts = fake.step_count_truth()
        assert time.perf_counter() - started < 3.0  # ~0.1 s here
        assert sum(counts.values()) == sum(1 + i % 3 for i in range(100_000))
        assert {key[1:] for key in tokens} == {("fake-llm", "input"), ("fake-llm", "output")}
        assert len(fake._steps_by_id) == len(steps)  # only the run whose /steps was read


def test_stop_releases_everything() -> None:
    fds_before = len(os.listdir("/proc/self/fd"))
    fake = FakeLetta().start()
    with contextlib.ExitStack() as stack:
        stack.callback(fake.stop)
        fake.inject("hang", times=2)
        for _ in range(2):
            hung = stack.enter_context(connect(fake.base_url, timeout=0.2))
            with pytest.raises(httpx.ReadTimeout):
                hung.get("/v1/runs/")
        idle = stack.enter_context(connect(fake.base_url))
        assert idle.get("/v1/health/").status_code == 200  # an idle keep-alive connection
        assert fake_threads()
        started = time.monotonic()
        fake.stop()
        assert time.monotonic() - started < 2.0
        assert fake_threads() == []
    assert len(os.listdir("/proc/self/fd")) <= fds_before


def test_cli_serves_until_sigterm() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fake_letta", "--port", "0", "--bulk", "2000"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith("READY http://127.0.0.1:")
        base_url = line.split(" ", 1)[1]
        with connect(base_url) as http:
            response = http.get("/v1/runs/", params={"limit": 1000})
        assert len(response.json()) == 1000
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def test_relative_cursors_page_in_the_sort_order_and_404_on_unknown() -> None:
    with FakeLetta(semantics="relative") as fake:
        ids = [fake.create_run("agent-a", created_at=1_795_000_000 + i) for i in range(10)]
        newest_first = list(reversed(ids))
        with httpx.Client(base_url=fake.base_url) as client:

            def page(**params: Any) -> list[str]:
                body = client.get("/v1/runs/", params={"limit": 3, **params}).json()
                return [run["id"] for run in body]

            assert page(order="desc", after=newest_first[2]) == newest_first[3:6]
            assert page(order="desc", before=newest_first[5]) == newest_first[2:5]
            assert page(order="asc", after=ids[2]) == ids[3:6]
            assert page(order="asc", before=ids[5]) == ids[2:5]
            unknown = client.get(
                "/v1/runs/", params={"after": "run-00000000-0000-4000-8000-000000000000"}
            )
            assert unknown.status_code == 404


def test_unknown_cursors_can_restart_the_list_and_semantics_can_change_while_serving() -> None:
    with FakeLetta(semantics="relative", unknown_cursor="ignore") as fake:
        ids = [fake.create_run("agent-a", created_at=1_795_000_000 + i) for i in range(10)]
        newest_first = list(reversed(ids))
        with httpx.Client(base_url=fake.base_url) as client:

            def page(**params: Any) -> list[str]:
                body = client.get("/v1/runs/", params={"limit": 3, **params}).json()
                return [run["id"] for run in body]

            gone = "run-00000000-0000-4000-8000-000000000000"
            assert page(order="desc", after=gone) == newest_first[:3]  # from the head
            assert page(order="desc", before=newest_first[5]) == newest_first[2:5]
            fake.set_semantics("letta-0.16.8")
            assert page(order="desc", before=newest_first[5]) == newest_first[6:9]
            fake.set_semantics("relative")  # its default again: 404 on unknown cursors
            assert client.get("/v1/runs/", params={"after": gone}).status_code == 404


def test_a_burst_shares_the_newest_timestamp_and_finishes_every_run() -> None:
    with FakeLetta(clock=lambda: 1_795_000_000.5) as fake:
        ids = fake.finish_burst(20, ["agent-a", "agent-b"], shared_fraction=0.3)
        with httpx.Client(base_url=fake.base_url) as client:
            body = client.get("/v1/runs/", params={"limit": 100}).json()
    assert sorted(run["id"] for run in body) == sorted(ids)
    stamps = [run["created_at"] for run in body]
    assert stamps[:6] == [stamps[0]] * 6 and len(set(stamps[6:])) > 1
    assert all(run["status"] in ("completed", "failed", "cancelled") for run in body)
    assert sum(fake.truth().values()) == 20


# --------------------------------------------------------------------------------------
# Enrichment endpoints (tools, step metrics) and ground truth
# --------------------------------------------------------------------------------------

# letta/schemas/step_metrics.py (0.16.8), declaration order.
STEP_METRICS_KEYS = [
    "id",
    "organization_id",
    "provider_id",
    "run_id",
    "agent_id",
    "step_start_ns",
    "llm_request_start_ns",
    "llm_request_ns",
    "tool_execution_ns",
    "step_ns",
    "base_template_id",
    "template_id",
    "project_id",
]
MISSING_TOOL = "tool-00000000-0000-4000-8000-000000000000"
MISSING_STEP = "step-00000000-0000-4000-8000-000000000000"


def not_found_detail(model: str, ident: str) -> dict[str, str]:
    """The NoResultFound body of errors/run_unknown_404.json, for another ORM model."""
    detail = fixture("errors/run_unknown_404.json")["detail"]
    run_id = "run-00000000-0000-4000-8000-000000000000"
    assert detail.startswith(f"Run not found with id='['{run_id}']'")
    return {"detail": detail.replace("Run", model, 1).replace(run_id, ident, 1)}


def path_422(param: str, primitive: str, value: str) -> dict[str, Any]:
    """Letta's custom_request_validation_handler body for a malformed path id."""
    uuid4 = "[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
    pattern = f"^{primitive}-{uuid4}$"  # letta/validators.py PRIMITIVE_ID_PATTERNS
    error = {
        "type": "string_pattern_mismatch",
        "loc": ("path", param),
        "msg": f"String should match pattern '{primitive}-{{uuid4}}'",
        "input": value,
        "ctx": {"pattern": pattern},
    }
    return {
        "trace_id": "",
        "detail": repr([error]),
        "examples": [f"{primitive}-123e4567-e89b-42d3-8456-426614174000"],
    }


def test_tool_route_serves_the_real_tool_shape(fake: FakeLetta, http: httpx.Client) -> None:
    real = fixture("agents/alpha.json")["tools"]
    custom = fake.add_tool("lookup_weather")
    core = fake.add_tool("conversation_search", tool_id=real[0]["id"], tool_type="letta_core")
    assert custom.startswith("tool-") and core == real[0]["id"]
    body = http.get(f"/v1/tools/{custom}").json()
    assert list(body) == list(real[0])  # same 18 keys in the same order
    assert body["id"] == custom and body["name"] == "lookup_weather"
    assert body["tool_type"] == "custom" and body["tags"] == []
    assert body["json_schema"]["name"] == "lookup_weather"
    assert body["metadata_"] == {} and body["return_char_limit"] == 50_000
    served = http.get(f"/latest/tools/{core}").json()
    assert served["tool_type"] == "letta_core" and served["tags"] == ["letta_core"]
    assert served["source_code"] is None
    for key in ("source_type", "args_json_schema", "created_by_id", "metadata_", "project_id"):
        assert served[key] == real[0][key], key
    # unknown, deleted and malformed ids
    unknown = http.get(f"/v1/tools/{MISSING_TOOL}")
    assert unknown.status_code == 404
    assert unknown.json() == not_found_detail("Tool", MISSING_TOOL)
    assert fake.delete_tool(custom) and not fake.delete_tool(custom)
    assert http.get(f"/v1/tools/{custom}").json() == not_found_detail("Tool", custom)
    for malformed in ("tool-0001", "agent-00000000-0000-4000-8000-000000000000", core + "0"):
        response = http.get(f"/v1/tools/{malformed}")
        assert response.status_code == 422, malformed
        assert response.json() == path_422("tool_id", "tool", malformed)
    # routing niceties shared with the runs routes
    slash = http.get(f"/v1/tools/{core}/")
    assert slash.status_code == 307 and slash.headers["location"].endswith(f"/v1/tools/{core}")
    assert http.post(f"/v1/tools/{core}").status_code == 405
    assert http.get(f"/v1/tools/{core}", headers={"user_id": "x"}).status_code == 400
    with pytest.raises(ValueError, match="duplicate"):
        fake.add_tool("again", tool_id=core)
    with pytest.raises(ValueError, match="uuid4"):
        fake.add_tool("bad", tool_id="tool-0001")
    with pytest.raises(ValueError, match="tool_type"):
        fake.add_tool("bad", tool_type="plugin")


def test_step_metrics_route(fake: FakeLetta, http: httpx.Client) -> None:
    run_id = fake.create_run("agent-a", status="running")
    timed = fake.add_step(
        run_id, step_ns=2_000_000_000, llm_request_ns=1_500_000_000, tool_execution_ns=300
    )
    partial = fake.add_step(run_id, step_ns=7)
    untimed = fake.add_step(run_id)
    body = http.get(f"/v1/steps/{timed}/metrics").json()
    assert list(body) == STEP_METRICS_KEYS
    assert body == {
        "id": timed,
        "organization_id": "org-00000000-0000-4000-8000-000000000000",
        "provider_id": None,
        "run_id": run_id,
        "agent_id": "agent-a",
        "step_start_ns": None,  # never persisted by record_step_metrics_async in 0.16.8
        "llm_request_start_ns": None,
        "llm_request_ns": 1_500_000_000,
        "tool_execution_ns": 300,
        "step_ns": 2_000_000_000,
        "base_template_id": None,
        "template_id": None,
        "project_id": None,
    }
    short = http.get(f"/v1/steps/{partial}/metrics").json()
    assert (short["step_ns"], short["llm_request_ns"], short["tool_execution_ns"]) == (
        7,
        None,
        None,
    )
    # no step_metrics row / no step at all: the same NoResultFound 404
    for step_id in (untimed, MISSING_STEP):
        response = http.get(f"/v1/steps/{step_id}/metrics")
        assert response.status_code == 404
        assert response.json() == not_found_detail("StepMetrics", step_id)
    # the row can appear later, as when Letta fills it at step end
    fake.update_step(untimed, llm_request_ns=5)
    fake.update_step(untimed, step_ns=9, status="success")
    later = http.get(f"/v1/steps/{untimed}/metrics").json()
    assert (later["llm_request_ns"], later["step_ns"]) == (5, 9)
    malformed = http.get("/v1/steps/step-1/metrics")
    assert malformed.status_code == 422
    assert malformed.json() == path_422("step_id", "step", "step-1")
    assert http.get(f"/v1/steps/{timed}").status_code == 404  # only /metrics is modelled
    fake.delete_run(run_id)  # steps and their metrics go with the run
    assert http.get(f"/v1/steps/{timed}/metrics").status_code == 404


def test_path_regex_targets_faults(fake: FakeLetta, http: httpx.Client) -> None:
    run_id = fake.create_run("agent-a", status="running")
    fake.add_step(run_id, prompt_tokens=3, completion_tokens=4, tool_ids=[MISSING_TOOL])
    fake.update_run(run_id, status="completed", stop_reason="end_turn")
    # path_prefix (default "/v1/runs") is ignored once a regex is given
    fake.inject("503", times=2, path_regex=r"/usage$")
    fake.inject("500", path_regex=r"^/v1/tools/")
    assert http.get("/v1/runs/").status_code == 200
    assert http.get(f"/v1/runs/{run_id}/steps").status_code == 200
    assert http.get(f"/v1/runs/{run_id}/usage").status_code == 503
    assert http.get(f"/v1/tools/{MISSING_TOOL}").status_code == 500
    assert http.get(f"/v1/runs/{run_id}/usage").status_code == 503
    assert http.get(f"/v1/runs/{run_id}/usage").json()["total_tokens"] == 7
    assert http.get(f"/v1/tools/{MISSING_TOOL}").status_code == 404
    # the query string is not part of the path the regex sees
    fake.inject("429", path_regex=r"steps$")
    assert http.get(f"/v1/runs/{run_id}/steps", params={"limit": 1}).status_code == 429
    with pytest.raises(re.error):
        fake.inject("500", path_regex="(")


def walk_steps(http: httpx.Client, run_id: str, order: str, limit: int) -> list[str]:
    """Page /steps with `after` = last id of the previous page until an empty page."""
    seen: list[str] = []
    params: dict[str, Any] = {"order": order, "limit": limit}
    for _ in range(1000):
        page = ids_of(http.get(f"/v1/runs/{run_id}/steps", params=params))
        if not page:
            return seen
        assert len(page) <= limit
        seen += page
        params["after"] = page[-1]
    raise AssertionError("the walk never ended")


def test_run_with_120_steps_pages_fully_and_truth_counts_them_all(
    fake: FakeLetta, http: httpx.Client
) -> None:
    run_id = fake.create_run("agent-long", status="running")
    models = ["openai/gpt-4o-mini", "anthropic/claude-sonnet-4"]
    step_ids = [
        fake.add_step(
            run_id,
            model=models[i % 2],
            prompt_tokens=100 + i,
            completion_tokens=1 + i % 7,
            cached_input_tokens=i if i % 3 == 0 else None,  # None and 0 (i=0) both omitted
            cache_write_tokens=5 if i % 10 == 1 else None,
            reasoning_tokens=2 if i % 4 == 2 else None,
        )
        for i in range(120)
    ]
    fake.update_run(run_id, status="completed", stop_reason="max_steps")
    for limit in (7, 50, 1000):
        assert walk_steps(http, run_id, "asc", limit) == step_ids
        assert walk_steps(http, run_id, "desc", limit) == step_ids[::-1]
    assert len(ids_of(http.get(f"/v1/runs/{run_id}/steps"))) == 100  # default limit
    newest = range(70, 120)
    usage = http.get(f"/v1/runs/{run_id}/usage").json()
    assert usage["prompt_tokens"] == sum(100 + i for i in newest)  # 50 newest only (§3.5)
    assert usage["completion_tokens"] == sum(1 + i % 7 for i in newest)
    assert http.get(f"/v1/runs/{run_id}/metrics").json()["num_steps"] == 50
    expected: Counter[tuple[str, str, str]] = Counter()
    for i in range(120):
        model = ("gpt-4o-mini", "claude-sonnet-4")[i % 2]
        expected[("agent-long", model, "input")] += 100 + i
        expected[("agent-long", model, "output")] += 1 + i % 7
        if i % 3 == 0 and i:
            expected[("agent-long", model, "cached_input")] += i
        if i % 10 == 1:
            expected[("agent-long", model, "cache_write")] += 5
        if i % 4 == 2:
            expected[("agent-long", model, "reasoning")] += 2
    assert fake.token_truth() == expected
    assert all(value > 0 for value in fake.token_truth().values())
    assert fake.step_count_truth() == {run_id: 120}


def test_truths_cover_only_visible_finished_runs() -> None:
    clock = ManualClock()
    with FakeLetta(clock=clock) as fake:
        search = fake.add_tool("web_search")
        recall = fake.add_tool("archival_search", tool_type="letta_core")
        ghost = "tool-0001"  # never registered: counted by id
        done = fake.create_run("agent-a", status="running")
        fake.add_step(done, prompt_tokens=10, completion_tokens=1, tool_ids=[search, ghost])
        fake.add_step(done, prompt_tokens=20, completion_tokens=2, tool_ids=[search, recall])
        fake.update_run(done, status="completed", stop_reason="end_turn")
        other = fake.create_run("agent-b", status="running")
        fake.add_step(other, model="anthropic/claude-3", prompt_tokens=5, tool_ids=[search])
        fake.update_run(other, status="failed", stop_reason="llm_api_error", metrics_delay=5.0)
        running = fake.create_run("agent-a", status="running")
        fake.add_step(running, prompt_tokens=99, tool_ids=[search])
        late = fake.create_run("agent-a", visible=False)
        fake.add_step(late, prompt_tokens=77, tool_ids=[search])
        fake.update_run(late, status="completed")
        legacy = fake.create_run("agent-c", has_metrics=False)
        fake.add_step(legacy, prompt_tokens=1, tool_ids=[search])
        fake.update_run(legacy, status="completed")

        assert fake.step_count_truth() == {done: 2, other: 1, legacy: 1}
        assert fake.token_truth() == Counter(
            {
                ("agent-a", "fake-llm", "input"): 30,
                ("agent-a", "fake-llm", "output"): 3,
                ("agent-b", "claude-3", "input"): 5,  # no "output": it was 0
                ("agent-c", "fake-llm", "input"): 1,
            }
        )
        # once per run per distinct id; agent-b's metrics are not committed yet and
        # agent-c's run has no metrics row at all
        assert fake.tool_truth() == Counter(
            {("agent-a", "web_search"): 1, ("agent-a", "archival_search"): 1, ("agent-a", ghost): 1}
        )
        clock.now += 5.0
        assert fake.tool_truth()[("agent-b", "web_search")] == 1
        fake.commit(late)
        fake.delete_tool(search)  # now answers 404: the id is the best name
        truth = fake.tool_truth()
        assert truth[("agent-a", search)] == 2 and truth[("agent-a", "web_search")] == 0
        assert fake.token_truth()[("agent-a", "fake-llm", "input")] == 107


def test_bulk_runs_serve_lazy_steps_without_building_them(
    fake: FakeLetta, http: httpx.Client
) -> None:
    run_ids = fake.bulk_load(12, agents=["agent-x", "agent-y"], seed=3)
    tokens = fake.token_truth()  # computed from the lazy description ...
    counts = fake.step_count_truth()
    assert set(counts) == set(run_ids) and set(counts.values()) == {1, 2, 3}
    usage = {r: http.get(f"/v1/runs/{r}/usage").json() for r in run_ids}
    # ... as are /usage and /metrics: nothing has built a Step object yet
    assert all(fake._runs[r].lazy_steps is not None for r in run_ids)
    assert fake._steps_by_id == {}
    rebuilt: Counter[tuple[str, str, str]] = Counter()
    for run_id in run_ids:
        metrics = http.get(f"/v1/runs/{run_id}/metrics").json()
        assert metrics["num_steps"] == counts[run_id]
        asc = walk_steps(http, run_id, "asc", 1)
        assert walk_steps(http, run_id, "desc", 2) == asc[::-1]
        steps = http.get(f"/v1/runs/{run_id}/steps").json()
        assert [s["id"] for s in steps] == asc[::-1] and len(steps) == counts[run_id]
        assert sum(s["total_tokens"] for s in steps) == usage[run_id]["total_tokens"]
        for step in steps:
            rebuilt[(step["agent_id"], step["model"], "input")] += step["prompt_tokens"]
            rebuilt[(step["agent_id"], step["model"], "output")] += step["completion_tokens"]
            timing = http.get(f"/v1/steps/{step['id']}/metrics").json()
            assert 0 < timing["llm_request_ns"] < timing["step_ns"]
            assert timing["run_id"] == run_id
        assert (
            sum(http.get(f"/v1/steps/{s['id']}/metrics").json()["step_ns"] for s in steps)
            <= metrics["run_ns"]
        )
    assert rebuilt == tokens == fake.token_truth()  # materialised or not, the same truth
    assert fake.step_count_truth() == counts


def test_the_approval_lifecycle_has_the_captured_shape(fake: FakeLetta, http: httpx.Client) -> None:
    captured = {
        name: fixture(f"runs/{name}/run.json")
        for name in ("approval_left_pending", "sync_pending_approval_conflict")
    }
    waiting = fake.request_approval("agent-g")
    status, refused = fake.send_message("agent-g")
    assert status == 409 and fake.pending_approval("agent-g") == waiting
    for run_id, name in (
        (waiting, "approval_left_pending"),
        (refused, "sync_pending_approval_conflict"),
    ):
        got = http.get(f"/v1/runs/{run_id}").json()
        want = captured[name]
        assert (got["status"], got["stop_reason"]) == (want["status"], want["stop_reason"])
        assert got["metadata"] == want["metadata"]
    continued = fake.answer_approval("agent-g")
    assert fake.pending_approval("agent-g") is None
    assert http.get(f"/v1/runs/{waiting}").json()["stop_reason"] == "requires_approval"
    assert http.get(f"/v1/runs/{continued}").json()["stop_reason"] == "end_turn"
    assert fake.send_message("agent-g")[0] == 200


def test_cancelling_the_waiting_run_ends_the_wait_and_conversations_wait_apart(
    fake: FakeLetta, http: httpx.Client
) -> None:
    first = fake.request_approval("agent-g", conversation_id="conv-1")
    second = fake.request_approval("agent-g", conversation_id="conv-2")
    assert fake.send_message("agent-g")[0] == 200  # the agent's own thread does not wait
    assert fake.cancel_run(first) == "cancelled"
    run = http.get(f"/v1/runs/{first}").json()
    assert (run["status"], run["stop_reason"]) == ("cancelled", "cancelled")  # timeline fixture
    assert fake.pending_approvals() == {("agent-g", "conv-2"): second}
    listed = http.get("/v1/runs/", params={"conversation_id": "conv-2"}).json()
    assert [r["id"] for r in listed] == [second]
    assert fake.cancel_run(fake.answer_approval("agent-g", conversation_id="conv-2")) == "failed"


# ---- the Cloud profile, part 2: no /metrics, lock conflicts, a request budget ---------


def test_cloud_profile_has_no_run_metrics_and_messages_carry_the_tool_calls() -> None:
    with FakeLetta(cloud=True) as fake:
        tool = fake.add_tool("web_search")
        run_id = fake.create_run("agent-a")
        fake.add_step(run_id, tool_ids=[tool, tool])
        fake.update_run(run_id, status="completed", stop_reason="end_turn")
        base = f"{fake.base_url}/v1/runs/{run_id}"
        missing = httpx.get(f"{base}/metrics")
        assert (missing.status_code, missing.json()) == (404, {"detail": "Not Found"})
        messages = httpx.get(f"{base}/messages").json()
        assert [m["message_type"] for m in messages] == [
            "tool_call_message",
            "tool_return_message",
        ] * 2
        assert {m["tool_call"]["name"] for m in messages if "tool_call" in m} == {"web_search"}
        second = httpx.get(f"{base}/messages", params={"after": messages[1]["id"]}).json()
        assert [m["id"] for m in second] == [m["id"] for m in messages[2:]]
        assert httpx.get(f"{base}/messages", params={"after": "message-nope"}).status_code == 404
        assert fake.tool_call_truth() == (
            Counter({("agent-a", "web_search"): 1}),
            Counter({("agent-a", "web_search"): 2}),
        )


def test_408_409_carry_retry_after_and_429_retry_after_ms() -> None:
    with FakeLetta() as fake:
        fake.inject("409", retry_after=1)
        fake.inject("408", retry_after=2)
        fake.inject("429", retry_after_ms=250)
        url = f"{fake.base_url}/v1/runs/"
        answers = [httpx.get(url) for _ in range(4)]
        assert [a.status_code for a in answers] == [409, 408, 429, 200]
        assert answers[0].headers["retry-after"] == "1"
        assert answers[1].headers["retry-after"] == "2"
        assert answers[2].headers["retry-after-ms"] == "250"


def test_a_request_budget_answers_429_with_the_wait_in_ms() -> None:
    with FakeLetta(cloud=True) as fake:
        fake.set_request_budget(0.001, burst=2)
        url = f"{fake.base_url}/v1/runs/"
        answers = [httpx.get(url) for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 429]
        assert int(answers[2].headers["retry-after-ms"]) > 900_000
        assert fake.throttled == 1
        fake.set_request_budget(None)
        assert httpx.get(url).status_code == 200
