"""The fake's ``letta-0.16.8`` profile against the real Letta 0.16.8 server.

The real server's runs (and the steps of a few) are copied into a FakeLetta with the same
ids, times, statuses and metadata; then both are asked the same questions — list pages
in every cursor direction and filter, single runs, usage, metrics, steps, error bodies —
and must answer alike. A difference means the fake no longer models the server.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.fake_letta.fake import FakeLetta
from tests.realserver.stack import Stack, start_letta_process
from tests.realserver.workload import Workload

pytestmark = [pytest.mark.e2e, pytest.mark.letta_server, pytest.mark.timeout(900)]

TERMINAL = ("completed", "failed", "cancelled")
# Values that legitimately differ between two servers, however faithful.
_VOLATILE = (
    (re.compile(r"updated_at=datetime\.datetime\(.*?TzInfo\(UTC\)\)"), "updated_at=<time>"),
    (re.compile(r"'trace_id': '[0-9a-f]*'|\"trace_id\":\"[0-9a-f]*\""), "trace_id"),
)


@dataclass
class Pair:
    real: httpx.Client
    fake: httpx.Client
    runs: list[dict[str, Any]]  # the real server's runs, newest first
    agents: tuple[str, str]
    stepped_run: str  # a run with three steps
    open_runs_real: list[dict[str, Any]]  # runs seen in flight: {"get": …, "item": …}
    open_runs_fake: list[dict[str, Any]]  # the same runs copied into a fake

    def both(self, path: str, **params: Any) -> tuple[httpx.Response, httpx.Response]:
        return self.real.get(path, params=params), self.fake.get(path, params=params)

    def ids(self, path: str, **params: Any) -> tuple[Any, Any]:
        real, fake = self.both(path, **params)
        return _ids_or_error(real), _ids_or_error(fake)


def _ids_or_error(response: httpx.Response) -> Any:
    if response.status_code != 200:
        return response.status_code, _normalised(response.text)
    return [item["id"] for item in response.json()]


def _normalised(text: str) -> str:
    for pattern, replacement in _VOLATILE:
        text = pattern.sub(replacement, text)
    return text


def _mirror_run(fake: FakeLetta, run: dict[str, Any]) -> None:
    metadata = dict(run["metadata"] or {})
    run_type = metadata.pop("run_type", "send_message")
    fake.create_run(
        run["agent_id"],
        run_id=run["id"],
        created_at=run["created_at"],
        background=bool(run["background"]),
        run_type=run_type,
        metadata=metadata,
        conversation_id=run["conversation_id"],
        callback_url=run["callback_url"],
    )
    if run["status"] != "created":
        fake.update_run(
            run["id"],
            status=run["status"],
            stop_reason=run["stop_reason"],
            completed_at=run["completed_at"],
            run_ns=run["total_duration_ns"],
        )
    if run["callback_sent_at"] or run["callback_error"] or run["callback_status_code"]:
        fake.set_callback(
            run["id"],
            run["callback_status_code"],
            run["callback_error"],
            sent_at=run["callback_sent_at"],
        )


def _mirror_steps(fake: FakeLetta, real: httpx.Client, run_id: str) -> None:
    steps = real.get(f"/v1/runs/{run_id}/steps", params={"order": "asc"}).json()
    for step in steps:
        fake.add_step(
            run_id,
            step_id=step["id"],
            model=step["model_handle"],
            prompt_tokens=step["prompt_tokens"],
            completion_tokens=step["completion_tokens"],
            cached_input_tokens=step["cached_input_tokens"],
            cache_write_tokens=step["cache_write_tokens"],
            reasoning_tokens=step["reasoning_tokens"],
            status=step["status"],
            stop_reason=step["stop_reason"],
            trace_id=step["trace_id"],
        )
        time.sleep(0.002)  # distinct step times, as on the server


@pytest.fixture(scope="module")
def pair(letta_stack: Stack) -> Iterator[Pair]:
    workload = Workload(letta_stack)
    real = httpx.Client(base_url=letta_stack.letta_url, timeout=120)
    try:
        first, second = workload.agent("parity-1"), workload.agent("parity-2")
        # Runs seen in flight: an async one (stays created) and a background stream
        # (running), each with its GET and list item.
        open_runs = [
            _seen_open(real, workload, first, workload.send_async(first, "slow [[delay=3]]")),
            _seen_open(real, workload, second, _background(workload, second)),
        ]
        for text in ("hi [[]]", "tools [[tools=2]]", "boom [[fail=500]]", "hi [[]]", "hi [[]]"):
            workload.sync(first, text)
        for text in ("hi [[]]", "hi [[]]"):
            workload.sync(second, text)
        runs = real.get("/v1/runs/", params={"limit": 1000}).json()
        assert all(r["status"] in TERMINAL for r in runs), "runs still open"
        stepped = next(
            r["id"]
            for r in runs
            if r["agent_id"] == first and len(real.get(f"/v1/runs/{r['id']}/steps").json()) == 3
        )
        with FakeLetta(semantics="letta-0.16.8") as fake_server:
            for run in reversed(runs):
                _mirror_run(fake_server, run)
                time.sleep(0.001)
            _mirror_steps(fake_server, real, stepped)
            # Refreshes its metrics from the steps, keeping the server's duration.
            stepped_run = next(r for r in runs if r["id"] == stepped)
            fake_server.update_run(
                stepped, status="completed", run_ns=stepped_run["total_duration_ns"]
            )
            fake = httpx.Client(base_url=fake_server.base_url, timeout=30)
            open_fake = [_fake_view(run) for run in open_runs]
            yield Pair(
                real=real,
                fake=fake,
                runs=runs,
                agents=(first, second),
                stepped_run=stepped,
                open_runs_real=open_runs,
                open_runs_fake=open_fake,
            )
            fake.close()
    finally:
        real.close()
        workload.close()


def _background(workload: Workload, agent: str) -> str:
    run_id = workload.stream(agent, "slow [[tools=1 delay=3]]", background=True, leave_after=1)
    assert run_id is not None
    return run_id


def _seen_open(real: httpx.Client, workload: Workload, agent: str, run_id: str) -> dict[str, Any]:
    """The run's GET and list item while it runs, then wait for its end."""
    seen = {
        "get": real.get(f"/v1/runs/{run_id}").json(),
        "item": real.get("/v1/runs/", params={"agent_id": agent}).json()[0],
    }
    workload.wait_terminal(run_id)
    return seen


