"""`letta-exporter demo`: metrics without any Letta, within seconds, and a clean Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys

import httpx
import pytest

from tests.demo_process import Demo


@pytest.mark.e2e
def test_the_demo_counts_runs_and_stops_cleanly_on_ctrl_c() -> None:
    demo = Demo().start()
    try:
        # Runs end every second or so and count after a 2 s grace period; the 60 s is a
        # ceiling for a loaded machine, not the expectation (about 8 s here).
        demo.wait_for(lambda: demo.value("letta_runs_finished_total") > 0, 60, "a counted run")
        demo.wait_for(
            lambda: (
                demo.value("letta_runs_awaiting_approval") == 1
                and demo.value("letta_runs_stale") == 1
            ),
            60,
            "the approval left waiting and the stuck run",
        )
        names = {
            dict(labels)["agent_name"]
            for (name, labels) in demo.samples()
            if name == "letta_agent_info"
        }
        assert {"support-desk", "research-assistant", "refunds-desk"} <= names
        assert demo.value("letta_up") == 1
        assert demo.value("letta_run_tokens_total") > 0
        assert demo.value("letta_run_tool_calls_total") > 0
        state = demo.state_folder
        assert state.is_dir()
        assert demo.terminate(sig=signal.SIGINT) == 0
    finally:
        demo.stop()
    assert "stopped cleanly" in demo.logs[-1]
    assert not any("Traceback" in line for line in demo.logs), demo.logs
    assert not state.exists(), "the demo left its temporary state behind"


def demo_with(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter", "demo", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_bad_flag_stops_the_demo_with_one_sentence() -> None:
    done = demo_with("--poll.interval=soon")
    assert done.returncode == 2
    assert done.stderr.startswith("letta-exporter demo: invalid --poll.interval")


@pytest.mark.parametrize("flag", ["--letta.url=http://letta:8283", "--state.path=s.sqlite"])
def test_the_demo_refuses_the_settings_it_decides(flag: str) -> None:
    done = demo_with(flag)
    assert done.returncode == 2
    assert done.stderr.startswith(f"letta-exporter demo: {flag.partition('=')[0]} is the demo's")


@pytest.mark.e2e
def test_the_simulator_alone_serves_letta_until_sigterm() -> None:
    # As the compose stack's demo profile runs it, for an exporter elsewhere.
    simulator = subprocess.Popen(
        [sys.executable, "-m", "exporter", "demo", "--simulator-only"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert simulator.stderr is not None
        line = simulator.stderr.readline()
        url = line.split("a simulated Letta at ")[1].split(";")[0]
        assert httpx.get(f"{url}/v1/health/", timeout=10).json()["version"] == "0.16.8"
        assert "listening on" not in line  # no exporter
        simulator.send_signal(signal.SIGTERM)
        assert simulator.wait(20) == 0
    finally:
        simulator.kill()
        simulator.wait(10)
        if simulator.stderr is not None:
            simulator.stderr.close()
