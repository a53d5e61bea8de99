"""--web.config.file: TLS, mutual TLS, basic auth and reloads on a real server; bad files."""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import pytest
import trustme
from prometheus_client import CollectorRegistry

from exporter.cli.config import load_settings
from exporter.metrics.snapshot import Health
from exporter.web.config import WebSecurity, load_web_config
from exporter.web.errors import WebConfigError
from exporter.web.server import HANDSHAKE_TIMEOUT_S, App, HttpServer
from exporter.web.watcher import WebConfigWatcher
from tests import harness
from tests.fake_letta.fake import FakeLetta

DOCKERFILE = Path(__file__).parents[1] / "Dockerfile"

# Cost 4: the lowest bcrypt allows, so the tests do not wait on hashing.
PASSWORD = "s3cret"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def pki(ca: trustme.CA, tmp_path: Path) -> Path:
    """Server cert, key and client CA in tmp_path, named as the configs below expect."""
    server = ca.issue_cert("127.0.0.1", "localhost")
    server.cert_chain_pems[0].write_to_path(str(tmp_path / "server.crt"))
    server.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.crt"))
    return tmp_path


def write_config(directory: Path, text: str) -> Path:
    path = directory / "web.yml"
    path.write_text(text)
    return path


def client_context(ca: trustme.CA, client_cert: trustme.LeafCert | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    if client_cert is not None:
        client_cert.configure_cert(context)
    return context


def auth(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


class Running:
    """A real HttpServer on 127.0.0.1 with an ephemeral port."""

    def __init__(
        self, web: WebSecurity | WebConfigWatcher | None, *, health_open: bool = True
    ) -> None:
        health = Health()
        health.mark_success(time.time())
        watcher = WebConfigWatcher(web) if isinstance(web, WebSecurity) else web
        app = App(
            CollectorRegistry(),
            lambda: health,
            stale_after_s=300,
            web=watcher,
            health_open=health_open,
        )
        self.server = HttpServer(app, "127.0.0.1", 0, web=watcher)
        self.server.start()
        scheme = "https" if self.server.tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.server.port}"


@pytest.fixture
def serve() -> Iterator[Any]:
    running: list[Running] = []

    def start(web: WebSecurity | WebConfigWatcher | None, **kwargs: Any) -> Running:
        server = Running(web, **kwargs)
        running.append(server)
        return server

    yield start
    for server in running:
        server.server.stop()


def test_https_serves_and_plain_http_is_refused(pki: Path, ca: trustme.CA, serve: Any) -> None:
    web = load_web_config(
        write_config(pki, "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n")
    )
    running = serve(web)
    assert running.url.startswith("https://")
    with httpx.Client(verify=client_context(ca), timeout=5) as client:
        response = client.get(f"{running.url}/metrics")
    assert response.status_code == 200
    plain = running.url.replace("https://", "http://")
    try:
        answer = httpx.get(f"{plain}/metrics", timeout=5)
    except httpx.TransportError:
        return
    assert answer.status_code == 400


def test_without_a_config_file_the_server_stays_plain_and_open(serve: Any) -> None:
    running = serve(None)
    assert running.url.startswith("http://")
    assert httpx.get(f"{running.url}/metrics", timeout=5).status_code == 200


@pytest.fixture
def basic_tls(pki: Path) -> WebSecurity:
    return load_web_config(
        write_config(
            pki,
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
            f"basic_auth_users:\n  prometheus: '{HASH}'\n"
            "http_server_config:\n  http2: true\n  headers:\n    X-Frame-Options: deny\n",
        )
    )


def test_basic_auth_accepts_rejects_and_challenges(
    basic_tls: WebSecurity, ca: trustme.CA, serve: Any
) -> None:
    running = serve(basic_tls)
    with httpx.Client(verify=client_context(ca), timeout=5) as client:
        good = client.get(f"{running.url}/metrics", headers=auth("prometheus", PASSWORD))
        wrong = client.get(f"{running.url}/metrics", headers=auth("prometheus", "guess"))
        nobody = client.get(f"{running.url}/metrics", headers=auth("nobody", PASSWORD))
        missing = client.get(f"{running.url}/metrics")
        garbage = client.get(f"{running.url}/", headers={"Authorization": "Basic !!!"})
    assert good.status_code == 200
    assert good.headers["X-Frame-Options"] == "deny"
    for response in (wrong, nobody, missing, garbage):
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == 'Basic realm="letta-exporter"'
        # The configured headers go on refusals too, as in the toolkit.
        assert response.headers["X-Frame-Options"] == "deny"
        assert b"# HELP" not in response.content


@pytest.mark.parametrize(("health_open", "expected"), [(True, 200), (False, 401)])
def test_health_endpoints_follow_the_health_open_option(
    basic_tls: WebSecurity, ca: trustme.CA, serve: Any, health_open: bool, expected: int
) -> None:
    running = serve(basic_tls, health_open=health_open)
    with httpx.Client(verify=client_context(ca), timeout=5) as client:
        for path in ("/healthz", "/readyz"):
            assert client.get(f"{running.url}{path}").status_code == expected
        # Only the two probes: the landing page and /metrics stay behind auth.
        assert client.get(f"{running.url}/").status_code == 401
        assert client.get(f"{running.url}/metrics").status_code == 401


def test_health_open_defaults_to_true_and_reads_its_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert load_settings({}).web_health_open is True
    monkeypatch.setenv("LETTA_EXPORTER_WEB_HEALTH_OPEN", "false")
    assert load_settings({}).web_health_open is False


@pytest.fixture
def mtls(pki: Path) -> WebSecurity:
    return load_web_config(
        write_config(
            pki,
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
            "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n",
        )
    )


def test_mutual_tls_refuses_clients_without_a_certificate(
    mtls: WebSecurity, ca: trustme.CA, serve: Any
) -> None:
    running = serve(mtls)
    with (
        pytest.raises(httpx.TransportError),
        httpx.Client(verify=client_context(ca), timeout=5) as client,
    ):
        client.get(f"{running.url}/metrics")


def test_mutual_tls_refuses_certificates_of_another_ca(
    mtls: WebSecurity, ca: trustme.CA, serve: Any
) -> None:
    running = serve(mtls)
    stranger = trustme.CA().issue_cert("client.example")
    with (
        pytest.raises(httpx.TransportError),
        httpx.Client(verify=client_context(ca, stranger), timeout=5) as client,
    ):
        client.get(f"{running.url}/metrics")


def test_mutual_tls_accepts_a_certificate_signed_by_the_client_ca(
    mtls: WebSecurity, ca: trustme.CA, serve: Any
) -> None:
    running = serve(mtls)
    cert = ca.issue_cert("client.example")
    with httpx.Client(verify=client_context(ca, cert), timeout=5) as client:
        assert client.get(f"{running.url}/metrics").status_code == 200


@pytest.mark.parametrize(("allowed", "ok"), [("client.example", True), ("other.example", False)])
def test_client_allowed_sans(pki: Path, ca: trustme.CA, serve: Any, allowed: str, ok: bool) -> None:
    web = load_web_config(
        write_config(
            pki,
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
            "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n"
            f"  client_allowed_sans: [{allowed}]\n",
        )
    )
    running = serve(web)
    cert = ca.issue_cert("client.example")
    with httpx.Client(verify=client_context(ca, cert), timeout=5) as client:
        if ok:
            assert client.get(f"{running.url}/metrics").status_code == 200
        else:
            with pytest.raises(httpx.TransportError):
                client.get(f"{running.url}/metrics")


def test_a_client_that_never_handshakes_does_not_block_others(
    pki: Path, ca: trustme.CA, serve: Any
) -> None:
    web = load_web_config(
        write_config(pki, "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n")
    )
    running = serve(web)
    # Connected first, so accept() meets them before the real client (the backlog is in
    # order); a server that waited on their handshakes in accept() would keep the client
    # waiting HANDSHAKE_TIMEOUT_S for each, beyond the client's own timeout.
    silent = [socket.create_connection(("127.0.0.1", running.server.port)) for _ in range(3)]
    try:
        timeout = HANDSHAKE_TIMEOUT_S / 2
        with httpx.Client(verify=client_context(ca), timeout=timeout) as client:
            assert client.get(f"{running.url}/metrics").status_code == 200
    finally:
        for sock in silent:
            sock.close()


def test_inline_certificate_and_rate_limit(ca: trustme.CA, tmp_path: Path, serve: Any) -> None:
    server = ca.issue_cert("127.0.0.1")
    cert = server.cert_chain_pems[0].bytes().decode()
    key = server.private_key_pem.bytes().decode()
    indent = "\n".join("    " + line for line in cert.splitlines())
    key_indent = "\n".join("    " + line for line in key.splitlines())
    web = load_web_config(
        write_config(
            tmp_path,
            f"tls_server_config:\n  cert: |\n{indent}\n  key: |\n{key_indent}\n"
            "rate_limit:\n  interval: 1h\n  burst: 2\n",
        )
    )
    running = serve(web)
    with httpx.Client(verify=client_context(ca), timeout=5) as client:
        codes = [client.get(f"{running.url}/metrics").status_code for _ in range(3)]
    assert codes == [200, 200, 429]


def test_basic_auth_without_tls_serves_plain_http(tmp_path: Path, serve: Any) -> None:
    web = load_web_config(write_config(tmp_path, f"basic_auth_users:\n  u: '{HASH}'\n"))
    running = serve(web)
    assert running.url.startswith("http://")
    assert httpx.get(f"{running.url}/metrics", timeout=5).status_code == 401
    assert httpx.get(f"{running.url}/metrics", headers=auth("u", PASSWORD)).status_code == 200


def test_an_empty_file_switches_nothing_on(tmp_path: Path) -> None:
    web = load_web_config(write_config(tmp_path, ""))
    assert web.ssl_context is None and web.authenticator is None


BAD_FILES = [
    (
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  certfile: x\n",
        "tls_server_config.certfile: unknown field",
    ),
    ("basic_auth_user:\n  u: x\n", "basic_auth_user: unknown field"),
    (
        "tls_server_config:\n  cert_file: missing.crt\n  key_file: server.key\n",
        "tls_server_config.cert_file: no such file",
    ),
    ("tls_server_config:\n  cert_file: server.crt\n", "tls_server_config.key_file: missing"),
    (
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.crt\n",
        "tls_server_config.key_file: no PEM private key",
    ),
    (
        "tls_server_config:\n  cert_file: server.key\n  key_file: server.key\n",
        "tls_server_config.cert_file: no PEM certificate",
    ),
    (
        "tls_server_config:\n  cert_file: server.crt\n  key_file: other.key\n",
        "tls_server_config.key_file: does not belong to the certificate",
    ),
    ("basic_auth_users:\n  alice: plaintext\n", "basic_auth_users.alice: not a bcrypt hash"),
    ("basic_auth_users:\n\talice: x\n", "line 2: not valid YAML"),
    ("- a list\n", "the file must be a YAML mapping"),
    (
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        "  client_auth_type: RequireAndVerifyClientCert\n",
        "tls_server_config.client_ca_file: missing",
    ),
    (
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        "  client_ca_file: ca.crt\n",
        "tls_server_config.client_ca_file: set, but client_auth_type is NoClientCert",
    ),
    (
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        "  client_auth_type: Sometimes\n",
        "tls_server_config.client_auth_type: ",
    ),
    (
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        "  min_version: TLS13\n  max_version: TLS12\n",
        "tls_server_config.min_version: TLS13 is above max_version TLS12",
    ),
    (
        "http_server_config:\n  headers:\n    Server: letta\n",
        "http_server_config.headers.Server: this header cannot be configured",
    ),
    (
        "http_server_config:\n  headers:\n    X-Frame-Options: allow\n",
        "http_server_config.headers.X-Frame-Options: must be one of deny, sameorigin",
    ),
    ("http_server_config:\n  http2: maybe\n", "http_server_config.http2: "),
]


@pytest.mark.parametrize(("text", "named"), BAD_FILES)
def test_a_bad_file_is_one_sentence_naming_the_field(
    pki: Path, ca: trustme.CA, text: str, named: str
) -> None:
    ca.issue_cert("other.example").private_key_pem.write_to_path(str(pki / "other.key"))
    path = write_config(pki, text)
    with pytest.raises(WebConfigError) as info:
        load_web_config(path)
    message = str(info.value)
    assert message.startswith(f"invalid --web.config.file ({path}): {named}"), message
    assert "\n" not in message


def test_a_missing_config_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "absent.yml"
    with pytest.raises(WebConfigError, match=r"absent\.yml\): no such file$"):
        load_web_config(path)


def test_go_only_options_are_accepted_and_ignored(
    pki: Path, caplog: pytest.LogCaptureFixture
) -> None:
    web = load_web_config(
        write_config(
            pki,
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
            "  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]\n"
            "  curve_preferences: [X25519]\n  prefer_server_cipher_suites: false\n",
        )
    )
    assert web.ssl_context is not None
    assert "cipher_suites ignored" in caplog.text and "curve_preferences ignored" in caplog.text


def test_the_command_exits_2_on_a_bad_web_config_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, "tls_server_config:\n  cert_file: gone.crt\n  key_file: k\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "exporter",
            f"--web.config.file={path}",
            f"--state.path={tmp_path / 'state.sqlite'}",
            "--web.listen-address=127.0.0.1:0",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last == (
        f"letta-exporter: invalid --web.config.file ({path}): "
        f"tls_server_config.cert_file: no such file ({tmp_path / 'gone.crt'})"
    )
    assert not (tmp_path / "state.sqlite").exists()


def test_the_dockerfile_healthcheck_passes_over_http_and_https(
    pki: Path, basic_tls: WebSecurity, serve: Any
) -> None:
    """The image's HEALTHCHECK command, run for real against both kinds of server."""
    match = re.search(r"HEALTHCHECK .*?CMD (\[.*?\])\n", DOCKERFILE.read_text(), re.S)
    assert match is not None
    script = json.loads(match.group(1))[2]
    for web in (None, basic_tls):
        port = serve(web).server.port
        env = {**os.environ, "LETTA_EXPORTER_WEB_LISTEN_ADDRESS": f"127.0.0.1:{port}"}
        result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True)
        assert result.returncode == 0, result.stderr
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        free = sock.getsockname()[1]
    env = {**os.environ, "LETTA_EXPORTER_WEB_LISTEN_ADDRESS": f"127.0.0.1:{free}"}
    assert subprocess.run([sys.executable, "-c", script], env=env, capture_output=True).returncode


