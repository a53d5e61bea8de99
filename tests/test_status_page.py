"""The status page at `/`: the exporter's own numbers, the last hour of them, nothing secret,
behind the same TLS and basic auth as /metrics."""

from __future__ import annotations

import base64
import itertools
import re
import ssl
from html import unescape
from pathlib import Path

import bcrypt
import httpx
import pytest
import trustme

from exporter.core.views import ApprovalWaitView, OpenRunView
from exporter.metrics.snapshot import Health, Readings, Snapshot
from exporter.series import catalogue as m
from exporter.series.aggregates import Aggregates
from exporter.web.history import HOUR_S, SAMPLE_EVERY_S, History, totals_of
from exporter.web.status import StatusPage
from tests.demo_process import Demo

AGENT = "agent-00000000-0000-4000-8000-000000000001"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def snapshot(
    completed: int,
    failed: int,
    *,
    name: str = "support-desk",
    endpoints_up: tuple[tuple[str, bool], ...] = (),
) -> Snapshot:
    aggregates = Aggregates()
    aggregates.inc(m.RUNS_FINISHED, (AGENT, "completed", "end_turn"), completed)
    aggregates.inc(m.RUNS_FINISHED, (AGENT, "failed", "llm_api_error"), failed)
    aggregates.inc(m.RUNS_FAILED, (AGENT, "llm_server_error"), failed)
    health = Health()
    health.mark_success(1_800_000_000.0)
    return Snapshot(
        aggregates=aggregates,
        open_runs=(
            OpenRunView(AGENT, "running", 1, stale=False),
            OpenRunView(AGENT, "running", 1, stale=True),
        ),
        approval_waits=(ApprovalWaitView(AGENT, 1),),
        agent_info=((AGENT, name),),
        health=health,
        readings=Readings(endpoints_up=endpoints_up),
    )


def numbers(html: str) -> dict[str, float]:
    return {
        unescape(metric): float(value)
        for metric, value in re.findall(r'data-metric="([^"]+)" data-value="([^"]+)"', html)
    }


def test_the_page_shows_totals_as_metrics_does_and_the_last_hour_as_differences() -> None:
    clock = Clock()
    page = StatusPage(clock=clock)
    page.publish(snapshot(10, 2))
    clock.now += HOUR_S + 600
    page.publish(snapshot(40, 5, endpoints_up=(("steps", True), ("metrics", False))))
    html = page.render().decode()
    shown = numbers(html)
    assert shown['letta_runs_finished_total{status="completed",stop_reason="end_turn"}'] == 40
    assert shown['letta_runs_failed_total{error_type="llm_server_error"}'] == 5
    assert shown[f'letta_runs_finished_total{{agent="{AGENT}"}}'] == 45
    assert shown["letta_runs_in_progress"] == 1
    assert shown["letta_runs_stale"] == 1
    assert shown["letta_runs_awaiting_approval"] == 1
    assert shown['letta_exporter_endpoint_up{endpoint="metrics"}'] == 0
    # The hour: 33 runs finished since the sample an hour ago, 3 of them failing.
    assert "<b>33</b><small>runs finished, last hour</small>" in html
    assert "3 (9 %)" in html
    assert "support-desk" in html
    assert '<meta http-equiv="refresh"' in html
    assert "<script" not in html and "http://" not in html.replace("http://www.w3.org", "")


def test_names_from_letta_are_escaped() -> None:
    page = StatusPage(clock=Clock())
    page.publish(snapshot(1, 0, name="<script>alert(1)</script>"))
    html = page.render().decode()
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_the_history_keeps_an_hour_of_samples_at_most() -> None:
    history = History()
    base = snapshot(1, 0)
    for second in range(0, int(3 * HOUR_S), 2):
        if history.due(float(second)):
            history.record(totals_of(base, float(second)))
    samples = history.samples()
    # An hour of samples and the one before the hour.
    assert len(samples) <= HOUR_S / SAMPLE_EVERY_S + 2
    gaps = [b.at_s - a.at_s for a, b in itertools.pairwise(samples)]
    assert min(gaps) >= SAMPLE_EVERY_S
    assert samples[-1].at_s > 3 * HOUR_S - SAMPLE_EVERY_S - 2


def test_before_an_hour_has_passed_the_window_says_since_the_start() -> None:
    clock = Clock()
    page = StatusPage(clock=clock)
    page.publish(snapshot(0, 0))
    clock.now += 300
    page.publish(snapshot(7, 1))
    html = page.render().decode()
    assert "<b>8</b><small>runs finished, last 5 min (since the exporter started)</small>" in html


@pytest.mark.e2e
def test_the_page_is_behind_tls_and_basic_auth_like_metrics(tmp_path: Path) -> None:
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1")
    server.cert_chain_pems[0].write_to_path(str(tmp_path / "server.crt"))
    server.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    password = "s3cret"
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()
    (tmp_path / "web.yml").write_text(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        f"basic_auth_users:\n  viewer: '{hashed}'\n"
    )
    demo = Demo(f"--web.config.file={tmp_path / 'web.yml'}").start()
    try:
        url = f"https://127.0.0.1:{demo.port}/"
        token = base64.b64encode(f"viewer:{password}".encode()).decode()
        trust = ssl.create_default_context()
        ca.configure_trust(trust)
        with httpx.Client(verify=trust, timeout=10) as client:
            refused = client.get(url)
            shown = client.get(url, headers={"Authorization": f"Basic {token}"})
        assert refused.status_code == 401
        assert "Runs by outcome" not in refused.text
        assert shown.status_code == 200
        assert "Runs by outcome" in shown.text
        assert hashed not in shown.text and password not in shown.text
    finally:
        demo.stop()
