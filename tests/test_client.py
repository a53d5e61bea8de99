"""The Letta client against respx: paging parameters, retries, errors, caps, bad items."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
import trustme

from exporter.letta.client import LettaClient
from exporter.letta.errors import (
    LettaAuthError,
    LettaBadResponse,
    LettaNotFound,
    LettaRequestError,
    LettaUnavailable,
)
from exporter.letta.http import build_http_client
from exporter.letta.requester import ClientOptions
from tests.conftest import load_fixture
from tests.fake_letta.fake import FakeLetta

# The client sends through httpx-aiohttp's transport, which respx's default (httpcore)
# mocker never sees; the "httpx" mocker swaps the transport httpx picks for a URL.
letta_api = respx.MockRouter(using="httpx", assert_all_called=False)
BASE = "http://letta.test"
LIST = f"{BASE}/v1/runs/"


def make_client(
    calls: list[tuple[str, str]] | None = None,
    invalid: list[str] | None = None,
    waits: list[float] | None = None,
    **options: Any,
) -> LettaClient:
    """A client whose retries wait on `waits` (a list), not the clock (test_retries.py
    tests the waits themselves)."""
    opts = {"retries": 2, **options}
    seen_calls = calls if calls is not None else []
    seen_invalid = invalid if invalid is not None else []
    seen_waits = waits if waits is not None else []

    async def sleep(seconds: float) -> None:
        seen_waits.append(seconds)

    return LettaClient(
        build_http_client(BASE, api_key="sekret-key", user_id=None, timeout=1.0),
        ClientOptions(**opts),
        on_request=lambda endpoint, code, seconds: seen_calls.append((endpoint, code)),
        on_invalid_item=lambda endpoint, reason: seen_invalid.append(endpoint),
        sleep=sleep,
    )


@letta_api
async def test_list_asks_newest_first_with_before_and_sends_the_bearer_key() -> None:
    route = letta_api.get(LIST).mock(return_value=httpx.Response(200, json=[]))
    client = make_client()
    await client.list_runs(limit=50, cursor="run-x")
    request = route.calls.last.request
    assert dict(request.url.params) == {"order": "desc", "limit": "50", "before": "run-x"}
    assert request.headers["authorization"] == "Bearer sekret-key"


@letta_api
async def test_active_listing_uses_the_active_flag() -> None:
    route = letta_api.get(LIST).mock(return_value=httpx.Response(200, json=[]))
    await make_client().list_runs(limit=10, active=True)
    assert route.calls.last.request.url.params["active"] == "true"


@letta_api
async def test_a_real_page_parses() -> None:
    letta_api.get(LIST).mock(
        return_value=httpx.Response(200, json=load_fixture("list/runs_order_desc.json"))
    )
    page = await make_client().list_runs(limit=100)
    assert page.raw_count == len(page.runs) == 29


@letta_api
async def test_5xx_then_success_is_retried_and_every_attempt_is_counted() -> None:
    letta_api.get(LIST).mock(
        side_effect=[httpx.Response(503), httpx.Response(500), httpx.Response(200, json=[])]
    )
    calls: list[tuple[str, str]] = []
    waits: list[float] = []
    page = await make_client(calls, waits=waits).list_runs(limit=1)
    assert page.runs == []
    assert calls == [("runs_list", "503"), ("runs_list", "500"), ("runs_list", "200")]
    assert len(waits) == 2  # one wait before each retry


@letta_api
async def test_persistent_5xx_raises_unavailable_after_the_retries() -> None:
    route = letta_api.get(LIST).mock(return_value=httpx.Response(502))
    with pytest.raises(LettaUnavailable) as info:
        await make_client().list_runs(limit=1)
    assert info.value.reason == "http_5xx"
    assert route.call_count == 3


@letta_api
async def test_other_4xx_is_not_retried() -> None:
    route = letta_api.get(LIST).mock(
        return_value=httpx.Response(422, json=load_fixture("errors/list_limit_0.json"))
    )
    with pytest.raises(LettaRequestError):
        await make_client().list_runs(limit=1)
    assert route.call_count == 1


@letta_api
async def test_401_says_to_check_the_api_key_and_never_shows_it() -> None:
    letta_api.get(LIST).mock(return_value=httpx.Response(401, json={"detail": "Unauthorized"}))
    with pytest.raises(LettaAuthError) as info:
        await make_client().list_runs(limit=1)
    assert "LETTA_API_KEY" in str(info.value)
    assert "sekret-key" not in str(info.value)
    assert info.value.reason == "auth"


@letta_api
async def test_404_on_one_run_is_not_found() -> None:
    letta_api.get(f"{LIST}run-gone").mock(
        return_value=httpx.Response(404, json=load_fixture("errors/run_unknown_404.json"))
    )
    with pytest.raises(LettaNotFound):
        await make_client().get_run("run-gone")


@letta_api
async def test_timeouts_are_retried_then_reported() -> None:
    route = letta_api.get(LIST).mock(side_effect=httpx.ReadTimeout("slow"))
    calls: list[tuple[str, str]] = []
    with pytest.raises(LettaUnavailable) as info:
        await make_client(calls).list_runs(limit=1)
    assert info.value.reason == "timeout"
    assert route.call_count == 3 and calls[0] == ("runs_list", "timeout")


@letta_api
async def test_connection_errors_are_reported_as_connect() -> None:
    letta_api.get(LIST).mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(LettaUnavailable) as info:
        await make_client().list_runs(limit=1)
    assert info.value.reason == "connect"


@letta_api
async def test_truncated_json_is_a_bad_response() -> None:
    letta_api.get(LIST).mock(return_value=httpx.Response(200, content=b'[{"id": "run-'))
    with pytest.raises(LettaBadResponse):
        await make_client().list_runs(limit=1)


@letta_api
async def test_a_body_over_the_cap_is_refused() -> None:
    body = json.dumps(load_fixture("list/runs_order_desc.json")).encode()
    letta_api.get(LIST).mock(return_value=httpx.Response(200, content=body))
    with pytest.raises(LettaBadResponse) as info:
        await make_client(max_response_bytes=1024).list_runs(limit=100)
    assert info.value.reason == "too_large"


@letta_api
async def test_one_invalid_item_is_skipped_and_counted_not_the_page() -> None:
    runs = load_fixture("list/runs_order_desc.json")[:3]
    broken = dict(runs[1])
    del broken["id"]
    letta_api.get(LIST).mock(return_value=httpx.Response(200, json=[runs[0], broken, runs[2]]))
    invalid: list[str] = []
    page = await make_client(invalid=invalid).list_runs(limit=3)
    assert [r.id for r in page.runs] == [runs[0]["id"], runs[2]["id"]]
    assert page.raw_count == 3
    assert invalid == ["runs_list"]


@letta_api
async def test_a_non_list_body_is_a_bad_response() -> None:
    letta_api.get(LIST).mock(return_value=httpx.Response(200, json={"detail": "?"}))
    with pytest.raises(LettaBadResponse):
        await make_client().list_runs(limit=1)


@letta_api
async def test_get_run_has_no_duration_as_the_real_server() -> None:
    run = load_fixture("runs/sync_end_turn/run.json")
    letta_api.get(f"{LIST}{run['id']}").mock(return_value=httpx.Response(200, json=run))
    parsed = await make_client().get_run(run["id"])
    assert parsed.id == run["id"] and parsed.total_duration_ns is None


def step_body(n: int, run_id: str = "run-1") -> dict[str, Any]:
    base = dict(load_fixture("runs/sync_multi_step/steps.json")[0])
    base.update(id=f"step-{n:04d}", run_id=run_id, prompt_tokens=n, completion_tokens=1)
    return base


@letta_api
async def test_steps_are_paged_with_after_until_a_short_page() -> None:
    steps = [step_body(n) for n in range(250)]

    def page(request: httpx.Request) -> httpx.Response:
        params = request.url.params
        assert params["order"] == "asc"
        start = 0
        if "after" in params:
            start = next(i for i, s in enumerate(steps) if s["id"] == params["after"]) + 1
        return httpx.Response(200, json=steps[start : start + int(params["limit"])])

    route = letta_api.get(f"{LIST}run-1/steps").mock(side_effect=page)
    got = await make_client().list_steps("run-1")
    assert [s.id for s in got] == [s["id"] for s in steps]
    assert route.call_count == 3
    assert sum(s.prompt_tokens or 0 for s in got) == sum(range(250))


@letta_api
async def test_a_steps_page_repeating_itself_ends_the_paging() -> None:
    same = [step_body(n) for n in range(100)]
    route = letta_api.get(f"{LIST}run-1/steps").mock(return_value=httpx.Response(200, json=same))
    got = await make_client().list_steps("run-1")
    assert len(got) == 100 and route.call_count == 2


@letta_api
async def test_usage_metrics_tool_and_step_metrics_parse_real_shapes() -> None:
    letta_api.get(f"{LIST}run-1/usage").mock(
        return_value=httpx.Response(200, json=load_fixture("runs/sync_multi_step/usage.json"))
    )
    letta_api.get(f"{LIST}run-1/metrics").mock(
        return_value=httpx.Response(200, json=load_fixture("runs/sync_multi_step/metrics.json"))
    )
    tool = load_fixture("agents/alpha.json")["tools"][0]
    letta_api.get(f"{BASE}/v1/tools/{tool['id']}").mock(return_value=httpx.Response(200, json=tool))
    letta_api.get(f"{BASE}/v1/steps/step-1/metrics").mock(
        return_value=httpx.Response(200, json={"id": "step-1", "step_ns": 1_500_000_000})
    )
    client = make_client()
    usage = await client.get_usage("run-1")
    assert (usage.prompt_tokens, usage.completion_tokens) == (2883, 51)
    metrics = await client.get_run_metrics("run-1")
    assert metrics.num_steps == 3 and metrics.tools_used == [tool["id"]]
    assert (await client.get_tool(tool["id"])).name == tool["name"]
    assert (await client.get_step_metrics("step-1")).step_ns == 1_500_000_000


@letta_api
async def test_garbage_from_an_enrichment_endpoint_is_a_bad_response() -> None:
    letta_api.get(f"{LIST}run-1/usage").mock(return_value=httpx.Response(200, content=b"<html>"))
    with pytest.raises(LettaBadResponse):
        await make_client().get_usage("run-1")


@letta_api
async def test_a_body_that_does_not_decode_is_a_bad_response() -> None:
    letta_api.get(LIST).mock(
        return_value=httpx.Response(
            200, headers={"content-encoding": "gzip"}, stream=httpx.ByteStream(b"[]")
        )
    )
    with pytest.raises(LettaBadResponse):
        await make_client().list_runs(limit=1)


# ---- over real sockets: what the aiohttp transport turns each failure into -------------


def socket_client(base_url: str, calls: list[tuple[str, str]]) -> LettaClient:
    return LettaClient(
        build_http_client(base_url, api_key="sekret-key", user_id=None, timeout=0.3),
        ClientOptions(retries=0),
        on_request=lambda endpoint, code, seconds: calls.append((endpoint, code)),
    )


@pytest.mark.parametrize(
    ("kind", "reason", "code"),
    [
        ("reset", "connect", "connect_error"),
        ("truncated", "connect", "connect_error"),
        ("timeout", "timeout", "timeout"),
    ],
)
async def test_socket_failures_keep_their_reason(kind: str, reason: str, code: str) -> None:
    calls: list[tuple[str, str]] = []
    with FakeLetta() as fake:
        # aiohttp resends an idempotent request once on a broken connection (RFC 9112
        # §9.3.1.1), so a reset has to happen twice to reach the client.
        fake.inject(kind, times=2 if kind == "reset" else 1, delay=2.0)
        client = socket_client(fake.base_url, calls)
        try:
            with pytest.raises(LettaUnavailable) as info:
                await client.list_runs(limit=1)
            assert info.value.reason == reason and calls == [("runs_list", code)]
            assert (await client.list_runs(limit=1)).runs == []  # the pool recovers
        finally:
            await client.aclose()


async def test_a_refused_connection_is_connect() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        client = socket_client(f"http://127.0.0.1:{port}", [])
        try:
            with pytest.raises(LettaUnavailable) as info:
                await client.list_runs(limit=1)
            assert info.value.reason == "connect"
            message = str(info.value)
            assert f"nothing answers at http://127.0.0.1:{port} (connection refused)" in message
            assert "does Letta run there" in message and "LETTA_BASE_URL" in message
        finally:
            await client.aclose()


async def test_a_host_that_does_not_resolve_is_named_with_the_setting_to_check() -> None:
    # .invalid never resolves (RFC 2606); the resolver answers without the network.
    client = socket_client("http://letta.invalid:8283", [])
    try:
        with pytest.raises(LettaUnavailable) as info:
            await client.list_runs(limit=1)
        message = str(info.value)
        assert "cannot resolve the host of http://letta.invalid:8283" in message
        assert "LETTA_BASE_URL (--letta.url)" in message
    finally:
        await client.aclose()


@letta_api
async def test_a_404_on_the_runs_list_says_the_url_must_not_end_in_v1() -> None:
    letta_api.get(LIST).mock(return_value=httpx.Response(404, json={"detail": "Not Found"}))
    client = make_client()
    with pytest.raises(LettaNotFound) as info:
        await client.list_runs(limit=1)
    assert "must be the server's root, without /v1" in str(info.value)
    assert "(Not Found)" in str(info.value)


@letta_api
async def test_a_4xx_passes_on_lettas_detail_bounded_and_without_a_credential() -> None:
    detail = "Invalid API key sekret-key-123456789 for Bearer sekret-key: " + "x" * 500
    letta_api.get(LIST).mock(return_value=httpx.Response(422, json={"detail": detail}))
    client = make_client()
    with pytest.raises(LettaRequestError) as info:
        await client.list_runs(limit=1)
    message = str(info.value)
    assert message.startswith("runs_list: Letta answered 422 (Invalid API key <redacted>")
    assert "sekret" not in message and len(message) < 300


async def test_an_answer_that_is_not_http_is_connect_not_a_crash() -> None:
    async def answer_nonsense(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer_nonsense, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    calls: list[tuple[str, str]] = []
    client = socket_client(f"http://127.0.0.1:{port}", calls)
    try:
        with pytest.raises(LettaUnavailable) as info:
            await client.list_runs(limit=1)
        assert info.value.reason == "connect" and calls == [("runs_list", "connect_error")]
    finally:
        await client.aclose()
        server.close()
        await server.wait_closed()


async def relay_over_tls(target: str, cert: trustme.LeafCert) -> asyncio.Server:
    """A TLS front for a plain HTTP server, as a reverse proxy before Letta would be."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(context)
    host, port = target.removeprefix("http://").split(":")

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
        await asyncio.gather(
            pipe(reader, upstream_writer), pipe(upstream_reader, writer), return_exceptions=True
        )

    return await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)