# ---- reloading: rotated certificates and edited users without a restart ----------------

TLS_CONFIG = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"


def issue_server_cert(issuer: trustme.CA, directory: Path, *, key_only: bool = False) -> None:
    """Write a new server.crt/server.key pair from `issuer` (only the key with key_only)."""
    leaf = issuer.issue_cert("127.0.0.1", "localhost")
    if not key_only:
        leaf.cert_chain_pems[0].write_to_path(str(directory / "server.crt"))
    leaf.private_key_pem.write_to_path(str(directory / "server.key"))


def answers(url: str, ca: trustme.CA, **kwargs: Any) -> int | None:
    """The status of GET url trusting only `ca`, or None when TLS refuses the server."""
    try:
        with httpx.Client(verify=client_context(ca), timeout=5) as client:
            return client.get(url, **kwargs).status_code
    except httpx.ConnectError:
        return None


def test_a_rotated_certificate_serves_the_next_connection(
    pki: Path, ca: trustme.CA, serve: Any
) -> None:
    watcher = WebConfigWatcher(load_web_config(write_config(pki, TLS_CONFIG)), check_every_s=0)
    running = serve(watcher)
    assert answers(f"{running.url}/metrics", ca) == 200
    renewed_by = trustme.CA()  # a new issuer shows which certificate is served
    issue_server_cert(renewed_by, pki)
    assert answers(f"{running.url}/metrics", renewed_by) == 200
    assert answers(f"{running.url}/metrics", ca) is None
    assert watcher.last_reload_ok


