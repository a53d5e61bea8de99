"""What the Letta client sends, as letta-client does, and how it follows a rotated key."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest
import respx

from exporter import __version__
from exporter.cli.client import client_from_settings
from exporter.cli.config import load_settings
from exporter.letta.auth import BearerAuth
from exporter.letta.client import LettaClient
from exporter.letta.errors import LettaAuthError
from exporter.letta.http import build_http_client
from exporter.letta.requester import ClientOptions

letta_api = respx.MockRouter(using="httpx", assert_all_called=False)
SELF_HOSTED = "http://letta.test"
CLOUD = "https://api.letta.com"


@letta_api
async def test_project_custom_and_user_agent_headers_go_on_every_request(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    route = letta_api.get(f"{CLOUD}/v1/runs/").mock(return_value=httpx.Response(200, json=[]))
    monkeypatch.setenv("LETTA_API_KEY", "sk-let-key")
    monkeypatch.setenv("LETTA_PROJECT_ID", "proj-1")
    monkeypatch.setenv("LETTA_PROJECT", "my-project")
    monkeypatch.setenv("LETTA_CUSTOM_HEADERS", "X-Gateway: from-env\nX-Team: env")
    headers_file = tmp_path / "headers"
    headers_file.write_text("X-Team: from-file\n")
    settings = load_settings({"base_url": CLOUD, "letta_headers_file": str(headers_file)})
    client = client_from_settings(settings)
    try:
        await client.list_runs(limit=1)
    finally:
        await client.aclose()
    sent = route.calls.last.request.headers
    assert sent["authorization"] == "Bearer sk-let-key"
    assert sent["x-project-id"] == "proj-1"
    assert sent["x-project"] == "my-project"
    assert sent["x-gateway"] == "from-env"
    assert sent["x-team"] == "from-file"
    assert sent["user-agent"] == f"letta-exporter/{__version__}"
    assert "user_id" not in sent


@letta_api
async def test_user_id_is_not_sent_to_letta_cloud(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    route = letta_api.get(f"{CLOUD}/v1/runs/").mock(return_value=httpx.Response(200, json=[]))
    user = "user-00000000-0000-4000-8000-000000000000"
    with caplog.at_level(logging.WARNING):
        client = client_from_settings(load_settings({"base_url": CLOUD, "user_id": user}))
    try:
        await client.list_runs(limit=1)
    finally:
        await client.aclose()
    assert "user_id" not in route.calls.last.request.headers
    assert "--letta.user-id does not apply to Letta Cloud" in caplog.text


@pytest.mark.parametrize(
    ("base_url", "says", "not_says"),
    [(CLOUD, "check the API key", "password"), (SELF_HOSTED, "server password", "API key (")],
)
@letta_api
async def test_the_auth_error_speaks_of_the_key_on_cloud_and_the_password_self_hosted(
    base_url: str, says: str, not_says: str
) -> None:
    letta_api.get(f"{base_url}/v1/runs/").mock(return_value=httpx.Response(401, json={}))
    client = client_from_settings(load_settings({"base_url": base_url, "api_key": "sk-let-x"}))
    try:
        with pytest.raises(LettaAuthError) as info:
            await client.list_runs(limit=1)
    finally:
        await client.aclose()
    assert says in str(info.value) and not_says not in str(info.value)
    assert "sk-let-x" not in str(info.value)


def _accepting(key: str, sent: list[str] | None = None) -> respx.Route:
    def answer(request: httpx.Request) -> httpx.Response:
        if sent is not None:
            sent.append(request.headers.get("authorization", ""))
        ok = request.headers.get("authorization") == f"Bearer {key}"
        return httpx.Response(200 if ok else 401, json=[] if ok else {"detail": "Unauthorized"})

    return letta_api.get(f"{SELF_HOSTED}/v1/runs/").mock(side_effect=answer)


@letta_api
async def test_a_rotated_key_file_is_used_without_a_restart(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("old-key\n")
    settings = load_settings({"base_url": SELF_HOSTED, "api_key_file": str(key_file)})
    client = client_from_settings(settings)
    try:
        _accepting("old-key")
        await client.list_runs(limit=1)
        # The server moves to the new key and the file follows: the request that meets
        # the 401 re-reads the file and is sent again, so no poll fails.
        key_file.write_text("new-key-longer\n")
        sent: list[str] = []
        _accepting("new-key-longer", sent)
        await client.list_runs(limit=1)
        assert sent == ["Bearer old-key", "Bearer new-key-longer"]
    finally:
        await client.aclose()


@letta_api
async def test_a_401_before_the_file_changes_fails_then_recovers(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("old-key\n")
    auth = BearerAuth("old-key", key_file, check_every_s=0.0)
    http = httpx.AsyncClient(base_url=SELF_HOSTED, auth=auth)
    client = LettaClient(http, ClientOptions(retries=0))
    try:
        _accepting("new-key-2")
        with pytest.raises(LettaAuthError):
            await client.list_runs(limit=1)  # the server rotated first: a plain 401
        key_file.write_text("new-key-2\n")
        await client.list_runs(limit=1)
    finally:
        await client.aclose()


def test_an_unreadable_or_empty_key_file_keeps_the_previous_key_and_warns_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("good-key\n")
    auth = BearerAuth("good-key", key_file, check_every_s=0.0)
    key_file.write_text("   \n")  # a half-written rotation
    with caplog.at_level(logging.INFO, logger="exporter.letta.auth"):
        assert auth.current_key() == "good-key"
        assert auth.current_key() == "good-key"
        key_file.unlink()
        assert auth.current_key() == "good-key"
        key_file.write_text("next-key\n")
        assert auth.current_key() == "next-key"
    messages = [r.getMessage() for r in caplog.records]
    assert sum("it is empty" in m for m in messages) == 1
    assert sum("No such file" in m for m in messages) == 1
    assert any("changed: using the new key" in m for m in messages)
    assert not any("key\n" in m or "next-key" in m or "good-key" in m for m in messages)
    assert "good-key" not in repr(auth)


@letta_api
async def test_extra_headers_cannot_replace_the_key_or_the_project_in_any_case() -> None:
    route = letta_api.get(f"{SELF_HOSTED}/v1/runs/").mock(return_value=httpx.Response(200, json=[]))
    http = build_http_client(
        SELF_HOSTED,
        api_key="sk-let-key",
        user_id=None,
        timeout=1.0,
        project_id="proj-1",
        extra_headers={"authorization": "Bearer other", "x-project-id": "proj-2", "X-A": "1"},
    )
    client = LettaClient(http)
    try:
        await client.list_runs(limit=1)
    finally:
        await client.aclose()
    sent = route.calls.last.request.headers
    assert sent.get_list("authorization") == ["Bearer sk-let-key"]
    assert sent.get_list("x-project-id") == ["proj-1"]
    assert sent["x-a"] == "1"
