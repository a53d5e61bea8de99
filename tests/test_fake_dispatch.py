"""Dispatch (tests/fake_letta/dispatch.py): password mode, trailing-slash redirects,
404/405, the /latest mount.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.fake_checks import INDEX, connect, fixture, load_fixture_world
from tests.fake_letta.fake import FakeLetta

pytestmark = pytest.mark.usefixtures("no_leftover_fake_threads")


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


def test_redirects_to_trailing_slash_and_keeps_query(
    world_http: httpx.Client, world: FakeLetta
) -> None:
    response = world_http.get("/v1/runs?limit=2&order=asc")
    assert response.status_code == 307
    assert response.content == b""
    assert response.headers["location"] == f"{world.base_url}/v1/runs/?limit=2&order=asc"
    followed = world_http.get("/v1/runs?limit=2&order=asc", follow_redirects=True)
    assert followed.json() == fixture("pagination/asc_limit2_after_page1.json")
    assert world_http.get("/v1/health").status_code == 307
    assert world_http.get("/v1/health/").json() == fixture("server/health.json")
    assert world_http.get("/v1/nothing").status_code == 404
    assert world_http.post("/v1/runs/").status_code == 405
    assert world_http.get("/latest/runs/?limit=1").json() == fixture("auth/list_bearer_ok.json")