def test_a_change_that_does_not_load_keeps_the_previous_configuration(
    pki: Path, ca: trustme.CA, serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    watcher = WebConfigWatcher(load_web_config(write_config(pki, TLS_CONFIG)), check_every_s=0)
    running = serve(watcher)
    renewed_by = trustme.CA()
    # A rotation caught half-way: the new key is there, its certificate not yet.
    issue_server_cert(renewed_by, pki, key_only=True)
    for _ in range(3):
        assert answers(f"{running.url}/metrics", ca) == 200  # the old pair still serves
    assert not watcher.last_reload_ok
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [
        f"invalid --web.config.file ({pki / 'web.yml'}): tls_server_config.key_file: does not "
        "belong to the certificate in cert_file; still serving with the previous web "
        "configuration"
    ], "one warning per failed change, not per connection"
    issue_server_cert(renewed_by, pki)  # the rotation completes
    assert answers(f"{running.url}/metrics", renewed_by) == 200
    assert watcher.last_reload_ok


def test_edited_users_apply_to_the_next_request(tmp_path: Path, serve: Any) -> None:
    path = write_config(tmp_path, f"basic_auth_users:\n  prometheus: '{HASH}'\n")
    running = serve(WebConfigWatcher(load_web_config(path), check_every_s=0))
    url = f"{running.url}/metrics"
    assert httpx.get(url, headers=auth("prometheus", PASSWORD), timeout=5).status_code == 200
    path.write_text(f"basic_auth_users:\n  grafana: '{HASH}'\n")
    assert httpx.get(url, headers=auth("prometheus", PASSWORD), timeout=5).status_code == 401
    assert httpx.get(url, headers=auth("grafana", PASSWORD), timeout=5).status_code == 200


def test_a_fix_in_a_file_the_old_configuration_does_not_name_is_picked_up(
    pki: Path, ca: trustme.CA, serve: Any
) -> None:
    path = write_config(pki, TLS_CONFIG)
    watcher = WebConfigWatcher(load_web_config(path), check_every_s=0)
    running = serve(watcher)
    # The config is edited to name new files before they are copied in.
    path.write_text("tls_server_config:\n  cert_file: new.crt\n  key_file: new.key\n")
    assert answers(f"{running.url}/metrics", ca) == 200
    assert not watcher.last_reload_ok
    renewed_by = trustme.CA()
    leaf = renewed_by.issue_cert("127.0.0.1")
    leaf.private_key_pem.write_to_path(str(pki / "new.key"))
    leaf.cert_chain_pems[0].write_to_path(str(pki / "new.crt"))
    assert answers(f"{running.url}/metrics", renewed_by) == 200
    assert watcher.last_reload_ok


def test_turning_tls_off_needs_a_restart(pki: Path, ca: trustme.CA, serve: Any) -> None:
    path = write_config(pki, TLS_CONFIG)
    watcher = WebConfigWatcher(load_web_config(path), check_every_s=0)
    running = serve(watcher)
    path.write_text(f"basic_auth_users:\n  prometheus: '{HASH}'\n")
    assert answers(f"{running.url}/metrics", ca) == 200  # still TLS, still without users
    assert not watcher.last_reload_ok


def test_the_exporter_reports_a_failed_reload_and_recovers(tmp_path: Path) -> None:
    path = write_config(tmp_path, f"basic_auth_users:\n  prometheus: '{HASH}'\n")
    with FakeLetta() as fake:
        exporter = harness.Exporter(
            fake.base_url, tmp_path / "state.sqlite", f"--web.config.file={path}"
        )
        with harness.running(exporter):
            creds = auth("prometheus", PASSWORD)
            metric = "letta_exporter_web_config_last_reload_successful"

            def reload_ok(headers: dict[str, str]) -> float | None:
                response = exporter.get("/metrics", headers=headers)
                if response.status_code != 200:
                    return None
                match = re.search(rf"^{metric} (\S+)$", response.text, re.M)
                assert match is not None
                return float(match.group(1))

            assert reload_ok(creds) == 1.0
            path.write_text("basic_auth_users: [\n")  # not YAML
            exporter.wait_for(lambda: reload_ok(creds) == 0.0, timeout=10, what="reload failure")
            # stderr reaches the harness on its own thread, maybe after the scrape.
            exporter.wait_for(
                lambda: any("not valid YAML" in line for line in exporter.logs),
                timeout=10,
                what="the warning",
            )
            path.write_text(f"basic_auth_users:\n  grafana: '{HASH}'\n")
            grafana = auth("grafana", PASSWORD)
            exporter.wait_for(lambda: reload_ok(grafana) == 1.0, timeout=10, what="reload")
            assert reload_ok(creds) is None  # the old user is gone