def _fake_view(seen: dict[str, Any]) -> dict[str, Any]:
    """The same open run copied into a fresh fake: its GET and list item."""
    with FakeLetta(semantics="letta-0.16.8") as fake:
        item = seen["item"]
        _mirror_run(fake, item)
        return {
            "get": httpx.get(f"{fake.base_url}/v1/runs/{item['id']}").json(),
            "item": httpx.get(f"{fake.base_url}/v1/runs/").json()[0],
        }


# ------------------------------------------------------------------ pagination


def _pivots(pair: Pair) -> list[str]:
    ids = [r["id"] for r in pair.runs]
    return [ids[1], ids[len(ids) // 2], ids[-2]]


@pytest.mark.parametrize("order", ["desc", "asc"])
@pytest.mark.parametrize("cursor", ["before", "after"])
def test_runs_list_cursors_are_swapped_like_the_real_server(
    pair: Pair, order: str, cursor: str
) -> None:
    for pivot in _pivots(pair):
        real, fake = pair.ids("/v1/runs/", order=order, limit=3, **{cursor: pivot})
        assert fake == real, f"order={order} {cursor}={pivot}"


def test_both_cursors_and_full_walks_match(pair: Pair) -> None:
    ids = [r["id"] for r in pair.runs]
    real, fake = pair.ids("/v1/runs/", before=ids[1], after=ids[-2], limit=1000)
    assert fake == real
    for order in ("asc", "desc"):
        # The §4.3 walk: `before` = next page in both orders.
        real_walk: list[str] = []
        fake_walk: list[str] = []
        for walk, client in ((real_walk, pair.real), (fake_walk, pair.fake)):
            params: dict[str, Any] = {"order": order, "limit": 4}
            while True:
                page = client.get("/v1/runs/", params=params).json()
                walk.extend(r["id"] for r in page)
                if len(page) < 4:
                    break
                params["before"] = page[-1]["id"]
        assert fake_walk == real_walk
        assert sorted(real_walk) == sorted(ids)


@pytest.mark.parametrize("cursor", ["before", "after"])
def test_unknown_cursor_is_ignored_like_the_real_server(pair: Pair, cursor: str) -> None:
    unknown = f"run-{uuid.uuid4()}"
    for order in ("asc", "desc"):
        real, fake = pair.ids("/v1/runs/", order=order, limit=2, **{cursor: unknown})
        assert fake == real


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"order": "asc"},
        {"limit": 2},
        {"statuses": "completed"},
        {"statuses": ["failed", "cancelled"]},
        {"active": "true"},
        {"active": "true", "statuses": "failed"},
        {"stop_reason": "end_turn"},
        {"background": "true"},
        {"background": "false"},
        {"ascending": "true", "order": "desc"},
    ],
    ids=repr,
)
def test_runs_list_filters_match(pair: Pair, params: dict[str, Any]) -> None:
    real, fake = pair.ids("/v1/runs/", limit=params.pop("limit", 1000), **params)
    assert fake == real


