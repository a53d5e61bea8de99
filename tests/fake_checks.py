"""Shared setup of the fake's own tests (tests/test_fake_*.py): the captured fixture
world, fakes and clients, and small readers of their answers.

The fixtures are registered in tests/conftest.py; ``no_leftover_fake_threads`` is used by
every test file of the fake (``pytestmark``).
"""

from __future__ import annotations

import functools
import json
import os
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

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


@pytest.fixture
def no_leftover_fake_threads() -> Iterator[None]:
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
def world_http(world: FakeLetta) -> Iterator[httpx.Client]:
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


def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1e6):06d}Z"


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