@pytest.mark.parametrize("trusted", [True, False])
async def test_letta_behind_https_with_a_private_ca(
    trusted: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca = trustme.CA()
    if trusted:
        ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
        monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
    with FakeLetta() as fake:
        fake.create_run("agent-00000000-0000-4000-8000-000000000001")
        relay = await relay_over_tls(fake.base_url, ca.issue_cert("127.0.0.1"))
        port = relay.sockets[0].getsockname()[1]
        client = socket_client(f"https://127.0.0.1:{port}", [])
        try:
            if trusted:
                assert len((await client.list_runs(limit=5)).runs) == 1
            else:
                with pytest.raises(LettaUnavailable) as info:
                    await client.list_runs(limit=5)
                assert info.value.reason == "connect"
                assert str(info.value) == (
                    "runs_list: Letta's TLS certificate is not trusted (unable to get local "
                    "issuer certificate); for a private CA, point SSL_CERT_FILE at a bundle "
                    "that holds it"
                )
        finally:
            await client.aclose()
            relay.close()
            await relay.wait_closed()


async def test_proxy_variables_are_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    request_lines: list[bytes] = []

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        request_lines.append(head.split(b"\r\n", 1)[0])
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n")
        writer.write(b"content-length: 2\r\nconnection: close\r\n\r\n[]")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(proxy, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
    client = socket_client("http://letta.invalid:8283", [])  # resolvable only by the proxy
    try:
        assert (await client.list_runs(limit=1)).runs == []
        assert request_lines == [
            b"GET http://letta.invalid:8283/v1/runs/?order=desc&limit=1 HTTP/1.1"
        ]
    finally:
        await client.aclose()
        server.close()
        await server.wait_closed()
