"""Faults (tests/fake_letta/faults.py): every kind, aimed by path, and the server
survives them all.
"""

from __future__ import annotations

import json
import re

import httpx
import pytest

from tests.fake_checks import MISSING_TOOL, connect, ids_of
from tests.fake_letta.fake import FakeLetta

pytestmark = pytest.mark.usefixtures("no_leftover_fake_threads")


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
        for _ in range(2):  # the client gives up; how fast is bench_fake's business
            with pytest.raises(httpx.ReadTimeout):
                http.get("/v1/runs/")
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


def test_one_status_to_everything_then_normal_again(fake: FakeLetta, http: httpx.Client) -> None:
    fake.answer_everything(403)
    assert [http.get(p).status_code for p in ("/v1/runs/", "/v1/health/")] == [403, 403]
    assert http.get("/v1/runs/").json() == {"detail": "Forbidden"}
    fake.answer_everything(None)
    assert http.get("/v1/runs/").status_code == 200


def test_answers_at_random_come_at_their_share_with_retry_after(
    fake: FakeLetta, http: httpx.Client
) -> None:
    fake.answer_at_random(429, 0.25, retry_after="1", seed=5)
    fake.answer_at_random(503, 0.25, seed=5)
    answers = [http.get("/v1/runs/") for _ in range(400)]
    statuses = [a.status_code for a in answers]
    assert 60 <= statuses.count(429) <= 140 and 60 <= statuses.count(503) <= 140
    assert all(a.headers["retry-after"] == "1" for a in answers if a.status_code == 429)
    assert fake.random_answers == statuses.count(429) + statuses.count(503)
    fake.answer_at_random(429, 0)
    fake.answer_at_random(503, 0)
    assert all(http.get("/v1/runs/").status_code == 200 for _ in range(20))