def test_agent_filters_match(pair: Pair) -> None:
    first, second = pair.agents
    real, fake = pair.ids("/v1/runs/", agent_id=second)
    assert fake == real
    real, fake = pair.ids("/v1/runs/", agent_ids=[first, second])
    assert fake == real
    real, fake = pair.ids("/v1/runs/", agent_id=second, agent_ids=first)
    assert fake == real
    real, fake = pair.ids("/v1/runs/active")
    assert fake == real


# ------------------------------------------------------------------ shapes and lifecycle


def test_finished_runs_are_the_same_json_in_get_and_list(pair: Pair) -> None:
    listed = {r["id"]: r for r in pair.fake.get("/v1/runs/", params={"limit": 1000}).json()}
    for run in pair.runs:
        assert list(listed[run["id"]]) == list(run), "key order"
        assert listed[run["id"]] == run
        real_get = pair.real.get(f"/v1/runs/{run['id']}").json()
        fake_get = pair.fake.get(f"/v1/runs/{run['id']}").json()
        assert fake_get == real_get
        assert real_get["total_duration_ns"] is None and real_get["ttft_ns"] is None


def test_open_runs_look_the_same(pair: Pair) -> None:
    statuses = [seen["get"]["status"] for seen in pair.open_runs_real]
    assert statuses == ["created", "running"]  # async stays created; streams run
    for real, fake in zip(pair.open_runs_real, pair.open_runs_fake, strict=True):
        assert fake["get"] == real["get"]
        assert fake["item"] == real["item"]


def test_usage_metrics_and_steps_have_the_same_shape_and_sums(pair: Pair) -> None:
    run_id = pair.stepped_run
    real, fake = pair.both(f"/v1/runs/{run_id}/usage")
    assert fake.json() == real.json()
    real, fake = pair.both(f"/v1/runs/{run_id}/metrics")
    real_metrics, fake_metrics = real.json(), fake.json()
    assert list(fake_metrics) == list(real_metrics)
    assert fake_metrics["num_steps"] == real_metrics["num_steps"] == 3
    real, fake = pair.both(f"/v1/runs/{run_id}/steps")
    for real_step, fake_step in zip(real.json(), fake.json(), strict=True):
        assert list(fake_step) == list(real_step)
        for key in (
            "id",
            "run_id",
            "agent_id",
            "model",
            "model_handle",
            "prompt_tokens",
            "completion_tokens",
            "total_tokens",
            "cached_input_tokens",
            "cache_write_tokens",
            "reasoning_tokens",
            "prompt_tokens_details",
            "completion_tokens_details",
            "status",
            "messages",
            "tags",
        ):
            assert fake_step[key] == real_step[key], key


@pytest.mark.parametrize("order", ["desc", "asc"])
@pytest.mark.parametrize("cursor", ["before", "after"])
def test_steps_cursors_are_conventional_like_the_real_server(
    pair: Pair, order: str, cursor: str
) -> None:
    path = f"/v1/runs/{pair.stepped_run}/steps"
    step_ids = [s["id"] for s in pair.real.get(path, params={"order": "asc"}).json()]
    for pivot in step_ids:
        real, fake = pair.ids(path, order=order, limit=1, **{cursor: pivot})
        assert fake == real, f"order={order} {cursor}={pivot}"


