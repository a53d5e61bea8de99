"""The real-server stack starts its servers on ports it really holds.

A free port is only free when asked; another stack on the machine (a second pytest) may
bind it first, and its server would answer the readiness check. Redis stands in for the
three servers: it is quick to start and answers the same way.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.realserver import stack as stack_module
from tests.realserver.stack import REDIS_SERVER, Stack, _start_redis


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def test_a_port_another_server_took_is_not_mistaken_for_ours(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken = stack_module.free_port()
    other = subprocess.Popen(
        [REDIS_SERVER, "--port", str(taken), "--bind", "127.0.0.1", "--save", ""]
        + ["--appendonly", "no", "--dir", str(tmp_path), "--daemonize", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    stack = Stack(workdir=tmp_path, install=None, llm=None)  # type: ignore[arg-type]
    try:
        deadline = time.monotonic() + 30
        while not _ping(taken):
            assert time.monotonic() < deadline, "the other redis did not start"
            time.sleep(0.1)
        real_free_port = stack_module.free_port
        offered = iter([taken])
        monkeypatch.setattr(
            stack_module, "free_port", lambda: next(offered, None) or real_free_port()
        )

        _start_redis(stack)

        assert stack.redis_port != taken
        assert _ping(stack.redis_port)
        assert [p.name for p in stack.processes] == ["redis"]  # the one that lost is gone
        assert stack.processes[0].popen.poll() is None
    finally:
        for proc in stack.processes:
            proc.stop()
        other.terminate()
        other.wait(10)
