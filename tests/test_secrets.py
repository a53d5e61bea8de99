"""The Letta API key and every custom header value (LETTA_CUSTOM_HEADERS, --letta.headers-file)
never leak: not in logs, /metrics, the landing page, spans, the state file, `check` output,
error texts or the repr of the settings."""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from exporter.cli.config import load_settings
from tests.fake_letta.fake import FakeLetta
from tests.harness import Exporter, expected, running
from tests.otlp_receiver import OtlpReceiver

pytestmark = pytest.mark.e2e

OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def canary() -> str:
    return f"sk-let-canary-{secrets.token_hex(12)}"


def leaks(key: str, *texts: str | bytes) -> list[int]:
    """Indexes of the texts that contain the key (or its first half, a cut-off key)."""
    half = key[: len(key) // 2 + 4]
    found = []
    for index, text in enumerate(texts):
        raw = text if isinstance(text, bytes) else text.encode()
        if key.encode() in raw or half.encode() in raw:
            found.append(index)
    return found


def test_the_key_appears_nowhere_through_faults_traces_and_rejections(tmp_path: Path) -> None:
    key = canary()
    key_file = tmp_path / "letta-key"
    key_file.write_text(key + "\n")
    env_header, file_header = canary(), canary()
    headers_file = tmp_path / "letta-headers"
    headers_file.write_text(f"X-Vault-Token: {file_header}\n")
    state = tmp_path / "s.sqlite"
    texts: list[str | bytes] = []
    with OtlpReceiver() as receiver, FakeLetta(password=key) as fake:
        env = {
            "LETTA_API_KEY_FILE": str(key_file),
            "LETTA_CUSTOM_HEADERS": f"X-Gateway-Token: {env_header}",
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.base_url,
            "OTEL_EXPORTER_OTLP_TIMEOUT": "2",
        }
        for kind, where in [
            ("500", r"^/v1/runs/$"),
            ("429", r"/usage$"),
            ("garbage", r"/steps$"),
            ("truncated", r"/metrics$"),
            ("reset", r"^/v1/runs/$"),
            ("timeout", r"/trace$"),
        ]:
            fake.inject(kind, path_regex=where, delay=2.0)
        exporter = Exporter(
            fake.base_url,
            state,
            "--traces.settle-delay=0.2s",
            "--log.format=json",
            f"--letta.headers-file={headers_file}",
            env=env,
        )
        with running(exporter) as exp:
            exp.wait_ready()
            for i in range(4):
                run_id = fake.create_run(f"agent-{i % 2}")
                fake.update_run(run_id, status="running")
                fake.add_step(run_id, prompt_tokens=10, completion_tokens=3)
                fake.update_run(
                    run_id,
                    status="failed" if i == 3 else "completed",
                    stop_reason="llm_api_error" if i == 3 else "end_turn",
                )
            exp.wait_for(lambda: exp.finished() == expected(fake.truth()), what="all counted")
            exp.wait_for(lambda: exp.value("letta_exporter_spans_pending_runs") == 0)
            texts += [
                exp.metrics_text(),
                exp.get("/metrics", headers={"Accept": OPENMETRICS}).text,
                exp.get("/").text,
                exp.get("/healthz").text,
                exp.get("/readyz").text,
            ]
            assert exp.terminate() == 0
        texts += [
            "\n".join(exporter.logs),
            repr(receiver.spans),
            repr(receiver.request_headers),
        ]
        texts += [p.read_bytes() for p in tmp_path.glob("s.sqlite*")]

        # A server that rejects the key: the 401 path logs, but never the key.
        fake.password = canary()
        rejected = Exporter(
            fake.base_url,
            tmp_path / "r.sqlite",
            f"--letta.headers-file={headers_file}",
            env={"LETTA_API_KEY": key, "LETTA_CUSTOM_HEADERS": env["LETTA_CUSTOM_HEADERS"]},
        )
        with running(rejected) as exp:
            exp.wait_for(lambda: any("credentials" in line for line in exp.logs), what="401 log")
            texts.append(exp.metrics_text())
        texts.append("\n".join(rejected.logs))
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "exporter",
                "check",
                f"--letta.url={fake.base_url}",
                f"--letta.headers-file={headers_file}",
            ],
            env={**rejected.env, "LETTA_API_KEY": key},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2
        texts += [result.stdout, result.stderr]

    assert any("llm_api_error" in str(t) for t in texts)  # the scenario did run
    assert any("401" in str(t) or "credentials" in str(t) for t in texts)
    assert leaks(key, *texts) == []
    assert leaks(env_header, *texts) == []
    assert leaks(file_header, *texts) == []


