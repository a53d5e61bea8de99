"""The server (tests/fake_letta/server.py, __main__.py): stop() releases every thread
and socket; the command line serves until SIGTERM.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys

import httpx
import pytest

from tests.fake_checks import REPO_ROOT, connect, fake_threads
from tests.fake_letta.fake import FakeLetta

pytestmark = pytest.mark.usefixtures("no_leftover_fake_threads")


def test_stop_releases_everything() -> None:
    fds_before = len(os.listdir("/proc/self/fd"))
    fake = FakeLetta().start()
    with contextlib.ExitStack() as stack:
        stack.callback(fake.stop)
        fake.inject("hang", times=2)
        for _ in range(2):
            hung = stack.enter_context(connect(fake.base_url, timeout=0.2))
            with pytest.raises(httpx.ReadTimeout):
                hung.get("/v1/runs/")
        idle = stack.enter_context(connect(fake.base_url))
        assert idle.get("/v1/health/").status_code == 200  # an idle keep-alive connection
        assert fake_threads()
        fake.stop()  # how long it takes: tests/benchmarks/bench_fake.py
        assert fake_threads() == []
    assert len(os.listdir("/proc/self/fd")) <= fds_before


def test_cli_serves_until_sigterm() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fake_letta", "--port", "0", "--bulk", "2000"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith("READY http://127.0.0.1:")
        base_url = line.split(" ", 1)[1]
        with connect(base_url) as http:
            response = http.get("/v1/runs/", params={"limit": 1000})
        assert len(response.json()) == 1000
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