# ------------------------------------------------------------------ error bodies


_UNKNOWN_RUN = "run-00000000-0000-4000-8000-000000000000"


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/runs/", {"limit": 5000}),
        ("/v1/runs/", {"limit": "abc"}),
        ("/v1/runs/", {"order": "sideways"}),
        ("/v1/runs/", {"order_by": "duration"}),
        ("/v1/runs/", {"statuses": "paused"}),
        ("/v1/runs/", {"stop_reason": "bored"}),
        ("/v1/runs/", {"active": "maybe"}),
        ("/v1/runs/not-a-run", {}),
        (f"/v1/runs/{_UNKNOWN_RUN}", {}),
        (f"/v1/runs/{_UNKNOWN_RUN}/usage", {}),
        (f"/v1/runs/{_UNKNOWN_RUN}/metrics", {}),
        (f"/v1/runs/{_UNKNOWN_RUN}/steps", {}),
        (f"/v1/runs/{_UNKNOWN_RUN}/trace", {}),
        ("/v1/runs/", {"after": "not-a-run"}),
    ],
    ids=lambda v: v if isinstance(v, str) else repr(v),
)
def test_error_bodies_match(pair: Pair, path: str, params: dict[str, Any]) -> None:
    real, fake = pair.both(path, **params)
    assert (fake.status_code, _normalised(fake.text)) == (real.status_code, _normalised(real.text))


def test_unknown_step_cursor_and_bad_user_header_match(pair: Pair) -> None:
    path = f"/v1/runs/{pair.stepped_run}/steps"
    real, fake = pair.both(path, after=f"step-{uuid.uuid4()}")
    assert (fake.status_code, fake.text) == (real.status_code, real.text)
    headers = {"user_id": "not-a-user"}
    real = pair.real.get("/v1/runs/", headers=headers)
    fake = pair.fake.get("/v1/runs/", headers=headers)
    assert (fake.status_code, _normalised(fake.text)) == (real.status_code, _normalised(real.text))


def test_list_without_slash_redirects_like_the_real_server(pair: Pair) -> None:
    real = pair.real.get("/v1/runs", follow_redirects=False)
    fake = pair.fake.get("/v1/runs", follow_redirects=False)
    assert fake.status_code == real.status_code == 307


# ------------------------------------------------------------------ password mode

_PASSWORD = "parity-secret"


@pytest.fixture(scope="module")
def secure_pair(letta_stack: Stack) -> Iterator[tuple[str, str]]:
    """A second Letta process in password mode beside a fake with the same password."""
    port, proc = start_letta_process(
        letta_stack,
        "letta-secure",
        {"LETTA_SERVER_SECURE": "true", "LETTA_SERVER_PASSWORD": _PASSWORD},
    )
    try:
        with FakeLetta(semantics="letta-0.16.8", password=_PASSWORD) as fake:
            yield f"http://127.0.0.1:{port}", fake.base_url
    finally:
        proc.stop()


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/v1/runs/", {}),
        ("/v1/runs/", {"Authorization": "Bearer wrong"}),
        ("/v1/runs/", {"X-BARE-PASSWORD": "password wrong"}),
        (f"/v1/runs/{_UNKNOWN_RUN}", {}),
        ("/v1/health/", {}),
        ("/v1/runs/active", {"Authorization": f"Bearer {_PASSWORD}"}),
        (f"/v1/runs/{_UNKNOWN_RUN}", {"X-BARE-PASSWORD": f"password {_PASSWORD}"}),
    ],
    ids=lambda v: v if isinstance(v, str) else "+".join(v) or "no-auth",
)
def test_password_mode_answers_match(
    secure_pair: tuple[str, str], path: str, headers: dict[str, str]
) -> None:
    real_url, fake_url = secure_pair
    real = httpx.get(real_url + path, headers=headers, timeout=60)
    fake = httpx.get(fake_url + path, headers=headers, timeout=60)
    assert (fake.status_code, _normalised(fake.text)) == (real.status_code, _normalised(real.text))