def test_the_settings_repr_and_errors_hide_the_key(tmp_path: Path) -> None:
    key = canary()
    settings = load_settings({"api_key": key})
    assert settings.api_key is not None and settings.api_key.get_secret_value() == key
    assert leaks(key, repr(settings), str(settings), settings.model_dump_json()) == []
    with pytest.raises(Exception) as excinfo:
        load_settings({"api_key": key, "api_key_file": str(tmp_path / "missing")})
    assert leaks(key, str(excinfo.value), repr(excinfo.value)) == []


def test_custom_header_values_stay_out_of_settings_and_start_up_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_header, file_header = canary(), canary()
    headers_file = tmp_path / "headers"
    headers_file.write_text(f"X-Vault-Token: {file_header}\n")
    monkeypatch.setenv("LETTA_CUSTOM_HEADERS", f"X-Gateway-Token: {env_header}")
    settings = load_settings({"letta_headers_file": str(headers_file)})
    shown = (
        repr(settings),
        str(settings),
        settings.model_dump_json(),
        repr(settings.extra_headers),
    )
    assert leaks(env_header, *shown) == [] and leaks(file_header, *shown) == []

    # A bad line (no colon, a reserved name) is reported by number, at start, exit 2.
    texts: list[str | bytes] = []
    for bad in (f"X-Vault-Token {file_header}", f"Authorization: Bearer {file_header}"):
        headers_file.write_text(f"X-Ok: 1\n{bad}\n")
        result = subprocess.run(
            [sys.executable, "-m", "exporter", f"--letta.headers-file={headers_file}"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2 and f"line 2 of {headers_file}" in result.stderr
        texts += [result.stdout, result.stderr]
    assert leaks(file_header, *texts) == []


def test_a_password_in_the_letta_url_is_never_shown(tmp_path: Path) -> None:
    password = canary()
    texts: list[str | bytes] = []
    with FakeLetta() as fake:
        url = fake.base_url.replace("://", f"://ops:{password}@", 1)
        exporter = Exporter(url, tmp_path / "s.sqlite")
        with running(exporter) as exp:
            exp.wait_ready()
            fake.update_run(fake.create_run("agent-a"), status="completed", stop_reason="end_turn")
            exp.wait_for(lambda: exp.finished() == expected(fake.truth()), what="the run counted")
            texts += [exp.metrics_text(), exp.get("/").text]
            assert exp.terminate() == 0
        texts.append("\n".join(exporter.logs))
        assert f"polling {fake.base_url} every" in texts[-1]
    # Nothing answers there: `check` names the URL, not its password.
    unreachable = f"http://ops:{password}@127.0.0.1:9"
    check = subprocess.run(
        [sys.executable, "-m", "exporter", "check", f"--letta.url={unreachable}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 2 and "http://127.0.0.1:9" in check.stderr
    # An API key as well would be a second Authorization header: refused at start.
    both = subprocess.run(
        [sys.executable, "-m", "exporter", f"--letta.url={unreachable}"],
        env={**exporter.env, "LETTA_API_KEY": canary()},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert both.returncode == 2 and "keep one" in both.stderr
    assert "Traceback" not in both.stderr
    texts += [check.stdout, check.stderr, both.stdout, both.stderr]
    assert leaks(password, *texts) == []
