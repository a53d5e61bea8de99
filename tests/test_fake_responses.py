"""Error bodies (tests/fake_letta/responses.py) equal the captured 0.16.8 ones."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.fake_checks import INDEX, fixture

pytestmark = pytest.mark.usefixtures("no_leftover_fake_threads")


USER_ID_UNKNOWN = "user-3f1c2a4b-9d8e-4f70-8a6b-1c2d3e4f5a6b"


ERROR_FIXTURES = [entry for entry in INDEX if entry["file"].startswith("errors/")]


ERROR_HEADERS = {
    "errors/list_malformed_user_id_header.json": {"user_id": "nobody"},
    "errors/list_unknown_user_id_header.json": {"user_id": USER_ID_UNKNOWN},
    "errors/list_bearer_ignored_when_not_secure.json": {"authorization": "Bearer nope"},
}


@pytest.mark.parametrize("entry", ERROR_FIXTURES, ids=lambda e: e["file"])
def test_error_bodies_equal_fixtures(world_http: httpx.Client, entry: dict[str, Any]) -> None:
    response = world_http.get(entry["url"], headers=ERROR_HEADERS.get(entry["file"], {}))
    assert response.status_code == entry["status"]
    assert response.json() == fixture(entry["file"])
    body = response.json()
    if response.status_code == 422:
        assert list(body) == ["trace_id", "detail"] and isinstance(body["detail"], str)
    elif response.status_code in (400, 404, 501):
        assert list(body) == ["detail"]
